"""The Evaluate panel: one run's test metrics, confusion matrix (counts or normalised), per-class
table, top-k accuracy, the images behind each cell of the matrix, the misclassified images (most
confident or highest loss first, with Grad-CAM, "show in folder" and "move to class..." to fix
a mislabelled image, one step of the window's Undo history), the reliability diagram with its ECE
and, for two classes, the ROC and precision-recall curves.

Everything shown comes from the run folder (``metrics.json``, ``predictions.csv``,
``config.json``, read through :mod:`cnnstudio.core.runs.records`), so a run opened from a project
months later looks the same as when it ended, and a damaged record is named in the panel.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.data import relabel
from cnnstudio.core.errors import BundleError, StudioError
from cnnstudio.core.evaluation.calibration import apply_temperature, calibration_report
from cnnstudio.core.evaluation.metrics import binary_curves, top_k_accuracy
from cnnstudio.core.model.bundle import META_FILE, set_temperature, stored_temperature
from cnnstudio.core.runs.evaluate import calibrate_bundle, evaluate_run
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.core.runs.records import Prediction, RunRecords
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets import common as widgets
from cnnstudio.gui.widgets.plots import (
    CurvePlot,
    ReliabilityPlot,
    SwitchableConfusionMatrixPlot,
    format_seconds,
    load_thumbnail,
    load_thumbnails,
)

THUMB = 128  # a confusion cell's pictures: large enough to tell what is in them
MAX_CELL_IMAGES = 1000  # a cell of a big test set lists this many, most confident first
PREVIEW = 420  # the longer side of the selected misclassified image
SORT_CONFIDENCE, SORT_LOSS = "confidence", "loss"
FIT_TIP = ("Fit a temperature on the run's validation images and store it in the model bundle: the predicted "
           "class never changes, only how sure the model says it is (also: cnnstudio evaluate RUN --calibrate)")


def choose_class(parent, class_names: list[str], current: str) -> str | None:
    """Ask which class folder an image belongs in; None when cancelled. Tests replace this."""
    others = [n for n in class_names if n != current] or list(class_names)
    name, ok = QInputDialog.getItem(parent, "Move to Class", f"Move this {current} image into the folder of class:",
                                    others, 0, False)
    return name if ok and name else None


@dataclass
class RunReport:
    """What the panel shows of one run, read from its folder."""

    run_dir: Path
    metrics: dict
    class_names: list[str]  # the model's output order
    predictions: list[Prediction]
    dataset_root: Path | None
    probs: np.ndarray | None = None  # (n, classes) in class_names order, when predictions.csv has them
    val_files: int = 0  # how many validation files the run recorded (to fit a temperature on)
    has_bundle: bool = False
    temperature: float = 1.0  # what the run's bundle applies to the model's probabilities

    @classmethod
    def read(cls, run_dir) -> RunReport | None:
        """The run's report; None when it has no results yet (training, or interrupted). Raises
        :class:`~cnnstudio.core.errors.RecordError` naming a record that is malformed."""
        records = RunRecords(run_dir)
        metrics = records.metrics
        if metrics is None:
            return None
        config = records.config
        predictions = records.predictions
        root_text = (config.get("dataset") or {}).get("root")
        val_files = len((config.get("split") or {}).get("val") or [])
        rows = predictions.rows if predictions is not None else []
        probs = predictions.probs if predictions is not None else None
        report = cls(Path(run_dir), metrics, records.class_names, rows, Path(root_text) if root_text else None,
                     probs, val_files)
        report.read_temperature()
        return report

    def read_temperature(self) -> None:
        """Whether the run has a bundle, and its temperature (1 when unreadable: the Predict
        panel says why when it loads the bundle)."""
        folder = RunPaths(self.run_dir).bundle
        self.has_bundle = (folder / META_FILE).exists()
        try:
            self.temperature = stored_temperature(folder) if self.has_bundle else 1.0
        except BundleError:
            self.temperature = 1.0

    def y_true(self) -> np.ndarray:
        label = {n: i for i, n in enumerate(self.class_names)}
        return np.array([label[r.true] for r in self.predictions], dtype=int)

    def misclassified(self, order: str = SORT_CONFIDENCE) -> list[Prediction]:
        """The wrong predictions, most confident (or highest loss) first."""
        wrong = [r for r in self.predictions if r.true != r.predicted]
        if order == SORT_LOSS:
            return sorted(wrong, key=lambda r: (-(r.loss if r.loss is not None else -r.confidence), r.path))
        return sorted(wrong, key=lambda r: (-r.confidence, r.path))

    def full_path(self, rel: str) -> Path:
        return self.dataset_root / rel if self.dataset_root else Path(rel)

    def cell(self, true: int, predicted: int) -> list[Prediction]:
        names = self.class_names
        rows = [r for r in self.predictions if r.true == names[true] and r.predicted == names[predicted]]
        return sorted(rows, key=lambda r: (-r.confidence, r.path))


class _Stat(QFrame):
    """A number with its caption under it."""

    def __init__(self, caption: str):
        super().__init__()
        self.setFrameShape(QFrame.Shape.StyledPanel)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 6, 10, 6)
        self.value = QLabel("\u2014")
        font = self.value.font()
        font.setPointSizeF(font.pointSizeF() * 1.5)
        font.setBold(True)
        self.value.setFont(font)
        self.value.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.caption = QLabel(caption)
        self.caption.setEnabled(False)  # the palette's dimmed text
        layout.addWidget(self.value)
        layout.addWidget(self.caption)

    def set(self, text: str) -> None:
        self.value.setText(text)


class EvaluatePanel(QWidget):
    """Shows the session's current run; picking another run here selects it in the session."""

    TABLE_COLUMNS = ("Class", "Precision", "Recall", "F1", "Support")

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.report: RunReport | None = None
        self._syncing = False
        self._thumb_job = 0
        self.thumbnails_shown = 0  # of the listed cell images, how many have their picture
        self._wrong_job = 0
        self.wrong_thumbnails_shown = 0
        self._preview_job = 0
        self._cam_holder: dict = {"lock": threading.Lock()}  # the run's GradCam, built in a worker
        self.gradcam_worker: Worker | None = None
        self.gradcam_shown: str | None = None  # the path whose Grad-CAM is on show
        self.wrong_rows: list[Prediction] = []  # as listed in the misclassified browser

        top = QHBoxLayout()
        top.addWidget(QLabel("Run"))
        self.run_combo = QComboBox()
        self.run_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToContents)
        self.run_combo.setMinimumContentsLength(30)
        self.run_combo.currentIndexChanged.connect(self._on_combo)
        top.addWidget(self.run_combo, 1)
        self.message = QLabel()
        self.message.setWordWrap(True)
        top.addWidget(self.message, 2)

        stats = QGridLayout()
        self.stats = {key: _Stat(caption) for key, caption in (
            ("accuracy", "test accuracy"), ("loss", "test loss"), ("images", "test images"),
            ("time", "training time"), ("status", "status"),
        )}
        for i, stat in enumerate(self.stats.values()):
            stats.addWidget(stat, 0, i)

        self.matrix_plot = SwitchableConfusionMatrixPlot()
        self.matrix_plot.setMinimumSize(220, 160)
        self.matrix_plot.cellClicked.connect(self.show_cell)
        self.normalized_check = QCheckBox("Normalised (share of each true class)")
        self.normalized_check.setToolTip("Show each row's share instead of the counts; a row sums to 1")
        self.normalized_check.toggled.connect(self.matrix_plot.set_normalized)
        matrix_box = QGroupBox("Confusion matrix (click a cell to see its images)")
        matrix_layout = QVBoxLayout(matrix_box)
        matrix_layout.addWidget(self.normalized_check)
        matrix_layout.addWidget(self.matrix_plot)

        self.table = QTableWidget(0, len(self.TABLE_COLUMNS))
        self.table.setHorizontalHeaderLabels(self.TABLE_COLUMNS)
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        self.table.setWordWrap(False)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, len(self.TABLE_COLUMNS)):
            header.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.setMinimumWidth(420)
        self.table.setMinimumHeight(120)  # the page fits a 1024x640 screen; a splitter gives more
        self.topk_label = QLabel()
        self.topk_label.setWordWrap(True)
        self.topk_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        table_box = QGroupBox("Per class")
        table_layout = QVBoxLayout(table_box)
        table_layout.addWidget(self.table)
        table_layout.addWidget(self.topk_label)

        upper = QSplitter(Qt.Orientation.Horizontal)
        upper.addWidget(matrix_box)
        upper.addWidget(table_box)
        upper.setStretchFactor(0, 3)
        upper.setStretchFactor(1, 2)

        self.cell_label = QLabel("No cell selected.")
        self.cell_list = QListWidget()
        self.cell_list.setViewMode(QListView.ViewMode.IconMode)
        self.cell_list.setIconSize(QSize(THUMB, THUMB))
        self.cell_list.setGridSize(QSize(THUMB + 80, THUMB + 44))
        self.cell_list.setResizeMode(QListView.ResizeMode.Adjust)
        self.cell_list.setMovement(QListView.Movement.Static)
        self.cell_list.setWordWrap(True)
        self.cell_list.setUniformItemSizes(True)
        self.cell_list.setMinimumHeight(100)
        cells_box = QWidget()
        cells_layout = QVBoxLayout(cells_box)
        cells_layout.addWidget(self.cell_label)
        cells_layout.addWidget(self.cell_list)

        self.tabs = QTabWidget()
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(cells_box, "Images of a cell")
        self.wrong_tab = self.tabs.addTab(self._build_misclassified(), "Misclassified")
        self.reliability_plot = ReliabilityPlot()
        self.calibration_label = QLabel()
        self.calibration_label.setWordWrap(True)
        self.calibration_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.fit_button = QPushButton("Fit Temperature")
        self.fit_button.setToolTip(FIT_TIP)
        self.fit_button.clicked.connect(self.fit_temperature)
        self.remove_temperature_button = QPushButton("Remove Temperature")
        self.remove_temperature_button.setToolTip("Store temperature 1 again: the model's own probabilities")
        self.remove_temperature_button.clicked.connect(self.remove_temperature)
        self.calibration_busy = QProgressBar()
        self.calibration_busy.setRange(0, 0)
        self.calibration_busy.setMaximumWidth(160)
        self.calibration_busy.setTextVisible(False)
        self.calibration_busy.hide()
        self.calibration_error = widgets.error_label()
        self.calibration_worker: Worker | None = None
        self.last_calibration: dict | None = None  # what the last fit in this panel said
        calibration_buttons = QHBoxLayout()
        calibration_buttons.addWidget(self.fit_button)
        calibration_buttons.addWidget(self.remove_temperature_button)
        calibration_buttons.addWidget(self.calibration_busy)
        calibration_buttons.addStretch(1)
        calibration = QWidget()
        calibration_layout = QVBoxLayout(calibration)
        calibration_layout.addWidget(self.calibration_label)
        calibration_layout.addLayout(calibration_buttons)
        calibration_layout.addWidget(self.calibration_error)
        calibration_layout.addWidget(self.reliability_plot, 1)
        self.calibration_tab = self.tabs.addTab(calibration, "Calibration")
        self.roc_plot = CurvePlot("false positive rate", "true positive rate")
        self.pr_plot = CurvePlot("recall", "precision")
        self.curves_label = QLabel()
        curves = QWidget()
        curves_layout = QGridLayout(curves)
        curves_layout.addWidget(self.curves_label, 0, 0, 1, 2)
        curves_layout.addWidget(self.roc_plot, 1, 0)
        curves_layout.addWidget(self.pr_plot, 1, 1)
        curves_layout.setRowStretch(1, 1)
        self.curves_tab = self.tabs.addTab(curves, "ROC / PR")

        lower = QSplitter(Qt.Orientation.Vertical)
        lower.addWidget(upper)
        lower.addWidget(self.tabs)
        lower.setStretchFactor(0, 3)
        lower.setStretchFactor(1, 2)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(stats)
        layout.addWidget(lower, 1)

        self._update_buttons()

        session.runsChanged.connect(self._fill_runs)
        session.currentRunChanged.connect(self._follow_session)
        session.movesChanged.connect(self._show_moves)
        session.undoChanged.connect(self._update_buttons)
        session.datasetEdited.connect(self._dataset_edited)
        session.undoRefused.connect(self._undo_refused)
        self._fill_runs()
        self._follow_session(session.current_run)

    def _build_misclassified(self) -> QWidget:
        self.wrong_sort = QComboBox()
        self.wrong_sort.addItem("Most confident first", SORT_CONFIDENCE)
        self.wrong_sort.addItem("Highest loss first", SORT_LOSS)
        self.wrong_sort.currentIndexChanged.connect(lambda _i: self._fill_misclassified())
        self.wrong_label = QLabel()
        self.wrong_list = QListWidget()
        self.wrong_list.setIconSize(QSize(THUMB * 3 // 4, THUMB * 3 // 4))
        self.wrong_list.setUniformItemSizes(True)
        self.wrong_list.setMinimumHeight(100)
        self.wrong_list.currentRowChanged.connect(self._on_wrong_selected)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        sort_row = QHBoxLayout()
        sort_row.addWidget(self.wrong_label, 1)
        sort_row.addWidget(self.wrong_sort)
        left_layout.addLayout(sort_row)
        left_layout.addWidget(self.wrong_list, 1)

        self.preview = QLabel()
        self.preview.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.preview.setMinimumSize(200, 110)
        self.preview_info = QLabel("Select an image.")
        self.preview_info.setWordWrap(True)
        self.preview_info.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.gradcam_check = QCheckBox("Grad-CAM of the predicted class")
        self.gradcam_check.setToolTip("Overlay where the model looked to predict this class (computed from the "
                                      "run's saved model)")
        self.gradcam_check.toggled.connect(lambda _on: self._show_preview())
        self.show_button = QPushButton(widgets.icon("show-folder"), "Show in Folder")
        self.show_button.clicked.connect(self.show_in_folder)
        self.move_button = QPushButton(widgets.icon("folder"), "Move to Class...")
        self.move_button.setToolTip("The true label is wrong: move the file into another class's folder")
        self.move_button.clicked.connect(self.move_selected)
        self.undo_button = QPushButton("Undo Move")
        self.undo_button.setToolTip("Move the last moved image back, when that move is the last change (Edit > Undo)")
        self.undo_button.clicked.connect(self.undo_move)
        self.move_hint = QLabel()
        self.move_hint.setWordWrap(True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.gradcam_check)
        buttons.addStretch(1)
        buttons.addWidget(self.show_button)
        buttons.addWidget(self.move_button)
        buttons.addWidget(self.undo_button)
        right = QWidget()
        right_layout = QVBoxLayout(right)
        right_layout.setContentsMargins(0, 0, 0, 0)
        right_layout.addWidget(self.preview, 1)
        right_layout.addWidget(self.preview_info)
        right_layout.addLayout(buttons)
        right_layout.addWidget(self.move_hint)

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(left)
        split.addWidget(right)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 3)
        return split

    # -- runs -----------------------------------------------------------------------------

    def _fill_runs(self) -> None:
        self._syncing = True
        try:
            self.run_combo.clear()
            for run in self.session.runs:
                acc = (run.get("metrics") or {}).get("test_accuracy")
                label = run["name"] + (f"  (accuracy {acc:.1%})" if acc is not None else "")
                self.run_combo.addItem(label, run["path"])
            i = self.run_combo.findData(self.session.current_run)
            self.run_combo.setCurrentIndex(i)
        finally:
            self._syncing = False

    def _on_combo(self, i: int) -> None:
        if self._syncing or i < 0:
            return
        self.session.select_run(self.run_combo.itemData(i))

    def _follow_session(self, path: str) -> None:
        self._syncing = True
        try:
            self.run_combo.setCurrentIndex(self.run_combo.findData(path) if path else -1)
        finally:
            self._syncing = False
        self.load_run(path)

    # -- showing a run --------------------------------------------------------------------

    def load_run(self, path) -> None:
        """Show the run in ``path`` ("" clears the panel)."""
        self.report = None
        self._clear()
        if not path:
            self.message.setText("No run selected. Train a model, or pick a run.")
            return
        try:
            report = RunReport.read(path)
        except StudioError as exc:
            self.message.setText(str(exc))
            return
        if report is None:
            self.message.setText(f"{Path(path).name} has no results yet (training, or interrupted).")
            return
        self.report = report
        m = report.metrics
        acc, loss = m.get("test_accuracy"), m.get("test_loss")
        self.stats["accuracy"].set(f"{acc:.2%}" if acc is not None else "\u2014")
        self.stats["loss"].set(f"{loss:.4f}" if loss is not None else "\u2014")
        self.stats["images"].set(str(m.get("test_images", "\u2014")))
        self.stats["time"].set(format_seconds(m.get("train_seconds")))
        status = str(m.get("status", "?")).replace("_", " ")
        self.stats["status"].set(f"{status}, {m.get('epochs_run', '?')} ep.")
        cm = m.get("confusion_matrix")
        if cm is None:
            self.message.setText("No test metrics for this run (stopped before the end, or no test split).")
            return
        self.message.setText(str(report.run_dir))
        self.matrix_plot.set_matrix(cm, report.class_names)
        self._fill_table(m, report.class_names)
        self._fill_views()
        self._fill_misclassified()

    def _clear(self) -> None:
        for stat in self.stats.values():
            stat.set("\u2014")
        self.matrix_plot.set_matrix([], [])
        self.table.setRowCount(0)
        self._thumb_job += 1
        self.thumbnails_shown = 0
        self.cell_list.clear()
        self.cell_label.setText("No cell selected.")
        self.topk_label.setText("")
        self.reliability_plot.set_bins([], None)
        self.calibration_label.setText("No predictions.")
        widgets.set_error(self.calibration_error, "")
        self.last_calibration = None
        self._update_calibration_buttons()
        self.roc_plot.clear_curve()
        self.pr_plot.clear_curve()
        self.curves_label.setText("")
        self.tabs.setTabEnabled(self.curves_tab, False)
        self.wrong_rows = []
        self.wrong_list.clear()
        self.wrong_label.setText("")
        self._wrong_job += 1
        self.wrong_thumbnails_shown = 0
        self._clear_preview()
        self._cam_holder = {"lock": threading.Lock()}

    def _fill_table(self, m: dict, names: list[str]) -> None:
        rows = [(name, m["per_class"][name]) for name in names]
        rows += [("macro avg", m["macro_avg"]), ("weighted avg", m["weighted_avg"])]
        self.table.setRowCount(len(rows))
        for r, (name, d) in enumerate(rows):
            cells = [name, f"{d['precision']:.3f}", f"{d['recall']:.3f}", f"{d['f1']:.3f}", str(d["support"])]
            for c, text in enumerate(cells):
                item = QTableWidgetItem(text)
                if c:
                    item.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if r >= len(names):
                    font = item.font()
                    font.setItalic(True)
                    item.setFont(font)
                self.table.setItem(r, c, item)

    # -- the images of a cell -------------------------------------------------------------

    def show_cell(self, true: int, predicted: int) -> None:
        """List the test images of true class ``true`` predicted as ``predicted``."""
        report = self.report
        if report is None or not report.class_names:
            return
        names = report.class_names
        self.matrix_plot.select((true, predicted))
        self.tabs.setCurrentIndex(0)
        rows = report.cell(true, predicted)
        shown = rows[:MAX_CELL_IMAGES]
        what = "correctly classified" if true == predicted else f"predicted as {names[predicted]}"
        more = f" (the {len(shown)} most confident shown)" if len(shown) < len(rows) else ""
        self.cell_label.setText(f"True {names[true]}, {what}: {len(rows)} image(s){more}")
        self._thumb_job += 1
        self.thumbnails_shown = 0
        self.cell_list.clear()
        placeholder = QPixmap(THUMB, THUMB)
        placeholder.fill(self.palette().color(self.backgroundRole()))
        files = []
        for row in shown:
            item = QListWidgetItem(QIcon(placeholder), f"{Path(row.path).name}\n{row.confidence:.1%}")
            full = report.dataset_root / row.path if report.dataset_root else Path(row.path)
            item.setToolTip(f"{row.path}\npredicted {row.predicted} with confidence {row.confidence:.2%}")
            item.setData(Qt.ItemDataRole.UserRole, row.path)
            self.cell_list.addItem(item)
            files.append(full)
        if files:
            job = self._thumb_job
            worker = Worker(_thumbnails_for_job, job, files, THUMB)
            worker.finished.connect(self._on_thumbnails)
            worker.start()

    def cell_paths(self) -> list[str]:
        """The dataset-relative paths listed for the selected cell."""
        return [self.cell_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.cell_list.count())]

    def _on_thumbnails(self, result) -> None:
        job, images = result
        if job != self._thumb_job:
            return  # another cell was picked meanwhile
        for i, image in enumerate(images):
            item = self.cell_list.item(i)
            if item is None:
                break
            if image is None:
                item.setText(item.text() + "\n(missing)")
            else:
                item.setIcon(QIcon(QPixmap.fromImage(image)))
        self.thumbnails_shown = len(images)


    # -- top-k, calibration, ROC / PR -----------------------------------------------------

    def _probabilities(self):
        """``(y_true, probs)`` of the run's test images, or None without usable probabilities."""
        report = self.report
        if report is None or report.probs is None or not len(report.predictions):
            return None
        return report.y_true(), report.probs

    def _fill_views(self) -> None:
        names = self.report.class_names
        data = self._probabilities()
        if data is None:
            self.topk_label.setText("")
            self.calibration_label.setText("predictions.csv has no per-class probabilities for this run.")
            return
        y, probs = data
        if len(names) > 2:
            topk = top_k_accuracy(y, probs)
            self.topk_label.setText("Top-k accuracy: " + ", ".join(
                f"top-{k} {v:.1%}" for k, v in topk.items() if v is not None))
        self._fill_calibration()
        curves = binary_curves(y, probs, names)
        self.tabs.setTabEnabled(self.curves_tab, curves is not None)
        if curves is None:
            return
        self.curves_label.setText(f"Positive class: {curves['positive_class']} (its probability is the score)")
        roc, pr = curves["roc"], curves["pr"]
        if roc:
            self.roc_plot.set_curve(roc["fpr"], roc["tpr"], f"ROC, AUC {roc['auc']:.3f}", ((0, 1), (0, 1)))
        else:
            self.roc_plot.clear_curve("ROC: needs both classes in the test split")
        if pr:
            base = float(np.mean(y == 1))
            self.pr_plot.set_curve(pr["recall"], pr["precision"],
                                   f"Precision-recall, AP {pr['average_precision']:.3f}", ((0, 1), (base, base)))
        else:
            self.pr_plot.clear_curve("Precision-recall: no positive image")

    # -- calibration ----------------------------------------------------------------------

    def _fill_calibration(self) -> None:
        """The reliability diagram of what the bundle predicts (its temperature applied), with
        the ECE before and after the temperature, and the last fit's numbers."""
        self._update_calibration_buttons()
        data = self._probabilities()
        if data is None:
            return
        y, probs = data
        T = self.report.temperature
        own = calibration_report(y, probs)
        text = ("Bars: the accuracy of the predictions in each confidence bin; red: the gap to their mean "
                "confidence; dashed: perfect calibration.")
        if T == 1.0:
            self.reliability_plot.set_bins(own["bins"], own["ece"])
            lead = (f"Expected calibration error (ECE) on the test split: {own['ece']:.4f}. "
                    + ("Fit Temperature to make the confidence match the accuracy. "
                       if self.fit_button.isEnabled() else ""))
        else:
            scaled = calibration_report(y, apply_temperature(probs, T))
            self.reliability_plot.set_bins(scaled["bins"], scaled["ece"])
            lead = (f"The model bundle applies temperature {T:.4f}: expected calibration error (ECE) on the "
                    f"test split {scaled['ece']:.4f}, {own['ece']:.4f} without it. ")
        c = self.last_calibration
        if c is not None:
            lead += (f"Fitted on {c['val_images']} validation images (NLL {c['val_nll_before']:.4f} \u2192 "
                     f"{c['val_nll_after']:.4f}) and stored in {c['stored_in']}. ")
        self.calibration_label.setText(lead + text)

    def _update_calibration_buttons(self) -> None:
        report = self.report
        busy = self.calibration_worker is not None
        usable = report is not None and report.has_bundle and self._probabilities() is not None
        self.fit_button.setEnabled(usable and report.val_files > 0 and not busy)
        self.fit_button.setToolTip(FIT_TIP if report is None or report.val_files else
                                   "The run has no validation split to fit a temperature on")
        self.remove_temperature_button.setEnabled(usable and not busy and report.temperature != 1.0)
        self.calibration_busy.setVisible(busy)

    def fit_temperature(self) -> Worker | None:
        """Fit a temperature on the run's validation images, in the background; the bundle keeps it."""
        report = self.report
        if report is None or self.calibration_worker is not None:
            return None
        widgets.set_error(self.calibration_error, "")
        worker = Worker(_calibrate_job, report.run_dir)
        worker.finished.connect(lambda c, run=report.run_dir: self._on_calibrated(run, c))
        worker.errored.connect(self._on_calibration_failed)
        self.calibration_worker = worker
        self._update_calibration_buttons()
        self.fit_button.setText("Fitting\u2026")
        worker.start()
        return worker

    def _calibration_done(self) -> None:
        self.calibration_worker = None
        self.fit_button.setText("Fit Temperature")

    def _on_calibrated(self, run_dir: Path, calibration: dict) -> None:
        self._calibration_done()
        if self.report is None or self.report.run_dir != run_dir:
            return  # another run is on show; its bundle was still calibrated
        self.last_calibration = calibration
        self.report.read_temperature()
        self._fill_calibration()

    def _on_calibration_failed(self, message: str, details: str) -> None:
        self._calibration_done()
        self._update_calibration_buttons()
        if details:  # a bug, not a missing folder
            errors.show_error(self, "Cannot fit the temperature", message, details)
        else:
            widgets.set_error(self.calibration_error, message)

    def remove_temperature(self) -> None:
        """Go back to the model's own probabilities (temperature 1)."""
        report = self.report
        if report is None or not report.has_bundle:
            return
        try:
            set_temperature(RunPaths(report.run_dir).bundle, None)
        except (StudioError, OSError) as exc:
            widgets.set_error(self.calibration_error, str(exc))
            return
        widgets.set_error(self.calibration_error, "")
        self.last_calibration = None
        report.read_temperature()
        self._fill_calibration()

    # -- the misclassified images ---------------------------------------------------------

    def _move_of(self, rel: str) -> relabel.Move | None:
        """The move (not undone) of the listed image ``rel`` of this run's dataset, if any."""
        root = self.report.dataset_root.resolve() if self.report and self.report.dataset_root else None
        for move in reversed(self.session.moves):
            if move.source == rel and move.root == root:
                return move
        return None

    def _current_file(self, rel: str) -> Path:
        move = self._move_of(rel)
        return move.target_path if move else self.report.full_path(rel)

    def _wrong_text(self, row: Prediction) -> str:
        text = f"{Path(row.path).name}\ntrue {row.true} \u2192 predicted {row.predicted}, {row.confidence:.1%}"
        move = self._move_of(row.path)
        return text + (f"\nmoved to {move.new_class}" if move else "")

    def _fill_misclassified(self) -> None:
        report = self.report
        self._wrong_job += 1
        self.wrong_thumbnails_shown = 0
        self.wrong_list.blockSignals(True)
        self.wrong_list.clear()
        self.wrong_list.blockSignals(False)
        self._clear_preview()
        if report is None:
            return
        order = self.wrong_sort.currentData()
        if order == SORT_LOSS and any(r.loss is None for r in report.predictions):
            order = SORT_CONFIDENCE
        self.wrong_rows = report.misclassified(order)
        n = len(report.predictions)
        self.wrong_label.setText(f"{len(self.wrong_rows)} of {n} test image(s) misclassified")
        self.tabs.setTabText(self.wrong_tab, f"Misclassified ({len(self.wrong_rows)})")
        size = self.wrong_list.iconSize().width()
        placeholder = QPixmap(size, size)
        placeholder.fill(self.palette().color(self.backgroundRole()))
        for row in self.wrong_rows:
            item = QListWidgetItem(QIcon(placeholder), self._wrong_text(row))
            item.setData(Qt.ItemDataRole.UserRole, row.path)
            loss = f", loss {row.loss:.3f}" if row.loss is not None else ""
            item.setToolTip(f"{row.path}\ntrue {row.true}, predicted {row.predicted} "
                            f"with confidence {row.confidence:.2%}{loss}")
            self._mark(item, row.path)
            self.wrong_list.addItem(item)
        if self.wrong_rows:
            files = [self._current_file(r.path) for r in self.wrong_rows]
            worker = Worker(_thumbnails_for_job, self._wrong_job, files, size)
            worker.finished.connect(self._on_wrong_thumbnails)
            worker.start()
        self._update_buttons()

    def _mark(self, item: QListWidgetItem, rel: str) -> None:
        font = item.font()
        font.setItalic(self._move_of(rel) is not None)
        item.setFont(font)

    def misclassified_paths(self) -> list[str]:
        return [self.wrong_list.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.wrong_list.count())]

    def _on_wrong_thumbnails(self, result) -> None:
        job, images = result
        if job != self._wrong_job:
            return
        for i, image in enumerate(images):
            item = self.wrong_list.item(i)
            if item is None:
                break
            if image is not None:
                item.setIcon(QIcon(QPixmap.fromImage(image)))
        self.wrong_thumbnails_shown = len(images)

    def selected_row(self) -> Prediction | None:
        i = self.wrong_list.currentRow()
        return self.wrong_rows[i] if self.report is not None and 0 <= i < len(self.wrong_rows) else None

    def _on_wrong_selected(self, _i: int) -> None:
        self._show_preview()
        self._update_buttons()

    def _clear_preview(self) -> None:
        self._preview_job += 1
        self.gradcam_shown = None
        self.preview.clear()
        self.preview_info.setText("Select an image.")
        self._update_buttons()

    def _show_preview(self) -> None:
        row = self.selected_row()
        if row is None:
            self._clear_preview()
            return
        self._preview_job += 1
        job = self._preview_job
        self.gradcam_shown = None
        move = self._move_of(row.path)
        where = f"{row.path}" + (f" (now {move.target})" if move else "")
        loss = f", loss {row.loss:.3f}" if row.loss is not None else ""
        self.preview_info.setText(f"{where}\nTrue class {row.true}, predicted {row.predicted} "
                                  f"with confidence {row.confidence:.1%}{loss}")
        path = self._current_file(row.path)
        if self.gradcam_check.isChecked():
            model_dir = RunPaths(self.report.run_dir).bundle
            worker = Worker(_gradcam_for_job, job, self._cam_holder, model_dir, path)
            worker.finished.connect(self._on_preview)
            worker.errored.connect(self._on_gradcam_error)
            self.gradcam_worker = worker
            self.preview.setText("Computing Grad-CAM\u2026")
            worker.start()
        else:
            worker = Worker(_preview_for_job, job, path, PREVIEW)
            worker.finished.connect(self._on_preview)
            worker.start()

    def _on_preview(self, result) -> None:
        job, image, path, gradcam = result
        if job != self._preview_job:
            return
        if image is None:
            self.preview.setText("(the file is missing or unreadable)")
            return
        pixmap = QPixmap.fromImage(image)
        side = max(64, min(PREVIEW, self.preview.width() - 8, self.preview.height() - 8))
        if max(pixmap.width(), pixmap.height()) != side:  # small images are shown large too
            pixmap = pixmap.scaled(side, side, Qt.AspectRatioMode.KeepAspectRatio,
                                   Qt.TransformationMode.SmoothTransformation)
        self.preview.setPixmap(pixmap)
        self.gradcam_shown = str(path) if gradcam else None

    def _on_gradcam_error(self, message: str, _details: str) -> None:
        self.preview.setText(f"No Grad-CAM: {message}")

    def _update_buttons(self) -> None:
        if not hasattr(self, "undo_button"):
            return
        row = self.selected_row() if hasattr(self, "wrong_rows") else None
        has_root = self.report is not None and self.report.dataset_root is not None
        self.show_button.setEnabled(row is not None)
        self.move_button.setEnabled(row is not None and has_root and self._move_of(row.path) is None)
        move = self.session.move_to_undo()  # Edit > Undo would take it back
        self.undo_button.setEnabled(move is not None)
        self.undo_button.setText(f"Undo Move of {Path(move.source).name}" if move else "Undo Move")

    def show_in_folder(self) -> None:
        row = self.selected_row()
        if row is not None:
            widgets.show_in_folder(self._current_file(row.path))

    def move_selected(self) -> relabel.Move | None:
        """Ask for the right class of the selected image and move its file into that class's folder."""
        row = self.selected_row()
        report = self.report
        if row is None or report is None or report.dataset_root is None or self._move_of(row.path):
            return None
        names = [n for n in report.class_names if (report.dataset_root / n).is_dir()]
        choice = choose_class(self, names, row.true)
        if not choice:
            return None
        try:
            move = relabel.move_to_class(report.dataset_root, row.path, choice)
        except (relabel.RelabelError, OSError) as exc:
            self.move_hint.setText(f"Not moved: {exc}")
            return None
        self.session.record_move(move)
        return move

    def undo_move(self) -> relabel.Move | None:
        """Move the last moved image back where it was: Edit > Undo, when that move is the last change."""
        move = self.session.move_to_undo()
        return move if move is not None and self.session.undo() else None

    def _show_moves(self) -> None:
        """The moves changed (made, undone, redone, or a project opened): mark the listed images."""
        if not hasattr(self, "wrong_rows") or self.report is None:
            self._update_buttons()
            return
        for i in range(self.wrong_list.count()):
            item = self.wrong_list.item(i)
            rel = item.data(Qt.ItemDataRole.UserRole)
            text = self._wrong_text(self.wrong_rows[i])
            if item.text() != text:
                item.setText(text)
                self._mark(item, rel)
                if i == self.wrong_list.currentRow():
                    self._show_preview()
        self._update_buttons()

    def _undo_refused(self, _title: str, message: str) -> None:
        self.move_hint.setText(message)

    def _dataset_edited(self, _root: str, what: str) -> None:
        self.move_hint.setText(f"{what} The dataset folder changed: rescan it (Data tab) before training "
                               "again. This run's numbers are unchanged.")


def _calibrate_job(run_dir: Path) -> dict:
    ev = evaluate_run(run_dir, need_val=True,
                      moved_hint="move it back to where the run was trained to fit a temperature")
    return calibrate_bundle(ev.bundle, ev.index, ev.val_paths, ev.raw)


def _preview_for_job(job: int, path: Path, size: int):
    return job, load_thumbnail(path, size), path, False


def _gradcam_for_job(job: int, holder: dict, model_dir: Path, path: Path):
    """The Grad-CAM overlay of ``path`` as a QImage; the run's model is loaded once per holder."""
    from cnnstudio.core.evaluation.gradcam import GradCam, gradcam_image
    from cnnstudio.core.model.bundle import Bundle

    with holder["lock"]:  # one model build, and one Grad-CAM at a time
        if holder.get("dir") != model_dir:
            holder["cam"] = GradCam(Bundle(model_dir).model)
            holder["dir"] = model_dir
        result = gradcam_image(holder["cam"], path)
    rgb = np.ascontiguousarray(result.overlay)
    h, w = rgb.shape[:2]
    image = QImage(rgb.data, w, h, 3 * w, QImage.Format.Format_RGB888).copy()
    return job, image, path, True


def _thumbnails_for_job(job: int, files, size: int):
    return job, load_thumbnails(files, size)
