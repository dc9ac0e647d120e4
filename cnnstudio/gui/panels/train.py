"""The Train panel: hyper-parameters, Start and Stop, live curves, progress and a log.

Training runs in a :class:`~cnnstudio.gui.qthreading.TrainWorker` on its own thread; this
panel only reacts to its signals, so the window stays responsive while the model trains.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QFrame,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMainWindow,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QSizePolicy,
    QSpinBox,
    QSplitter,
    QStyle,
    QSystemTrayIcon,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import write_failed
from cnnstudio.core.runs.folder import RunPaths, run_folder_name
from cnnstudio.core.runs.records import RunRecords
from cnnstudio.core.training.config import OPTIMIZERS
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import TrainWorker
from cnnstudio.gui.widgets.plots import LiveCurves, counted_plot, curves_legend, format_seconds, style_plot

LOG_LINES = 5000
# Batch events arrive up to 10 times a second; the progress text and bar follow at most every
# REFRESH_MS and the batch-level curve points every CURVE_REFRESHES-th refresh. A repaint costs
# far more than an event (a 650x600 plot takes ~10 ms in the raster engine), and every
# millisecond the GUI thread spends is taken from training on a small machine.
REFRESH_MS = 250
CURVE_REFRESHES = 2


def run_summary(result) -> dict:
    """What the session's run list keeps of a run: the headline numbers, not the whole report."""
    summary = {"status": result.reason, "epochs_run": result.epochs_run,
               "train_seconds": round(result.train_seconds, 3)}
    for key in ("test_accuracy", "test_loss", "test_images"):
        if result.metrics and result.metrics.get(key) is not None:
            summary[key] = result.metrics[key]
    return summary


def compute_text(record: dict | None) -> str:
    """Where a run trained, from its metrics.json: devices, replicas, precision, XLA ("" if unknown)."""
    record = record or {}
    compute = record.get("compute") or {}
    if not record.get("device") and not compute:
        return ""
    parts = [f"Trained on {record.get('device') or ', '.join(compute.get('devices') or [])}"]
    if compute.get("replicas", 1) > 1 and "replicas" not in parts[0]:
        parts.append(f"{compute['replicas']} replicas")
    if compute.get("precision"):
        parts.append(compute["precision"])
    if "jit" in compute:
        parts.append(f"XLA {'on' if compute['jit'] else 'off'}")
    return " \u00b7 ".join(parts)


def result_text(name: str, reason: str, epochs_run: int, seconds, metrics: dict, record: dict | None = None) -> str:
    """The Test results box: how the run ended, its test numbers and (``record``: its
    metrics.json) where it trained."""
    where = compute_text(record)
    if reason == "cancelled":
        return (f"Run {name}: stopped after {epochs_run} epoch(s); the model so far is saved.\n"
                "No test metrics (the run was stopped)." + (f"\n{where}" if where else ""))
    lines = [f"Run {name} ({reason.replace('_', ' ')}, {epochs_run} epochs, {format_seconds(seconds)})"]
    acc = metrics.get("test_accuracy")
    if acc is not None:
        lines.append(f"Accuracy {acc:.2%} \u00b7 loss {metrics['test_loss']:.4f} on {metrics['test_images']} test images")
    else:
        lines.append("No test split, so no test metrics.")
    if where:
        lines.append(where)
    return "\n".join(lines)


def not_resumable(run_dir: Path) -> str:
    """Why the run in ``run_dir`` cannot be resumed ("" when it can: it has its settings and did
    not finish, or was stopped)."""
    if not RunPaths(run_dir).config.is_file():
        return f"{run_dir}: not a run folder (no config.json)"
    try:
        metrics = RunRecords(run_dir).metrics
    except StudioError as exc:
        return str(exc)
    if metrics is not None and metrics.get("status") != "cancelled":
        return f"{run_dir}: the run finished; Run Again (Experiments) trains it anew"
    return ""


PRECISION_CHOICES = (("Auto (mixed on recent GPUs)", "auto"), ("float32", "float32"), ("Mixed float16", "mixed"))
JIT_CHOICES = (("Auto (Keras' default)", "auto"), ("On", "on"), ("Off", "off"))

FALLBACKS = {"best": "Resume from the Best Epoch", "last": "Resume without the Best Weights",
             "fresh": "Start Over from Epoch 1"}


def ask_fallback(parent, error) -> str | None:
    """How to go on with a run whose checkpoint is damaged (``error``, a CheckpointError): one
    of its ``fallbacks``, or None when the user cancels."""
    from PySide6.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Icon.Warning, "The run's checkpoint is damaged",
                      f"{error.path}: damaged ({error.reason}).", parent=parent)
    box.setInformativeText("Resuming from the best epoch trains the epochs after it again; starting over "
                           "discards the saved epochs.")
    choices = {box.addButton(FALLBACKS[f], QMessageBox.ButtonRole.AcceptRole): f for f in error.fallbacks}
    box.addButton(QMessageBox.StandardButton.Cancel)
    box.exec()
    return choices.get(box.clickedButton())


class TrainPanel(QWidget):
    """Hyper-parameters bound to ``session.train_config``; a run goes to ``session.runs_folder()``."""

    trainingFinished = Signal(str)  # the run folder, once its model and metrics are written

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.worker: TrainWorker | None = None
        self.run_dir: Path | None = None
        self.result = None  # the RunResult of the last run that finished
        self._syncing = False
        self._epochs = 0
        self._steps = 1
        self._task = None
        self._initial_epoch = 0
        self._t_start = 0.0
        self._last_eta: tuple[float, float | None] = (0.0, None)  # (when, eta then)
        self._epoch = 0
        self._batch = 0
        self._tray: QSystemTrayIcon | None = None
        self._start_tip = "Train a new run with these settings"
        self._failed = False  # the progress line says the last run failed

        self._build_form()
        self._build_monitor()
        layout = QHBoxLayout(self)
        layout.addWidget(self._left)
        layout.addWidget(self._right, 1)

        self._refresh_timer = QTimer(self)
        self._refresh_timer.setInterval(REFRESH_MS)
        self._refresh_timer.timeout.connect(self._refresh)
        self._refreshes = 0

        session.configChanged.connect(self._pull_config)
        session.datasetChanged.connect(self._on_dataset)
        session.jobChanged.connect(self._update_ready)
        session.specChanged.connect(self._update_ready)
        session.splitChanged.connect(self._update_ready)
        session.configChanged.connect(self._update_ready)
        session.currentRunChanged.connect(self.show_run)
        self._pull_config()
        self._update_ready()
        self.show_run(session.current_run)

    # -- building -------------------------------------------------------------------------

    def _build_form(self) -> None:
        self._left = QWidget()
        self._left.setMaximumWidth(340)
        self._left.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Preferred)
        col = QVBoxLayout(self._left)
        col.setContentsMargins(0, 0, 0, 0)

        box = QGroupBox("Hyper-parameters")
        form = QFormLayout(box)
        self.optimizer = QComboBox()
        self.optimizer.addItems(list(OPTIMIZERS))
        self.learning_rate = QDoubleSpinBox()
        self.learning_rate.setDecimals(6)
        self.learning_rate.setRange(0.000001, 1.0)
        self.learning_rate.setStepType(QDoubleSpinBox.StepType.AdaptiveDecimalStepType)
        self.batch_size = QSpinBox()
        self.batch_size.setRange(1, 4096)
        self.epochs = QSpinBox()
        self.epochs.setRange(1, 10000)
        self.patience = QSpinBox()
        self.patience.setRange(0, 1000)
        self.patience.setSpecialValueText("off")
        self.class_weight = QComboBox()
        self.class_weight.addItem("none", "none")
        self.class_weight.addItem("auto (inverse frequency)", "auto")
        self.class_weight.setToolTip("Weigh each class's loss by the inverse of its share of the training images.")
        self.seed = QSpinBox()
        self.seed.setRange(0, 2**31 - 1)
        form.addRow("Optimizer", self.optimizer)
        form.addRow("Learning rate", self.learning_rate)
        form.addRow("Batch size", self.batch_size)
        form.addRow("Epochs", self.epochs)
        form.addRow("Early stopping patience", self.patience)
        form.addRow("Class weights", self.class_weight)
        form.addRow("Seed", self.seed)
        for w in (self.optimizer, self.class_weight):
            w.currentIndexChanged.connect(self._push_config)
        for w in (self.learning_rate, self.batch_size, self.epochs, self.patience, self.seed):
            w.valueChanged.connect(self._push_config)
        self._form_box = box
        col.addWidget(box)

        compute = QGroupBox("Devices and precision")
        form = QFormLayout(compute)
        self.devices = QComboBox()
        self.devices.setToolTip("Where the run trains. Several GPUs train one model under MirroredStrategy; "
                                "the batch size is the global batch, split among them.")
        self._gpus: list[str] | None = None  # unknown until TensorFlow has loaded
        self.set_gpus(None)
        self.precision = QComboBox()
        for label, value in PRECISION_CHOICES:
            self.precision.addItem(label, value)
        self.precision.setToolTip("Mixed precision computes in float16 with float32 weights; the output layer "
                                  "stays float32. Auto uses it on GPUs of compute capability 7.0 and above.")
        self.jit = QComboBox()
        for label, value in JIT_CHOICES:
            self.jit.addItem(label, value)
        self.jit.setToolTip("XLA compilation of the training step; Auto leaves it to Keras (off on the CPU "
                            "and with several devices).")
        form.addRow("Devices", self.devices)
        form.addRow("Precision", self.precision)
        form.addRow("XLA", self.jit)
        for w in (self.devices, self.precision, self.jit):
            w.currentIndexChanged.connect(self._push_config)
        self._compute_box = compute
        col.addWidget(compute)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start training")
        self.start_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaPlay))
        self.start_button.setDefault(True)
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setIcon(self.style().standardIcon(QStyle.StandardPixmap.SP_MediaStop))
        self.stop_button.setToolTip("Stop after the current batch; the model trained so far is kept.")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        self.resume_button = QPushButton("Resume\u2026")
        self.resume_button.setToolTip("Continue a stopped or interrupted run from its folder, from its last saved "
                                      "epoch, with its own settings")
        self.resume_button.clicked.connect(self._choose_resume)
        buttons.addWidget(self.start_button, 1)
        buttons.addWidget(self.stop_button)
        buttons.addWidget(self.resume_button)
        col.addLayout(buttons)

        self.ready_label = QLabel()
        self.ready_label.setWordWrap(True)
        self.ready_label.setTextFormat(Qt.TextFormat.PlainText)
        col.addWidget(self.ready_label)

        self.result_box = QGroupBox("Test results")
        self.result_label = QLabel("No run finished yet.")
        self.result_label.setWordWrap(True)
        self.result_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        QVBoxLayout(self.result_box).addWidget(self.result_label)
        col.addWidget(self.result_box)
        col.addStretch(1)

    def _build_monitor(self) -> None:
        self._right = QWidget()
        col = QVBoxLayout(self._right)
        col.setContentsMargins(0, 0, 0, 0)

        self.notice = QLabel()
        self.notice.setWordWrap(True)
        self.notice.setFrameShape(QFrame.Shape.StyledPanel)
        self.notice.setContentsMargins(8, 6, 8, 6)
        self.notice.setVisible(False)
        col.addWidget(self.notice)

        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setTextVisible(False)
        self.progress_label = QLabel("Idle")
        col.addWidget(self.progress)
        col.addWidget(self.progress_label)

        split = QSplitter(Qt.Orientation.Vertical)
        plots = QSplitter(Qt.Orientation.Horizontal)
        self.loss_plot = counted_plot()
        self.acc_plot = counted_plot()
        for plot in (self.loss_plot, self.acc_plot):
            style_plot(plot)
            plot.setMinimumSize(170, 140)
            plots.addWidget(plot)
        self.curves = {
            "loss": LiveCurves(self.loss_plot, "Loss", "loss"),
            "accuracy": LiveCurves(self.acc_plot, "Accuracy", "accuracy", y_range=(0.0, 1.0)),
        }
        self.legend_label = QLabel(curves_legend())  # out of the plots: it hid curves near 1.0
        self.legend_label.setTextFormat(Qt.TextFormat.RichText)
        self.legend_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        col.addWidget(self.legend_label)
        split.addWidget(plots)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(LOG_LINES)
        self.log.setPlaceholderText("The training log appears here.")
        split.addWidget(self.log)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 1)
        col.addWidget(split, 1)

    # -- the form and the session ---------------------------------------------------------

    def _pull_config(self) -> None:
        c = self.session.train_config
        self._syncing = True
        try:
            self.optimizer.setCurrentText(c.optimizer)
            self.optimizer.setToolTip(f"Adam adapts the step size per weight; SGD uses momentum {c.momentum:g}.")
            self.learning_rate.setValue(c.learning_rate)
            self.batch_size.setValue(c.batch_size)
            self.epochs.setValue(c.epochs)
            self.patience.setValue(c.patience)
            watched = c.monitor.replace("val_", "validation ").replace("_", " ")
            self.patience.setToolTip(f"Stop when the {watched} has not improved for this many epochs.")
            self.class_weight.setCurrentIndex(max(0, self.class_weight.findData(c.class_weight)))
            self.seed.setValue(c.seed)
            self._select_device(c.devices)
            self.precision.setCurrentIndex(max(0, self.precision.findData(c.precision)))
            self.jit.setCurrentIndex(max(0, self.jit.findData(c.jit)))
        finally:
            self._syncing = False

    def set_gpus(self, names: list[str] | None) -> None:
        """The device choices for this machine's GPUs (``names``; None while TensorFlow loads):
        the CPU, each GPU, all of them."""
        self._gpus = names
        syncing, self._syncing = self._syncing, True
        try:
            self.devices.clear()
            if names is None:
                self.devices.addItem("Auto (every GPU, else the CPU)", "auto")
            elif not names:
                self.devices.addItem("CPU", "auto")
            else:
                self.devices.addItem("CPU", "cpu")
                for i, name in enumerate(names):
                    self.devices.addItem(f"GPU {i}" + (f" ({name})" if name else ""), f"gpu:{i}")
                self.devices.addItem(f"All GPUs ({len(names)})", "auto")
            self._select_device(self.session.train_config.devices)
        finally:
            self._syncing = syncing

    def _select_device(self, value: str) -> None:
        if value == "cpu" and self._gpus == []:
            value = "auto"  # no GPU: the CPU either way
        if value == "1":  # the first GPU, or the CPU where there is none
            value = "gpu:0" if self._gpus else "auto"
        i = self.devices.findData(value)
        if i < 0:  # from a run's settings or the command line: kept, as it is
            self.devices.addItem(f"{value} (from the settings)", value)
            i = self.devices.count() - 1
        self.devices.setCurrentIndex(i)

    def _push_config(self) -> None:
        if self._syncing:
            return
        config = dataclasses.replace(
            self.session.train_config,
            optimizer=self.optimizer.currentText(),
            learning_rate=self.learning_rate.value(),
            batch_size=self.batch_size.value(),
            epochs=self.epochs.value(),
            patience=self.patience.value(),
            class_weight=self.class_weight.currentData(),
            seed=self.seed.value(),
            devices=self.devices.currentData() or "auto",
            precision=self.precision.currentData() or "auto",
            jit=self.jit.currentData() or "auto",
        )
        if config != self.session.train_config:
            self.session.set_train_config(config)

    def set_start_tip(self, text: str) -> None:
        """What Start's tooltip says when a run can start (the window adds its shortcut)."""
        self._start_tip = text
        self._update_ready()

    def _on_dataset(self) -> None:
        # A failure belonged to the dataset before: another one (or the same, rescanned) starts idle.
        if self._failed and not self.is_training():
            self._failed = False
            self.progress.setRange(0, 1)
            self.progress.setValue(0)
            self.progress_label.setText("Idle")
        self._update_ready()

    def _update_ready(self) -> None:
        s = self.session
        refusal = s.dataset_refusal()
        if refusal:
            text = refusal + "."
        else:
            n = len(s.index.items)
            k = len(s.index.class_names)
            model = s.spec.preset or s.spec.backbone
            text = f"{n} images in {k} classes \u00b7 model {model} at {s.spec.input_size} px"
            provider = s.registry.backbones.get(s.spec.backbone)
            if provider is not None and provider.pretrained:
                from cnnstudio.core.model.transfer import MODE_LABELS

                mode = s.train_config.mode or "extract"
                text += f" \u00b7 {MODE_LABELS[mode].split(' (')[0].lower()}"
                if mode == "finetune":
                    text += f" ({s.train_config.finetune_epochs} more epochs)"
                if mode == "scratch" or s.spec.params.get("weights") == "none":
                    text += " \u00b7 random weights, not pretrained"
        self.ready_label.setText(text)
        why = refusal or s.job_refusal()
        self.start_button.setEnabled(not why and not self.is_training())
        self.start_button.setToolTip(f"Cannot start: {why}" if why and not self.is_training() else self._start_tip)

    # -- start and stop -------------------------------------------------------------------

    def is_training(self) -> bool:
        return self.worker is not None

    def start(self) -> TrainWorker | None:
        """Start a run with the session's dataset, split, spec and hyper-parameters."""
        if self.is_training():
            return None
        s = self.session
        if s.job_refusal():
            errors.show_error(self, "Cannot start training", s.job_refusal())
            return None
        if s.dataset_refusal():  # before the run folder: a run that cannot start leaves none
            errors.show_error(self, "Cannot start training", s.dataset_refusal())
            return None
        try:
            config = s.train_config.validate()
            split = s.make_split()
            run_dir = self._new_run_dir()
        except StudioError as exc:
            errors.show_error(self, "Cannot start training", str(exc))
            return None

        worker = TrainWorker(s.index, split, s.spec, config, run_dir, s.registry)
        return self._launch(worker, run_dir, config, f"\u2014 Run {run_dir.name} \u2014", [])

    def resume(self, folder, fallback: str | None = None) -> TrainWorker | None:
        """Continue the stopped or interrupted run in ``folder`` from its last saved epoch, with
        its recorded settings, split and dataset (checked against the record, as
        ``cnnstudio train --resume`` does). A damaged checkpoint is named, and the user chooses
        how to go on (:func:`ask_fallback`) unless ``fallback`` says it."""
        from cnnstudio.core.runs import checkpoint
        from cnnstudio.core.runs.restore import restore
        from cnnstudio.core.training.config import TrainConfig

        if self.is_training():
            return None
        s = self.session
        if s.job_refusal():
            errors.show_error(self, "Cannot resume the run", s.job_refusal())
            return None
        run_dir = Path(folder)
        try:
            why = not_resumable(run_dir)
            if why:
                raise StudioError(why)
            try:
                checkpoint.resumable(RunPaths(run_dir), fallback)
            except checkpoint.CheckpointError as exc:
                fallback = ask_fallback(self, exc)
                if fallback is None:
                    return None
            restored = restore(run_dir, purpose="the resumed run", new_classes="refuse")
            restored.index.raise_for_errors()
            # The run's own settings, on the devices this page says now (the run's may be another machine's).
            config = dataclasses.replace(TrainConfig.from_dict(restored.train), devices=s.train_config.devices,
                                         jit=s.train_config.jit).validate()
            history = RunRecords(run_dir).history
        except StudioError as exc:
            errors.show_error(self, "Cannot resume the run", str(exc))
            return None
        except (ValueError, KeyError, TypeError) as exc:
            errors.show_error(self, "Cannot resume the run", f"{run_dir}: unreadable training settings ({exc})")
            return None
        worker = TrainWorker(restored.index, restored.split, restored.spec, config, run_dir, s.registry, resume=True,
                             fallback=fallback)
        return self._launch(worker, run_dir, config, f"\u2014 Run {run_dir.name}, resumed \u2014", history)

    def _choose_resume(self) -> None:
        from PySide6.QtWidgets import QFileDialog

        current = self.session.current_run
        start = current if current and not not_resumable(Path(current)) else str(self.session.runs_folder())
        folder = QFileDialog.getExistingDirectory(self, "Resume the run in", start)
        if folder:
            self.resume(folder)

    def _launch(self, worker: TrainWorker, run_dir: Path, config, title: str, history: list[dict]) -> TrainWorker:
        s = self.session
        self.run_dir = run_dir
        s.start_job(worker, f"Training {run_dir.name}", page="train")  # first: the slot is free when this panel hears the end
        worker.started.connect(self._on_started)
        worker.begin.connect(self._on_begin)
        worker.batch.connect(self._on_batch)
        worker.epoch_end.connect(self._on_epoch_end)
        worker.ended.connect(self._on_ended)
        worker.status.connect(self._on_status)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_errored)
        self.worker = worker

        self._epochs = config.epochs
        self._initial_epoch = 0
        self._epoch = self._batch = 0
        self._steps = 1
        self._task = None  # (task, done, total) of work before the first epoch
        self._last_eta = (time.monotonic(), None)
        total = config.epochs + (config.finetune_epochs if self._fine_tuning(config) else 0)
        self._epochs = total
        for key, curves in self.curves.items():
            curves.reset(max(total, len(history)))
            for epoch, row in enumerate(history):  # a resumed run's saved epochs
                curves.add_epoch(epoch, row.get(key), row.get(f"val_{key}"))
            curves.flush()
        self.progress.setRange(0, 0)  # busy until the first batch
        self.notice.setVisible(False)
        self._failed = False
        self._set_running(True)
        self.log.appendPlainText(title)
        self._log(f"Saving to {run_dir}")
        self._t_start = time.monotonic()
        self._refresh_timer.start()
        self._update_progress_text()
        worker.start()
        return worker

    def stop(self) -> None:
        """Ask the running training to stop after the current batch (the model is kept)."""
        if self.worker is None:
            return
        self.worker.stop()
        self.stop_button.setEnabled(False)
        self._log("Stopping after this batch\u2026")

    def wait(self, msecs: int = 60_000) -> bool:
        """Block until the training thread has ended (for closing the window after :meth:`stop`)."""
        return self.worker is None or self.worker.wait(msecs / 1000)

    def _new_run_dir(self) -> Path:
        folder = Path(self.session.runs_folder())
        base = run_folder_name(self.session.spec)
        run_dir = folder / base
        n = 2
        while run_dir.exists():
            run_dir = folder / f"{base}-{n}"
            n += 1
        try:
            run_dir.mkdir(parents=True)
        except OSError as exc:
            raise write_failed(run_dir, exc) from None  # a StudioError: one line, in the dialog
        return run_dir

    def _set_running(self, running: bool) -> None:
        self._form_box.setEnabled(not running)
        self._compute_box.setEnabled(not running)
        self.stop_button.setEnabled(running)
        self.resume_button.setEnabled(not running)
        self._update_ready()

    # -- worker signals -------------------------------------------------------------------

    def _on_started(self) -> None:
        self._log("Training thread started")

    def _on_status(self, message: str) -> None:
        self._log(message[:1].upper() + message[1:])
        self.progress_label.setText(message[:1].upper() + message[1:] + "\u2026")

    def _on_progress(self, task: str, done: int, total: int) -> None:
        if self._task is None or self._task[0] != task:
            if task.endswith(" (bytes)"):
                self._log(task.removesuffix(" (bytes)").capitalize() + (f": {total / 1e6:.1f} MB" if total else ""))
            else:
                self._log(f"{task[:1].upper() + task[1:]}: {total} files")
        self._task = (task, done, total)
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(done)
        self._update_progress_text()

    def _fine_tuning(self, config) -> bool:
        provider = self.session.registry.backbones.get(self.session.spec.backbone)
        return config.mode == "finetune" and provider is not None and provider.pretrained

    def _on_begin(self, e) -> None:
        self._task = None
        if e.phase == "finetune":
            for curves in self.curves.values():
                curves.mark_phase(e.initial_epoch, "fine-tuning")
            self._log(f"Fine-tuning from epoch {e.initial_epoch + 1}: the top of the base is trainable now")
        self._epochs = e.epochs
        self._initial_epoch = e.initial_epoch
        self._steps = max(1, e.steps_per_epoch)
        self._epoch = e.initial_epoch
        self.progress.setRange(0, e.epochs * self._steps)
        self.progress.setValue(e.initial_epoch * self._steps)
        self._log(f"Training on {e.device}: {e.n_train} training and {e.n_val} validation images, "
                  f"{e.steps_per_epoch} batches per epoch")

    def _on_batch(self, e) -> None:
        self._epoch, self._batch, self._steps = e.epoch, e.batch, max(1, e.steps)
        self._last_eta = (time.monotonic(), e.eta)
        if self.progress.maximum() == 0:  # the first batch: the bar leaves its busy state now
            self.progress.setRange(0, self._epochs * self._steps)
            self._update_progress_text()
        for key, curves in self.curves.items():
            curves.add_batch(e.epoch, e.batch, self._steps, e.logs.get(key))

    def _on_epoch_end(self, e) -> None:
        self._epoch, self._batch = e.epoch + 1, 0
        self._last_eta = (time.monotonic(), e.eta)
        self.progress.setValue((e.epoch + 1) * self._steps)
        for key, curves in self.curves.items():
            curves.add_epoch(e.epoch, e.logs.get(key), e.logs.get(f"val_{key}"))
        parts = [f"{k} {e.logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in e.logs]
        self._log(f"Epoch {e.epoch + 1}/{self._epochs}: " + ", ".join(parts) + f" ({format_seconds(e.elapsed)})")
        self._update_progress_text()

    def _on_ended(self, e) -> None:
        what = {"completed": "finished", "early_stopped": "stopped early", "cancelled": "stopped"}.get(e.reason, e.reason)
        self._log(f"Training {what} after {e.epochs_run} epoch(s) in {format_seconds(e.elapsed)}")
        self.stop_button.setEnabled(False)
        self._last_eta = (time.monotonic(), None)

    def _on_finished(self, result) -> None:
        self._end_run()
        self.result = result
        m = result.metrics or {}
        saved = result.bundle  # written by this run (an earlier stop's bundle may be there too)
        if result.reason == "cancelled" and not saved:
            headline = (f"Training stopped after {result.epochs_run} saved epoch(s); Resume\u2026 continues it."
                        if result.epochs_run else "Training stopped before its first epoch; nothing was saved.")
            self.result_label.setText(headline)
            self._log(headline)
            self._notify(headline)
            return
        try:
            record = RunRecords(result.run_dir).metrics
        except StudioError:
            record = None
        self.result_label.setText(result_text(Path(result.run_dir).name, result.reason, result.epochs_run,
                                              result.train_seconds, m, record))
        if result.reason == "cancelled":
            headline = f"Training stopped after {result.epochs_run} epoch(s); the model so far is saved."
            self._log("Resume\u2026 continues the run from its last saved epoch")
        else:
            acc = m.get("test_accuracy")
            headline = "Training finished" + (f": test accuracy {acc:.1%}" if acc is not None else "")
            if acc is not None:
                self._log(f"Test accuracy {acc:.4f}, loss {m['test_loss']:.4f} on {m['test_images']} images")
        if result.skipped_files:
            self._log(f"{len(result.skipped_files)} file(s) could not be read and were skipped:")
            for d in result.skipped_files:
                self._log(f"  {d['path']}: {d['reason']}")
        self._log(f"Run saved in {result.run_dir}")
        self._notify(headline)
        run_dir = str(result.run_dir)
        self.session.add_run(run_dir, run_summary(result))
        self.trainingFinished.emit(run_dir)

    def show_run(self, path: str) -> bool:
        """Draw a saved run's curves and results (the run selected elsewhere, or the project's
        last one after a restart); not while training, nor for the run whose live curves are on
        show. True when the run was drawn."""
        if self.is_training() or not path or (self.run_dir is not None and Path(path) == self.run_dir):
            return False
        try:
            run = RunRecords(path)
            metrics = run.metrics
            history = run.history if metrics is not None else []
        except StudioError as exc:
            self.progress_label.setText(str(exc))  # a damaged record: say which, draw nothing
            return False
        if metrics is None:
            if not not_resumable(Path(path)):  # interrupted, or training elsewhere: nothing finished to show
                self.progress_label.setText(f"Run {Path(path).name} did not finish; Resume\u2026 continues it")
            return False
        self.run_dir = Path(path)
        for key, curves in self.curves.items():
            curves.reset(len(history))
            for epoch, row in enumerate(history):
                if row.get("phase") == "finetune" and (epoch == 0 or history[epoch - 1].get("phase") != "finetune"):
                    curves.mark_phase(epoch, "fine-tuning")
                curves.add_epoch(epoch, row.get(key), row.get(f"val_{key}"))
            curves.flush()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress_label.setText(f"Showing run {self.run_dir.name}")
        self.result_label.setText(result_text(self.run_dir.name, str(metrics.get("status", "?")),
                                              int(metrics.get("epochs_run", len(history))),
                                              metrics.get("train_seconds"), metrics, metrics))
        return True

    def _on_errored(self, message: str, details: str) -> None:
        self._end_run()
        self._failed = True
        self.progress_label.setText("Training failed")
        self._log(f"Error: {message}")
        errors.show_error(self, "Training failed", message, details)

    def _end_run(self) -> None:
        worker, self.worker = self.worker, None
        if worker is not None:
            worker.wait(10)  # the thread is only returning from its job
        self._refresh_timer.stop()
        self._flush_curves()
        self._set_running(False)
        if self.progress.maximum() == 0:
            self.progress.setRange(0, 1)
        self.progress_label.setText(f"Done in {format_seconds(time.monotonic() - self._t_start)}")

    def _refresh(self) -> None:
        self._refreshes += 1
        if self._refreshes % CURVE_REFRESHES == 0:
            self._flush_curves()
        self._update_progress_text()

    def _flush_curves(self) -> None:
        for curves in self.curves.values():
            curves.flush()

    # -- text -----------------------------------------------------------------------------

    def _update_progress_text(self) -> None:
        if self.worker is None:
            return
        elapsed = time.monotonic() - self._t_start
        when, eta = self._last_eta
        eta_now = None if eta is None else max(0.0, eta - (time.monotonic() - when))
        if self._task is not None:
            task, done, total = self._task
            if task.endswith(" (bytes)"):  # a download: megabytes
                task = task.removesuffix(" (bytes)")
                amount = f"{done / 1e6:.1f}/{total / 1e6:.1f} MB" if total else f"{done / 1e6:.1f} MB"
            else:
                amount = f"{done}/{total}"
            self.progress_label.setText(
                f"{task[:1].upper() + task[1:]} {amount}\u2026 \u00b7 elapsed {format_seconds(elapsed)}"
            )
            self.session.report_progress(f"{self.session.job}: {task} {amount}", done, total)
            return
        if self.progress.maximum() == 0:
            self.progress_label.setText(f"Preparing\u2026 \u00b7 elapsed {format_seconds(elapsed)}")
            return
        epoch = min(self._epoch + 1, self._epochs)
        self.progress.setValue(min(self._epoch, self._epochs) * self._steps + self._batch)
        self.progress_label.setText(
            f"Epoch {epoch}/{self._epochs} \u00b7 batch {self._batch}/{self._steps} \u00b7 "
            f"elapsed {format_seconds(elapsed)} \u00b7 ETA {format_seconds(eta_now)}"
        )
        self.session.report_progress(f"{self.session.job}: epoch {epoch}/{self._epochs} \u00b7 "
                                     f"ETA {format_seconds(eta_now)}", self.progress.value(), self.progress.maximum())

    def _log(self, text: str) -> None:
        self.log.appendPlainText(f"[{time.strftime('%H:%M:%S')}] {text}")

    def _notify(self, message: str) -> None:
        """Status bar, plus a system notification where there is a tray; else a banner here."""
        window = self.window()
        if isinstance(window, QMainWindow):
            window.statusBar().showMessage(message, 15_000)
        if QSystemTrayIcon.isSystemTrayAvailable() and QSystemTrayIcon.supportsMessages():
            if self._tray is None:
                icon = QApplication.windowIcon()
                if icon.isNull():
                    icon = self.style().standardIcon(QStyle.StandardPixmap.SP_ComputerIcon)
                self._tray = QSystemTrayIcon(icon, self)
            self._tray.show()
            self._tray.showMessage("CNN Studio", message, QSystemTrayIcon.MessageIcon.Information, 8000)
        else:
            self.notice.setText(f"\u2714 {message}")
            self.notice.setVisible(True)
