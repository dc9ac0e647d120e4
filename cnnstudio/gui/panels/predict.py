"""The Predict panel: drop image files or folders, see each one's top classes.

The model bundle is loaded once, off the GUI thread, and kept (:class:`BundleCache`) until
another model is chosen, so every later drop costs only the prediction. Images go through the
core's one loader (``Bundle.predict_paths``), so a dropped photo gets exactly the training
preprocessing; a file that is no image, or a broken one, gets its own message while the rest
still predict.

"What ImageNet sees" switches the panel to a pretrained backbone's whole ImageNet classifier
(:class:`cnnstudio.builtins.imagenet.ImageNetClassifier`): the shown and dropped images get their
top-5 ImageNet classes. Its weights (ImageNet, downloaded once with progress; a file; or random,
always labelled "not pretrained") are fetched and the classifier built off the GUI thread.

"Grad-CAM" shows, instead of each card's plain thumbnail, the Grad-CAM heatmap of its predicted
class overlaid on the image (:mod:`cnnstudio.core.evaluation.gradcam`, the backbone's last convolutional
layer), computed by the same background worker as the prediction.
"""

from __future__ import annotations

import threading
from pathlib import Path

from PySide6.QtCore import QEvent, Qt, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QSpinBox,
    QStyle,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.builtins.imagenet import (
    DEFAULT_INPUT_SIZE,
    DEFAULT_MODEL,
    TOP_K,
    ImageNetClassifier,
    imagenet_providers,
)
from cnnstudio.core.errors import BundleError, StudioError
from cnnstudio.core.io.atomic import atomic_write_csv
from cnnstudio.core.evaluation.gradcam import GradCam, gradcam_image
from cnnstudio.core.io.images import expand_paths
from cnnstudio.core.model import weights as weights_sources
from cnnstudio.core.model.bundle import Bundle, Prediction
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.dialogs.errors import describe
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets.plots import load_thumbnail

THUMB = 112

NAME_WIDTH = 150  # the class-name column, the same in every card so the bars line up
BAR_WIDTH = 160
# A card's width in the grid: margins, picture, class name, bar and percentage side by side.
CARD_WIDTH = 22 + THUMB + 6 + NAME_WIDTH + 8 + BAR_WIDTH + 8 + 64
IMAGE_FILTER = "Images (*.jpg *.jpeg *.png *.bmp *.gif *.webp *.tif *.tiff);;All files (*)"
WEIGHTS_FILTER = "Keras weights (*.weights.h5 *.h5);;All files (*)"
WEIGHTS_FILE = "file"  # the weights combo's entry that asks for a file


class BundleCache:
    """The loaded bundle, shared by the load and predict workers (thread-safe).

    A bundle is loaded once per folder and kept until another folder is asked for; the lock
    also keeps two predictions from running on the model at once.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self.folder: Path | None = None
        self.bundle: Bundle | None = None
        self.cam: GradCam | None = None  # Grad-CAM of self.bundle, made when first asked for

    def get(self, folder) -> Bundle:
        with self._lock:
            return self._get(Path(folder))

    def _get(self, folder: Path) -> Bundle:
        if self.bundle is None or folder != self.folder:
            self.bundle = self.cam = None
            self.bundle = Bundle(folder)
            self.folder = folder
        else:
            self.bundle.refresh_temperature()  # calibrated in the Evaluate panel or by the CLI since
        return self.bundle

    def gradcam(self, folder, paths: list[str], size: int) -> tuple[list[QImage | None], str | None]:
        """Grad-CAM overlays of the predicted classes, at most ``size`` px, and the layer used
        (None for a file that cannot be read)."""
        with self._lock:
            bundle = self._get(Path(folder))
            if self.cam is None or self.cam.model is not bundle.model:
                self.cam = GradCam(bundle.model)
            images = []
            for path in paths:
                try:
                    images.append(_qimage(gradcam_image(self.cam, path, max_side=size).overlay))
                except Exception:  # noqa: BLE001 - that card keeps its plain thumbnail
                    images.append(None)
            return images, self.cam.layer

    def predict(self, folder, paths: list[str], top_k: int):
        with self._lock:
            return self._get(Path(folder)).predict_paths(paths, top_k=top_k)

    def is_loaded(self, folder) -> bool:
        return self.bundle is not None and self.folder == Path(folder)


class ImageNetCache:
    """The ImageNet classifier of the last (backbone, weights, input size), kept between drops (thread-safe)."""

    def __init__(self, registry):
        self.registry = registry
        self._lock = threading.Lock()
        self.key: tuple | None = None
        self.classifier: ImageNetClassifier | None = None

    def predict(self, key: tuple, paths: list[str], k: int, state=None):
        with self._lock:
            if self.classifier is None or key != self.key:
                self.classifier = None
                provider_id, weights, size = key
                self.classifier = ImageNetClassifier(provider_id, weights, registry=self.registry,
                                                     state=state, input_size=size)
                self.key = key
            return self.classifier, self.classifier.predict_paths(paths, k=k)


class _InKiB:
    """A task state that passes progress on in KiB (a Qt signal's int holds no more than 2 GiB)."""

    def __init__(self, state):
        self.state = state

    def on_status(self, message: str) -> None:
        self.state.on_status(message)

    def on_progress(self, task: str, done: int, total: int) -> None:
        self.state.on_progress(task, int(done) // 1024, int(total or 0) // 1024)

    def should_stop(self) -> bool:
        return self.state.should_stop()


def _imagenet_job(cache: ImageNetCache, job: int, key: tuple, paths: list[str], state=None):
    """(job, label, predictions, thumbnails, None, "") or, when the classifier cannot be had,
    (job, None, None, None, message, details). Download progress is reported in KiB."""
    try:
        classifier, results = cache.predict(key, paths, TOP_K, state=None if state is None else _InKiB(state))
    except Exception as exc:  # noqa: BLE001 - shown on the cards of the drop and in the error box
        return (job, None, None, None, *describe(exc))
    predictions = [Prediction(r.path, [(n, p) for n, _, p in r.top] if r.top else None, r.error) for r in results]
    thumbs = [load_thumbnail(p, THUMB) if pr.error is None else None for p, pr in zip(paths, predictions, strict=True)]
    return job, classifier.label, predictions, thumbs, None, ""


def _qimage(array) -> QImage:
    """An (h, w, 3) uint8 RGB array as a QImage of its own (safe off the GUI thread)."""
    h, w = array.shape[:2]
    return QImage(array.tobytes(), w, h, 3 * w, QImage.Format.Format_RGB888).copy()


def _predict_job(cache: BundleCache, job: int, folder, paths: list[str], top_k: int, gradcam: bool = False):
    """(job, predictions, thumbnails, None, gradcam) or, when the model cannot be used,
    (job, None, None, message, None). With ``gradcam`` the thumbnails are Grad-CAM overlays and
    ``gradcam`` is ``(layer, [overlay made])``, or ``(None, message)`` when it cannot be computed.

    A failure is returned rather than raised so that the cards of this very drop get the message.
    """
    try:
        predictions = cache.predict(folder, paths, top_k)
    except Exception as exc:  # noqa: BLE001 - shown on the cards of the drop
        return job, None, None, describe(exc)[0], None
    good = [p for p, pr in zip(paths, predictions, strict=True) if pr.error is None]
    overlays, cam = {}, None
    if gradcam and good:
        try:
            images, layer = cache.gradcam(folder, good, THUMB)
            overlays = {p: image for p, image in zip(good, images, strict=True) if image is not None}
            cam = (layer, [p in overlays for p in paths])
        except Exception as exc:  # noqa: BLE001 - the cards keep their plain thumbnails and say why
            cam = (None, describe(exc)[0])
    thumbs = [None if pr.error is not None else overlays[p] if p in overlays else load_thumbnail(p, THUMB)
              for p, pr in zip(paths, predictions, strict=True)]
    return job, predictions, thumbs, None, cam


class ResultCard(QFrame):
    """One file: its thumbnail, name, and either its top classes as bars or why it failed."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setSizePolicy(QSizePolicy.Policy.Fixed, QSizePolicy.Policy.Fixed)
        self.setFixedWidth(CARD_WIDTH)  # as many columns as the window fits
        layout = QHBoxLayout(self)
        self.thumb = QLabel()
        self.thumb.setFixedSize(THUMB, THUMB)
        self.thumb.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.thumb.setFrameShape(QFrame.Shape.NoFrame)
        layout.addWidget(self.thumb)
        body = QVBoxLayout()
        self.name = QLabel(Path(path).name)
        font = self.name.font()
        font.setBold(True)
        self.name.setFont(font)
        self.name.setToolTip(path)
        self.name.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body.addWidget(self.name)
        self.detail = QLabel("Predicting\u2026")
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        body.addWidget(self.detail)
        self.bars_layout = QGridLayout()
        self.bars_layout.setHorizontalSpacing(8)
        self.bars_layout.setVerticalSpacing(4)
        self.bars_layout.setColumnStretch(3, 1)
        body.addLayout(self.bars_layout)
        body.addStretch(1)
        layout.addLayout(body, 1)
        self.top: list[tuple[str, float]] | None = None
        self.error: str | None = None
        self.gradcam: str | None = None  # the layer of the Grad-CAM overlay shown, if one is
        self.bars: list[QProgressBar] = []
        self.percents: list[QLabel] = []

    def show_prediction(self, prediction, image) -> None:
        if image is not None:
            self.thumb.setPixmap(QPixmap.fromImage(image))
        if prediction.error is not None:
            self.show_error(prediction.error)
            return
        self.top = prediction.top
        best, p = prediction.top[0]
        self.detail.setText(f"{best} ({p:.1%})")
        metrics = self.fontMetrics()
        for row, (name, prob) in enumerate(prediction.top):
            label = QLabel(metrics.elidedText(name, Qt.TextElideMode.ElideRight, NAME_WIDTH))
            label.setFixedWidth(NAME_WIDTH)
            label.setToolTip(name)
            bar = QProgressBar()
            bar.setRange(0, 1000)
            bar.setValue(round(prob * 1000))
            bar.setTextVisible(False)
            bar.setFixedSize(BAR_WIDTH, 14)
            percent = QLabel(f"{prob:.1%}")
            percent.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            percent.setMinimumWidth(metrics.horizontalAdvance("100.0%") + 4)
            self.bars_layout.addWidget(label, row, 0)
            self.bars_layout.addWidget(bar, row, 1)
            self.bars_layout.addWidget(percent, row, 2)
            self.bars.append(bar)
            self.percents.append(percent)

    def show_error(self, message: str) -> None:
        self.error = message
        self.thumb.setPixmap(self.style().standardIcon(QStyle.StandardPixmap.SP_MessageBoxWarning).pixmap(48, 48))
        self.detail.setText(message)
        self.detail.setStyleSheet("color: #c62828;")


class PredictPanel(QWidget):
    """Drop files or folders (or use Open), with the current run's model or one opened from disk."""

    predicted = Signal(list)  # the cards of one drop, once they show their results
    modelLoaded = Signal(str)  # the bundle folder

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.cache = BundleCache()
        self.opened: Path | None = None  # a bundle chosen with Open model...; None follows the run
        self.cards: list[ResultCard] = []
        self._jobs: dict[int, list[ResultCard]] = {}
        self._next_job = 0
        self._loading: Path | None = None
        self.imagenet_cache = ImageNetCache(session.registry)
        self.imagenet_weights_file: str | None = None
        self.setAcceptDrops(True)

        top = QHBoxLayout()
        self.model_label = QLabel()
        self.model_label.setWordWrap(True)
        self.model_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        top.addWidget(self.model_label, 1)
        self.open_model_button = QPushButton("Open model\u2026")
        self.open_model_button.setToolTip("Use a model bundle folder from disk instead of the current run")
        self.open_model_button.clicked.connect(self._ask_bundle)
        self.use_run_button = QPushButton("Use current run")
        self.use_run_button.clicked.connect(self.use_current_run)
        top.addWidget(self.open_model_button)
        top.addWidget(self.use_run_button)

        actions = QHBoxLayout()
        self.open_images_button = QPushButton("Open images\u2026")
        self.open_images_button.clicked.connect(self._ask_images)
        actions.addWidget(self.open_images_button)
        self.top_k_label = QLabel("Top")
        actions.addWidget(self.top_k_label)
        self.top_k = QSpinBox()
        self.top_k.setRange(1, 10)
        self.top_k.setValue(3)
        self.top_k.setSuffix(" classes")
        self.top_k.setToolTip("How many of the model's classes each image shows, at most all of them")
        self._top_k_wanted = self.top_k.value()  # what the user chose; a model with fewer classes shows all
        self.top_k.valueChanged.connect(self._top_k_chosen)
        actions.addWidget(self.top_k)
        self.imagenet_button = QPushButton("What ImageNet sees")
        self.imagenet_button.setCheckable(True)
        self.imagenet_button.setToolTip(
            "Show the top-5 of the 1,000 ImageNet classes that a pretrained backbone's own classifier "
            "sees in the images, instead of the trained model's classes")
        self.imagenet_button.toggled.connect(self._on_imagenet_toggled)
        actions.addWidget(self.imagenet_button)
        self.gradcam_button = QPushButton("Grad-CAM")
        self.gradcam_button.setCheckable(True)
        self.gradcam_button.setToolTip(
            "Show where the model looked: each image with the Grad-CAM heatmap of its predicted class "
            "(red: what speaks most for it), from the backbone's last convolutional layer")
        self.gradcam_button.toggled.connect(self._on_gradcam_toggled)
        actions.addWidget(self.gradcam_button)
        actions.addStretch(1)
        self.save_button = QPushButton("Save results…")
        self.save_button.setToolTip("Save every result on show as a CSV file: path, top class, probability, "
                                    "top classes")
        self.save_button.setEnabled(False)
        self.save_button.clicked.connect(self._ask_csv)
        actions.addWidget(self.save_button)
        self.clear_button = QPushButton("Clear")
        self.clear_button.clicked.connect(self.clear)
        actions.addWidget(self.clear_button)

        self.imagenet_row = QWidget()
        row = QHBoxLayout(self.imagenet_row)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(QLabel("ImageNet classifier"))
        self.imagenet_model = QComboBox()
        self._fill_imagenet_models()
        session.registryChanged.connect(self._fill_imagenet_models)
        row.addWidget(self.imagenet_model)
        row.addWidget(QLabel("Weights"))
        self.imagenet_weights = QComboBox()
        self.imagenet_weights.addItem("ImageNet (pretrained)", weights_sources.IMAGENET)
        self.imagenet_weights.addItem("Weights file\u2026", WEIGHTS_FILE)
        self.imagenet_weights.addItem("Random (not pretrained)", weights_sources.RANDOM)
        self.imagenet_weights.setToolTip(
            "ImageNet: Keras' weights of the whole classifier, downloaded once; a file: the weights of "
            "the whole classifier with its top; random: not pretrained, its classes mean nothing")
        self._weights_index = 0
        row.addWidget(self.imagenet_weights)
        self.imagenet_size = QSpinBox()
        self.imagenet_size.setRange(32, 1024)
        self.imagenet_size.setValue(DEFAULT_INPUT_SIZE)
        self.imagenet_size.setSuffix(" px")
        self.imagenet_size.setToolTip("Input size; ImageNet weights need 224 px")
        self.imagenet_size.setEnabled(False)
        row.addWidget(self.imagenet_size)
        self.download_bar = QProgressBar()
        self.download_bar.setFormat("Downloading weights %p%")
        self.download_bar.setVisible(False)
        row.addWidget(self.download_bar, 1)
        row.addStretch(0)
        self.imagenet_row.setVisible(False)
        self.imagenet_model.currentIndexChanged.connect(self._on_imagenet_choice)
        self.imagenet_weights.activated.connect(self._on_weights_activated)
        self.imagenet_size.valueChanged.connect(self._update_model_label)
        self.imagenet_size.editingFinished.connect(self._on_imagenet_choice)

        self.hint = QLabel("Drop images or a folder here, or use Open images\u2026")
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setMinimumHeight(80)
        self.hint.setStyleSheet("QLabel { border: 2px dashed palette(mid); border-radius: 8px; padding: 16px; }")
        self.summary = QLabel()  # the last drop: how many images went to each class, which were unreadable
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setVisible(False)

        self.cards_widget = QWidget()
        # A grid as wide as the window: as many columns of cards as fit, reflowed on resize.
        self.cards_layout = QGridLayout(self.cards_widget)
        self.cards_layout.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.columns = 1
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setWidget(self.cards_widget)
        self.scroll.viewport().installEventFilter(self)

        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(self.imagenet_row)
        layout.addWidget(self.hint)  # always there: the next drop may come at any time
        layout.addWidget(self.summary)
        layout.addWidget(self.scroll, 1)

        session.currentRunChanged.connect(self._on_run_changed)
        self._update_model_label()

    # -- which model ----------------------------------------------------------------------

    def model_folder(self) -> Path | None:
        if self.opened is not None:
            return self.opened
        if self.session.current_run:
            return RunPaths(Path(self.session.current_run)).bundle
        return None

    def open_bundle(self, path) -> None:
        """Use the bundle in ``path`` (a folder, or its model.keras) and load it now."""
        path = Path(path)
        if path.is_file():
            path = path.parent
        self.opened = path
        self._update_model_label()
        self._load(path)

    def use_current_run(self) -> None:
        self.opened = None
        self._update_model_label()
        if self.isVisible():
            self._preload()

    def _on_run_changed(self, _path: str) -> None:
        if self.opened is None:
            self._update_model_label()
            if self.isVisible():
                self._preload()

    def showEvent(self, event) -> None:
        super().showEvent(event)
        bundle = self.cache.bundle
        if bundle is not None:
            try:
                changed = bundle.refresh_temperature()  # calibrated on the Evaluate page since, say
            except BundleError:
                changed = False  # the next prediction says why
            self._update_model_label()
            if changed and not self.imagenet_mode() and self.model_folder() == self.cache.folder:
                self._predict_again()  # the cards on show say what the model says now
        self._preload()

    def _preload(self) -> None:
        folder = self.model_folder()
        if folder is not None and folder.is_dir():
            self._load(folder)

    def _load(self, folder: Path) -> None:
        if self.cache.is_loaded(folder) or self._loading == folder:
            return
        self._loading = folder
        self._update_model_label()
        worker = Worker(_load_job, self.cache, folder)
        worker.finished.connect(self._on_loaded)
        worker.errored.connect(self._on_load_failed)
        worker.start()

    def _on_loaded(self, folder) -> None:
        if self._loading == folder:
            self._loading = None
        self._fit_top_k()
        self._update_model_label()
        self.modelLoaded.emit(str(folder))

    def _on_load_failed(self, message: str, details: str) -> None:
        self._loading = None
        self._update_model_label()
        errors.show_error(self, "Cannot load the model", message, details)

    def _update_model_label(self) -> None:
        folder = self.model_folder()
        self.use_run_button.setVisible(self.opened is not None and bool(self.session.current_run))
        if self.imagenet_mode():
            provider_id, weights, size = self.imagenet_choice()
            name = self.imagenet_model.currentText() or provider_id
            self.model_label.setText(
                f"What ImageNet sees: {name}, {weights_sources.describe(weights)} \u00b7 "
                f"top {TOP_K} of the 1,000 ImageNet classes \u00b7 {size} px input")
            return
        if folder is None:
            self.model_label.setText("No model yet: train a run, or open a model bundle.")
            return
        where = f"model bundle {folder}" if self.opened is not None else f"run {folder.parent.name}"
        if self.cache.is_loaded(folder):
            b = self.cache.bundle
            names = ", ".join(b.class_names[:8]) + (", \u2026" if len(b.class_names) > 8 else "")
            calibrated = f" \u00b7 calibrated (temperature {b.temperature:.3g})" if b.temperature != 1.0 else ""
            self.model_label.setText(
                f"Model: {where} \u00b7 {len(b.class_names)} classes ({names}) \u00b7 {b.input_size} px input"
                + calibrated)
        elif self._loading == folder:
            self.model_label.setText(f"Model: {where} (loading\u2026)")
        else:
            self.model_label.setText(f"Model: {where}")

    def _top_k_chosen(self, value: int) -> None:
        self._top_k_wanted = value

    def _fit_top_k(self) -> None:
        """At most as many top classes as the loaded model has (a 2-class model shows its 2)."""
        bundle = self.cache.bundle
        if bundle is None:
            return
        self.top_k.blockSignals(True)
        self.top_k.setMaximum(max(1, min(10, len(bundle.class_names))))
        self.top_k.setValue(min(self._top_k_wanted, self.top_k.maximum()))
        self.top_k.blockSignals(False)

    # -- predicting -----------------------------------------------------------------------

    def predict_files(self, paths) -> list[ResultCard]:
        """Predict files and the files inside folders; returns their cards (filled when done)."""
        files = expand_paths(paths)
        if not files:
            return []
        if self.imagenet_mode():
            return self._predict_imagenet(files)
        folder = self.model_folder()
        if folder is None:
            errors.show_error(self, "No model", "Train a model first, or open a model bundle (Open model\u2026).")
            return []
        self._load(folder)
        cards = self._add_cards(files)
        job = self._next_job = self._next_job + 1
        self._jobs[job] = cards
        worker = Worker(_predict_job, self.cache, job, folder, files, self.top_k.value(),
                                gradcam=self.gradcam_mode())
        worker.finished.connect(self._on_predicted)
        worker.start()
        return cards

    def _add_cards(self, files: list[str]) -> list[ResultCard]:
        cards = [ResultCard(f) for f in files]
        self.cards = cards + self.cards  # newest drop first, in the order given
        self._reflow(force=True)
        self.scroll.verticalScrollBar().setValue(0)
        return cards

    def _on_predicted(self, result) -> None:
        job, predictions, thumbs, failure, cam = result
        if job not in self._jobs:  # its cards were cleared meanwhile
            return
        cards = self._jobs.pop(job)
        if failure is not None:
            for card in cards:
                card.show_error(f"no prediction: {failure}")
        else:
            for card, prediction, image in zip(cards, predictions, thumbs, strict=True):
                card.show_prediction(prediction, image)
            if cam is not None:
                self._show_gradcam(cards, *cam)
        self._fit_top_k()  # the model may have been loaded by this very drop
        self._update_model_label()  # the temperature may have been read again
        self._show_summary(cards)
        self.predicted.emit(cards)

    # -- Grad-CAM -------------------------------------------------------------------------

    def gradcam_mode(self) -> bool:
        return self.gradcam_button.isChecked()

    def set_gradcam_mode(self, on: bool) -> None:
        """Show (or stop showing) Grad-CAM overlays; the images shown are predicted again."""
        self.gradcam_button.setChecked(on)

    def _on_gradcam_toggled(self, _on: bool) -> None:
        if not self.imagenet_mode() and self.model_folder() is not None:
            self._predict_again()

    def _show_gradcam(self, cards: list[ResultCard], layer: str | None, made) -> None:
        if layer is None:  # Grad-CAM failed for the whole drop: made is why
            for card in cards:
                if card.error is None:
                    card.detail.setText(f"{card.detail.text()} \u00b7 no Grad-CAM: {made}")
            return
        for card, ok in zip(cards, made, strict=True):
            if ok:
                card.gradcam = layer
                card.thumb.setToolTip(f"Grad-CAM of {card.top[0][0]} (layer {layer}): red is what speaks most for it")

    # -- what ImageNet sees ---------------------------------------------------------------

    def imagenet_mode(self) -> bool:
        return self.imagenet_button.isChecked()

    def set_imagenet_mode(self, on: bool) -> None:
        """Switch to (or from) what ImageNet sees; the images shown are predicted again."""
        self.imagenet_button.setChecked(on)

    def imagenet_choice(self) -> tuple[str, str, int]:
        """(backbone id, weights, input size) of the ImageNet classifier chosen."""
        weights = self.imagenet_weights.currentData()
        if weights == WEIGHTS_FILE:
            weights = self.imagenet_weights_file or weights_sources.IMAGENET
        size = DEFAULT_INPUT_SIZE if weights == weights_sources.IMAGENET else self.imagenet_size.value()
        return self.imagenet_model.currentData() or DEFAULT_MODEL, weights, size

    def set_imagenet_weights(self, weights: str) -> None:
        """``"imagenet"``, ``"none"`` or the path of a weights file of the whole classifier."""
        if weights in (weights_sources.IMAGENET, weights_sources.RANDOM):
            index = self.imagenet_weights.findData(weights)
        else:
            self.imagenet_weights_file = str(weights)
            index = self.imagenet_weights.findData(WEIGHTS_FILE)
            self.imagenet_weights.setItemText(index, f"File: {Path(weights).name}")
            self.imagenet_weights.setItemData(index, str(weights), Qt.ItemDataRole.ToolTipRole)
        self._weights_index = index
        self.imagenet_weights.setCurrentIndex(index)
        self._on_imagenet_choice()

    def _on_weights_activated(self, index: int) -> None:
        if self.imagenet_weights.itemData(index) == WEIGHTS_FILE:
            path, _ = QFileDialog.getOpenFileName(
                self, "Weights file of the whole ImageNet classifier (with its top)", "", WEIGHTS_FILTER)
            if not path:
                self.imagenet_weights.setCurrentIndex(self._weights_index)
                return
            self.set_imagenet_weights(path)
            return
        self._weights_index = index
        self._on_imagenet_choice()

    def _on_imagenet_toggled(self, on: bool) -> None:
        self.imagenet_row.setVisible(on)
        self.gradcam_button.setEnabled(not on)  # Grad-CAM explains the trained model
        self.top_k.setVisible(not on)
        self.top_k_label.setVisible(not on)
        self._update_model_label()
        if on or self.model_folder() is not None:
            self._predict_again()

    def _fill_imagenet_models(self) -> None:
        """The backbones whose whole ImageNet classifier can be built, as registered now."""
        current = self.imagenet_model.currentData()
        self.imagenet_model.blockSignals(True)
        self.imagenet_model.clear()
        for provider in imagenet_providers(self.session.registry):
            self.imagenet_model.addItem(provider.display_name, provider.id)
        index = self.imagenet_model.findData(current) if current else -1
        if index < 0:
            index = max(0, self.imagenet_model.findData(DEFAULT_MODEL))
        self.imagenet_model.setCurrentIndex(index)
        self.imagenet_model.blockSignals(False)

    def _on_imagenet_choice(self, *_args) -> None:
        _, weights, _ = self.imagenet_choice()
        self.imagenet_size.setEnabled(weights != weights_sources.IMAGENET)
        self._update_model_label()
        if self.imagenet_mode():
            self._predict_again()

    def _predict_again(self) -> None:
        """Predict the images shown again, in the current mode, replacing their cards."""
        files = list(dict.fromkeys(card.path for card in self.cards))  # top to bottom, once each
        if files:
            self.clear()
            self.predict_files(files)

    def _predict_imagenet(self, files: list[str]) -> list[ResultCard]:
        cards = self._add_cards(files)
        job = self._next_job = self._next_job + 1
        self._jobs[job] = cards
        worker = Worker(_imagenet_job, self.imagenet_cache, job, self.imagenet_choice(), files)
        worker.progress.connect(self._on_download_progress)
        worker.finished.connect(self._on_imagenet_predicted)
        worker.start()
        return cards

    def _on_download_progress(self, task: str, done: int, total: int) -> None:
        self.download_bar.setVisible(True)
        if total > 0:
            self.download_bar.setRange(0, total)
            self.download_bar.setValue(min(done, total))
        else:
            self.download_bar.setRange(0, 0)  # size unknown: busy

    def _on_imagenet_predicted(self, result) -> None:
        job, label, predictions, thumbs, failure, details = result
        self.download_bar.setVisible(False)
        if job not in self._jobs:  # its cards were cleared meanwhile
            return
        cards = self._jobs.pop(job)
        if failure is not None:
            for card in cards:
                card.show_error(f"no prediction: {failure}")
            errors.show_error(self, "What ImageNet sees", failure, details)
        else:
            for card, prediction, image in zip(cards, predictions, thumbs, strict=True):
                card.show_prediction(prediction, image)
                if prediction.error is None:
                    card.detail.setText(f"{card.detail.text()} \u00b7 {label}")
        self._show_summary(cards)
        self.predicted.emit(cards)

    def _show_summary(self, cards: list[ResultCard]) -> None:
        self.summary.setText(batch_summary(cards))
        self.summary.setVisible(True)
        self.save_button.setEnabled(any(c.top is not None or c.error is not None for c in self.cards))

    def save_csv(self, path) -> None:
        """Write the results on show to ``path`` (atomically): one row per image, newest drop first."""
        atomic_write_csv(path, CSV_HEADER, [csv_row(card) for card in self.cards
                                            if card.top is not None or card.error is not None])

    def _ask_csv(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the results", "predictions.csv", CSV_FILTER)
        if not path:
            return
        try:
            self.save_csv(path)
        except (StudioError, OSError) as exc:
            errors.show_error(self, "Cannot save the results", str(exc))

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if watched is self.scroll.viewport() and event.type() == QEvent.Type.Resize:
            self._reflow()
        return super().eventFilter(watched, event)

    def _fitting_columns(self) -> int:
        width = self.scroll.viewport().width()
        card = CARD_WIDTH
        gap = max(0, self.cards_layout.horizontalSpacing())
        margins = self.cards_layout.contentsMargins()
        return max(1, (width - margins.left() - margins.right() + gap) // (card + gap))

    def _reflow(self, force: bool = False) -> None:
        """Place the cards row by row in as many columns as the window fits."""
        columns = self._fitting_columns()
        if columns == self.columns and not force:
            return
        self.columns = columns
        for card in self.cards:
            self.cards_layout.removeWidget(card)
        for i, card in enumerate(self.cards):
            self.cards_layout.addWidget(card, i // columns, i % columns)

    def clear(self) -> None:
        self._jobs.clear()  # results still to come have no cards to go to
        for card in self.cards:
            card.setParent(None)
            card.deleteLater()
        self.cards = []
        self.summary.setVisible(False)
        self.save_button.setEnabled(False)

    # -- dialogs and drops ----------------------------------------------------------------

    def _ask_images(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Open images", "", IMAGE_FILTER)
        if files:
            self.predict_files(files)

    def _ask_bundle(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open a model bundle folder (with model.keras)")
        if folder:
            self.open_bundle(folder)

    def dragEnterEvent(self, event) -> None:
        if _local_files(event.mimeData()):
            event.acceptProposedAction()
        else:
            event.ignore()

    def dragMoveEvent(self, event) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event) -> None:
        files = _local_files(event.mimeData())
        if not files:
            event.ignore()
            return
        event.acceptProposedAction()
        self.predict_files(files)


CSV_HEADER = ["path", "top_class", "probability", "top_k", "error"]
CSV_FILTER = "CSV files (*.csv);;All files (*)"


def csv_row(card: ResultCard) -> list:
    """``path, top class, its probability, "class:probability; ..." of the top classes, error``."""
    if card.top is None:
        return [card.path, "", "", "", card.error or ""]
    best, p = card.top[0]
    return [card.path, best, f"{p:.6f}", "; ".join(f"{name}:{prob:.6f}" for name, prob in card.top), ""]


def batch_summary(cards: list[ResultCard]) -> str:
    """One line for a drop: its images, how many each class got (most first), the unreadable ones."""
    counts: dict[str, int] = {}
    for card in cards:
        if card.top is not None:
            counts[card.top[0][0]] = counts.get(card.top[0][0], 0) + 1
    failed = sum(card.top is None for card in cards)
    text = f"{len(cards)} image{'s' if len(cards) != 1 else ''}"
    if counts:
        text += ": " + ", ".join(f"{name} {n}" for name, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))
    if failed:
        text += f" \u00b7 {failed} unreadable"
    return text


def _load_job(cache: BundleCache, folder: Path) -> Path:
    cache.get(folder)
    return folder


def _local_files(mime) -> list[str]:
    if not mime.hasUrls():
        return []
    return [url.toLocalFile() for url in mime.urls() if url.isLocalFile()]

