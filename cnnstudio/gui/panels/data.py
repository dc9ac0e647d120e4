"""The Data panel: choose a dataset folder, see its classes, images and problems, set the split.

The scan runs in a worker; thumbnails load lazily off the GUI thread (only the visible ones,
newest request first) and are cached, so a folder of thousands of images scrolls smoothly.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from pathlib import Path

import numpy as np
from PySide6.QtCore import (
    QAbstractListModel,
    QObject,
    QSize,
    Qt,
    QThreadPool,
    QTimer,
    Signal,
)
from PySide6.QtGui import QColor, QIcon, QImage, QPalette, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QListView,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QStyle,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets import common as widgets

THUMBNAIL_SIZE = 96
# Decoded thumbnails kept in memory (about 37 kB each at 96 px).
THUMBNAIL_CACHE = 2000
PREVIEW_COUNT = 8
PREVIEW_SIZE = 120  # four a row fit a 1024-pixel-wide window beside the classes
MAX_SPLIT_PERCENT = 50


# ----------------------------------------------------------------------------- thumbnails


def _thumbnail(path: str, size: int) -> QImage:
    """A ``size``-pixel thumbnail of ``path`` (aspect kept; small images are enlarged to be seen),
    decoded by the studio's one image loader (EXIF orientation applied)."""
    from PIL import Image

    from cnnstudio.core.io.images import load_rgb

    img = load_rgb(path, draft_size=size)
    scale = size / max(img.size)
    if scale != 1:
        target = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        resample = Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.BILINEAR
        img = img.resize(target, resample, reducing_gap=2.0 if scale < 1 else None)
    data = img.tobytes()
    qimage = QImage(data, img.width, img.height, 3 * img.width, QImage.Format.Format_RGB888)
    return qimage.copy()  # own the pixels: ``data`` goes away with this frame


class ThumbnailLoader(QObject):
    """Loads thumbnails on its own small thread pool and caches them (least recently used out).

    Requests made later run first (what is on screen now matters more than what scrolled past),
    and :meth:`forget_pending` drops what has not started, e.g. when the grid shows another class.
    """

    loaded = Signal(str)  # the path whose thumbnail is now in the cache

    def __init__(self, size: int = THUMBNAIL_SIZE, parent=None):
        super().__init__(parent)
        self.size = size
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._cache: OrderedDict[str, QPixmap] = OrderedDict()
        self._pending: set[str] = set()
        self._priority = itertools.count()
        self._done = _LoadedRelay()
        self._done.image.connect(self._store)

    def get(self, path: str) -> QPixmap | None:
        """The cached thumbnail, or None after asking for it to be loaded."""
        pixmap = self._cache.get(path)
        if pixmap is not None:
            self._cache.move_to_end(path)
            return pixmap
        if path not in self._pending:
            self._pending.add(path)
            relay, size, pending = self._done, self.size, self._pending

            def job():
                if path not in pending:  # forgotten before it started
                    return
                try:
                    image = _thumbnail(path, size)
                except Exception:  # noqa: BLE001 - a broken file shows the placeholder
                    image = QImage()
                relay.image.emit(path, image)

            self.pool.start(job, min(next(self._priority), 2**30))
        return None

    def forget_pending(self) -> None:
        self.pool.clear()
        self._pending.clear()

    def _store(self, path: str, image: QImage) -> None:
        self._pending.discard(path)
        if image.isNull():
            return
        self._cache[path] = QPixmap.fromImage(image)
        while len(self._cache) > THUMBNAIL_CACHE:
            self._cache.popitem(last=False)
        self.loaded.emit(path)

    def wait(self, msecs: int = 10000) -> bool:
        return self.pool.waitForDone(msecs)


class _LoadedRelay(QObject):
    image = Signal(str, QImage)


class ThumbnailModel(QAbstractListModel):
    """The images of one class (or all) as icons; asks the loader only for what the view shows."""

    def __init__(self, loader: ThumbnailLoader, parent=None):
        super().__init__(parent)
        self.loader = loader
        self.loader.loaded.connect(self._on_loaded)
        self._rows: list[tuple[str, str]] = []  # (absolute path, tooltip)
        self._row_of: dict[str, int] = {}
        self._placeholder = QPixmap()

    def set_images(self, index, indices) -> None:
        self.beginResetModel()
        self.loader.forget_pending()
        self._rows = []
        if index is not None:
            for i in indices:
                item = index.items[i]
                tip = f"{item.path}\n{index.class_names[item.label]}, {item.width} x {item.height} px"
                self._rows.append((str(index.abspath(item)), tip))
        self._row_of = {path: row for row, (path, _) in enumerate(self._rows)}
        self.endResetModel()

    def path(self, row: int) -> str:
        return self._rows[row][0]

    def rowCount(self, parent=None) -> int:  # noqa: N802 - Qt's name
        return 0 if parent is not None and parent.isValid() else len(self._rows)

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        if not index.isValid():
            return None
        path, tip = self._rows[index.row()]
        if role == Qt.ItemDataRole.DecorationRole:
            return self.loader.get(path) or self._placeholder_pixmap()
        if role == Qt.ItemDataRole.ToolTipRole:
            return tip
        return None

    def _placeholder_pixmap(self) -> QPixmap:
        if self._placeholder.isNull():
            size = self.loader.size
            self._placeholder = QPixmap(size, size)
            colour = QColor(QPalette().color(QPalette.ColorRole.Mid))
            colour.setAlpha(60)
            self._placeholder.fill(colour)
        return self._placeholder

    def _on_loaded(self, path: str) -> None:
        row = self._row_of.get(path)
        if row is not None:
            i = self.index(row)
            self.dataChanged.emit(i, i, [Qt.ItemDataRole.DecorationRole])


# ----------------------------------------------------------------------------- augmentation preview


def augment_previews(path: str, spec, count: int = PREVIEW_COUNT) -> list[np.ndarray]:
    """``count`` draws of ``path`` through ``spec``'s augmentation (training mode), as uint8 RGB.

    The image is resized to the model's input size first, exactly as training feeds it.
    """
    from cnnstudio.core.io.images import load_array
    from cnnstudio.core.model import models
    from cnnstudio.core.tf import keras
    from cnnstudio.core.tf.seeding import fresh_seed, seeded

    K = keras()
    size = spec.input_size or 224
    image = load_array(path, size).astype("float32")
    # The very layers build_model puts in front of the model, so the preview is what training sees.
    # (core.model.models keeps the function private for now; the public name is used once it has one.)
    make_layers = models.augmentation_layers
    with seeded(fresh_seed()):  # new draws each time, without touching a run's seeds
        layers = make_layers(spec.augmentation)
    batch = np.repeat(image[None], count, axis=0)
    for layer in layers:
        batch = layer(batch, training=True)
    out = np.asarray(K.ops.convert_to_numpy(batch) if not isinstance(batch, np.ndarray) else batch)
    return [np.clip(x, 0, 255).astype(np.uint8) for x in out]


def _pixmap(array: np.ndarray, size: int) -> QPixmap:
    array = np.ascontiguousarray(array)
    h, w = array.shape[:2]
    image = QImage(array.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return QPixmap.fromImage(image).scaled(
        size, size, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )


# ----------------------------------------------------------------------------- the panel


class DataPanel(QWidget):
    scanFinished = Signal()  # the session holds the new index
    scanFailed = Signal(str)
    previewReady = Signal()

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self._scan_worker: Worker | None = None
        self._preview_worker: Worker | None = None
        self._preview_pending = False
        self._draw = 0  # "New Draw" presses: part of what the shown preview is of
        self._previewed = None  # what the preview cells show: (path, augmentation, size, draw)
        self._preview_key = None
        self.setAcceptDrops(True)

        self._build_top_bar()
        self._build_left()
        self._build_tabs()
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.left)
        splitter.addWidget(self.tabs)
        splitter.setStretchFactor(0, 2)
        splitter.setStretchFactor(1, 3)
        splitter.setChildrenCollapsible(False)
        splitter.setSizes([440, 660])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(widgets.MARGIN, widgets.MARGIN, widgets.MARGIN, widgets.MARGIN)
        layout.setSpacing(widgets.SPACING)
        layout.addLayout(self.top_bar)
        layout.addWidget(self.error)
        layout.addWidget(splitter, 1)

        self._preview_timer = QTimer(self, singleShot=True, interval=300)
        self._preview_timer.timeout.connect(self.preview_augmentation)
        session.datasetChanged.connect(self._on_dataset)
        session.splitChanged.connect(self._on_split)
        session.specChanged.connect(self._on_spec)
        self._on_split()
        self._on_dataset()

    # ------------------------------------------------------------------ building

    def _build_top_bar(self) -> None:
        self.open_button = QPushButton(widgets.icon("folder"), "Open Folder...")
        self.open_button.clicked.connect(self.choose_folder)
        self.rescan_button = QPushButton(widgets.icon("refresh"), "Rescan")
        self.rescan_button.setToolTip("Scan the folder again (after adding or fixing images)")
        self.rescan_button.clicked.connect(self.rescan)
        self.path_label = QLabel()
        self.path_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.path_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(240)
        self.progress.setFormat("Scanning %v / %m")
        self.progress.hide()
        self.top_bar = QHBoxLayout()
        self.top_bar.setSpacing(widgets.SPACING)
        self.top_bar.addWidget(self.open_button)
        self.top_bar.addWidget(self.rescan_button)
        self.top_bar.addWidget(self.path_label, 1)
        self.top_bar.addWidget(self.progress)
        # Why the folder shown cannot be trained on, across the page in place of its classes.
        self.error = widgets.error_label()
        self.error.setFrameShape(QLabel.Shape.StyledPanel)
        self.error.setContentsMargins(8, 6, 8, 6)

    def _build_left(self) -> None:
        self.summary_label = QLabel()
        self.summary_label.setWordWrap(True)
        self.class_table = QTableWidget(0, 5)
        self.class_table.setHorizontalHeaderLabels(["Class", "Images", "Train", "Validation", "Test"])
        self.class_table.verticalHeader().hide()
        self.class_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.class_table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.class_table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.class_table.setAlternatingRowColors(True)
        header = self.class_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for column in range(1, 5):
            header.setSectionResizeMode(column, QHeaderView.ResizeMode.ResizeToContents)
        self.class_table.itemSelectionChanged.connect(self._on_class_selected)

        self.chart = None  # the class-balance chart; pyqtgraph is imported when first needed
        self.chart_box = QVBoxLayout()
        self.chart_box.setContentsMargins(0, 0, 0, 0)

        self.left = QWidget()
        layout = QVBoxLayout(self.left)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(widgets.SPACING)
        layout.addWidget(widgets.section_label("Classes"))
        layout.addWidget(self.summary_label)
        layout.addWidget(self.class_table, 1)
        layout.addWidget(widgets.section_label("Class balance"))
        layout.addLayout(self.chart_box, 1)
        layout.addWidget(widgets.section_label("Split"))
        layout.addLayout(self._build_split())

    def _build_split(self) -> QGridLayout:
        grid = QGridLayout()
        grid.setHorizontalSpacing(widgets.SPACING)
        grid.setVerticalSpacing(widgets.SPACING // 2)
        self.val_slider, self.val_spin = self._percent_pair()
        self.test_slider, self.test_spin = self._percent_pair()
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setToolTip("The same seed always gives the same split")
        self.seed_spin.setKeyboardTracking(False)
        self.seed_spin.valueChanged.connect(self._apply_split)
        self.split_label = QLabel()
        self.split_label.setWordWrap(True)  # a narrow window wraps the counts rather than widen the page
        grid.addWidget(QLabel("Validation"), 0, 0)
        grid.addWidget(self.val_slider, 0, 1)
        grid.addWidget(self.val_spin, 0, 2)
        grid.addWidget(QLabel("Test"), 1, 0)
        grid.addWidget(self.test_slider, 1, 1)
        grid.addWidget(self.test_spin, 1, 2)
        grid.addWidget(QLabel("Seed"), 2, 0)
        self.seed_spin.setMinimumWidth(120)
        grid.addWidget(self.seed_spin, 2, 1, Qt.AlignmentFlag.AlignLeft)
        grid.addWidget(self.split_label, 3, 0, 1, 3)
        grid.setColumnStretch(1, 1)
        return grid

    def _percent_pair(self) -> tuple[QSlider, QSpinBox]:
        slider = QSlider(Qt.Orientation.Horizontal)
        slider.setRange(0, MAX_SPLIT_PERCENT)
        spin = QSpinBox()
        spin.setRange(0, MAX_SPLIT_PERCENT)
        spin.setSuffix(" %")
        spin.setKeyboardTracking(False)
        slider.valueChanged.connect(spin.setValue)
        spin.valueChanged.connect(slider.setValue)
        spin.valueChanged.connect(self._apply_split)
        return slider, spin

    def _build_tabs(self) -> None:
        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)

        # Images
        self.class_combo = QComboBox()
        self.class_combo.currentIndexChanged.connect(self._show_class)
        self.loader = ThumbnailLoader(THUMBNAIL_SIZE, self)
        self.thumbnails = ThumbnailModel(self.loader, self)
        self.grid = QListView()
        self.grid.setViewMode(QListView.ViewMode.IconMode)
        self.grid.setUniformItemSizes(True)  # never asks every item for its size
        self.grid.setLayoutMode(QListView.LayoutMode.Batched)
        self.grid.setBatchSize(500)
        self.grid.setResizeMode(QListView.ResizeMode.Adjust)
        self.grid.setMovement(QListView.Movement.Static)
        self.grid.setIconSize(QSize(THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        self.grid.setGridSize(QSize(THUMBNAIL_SIZE + 10, THUMBNAIL_SIZE + 10))
        self.grid.setSpacing(2)
        self.grid.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.grid.setModel(self.thumbnails)
        self.grid.doubleClicked.connect(lambda i: widgets.show_in_folder(self.thumbnails.path(i.row())))
        self.grid.selectionModel().currentChanged.connect(self._on_image_selected)
        self.grid.verticalScrollBar().setSingleStep(THUMBNAIL_SIZE // 3)
        images = QWidget()
        layout = QVBoxLayout(images)
        layout.setContentsMargins(0, widgets.SPACING, 0, 0)
        layout.setSpacing(widgets.SPACING)
        row = QHBoxLayout()
        row.addWidget(QLabel("Show"))
        row.addWidget(self.class_combo, 1)
        row.addWidget(widgets.hint_label("Double-click an image to show it in its folder."), 2)
        layout.addLayout(row)
        layout.addWidget(self.grid, 1)
        self.tabs.addTab(images, widgets.icon("data"), "Images")

        # Problems
        self.problems = QTreeWidget()
        self.problems.setHeaderLabels(["Level", "File", "Reason"])
        self.problems.setRootIsDecorated(False)
        self.problems.setAlternatingRowColors(True)
        self.problems.setUniformRowHeights(True)
        self.problems.setWordWrap(False)
        self.problems.itemDoubleClicked.connect(lambda *_: self.show_problem_in_folder())
        self.problems.currentItemChanged.connect(lambda *_: self._update_problem_buttons())
        self.show_button = QPushButton(widgets.icon("show-folder"), "Show in Folder")
        self.show_button.clicked.connect(self.show_problem_in_folder)
        self.no_problems = widgets.hint_label("No problems found: every file is a usable image.")
        problems = QWidget()
        layout = QVBoxLayout(problems)
        layout.setContentsMargins(0, widgets.SPACING, 0, 0)
        layout.setSpacing(widgets.SPACING)
        layout.addWidget(widgets.hint_label(
            "Files that cannot be decoded are left out of training; fix or remove them and Rescan."
        ))
        self.no_problems.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop)
        self.problems_stack = QStackedWidget()
        self.problems_stack.addWidget(self.problems)
        self.problems_stack.addWidget(self.no_problems)
        layout.addWidget(self.problems_stack, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.show_button)
        layout.addLayout(row)
        self.problems_tab = self.tabs.addTab(problems, "Problems")

        # Augmentation preview
        self.preview_button = QPushButton(widgets.icon("refresh"), "New Draw")
        self.preview_button.setToolTip("Draw the random augmentation again")
        self.preview_button.clicked.connect(self._new_draw)
        self.preview_label = widgets.hint_label()
        self.preview_error = widgets.error_label()
        self.preview_cells: list[QLabel] = []
        cells = QGridLayout()
        cells.setSpacing(widgets.SPACING)
        for i in range(PREVIEW_COUNT):
            cell = QLabel()
            cell.setFixedSize(PREVIEW_SIZE, PREVIEW_SIZE)
            cell.setAlignment(Qt.AlignmentFlag.AlignCenter)
            cell.setFrameShape(QLabel.Shape.StyledPanel)
            cells.addWidget(cell, i // 4, i % 4)
            self.preview_cells.append(cell)
        preview = QWidget()
        layout = QVBoxLayout(preview)
        layout.setContentsMargins(0, widgets.SPACING, 0, 0)
        layout.setSpacing(widgets.SPACING)
        row = QHBoxLayout()
        row.addWidget(self.preview_label, 1)
        row.addWidget(self.preview_button)
        layout.addLayout(row)
        layout.addWidget(self.preview_error)
        layout.addLayout(cells)
        layout.addStretch(1)
        self.preview_tab = self.tabs.addTab(preview, widgets.icon("model"), "Augmentation Preview")
        self.tabs.currentChanged.connect(self._on_tab)

    # ------------------------------------------------------------------ scanning

    def choose_folder(self) -> None:
        start = str(self.session.dataset_root or "")
        folder = QFileDialog.getExistingDirectory(self, "Open a dataset folder (one sub-folder per class)", start)
        if folder:
            self.load_folder(folder)

    def rescan(self) -> Worker | None:
        if self.session.dataset_root is None:
            return None
        return self.load_folder(self.session.dataset_root)

    def is_scanning(self) -> bool:
        return self._scan_worker is not None

    def load_folder(self, folder, touch: bool = True) -> Worker:
        """Scan ``folder`` in a worker and make it the session's dataset; returns the worker.

        ``touch=False`` when it is no work to save: restoring an opened project's dataset, or
        the sample or folder the window starts on (the project stays unmodified).
        """
        from cnnstudio.core.data.dataset import scan_dataset

        folder = Path(folder)
        worker = Worker(scan_dataset, folder)
        self._scan_worker = worker
        self.progress.setRange(0, 0)  # busy until the first progress report
        self.progress.show()
        self.open_button.setEnabled(False)
        self.rescan_button.setEnabled(False)
        self.path_label.setText(str(folder))
        widgets.set_error(self.error, "")
        self.session.track(worker.describe(f"Scanning {folder.name}..."), worker.what)
        worker.progress.connect(self._on_scan_progress)
        # Bound methods, not lambdas: Qt drops the connection if this panel goes away first.
        worker.finished.connect(self._on_scanned)
        worker.errored.connect(self._on_scan_failed)
        self._scan_folder, self._scan_touch = folder, touch
        return worker.start()

    def _on_scan_progress(self, task: str, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def _scan_done(self) -> bool:
        """Tidy up after the scan that signalled; False when a newer scan replaced it (stale)."""
        if self._scan_worker is None or self.sender() is not self._scan_worker:
            return False
        self._scan_worker = None
        self.progress.hide()
        self.open_button.setEnabled(True)
        self.rescan_button.setEnabled(True)
        return True

    def _on_scanned(self, index) -> None:
        if not self._scan_done():
            return
        self.session.set_dataset(self._scan_folder, index, touch=self._scan_touch)
        self.scanFinished.emit()

    def _on_scan_failed(self, message: str, details: str) -> None:
        if not self._scan_done():
            return
        # The folder asked for is the dataset now, unreadable: nothing of the previous one stays.
        self.session.set_dataset(self._scan_folder, None, touch=self._scan_touch, error=message)
        if details:  # a bug rather than a bad folder: the full report
            errors.show_error(self, "The dataset could not be scanned", message, details)
        self.scanFailed.emit(message)

    # ------------------------------------------------------------------ showing the dataset

    def _on_dataset(self) -> None:
        index = self.session.index
        root = self.session.dataset_root
        if self._scan_worker is None:
            self.path_label.setText(str(root) if root else "No dataset: open a folder with one sub-folder per class, or drop one here.")
        self.rescan_button.setEnabled(root is not None and self._scan_worker is None)
        if self._scan_worker is None:
            widgets.set_error(self.error, self.refusal())
        self._fill_classes()
        self._fill_chart()
        self._fill_problems()
        blocked = self.class_combo.blockSignals(True)
        self.class_combo.clear()
        if index is not None:
            self.class_combo.addItem(f"All classes ({len(index.items)})", -1)
            for label, (name, count) in enumerate(zip(index.class_names, index.counts(), strict=True)):
                self.class_combo.addItem(f"{name} ({count})", label)
        self.class_combo.blockSignals(blocked)
        self._show_class()
        self._clear_preview()
        if self.tabs.currentIndex() == self.preview_tab:
            self.preview_augmentation()

    def refusal(self) -> str:
        """Why the folder shown cannot be trained on ("" when it can, or when none is open)."""
        return self.session.dataset_refusal() if self.session.dataset_root is not None else ""

    def _split_counts(self):
        """Per-class (train, val, test) counts of the current split, or None."""
        index = self.session.index
        if index is None or not index.items:
            return None
        try:
            split = self.session.make_split()
        except Exception as exc:  # noqa: BLE001 - a split that cannot be made is shown, not raised
            return str(exc)
        labels = np.array(index.labels())
        n = len(index.class_names)
        return [np.bincount(labels[np.array(part, dtype=int)], minlength=n) if len(part) else np.zeros(n, int)
                for part in (split.train, split.val, split.test)]

    def _fill_classes(self) -> None:
        index = self.session.index
        table = self.class_table
        blocked = table.blockSignals(True)
        table.setRowCount(0)
        if index is None or self.refusal():  # nothing to split; the banner says why
            self.summary_label.setText("")
            self.split_label.setText("")
            table.blockSignals(blocked)
            return
        counts = index.counts()
        parts = self._split_counts()
        table.setRowCount(len(index.class_names))
        for row, (name, count) in enumerate(zip(index.class_names, counts, strict=True)):
            values = [name, count]
            if isinstance(parts, list):
                values += [int(p[row]) for p in parts]
            for column, value in enumerate(values):
                item = QTableWidgetItem(str(value))
                if column:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                table.setItem(row, column, item)
        table.blockSignals(blocked)
        n_err, n_warn = len(index.errors), len(index.warnings)
        problems = f", {n_err} error(s), {n_warn} warning(s)" if (n_err or n_warn) else ""
        self.summary_label.setText(f"{len(index.items)} images in {len(index.class_names)} classes{problems}")
        if isinstance(parts, list):
            train, val, test = (int(p.sum()) for p in parts)
            self.split_label.setText(f"Train {train}  \u00b7  Validation {val}  \u00b7  Test {test} images")
        elif isinstance(parts, str):
            self.split_label.setText(parts)

    def _fill_chart(self) -> None:
        index = self.session.index
        if self.chart is None:
            if index is None:
                return
            import pyqtgraph as pg

            from cnnstudio.gui.widgets.plots import style_plot

            self.chart = pg.PlotWidget()
            self.chart.setMinimumHeight(140)
            self.chart.setMenuEnabled(False)
            self.chart.setMouseEnabled(x=False, y=False)
            self.chart.hideButtons()
            self.chart.getPlotItem().setLabel("left", "images")
            style_plot(self.chart)
            self.chart_box.addWidget(self.chart)
        plot = self.chart.getPlotItem()
        plot.clear()
        plot.getAxis("bottom").setTicks(None)
        shown = index is not None and bool(index.class_names) and not self.refusal()
        self.chart.setVisible(shown)  # no empty axes left at the previous dataset's scale
        if not shown:
            return
        import pyqtgraph as pg

        counts = index.counts()
        x = np.arange(len(counts))
        colour = self.palette().color(QPalette.ColorRole.Highlight)
        bars = pg.BarGraphItem(x=x, height=counts, width=0.6, brush=colour, pen=pg.mkPen(colour.darker(130)))
        plot.addItem(bars)
        names = index.class_names
        step = max(1, len(names) // 12)  # keep labels readable with many classes
        plot.getAxis("bottom").setTicks([[(i, names[i]) for i in range(0, len(names), step)], []])
        plot.setXRange(-0.6, len(counts) - 0.4, padding=0)
        plot.setYRange(0, max(counts) * 1.08, padding=0)

    def _fill_problems(self) -> None:
        index = self.session.index
        self.problems.clear()
        problems = index.problems if index is not None else []
        style = self.style()
        icons = {
            "error": style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxCritical),
            "warning": style.standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning),
        }
        items = []
        for problem in problems:
            where = problem.path or "(whole dataset)"
            item = QTreeWidgetItem([problem.level, where, problem.reason])
            item.setIcon(0, icons.get(problem.level, icons["warning"]))
            item.setToolTip(2, problem.reason)
            item.setData(0, Qt.ItemDataRole.UserRole, problem.path)
            items.append(item)
        self.problems.addTopLevelItems(items)
        for column in (0, 1):
            self.problems.resizeColumnToContents(column)
        if items:
            self.problems.setCurrentItem(items[0])
        n_err = sum(p.level == "error" for p in problems)
        title = f"Problems ({len(problems)})" if problems else "Problems"
        self.tabs.setTabText(self.problems_tab, title)
        self.tabs.setTabIcon(self.problems_tab, icons["error"] if n_err else (icons["warning"] if problems else QIcon()))
        self.problems_stack.setCurrentWidget(self.problems if problems else self.no_problems)
        self.no_problems.setText("No problems found: every file is a usable image." if index is not None
                                 else "Open a dataset to check its images.")
        self.show_button.setVisible(bool(problems))
        self._update_problem_buttons()

    def problem_rows(self) -> list[tuple[str, str, str]]:
        """(level, file, reason) of each listed problem, as shown."""
        rows = []
        for i in range(self.problems.topLevelItemCount()):
            item = self.problems.topLevelItem(i)
            rows.append((item.text(0), item.text(1), item.text(2)))
        return rows

    def class_rows(self) -> list[tuple[str, int]]:
        """(class, image count) of each row of the class table, as shown."""
        return [(self.class_table.item(r, 0).text(), int(self.class_table.item(r, 1).text()))
                for r in range(self.class_table.rowCount())]

    def _update_problem_buttons(self) -> None:
        self.show_button.setEnabled(self.problems.currentItem() is not None)

    def show_problem_in_folder(self) -> None:
        item = self.problems.currentItem()
        root = self.session.dataset_root
        if item is None or root is None:
            return
        rel = item.data(0, Qt.ItemDataRole.UserRole) or ""
        widgets.show_in_folder(root.joinpath(*rel.split("/")) if rel else root)

    def _on_class_selected(self) -> None:
        rows = self.class_table.selectionModel().selectedRows()
        if rows:
            self.class_combo.setCurrentIndex(rows[0].row() + 1)

    def _show_class(self) -> None:
        index = self.session.index
        label = self.class_combo.currentData()
        if index is None:
            self.thumbnails.set_images(None, [])
            return
        if label is None or label < 0:
            indices = range(len(index.items))
        else:
            indices = [i for i, item in enumerate(index.items) if item.label == label]
        self.thumbnails.set_images(index, indices)

    # ------------------------------------------------------------------ split

    def _on_split(self) -> None:
        s = self.session
        for spin, value in ((self.val_spin, s.val_fraction), (self.test_spin, s.test_fraction)):
            blocked = spin.blockSignals(True)
            spin.setValue(round(value * 100))
            spin.blockSignals(blocked)
            slider = self.val_slider if spin is self.val_spin else self.test_slider
            blocked = slider.blockSignals(True)
            slider.setValue(spin.value())
            slider.blockSignals(blocked)
        blocked = self.seed_spin.blockSignals(True)
        self.seed_spin.setValue(s.seed)
        self.seed_spin.blockSignals(blocked)
        self._fill_classes()

    def _apply_split(self) -> None:
        self.session.set_split(self.val_spin.value() / 100, self.test_spin.value() / 100, self.seed_spin.value())

    # ------------------------------------------------------------------ augmentation preview

    def _on_tab(self, tab: int) -> None:
        if tab == self.preview_tab:
            self.preview_augmentation()

    def _on_spec(self) -> None:
        if self.tabs.currentIndex() == self.preview_tab:
            self._preview_timer.start()
        else:
            self._clear_preview()

    def _on_image_selected(self, current, previous) -> None:
        if self.tabs.currentIndex() == self.preview_tab:
            self.preview_augmentation()
        else:
            self._clear_preview()

    def _new_draw(self) -> None:
        self._draw += 1
        self.preview_augmentation()

    def preview_image(self) -> str | None:
        """The image the preview shows: the one selected in the grid, else the first."""
        current = self.grid.currentIndex()
        if current.isValid():
            return self.thumbnails.path(current.row())
        index = self.session.index
        return str(index.abspath(0)) if index is not None and index.items else None

    def _clear_preview(self) -> None:
        for cell in self.preview_cells:
            cell.clear()
        self._previewed = None

    def preview_augmentation(self) -> Worker | None:
        """Show the chosen image through the current augmentation, several times (in a worker)."""
        path = self.preview_image()
        spec = self.session.spec
        if path is None:
            self.preview_label.setText("Open a dataset to preview the augmentation on one of its images.")
            return None
        key = (path, repr(spec.augmentation), spec.input_size, self._draw)
        if self._previewed == key:
            return None
        if self._preview_worker is not None:  # one at a time; the latest wish runs next
            self._preview_pending = True
            return None
        name = Path(path).name
        if spec.augmentation.enabled():
            self.preview_label.setText(f"{name} at {spec.input_size} px, {PREVIEW_COUNT} random draws of the "
                                       "training augmentation (set on the Model panel)")
        else:
            self.preview_label.setText(f"{name} at {spec.input_size} px: the model has no augmentation; "
                                       "set it on the Model panel")
        widgets.set_error(self.preview_error, "")
        worker = Worker(augment_previews, path, spec, PREVIEW_COUNT)
        self._preview_worker = worker
        self._preview_key = key
        worker.finished.connect(self._on_preview)
        worker.errored.connect(self._on_preview_failed)
        return worker.start()

    def _preview_finished(self) -> None:
        self._preview_worker = None
        if self._preview_pending:
            self._preview_pending = False
            self.preview_augmentation()

    def _on_preview(self, arrays) -> None:
        self._previewed = self._preview_key
        for cell, array in zip(self.preview_cells, arrays, strict=False):
            cell.setPixmap(_pixmap(array, PREVIEW_SIZE - 4))
        self.previewReady.emit()
        self._preview_finished()

    def _on_preview_failed(self, message: str, details: str) -> None:
        widgets.set_error(self.preview_error, message)
        if details:
            errors.show_error(self, "The augmentation preview failed", message, details)
        self._preview_finished()

    # ------------------------------------------------------------------ drops

    def dragEnterEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if _dropped_folder(event.mimeData()) is not None:
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:  # noqa: N802
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:  # noqa: N802
        folder = _dropped_folder(event.mimeData())
        if folder is None:
            event.ignore()
            return
        event.acceptProposedAction()
        self.load_folder(folder)


def _dropped_folder(mime) -> Path | None:
    if not mime.hasUrls():
        return None
    for url in mime.urls():
        if url.isLocalFile() and Path(url.toLocalFile()).is_dir():
            return Path(url.toLocalFile())
    return None
