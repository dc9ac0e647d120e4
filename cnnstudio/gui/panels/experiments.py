"""Experiments: a hyperparameter search, k-fold cross-validation, and the comparison of runs.

Every search trial and every fold is an ordinary run folder, so the comparison tab lists them
with the project's other runs, and the same files drive ``cnnstudio tune``, ``cnnstudio cv``,
``cnnstudio runs`` and ``cnnstudio diff``. Searches and cross-validations run on their own
thread (:class:`~cnnstudio.gui.qthreading.ExperimentWorker`) and can be stopped; both resume
from their folder.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pyqtgraph as pg
from PySide6.QtCore import QSortFilterProxyModel, Qt, QTimer, Signal
from PySide6.QtGui import QColor, QFont, QFontDatabase, QPalette, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QSplitter,
    QTableView,
    QTableWidget,
    QTableWidgetItem,
    QTabWidget,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from cnnstudio.core.errors import StudioError
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import ExperimentWorker
from cnnstudio.gui.widgets import common as widgets
from cnnstudio.gui.widgets.plots import counted_plot, format_seconds, legend_below, style_plot

SPACE_CHOICES = (
    ("The seed report's space", "seed-report"),
    ("Defaults for this model", "default"),
    ("From a file\u2026", "file"),
)
OBJECTIVE_CHOICES = (("Validation accuracy (higher)", "val_accuracy"), ("Validation loss (lower)", "val_loss"))
CURVE_METRICS = ("val_accuracy", "val_loss", "accuracy", "loss")
COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
          "#bcbd22", "#17becf")
SORT_ROLE = Qt.ItemDataRole.UserRole + 1
PATH_ROLE = Qt.ItemDataRole.UserRole + 2


def _timestamped(folder: Path, prefix: str) -> Path:
    base = folder / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"
    out, n = base, 2
    while out.exists():
        out = Path(f"{base}-{n}")
        n += 1
    return out


def _fmt(value, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _param_text(value) -> str:
    """A searched value as it was chosen: 0.001, 0.12, 64 (not 0.001000)."""
    if value is None:
        return ""
    return f"{value:g}" if isinstance(value, float) else str(value)


def _masked(url: str) -> str:
    from cnnstudio.core.experiments.storage import masked

    return masked(url)


def _plot(title: str, left: str, bottom: str) -> pg.PlotWidget:
    plot = counted_plot()  # epochs or trials
    style_plot(plot)  # the theme's colours, as every other plot of the window
    plot.showGrid(x=True, y=True, alpha=0.2)
    plot.setTitle(title)
    plot.setLabel("left", left)
    plot.setLabel("bottom", bottom)
    plot.setMinimumHeight(180)
    for axis in ("left", "bottom"):  # accuracies are not "x0.001" thousands
        plot.getAxis(axis).enableAutoSIPrefix(False)
    return plot


class _ExperimentTab(QWidget):
    """What a search and a cross-validation share: a worker, Start / Stop, and a progress line."""

    runningChanged = Signal(bool)

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.worker: ExperimentWorker | None = None
        self.out_dir: Path | None = None
        self.progress_label = widgets.hint_label()

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.is_running()

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()
            self.progress_label.setText("Stopping after this epoch; the run so far is kept and can be resumed\u2026")

    def _ready(self, title: str) -> bool:
        if self.is_running():
            return False
        if self.session.job_refusal():
            errors.show_error(self, title, self.session.job_refusal())
            return False
        if self.session.dataset_refusal():  # none loaded, or none a classifier learns from
            errors.show_error(self, title, self.session.dataset_refusal())
            return False
        return True

    def _start(self, job) -> ExperimentWorker:
        worker = ExperimentWorker(job, self.job_text())
        self.session.start_job(worker, self.job_text(), page="experiments")  # first: the slot is free when this tab hears the end
        worker.epoch_end.connect(self._on_epoch)
        # Bound methods only: a lambda would run on the worker's thread, not queued to the GUI's.
        worker.status.connect(self.progress_label.setText)
        worker.progress.connect(self._on_progress)
        worker.finished.connect(self._on_finished)
        worker.errored.connect(self._on_errored)
        self.worker = worker
        worker.start()
        self._set_running(True)
        return worker

    def job_text(self) -> str:
        return ""

    def _set_running(self, running: bool) -> None:
        self.runningChanged.emit(running)

    def _on_progress(self, task: str, done: int, total: int) -> None:
        self.progress_label.setText(f"{task}: {done} of {total}")

    def _on_epoch(self, event) -> None:
        pass

    def _done(self) -> None:
        self._set_running(False)

    def _on_finished(self, result) -> None:
        self._done()

    def _on_errored(self, message: str, details: str) -> None:
        self._done()
        self.progress_label.setText(f"Failed: {message}")
        errors.show_error(self, "The experiment failed", message, details)


# ----------------------------------------------------------------------------- search


class SearchTab(_ExperimentTab):
    """A hyperparameter search: a live table of trials, the best so far, and Apply best.

    With a storage URL the search is shared (``cnnstudio tune --storage`` processes on this or
    other machines take trials of it too), and the tab watches the storage: every
    ``poll_ms`` a thread reads the trials, so those other processes run appear, with their state
    and value, as they start and end. Watch shows a shared search without running trials here."""

    _polled = Signal(object)  # (reader, SearchResult or StudioError), from the reading thread
    poll_ms = 2000

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self._reader = None
        self._reading = False
        self._poll_timer = QTimer(self)
        self._poll_timer.timeout.connect(self._poll)
        self._polled.connect(self._on_polled)
        self.space = None
        self.space_file: Path | None = None
        self.records: dict[int, object] = {}
        self.dimensions: list[str] = []
        self._undo: tuple | None = None
        self._applied_at = -1  # the undo history's index right after Apply Best

        self.space_choice = QComboBox()
        for text, key in SPACE_CHOICES:
            self.space_choice.addItem(text, key)
        self.space_choice.activated.connect(self._on_space_choice)
        self.trials = QSpinBox()
        self.trials.setRange(1, 1000)
        self.trials.setValue(10)
        self.trials.setToolTip("Trials to run (complete, pruned and failed ones count)")
        self.minutes = QSpinBox()
        self.minutes.setRange(0, 7 * 24 * 60)
        self.minutes.setSpecialValueText("no limit")
        self.minutes.setSuffix(" min")
        self.minutes.setToolTip("Stop starting new trials after this long (0: no limit)")
        self.sampler = QComboBox()
        self.sampler.addItem("TPE (learns from past trials)", "tpe")
        self.sampler.addItem("Random", "random")
        self.prune = QCheckBox("Stop poor trials early")
        self.prune.setChecked(True)
        self.prune.setToolTip("Optuna's median pruner: a trial whose validation score after an epoch is worse "
                              "than the median of earlier trials at that epoch stops there")
        self.objective = QComboBox()
        for text, key in OBJECTIVE_CHOICES:
            self.objective.addItem(text, key)

        self.start_button = QPushButton("Start Search")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.resume_button = QPushButton("Resume Search\u2026")
        self.resume_button.setToolTip("Continue a stopped or interrupted search from its folder")
        self.resume_button.clicked.connect(self._choose_resume)
        self.apply_button = QPushButton("Apply Best")
        self.apply_button.setToolTip("Use the best trial's model and training settings in the Model and Train panels")
        self.apply_button.clicked.connect(self.apply_best)
        self.apply_button.setEnabled(False)
        self.undo_button = QPushButton("Undo Apply")
        self.undo_button.clicked.connect(self.undo_apply)
        self.undo_button.hide()
        self.folder_button = QPushButton("Show in Folder")
        self.folder_button.clicked.connect(lambda: self.out_dir and widgets.show_in_folder(self.out_dir))
        self.folder_button.setEnabled(False)
        self.storage_edit = QLineEdit()
        self.storage_edit.setPlaceholderText("none: this search alone, in its folder")
        self.storage_edit.setToolTip(
            "Share the search through an Optuna storage: sqlite:///FILE (this machine), "
            "postgresql://USER:PASSWORD@HOST/DB or mysql://\u2026 (several machines), journal:FILE (a shared file "
            "system). Every 'cnnstudio tune --storage URL --study NAME' takes trials of it too.")
        self.study_edit = QLineEdit("cnnstudio")
        self.study_edit.setMaximumWidth(160)
        self.watch_button = QPushButton("Watch")
        self.watch_button.setCheckable(True)
        self.watch_button.setToolTip("Show the trials of the shared search in this storage, as other processes "
                                     "run them")
        self.watch_button.toggled.connect(self._on_watch_toggled)
        self.watch_label = widgets.hint_label()

        self.space_table = QTableWidget(0, 1)
        self.space_table.setHorizontalHeaderLabels(["Searched"])
        self.space_table.horizontalHeader().setStretchLastSection(True)
        self.space_table.verticalHeader().hide()
        self.space_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.space_table.setMaximumWidth(300)

        self.table = QTableWidget(0, 5)
        self._set_columns([])  # named columns from the start, not "1 2 3 4 5"
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.setAlternatingRowColors(True)
        self.best_plot = _plot("Best so far", "validation accuracy", "trial")
        self.scatter = pg.ScatterPlotItem(size=8, brush=pg.mkBrush(COLORS[0]), pen=None)
        self.best_line = pg.PlotDataItem(pen=pg.mkPen(COLORS[1], width=2), stepMode="right")
        self.best_plot.addItem(self.scatter)
        self.best_plot.addItem(self.best_line)
        self.best_label = QLabel()
        bold = QFont(self.best_label.font())
        bold.setBold(True)
        self.best_label.setFont(bold)

        form = QHBoxLayout()  # two rows, so that a 1024-pixel window shows every choice whole
        for label, widget in (("Space", self.space_choice), ("Trials", self.trials), ("Time", self.minutes)):
            form.addWidget(QLabel(label))
            form.addWidget(widget)
        form.addStretch(1)
        how = QHBoxLayout()
        for label, widget in (("Sampler", self.sampler), ("Optimise", self.objective)):
            how.addWidget(QLabel(label))
            how.addWidget(widget)
        how.addWidget(self.prune)
        how.addStretch(1)
        shared = QHBoxLayout()
        shared.addWidget(QLabel("Shared storage"))
        shared.addWidget(self.storage_edit, 1)
        shared.addWidget(QLabel("Study"))
        shared.addWidget(self.study_edit)
        shared.addWidget(self.watch_button)
        buttons = QHBoxLayout()
        for button in (self.start_button, self.stop_button, self.resume_button):
            buttons.addWidget(button)
        buttons.addStretch(1)
        for button in (self.apply_button, self.undo_button, self.folder_button):
            buttons.addWidget(button)

        right = QSplitter(Qt.Orientation.Vertical)
        right.addWidget(self.table)
        right.addWidget(self.best_plot)
        right.setStretchFactor(0, 3)
        right.setStretchFactor(1, 2)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(self.space_table)
        body.addWidget(right)
        body.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(how)
        layout.addLayout(shared)
        layout.addLayout(buttons)
        layout.addWidget(self.best_label)
        layout.addWidget(self.progress_label)
        layout.addWidget(self.watch_label)
        layout.addWidget(body, 1)
        session.specChanged.connect(self._refresh_space)
        self.objective.currentIndexChanged.connect(self._redraw_best)
        self._refresh_space()

    # -- the space -------------------------------------------------------------------------

    def _on_space_choice(self) -> None:
        if self.space_choice.currentData() == "file":
            path, _ = QFileDialog.getOpenFileName(self, "Search space", str(Path.home()), "JSON (*.json)")
            if not path:
                self.space_choice.setCurrentIndex(0)
            else:
                self.space_file = Path(path)
        self._refresh_space()

    def current_space(self):
        """The space the choice describes, for the session's model (raises StudioError)."""
        from cnnstudio.core.experiments.search import PRESET_SPACES, SearchSpace, default_space

        spec = self.session.spec
        key = self.space_choice.currentData()
        if key == "file" and self.space_file is not None:
            space = SearchSpace.load(self.space_file)
        elif key == "default":
            space = default_space(spec)
        else:
            space = PRESET_SPACES["seed-report"]
        return space.for_spec(spec).validate(spec, self.session.train_config, self.session.registry)

    def _refresh_space(self) -> None:
        try:
            self.space = self.current_space()
            rows = [d.describe() for d in self.space.dimensions]
        except StudioError as exc:
            self.space = None
            rows = [f"Not searchable: {exc}"]
        self.space_table.setRowCount(len(rows))
        for i, text in enumerate(rows):
            item = QTableWidgetItem(text)
            item.setToolTip(text)
            self.space_table.setItem(i, 0, item)
        self.start_button.setEnabled(self.space is not None and not self.is_running())

    # -- running ---------------------------------------------------------------------------

    def job_text(self) -> str:
        return "Searching hyperparameters\u2026"

    def start(self) -> ExperimentWorker | None:
        if not self._ready("Cannot start the search"):
            return None
        try:
            space = self.current_space()
            split = self.session.make_split()
            config = self.session.train_config.validate()
        except StudioError as exc:
            errors.show_error(self, "Cannot start the search", str(exc))
            return None
        return self._run(_timestamped(Path(self.session.runs_folder()), "search"), space, split, config)

    def resume(self, folder) -> ExperimentWorker | None:
        """Continue the search in ``folder``: its saved space, model and settings, this tab's budget."""
        from cnnstudio.core.experiments.search import read_search

        folder = Path(folder)
        if not (folder / "search.json").exists():
            errors.show_error(self, "Cannot resume", f"{folder}: not a search folder (no search.json)")
            return None
        if not self._ready("Cannot resume the search"):
            return None
        try:
            self._show_saved_space(folder)
            self._show_records(read_search(folder).trials)
        except (StudioError, OSError, ValueError, KeyError) as exc:
            errors.show_error(self, "Cannot resume the search", f"{folder}: {exc}")
            return None
        return self._run(folder, None, self.session.make_split(), self.session.train_config)

    def _show_saved_space(self, folder: Path) -> None:
        """The space a search folder was started with (it wins on resume), in the space table."""
        from cnnstudio.core.experiments.search import SearchSpace
        from cnnstudio.core.io.atomic import read_json

        space = SearchSpace.from_dict(read_json(folder / "search.json")["space"])
        rows = [d.describe() for d in space.dimensions]
        self.space_table.setRowCount(len(rows))
        for i, text in enumerate(rows):
            self.space_table.setItem(i, 0, QTableWidgetItem(text))

    def _choose_resume(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Resume the search in", str(self.session.runs_folder()))
        if folder:
            self.resume(folder)

    def _run(self, out_dir: Path, space, split, config) -> ExperimentWorker:
        from cnnstudio.core.experiments.search import Search

        s = self.session
        self.out_dir = out_dir
        if space is not None:
            self.records = {}
            self._set_columns([d.target for d in space.dimensions])
            self._redraw_best()
        trials, minutes = self.trials.value(), self.minutes.value()
        sampler, prune, objective = self.sampler.currentData(), self.prune.isChecked(), self.objective.currentData()
        index, spec, registry, seed = s.index, s.spec, s.registry, s.seed
        storage, study = self.storage_edit.text().strip() or None, self.study_edit.text().strip() or "cnnstudio"

        def job(state):
            return Search(index, split, spec, config, space, out_dir, registry, trials=trials,
                          timeout=minutes * 60 if minutes else None, sampler=sampler, prune=prune,
                          objective=objective, seed=seed, state=state, storage=storage, study_name=study).run()

        if storage is not None:  # the other processes' trials show up as they run
            self.watch(storage, study, clear=False)
        worker = self._start(job)
        worker.trial_started.connect(self._on_trial_started)
        worker.trial_ended.connect(self._on_trial_ended)
        self.progress_label.setText(f"Search in {out_dir}")
        self.folder_button.setEnabled(True)
        return worker

    # -- watching a shared search ------------------------------------------------------------

    def watch(self, url: str, study: str = "cnnstudio", clear: bool = True) -> bool:
        """Show the trials of the shared search ``study`` in storage ``url`` and keep them current."""
        from cnnstudio.core.experiments.search import StudyReader

        try:
            reader = StudyReader(url, study)
        except StudioError as exc:
            errors.show_error(self, "Cannot watch the search", str(exc))
            return False
        self.stop_watching()
        self._reader = reader
        if clear:
            self.records = {}
            self._set_columns([])
            self._redraw_best()
        self.storage_edit.setText(url)
        self.study_edit.setText(study)
        self.watch_button.blockSignals(True)
        self.watch_button.setChecked(True)
        self.watch_button.blockSignals(False)
        self.watch_label.setText(f"Watching {study!r} in {_masked(url)}\u2026")
        self._poll_timer.start(self.poll_ms)
        self._poll()
        return True

    def stop_watching(self) -> None:
        self._poll_timer.stop()
        reader, self._reader = self._reader, None
        if reader is not None and not self._reading:
            reader.close()
        self.watch_button.blockSignals(True)
        self.watch_button.setChecked(False)
        self.watch_button.blockSignals(False)

    def is_watching(self) -> bool:
        return self._reader is not None

    def _on_watch_toggled(self, on: bool) -> None:
        url = self.storage_edit.text().strip()
        if on and url:
            self.watch(url, self.study_edit.text().strip() or "cnnstudio", clear=not self.is_running())
        else:
            self.stop_watching()
            self.watch_label.setText("" if on else self.watch_label.text())
            if on:
                errors.show_error(self, "Cannot watch the search", "Give the storage URL of a shared search first.")

    def _poll(self) -> None:
        """Read the storage on a thread of its own (a server may be slow); one read at a time."""
        if self._reading or self._reader is None:
            return
        self._reading = True
        threading.Thread(target=self._read, args=(self._reader,), name="search-watch", daemon=True).start()

    def _read(self, reader) -> None:
        try:
            result = reader.read()
        except StudioError as exc:
            result = exc
        except Exception as exc:  # noqa: BLE001 - shown in the tab, the polling goes on
            result = StudioError(f"{_masked(reader.url)}: {type(exc).__name__}: {exc}")
        try:
            self._polled.emit((reader, result))
        except RuntimeError:  # the tab is gone
            reader.close()

    def _on_polled(self, polled) -> None:
        reader, result = polled
        self._reading = False
        if reader is not self._reader:  # watching stopped or moved on meanwhile
            reader.close()
            return
        if isinstance(result, StudioError):
            self.watch_label.setText(f"Watching: {result}")
            return
        for record in result.trials:
            self._put(record)
        self._redraw_best()
        running = sum(r.status == "running" for r in result.trials)
        self.watch_label.setText(f"Watching {reader.study_name!r} in {_masked(reader.url)}: "
                                 f"{len(result.trials)} trial{'s' if len(result.trials) != 1 else ''}, "
                                 f"{running} running")

    def closeEvent(self, event) -> None:
        self.stop_watching()
        super().closeEvent(event)

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running and self.space is not None)
        self.resume_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        super()._set_running(running)

    # -- the table and the plot -------------------------------------------------------------

    def _set_columns(self, targets: list[str]) -> None:
        from cnnstudio.core.experiments.search import short_name

        self.dimensions = targets
        headers = ["Trial", "Status", self.objective.currentData() or "value", "Epochs", "Seconds"]
        self.table.setColumnCount(len(headers) + len(targets))
        self.table.setHorizontalHeaderLabels(headers + [short_name(t) for t in targets])
        self.table.setRowCount(0)

    def _show_records(self, records) -> None:
        targets = list(records[0].params) if records else []
        self._set_columns(targets)
        self.records = {}
        for record in records:
            self._put(record)
        self._redraw_best()

    def _row(self, number: int) -> int:
        for row in range(self.table.rowCount()):
            if self.table.item(row, 0) and self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == number:
                return row
        row = self.table.rowCount()
        self.table.insertRow(row)
        return row

    def _put(self, record) -> None:
        self.records[record.number] = record
        if not self.dimensions and record.params:
            self._set_columns(list(record.params))
        row = self._row(record.number)
        values = [str(record.number + 1), record.status, _fmt(record.value), str(record.epochs or ""),
                  _fmt(record.seconds, 1) if record.seconds else ""]
        values += [_param_text(record.params.get(t)) for t in self.dimensions]
        for column, text in enumerate(values):
            item = QTableWidgetItem(text)
            if column == 0:
                item.setData(Qt.ItemDataRole.UserRole, record.number)
            if record.status == "failed" and record.error:
                item.setToolTip(record.error)
            self.table.setItem(row, column, item)
        self.table.resizeColumnsToContents()

    def _on_trial_started(self, number: int, params: dict) -> None:
        from cnnstudio.core.experiments.search import TrialRecord, format_params

        self._put(TrialRecord(number, params))
        self._own_trial = number  # the trial this process runs (others may run theirs)
        self.progress_label.setText(f"Trial {number + 1}: {format_params(params)}")
        self._trial_progress(number, None)

    def _trial_progress(self, number: int, epoch: int | None) -> None:
        """The status bar's line for the search: trial x/N, its epoch."""
        total = self.trials.value() if self.trials.value() > 0 else 0
        text = f"Search: trial {number + 1}" + (f"/{total}" if total else "")
        if epoch is not None:
            text += f" \u00b7 epoch {epoch}/{self.session.train_config.epochs}"
        took = [r.seconds for r in self.records.values() if r.status != "running" and r.seconds]
        if total and took:  # the trials left, at the pace of those done
            text += f" \u00b7 ETA {format_seconds(sum(took) / len(took) * max(0, total - number))}"
        self.session.report_progress(text, number if total else 0, total)

    def _on_trial_ended(self, record) -> None:
        self._put(record)
        self._redraw_best()

    def _on_epoch(self, event) -> None:
        running = [r for r in self.records.values() if r.status == "running"]
        if running:
            logs = event.logs
            score = logs.get(self.objective.currentData())
            self._trial_progress(running[-1].number, event.epoch + 1)
            self.progress_label.setText(
                f"Trial {running[-1].number + 1}: epoch {event.epoch + 1}"
                + (f", {self.objective.currentData()} {score:.4f}" if score is not None else ""))

    def best(self):
        from cnnstudio.core.experiments.search import best_trial

        return best_trial(list(self.records.values()), self.objective.currentData())

    def _redraw_best(self) -> None:
        objective = self.objective.currentData()
        finished = sorted((r for r in self.records.values() if r.value is not None and r.status != "running"),
                          key=lambda r: r.number)
        xs = [r.number + 1 for r in finished]
        ys = [r.value for r in finished]
        self.scatter.setData(xs, ys)
        better = max if objective == "val_accuracy" else min
        running_best = [better(ys[: i + 1]) for i in range(len(ys))]
        self.best_line.setData(xs + ([xs[-1] + 1] if xs else []), running_best + ([running_best[-1]] if xs else []))
        self.best_plot.setLabel("left", objective.replace("_", " "))
        best = self.best()
        bold = QFont(self.table.font())
        bold.setBold(True)
        for row in range(self.table.rowCount()):
            is_best = best is not None and self.table.item(row, 0).data(Qt.ItemDataRole.UserRole) == best.number
            for column in range(self.table.columnCount()):
                item = self.table.item(row, column)
                if item is not None:
                    item.setFont(bold if is_best else self.table.font())
        if best is None:
            self.best_label.setText("")
        else:
            self.best_label.setText(f"Best: trial {best.number + 1}, {objective} {best.value:.4f}")
        self.apply_button.setEnabled(best is not None and self.out_dir is not None
                                     and (self.out_dir / "best.json").exists())

    def _on_finished(self, result) -> None:
        import dataclasses

        super()._on_finished(result)
        for record in result.trials:
            self._put(record)
        own = self.records.get(getattr(self, "_own_trial", None))
        if result.reason == "cancelled" and own is not None and own.status == "running":
            self._put(dataclasses.replace(own, status="stopped"))  # not running any more: Resume runs it again
        self._own_trial = None
        self._redraw_best()
        done = sum(r.status in ("complete", "pruned", "failed") for r in result.trials)
        pruned = sum(r.status == "pruned" for r in result.trials)
        text = {"completed": "Search finished", "timeout": "Time limit reached",
                "cancelled": "Search stopped (Resume Search\u2026 continues it)"}.get(result.reason, result.reason)
        self.progress_label.setText(f"{text}: {done} trial{'s' if done != 1 else ''} ({pruned} pruned) in "
                                    f"{self.out_dir}")

    # -- applying the best -----------------------------------------------------------------

    def apply_best(self) -> bool:
        from cnnstudio.core.experiments.search import best_configuration

        if self.out_dir is None:
            return False
        try:
            spec, config = best_configuration(self.out_dir)
            previous = (self.session.spec, self.session.train_config)
            self.session.set_model_and_training(spec, config, "Apply Best")
        except StudioError as exc:
            errors.show_error(self, "Cannot apply the best configuration", str(exc))
            return False
        self._undo = previous
        self._applied_at = self.session.undo_stack.index()  # where the history stood right after it
        self.undo_button.show()
        self.progress_label.setText("The best trial's model and settings are now in the Model and Train panels.")
        return True

    def undo_apply(self) -> None:
        if self._undo is None:
            return
        spec, config = self._undo
        stack = self.session.undo_stack
        if stack.index() == self._applied_at and stack.undoText() == "Apply Best":
            stack.undo()  # nothing changed since: the same step Edit > Undo takes back
        else:  # other changes came after it: put the settings back as a step of their own
            self.session.set_model_and_training(spec, config, "Model and Training Settings")
        self._undo = None
        self.undo_button.hide()
        self.progress_label.setText("The model and settings are back as they were before Apply Best.")


# ----------------------------------------------------------------------------- cross-validation


class CrossValTab(_ExperimentTab):
    """K-fold cross-validation: a row and a curve per fold, then mean ± std of every metric."""

    def __init__(self, session, parent=None):
        super().__init__(session, parent)
        self.curves: dict[int, pg.PlotDataItem] = {}
        self.points: dict[int, list[tuple[int, float]]] = {}
        self.fold = 0
        self.folds = QSpinBox()
        self.folds.setRange(2, 20)
        self.folds.setValue(5)
        self.test_fraction = QDoubleSpinBox()
        self.test_fraction.setRange(0.0, 0.5)
        self.test_fraction.setSingleStep(0.05)
        self.test_fraction.setValue(0.0)
        self.test_fraction.setToolTip("Images held out of every fold and tested on by each fold's model (0: none)")
        self.start_button = QPushButton("Start Cross-Validation")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.clicked.connect(self.stop)
        self.stop_button.setEnabled(False)
        self.open_button = QPushButton("Open Results\u2026")
        self.open_button.setToolTip("Show, or continue, a cross-validation from its folder")
        self.open_button.clicked.connect(self._choose_open)

        self.table = QTableWidget(0, 7)
        self.table.setHorizontalHeaderLabels(["Fold", "Status", "val_accuracy", "val_loss", "test_accuracy",
                                              "Epochs", "Seconds"])
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.summary = QLabel()
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.summary.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.plot = _plot("Validation accuracy per fold", "validation accuracy", "epoch")
        legend_below(self.plot.getPlotItem(), self.plot.palette().color(QPalette.ColorRole.Text), columns=4)

        form = QHBoxLayout()
        form.addWidget(QLabel("Folds"))
        form.addWidget(self.folds)
        form.addWidget(QLabel("Held-out test fraction"))
        form.addWidget(self.test_fraction)
        form.addWidget(self.start_button)
        form.addWidget(self.stop_button)
        form.addWidget(self.open_button)
        form.addStretch(1)
        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.summary)
        body = QSplitter(Qt.Orientation.Horizontal)
        body.addWidget(left)
        body.addWidget(self.plot)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.progress_label)
        layout.addWidget(body, 1)

    def job_text(self) -> str:
        return "Cross-validating\u2026"

    def start(self) -> ExperimentWorker | None:
        if not self._ready("Cannot start cross-validation"):
            return None
        try:
            config = self.session.train_config.validate()
        except StudioError as exc:
            errors.show_error(self, "Cannot start cross-validation", str(exc))
            return None
        return self._run(_timestamped(Path(self.session.runs_folder()), "cv"), config)

    def _run(self, out_dir: Path, config) -> ExperimentWorker:
        from cnnstudio.core.experiments.crossval import CrossValidation

        s = self.session
        self.out_dir = out_dir
        k, test_fraction = self.folds.value(), self.test_fraction.value()
        index, spec, registry, seed = s.index, s.spec, s.registry, s.seed
        self.table.setRowCount(k)
        for fold in range(1, k + 1):
            self._set_row(fold, {"status": "waiting"})
        self.plot.clear()
        self.curves, self.points = {}, {}
        self.summary.setText("")

        def job(state):
            return CrossValidation(index, spec, config, k, out_dir, registry, seed=seed,
                                   test_fraction=test_fraction, state=state).run()

        worker = self._start(job)
        worker.fold_started.connect(self._on_fold_started)
        worker.fold_ended.connect(self._on_fold_ended)
        return worker

    def _choose_open(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Cross-validation folder", str(self.session.runs_folder()))
        if folder:
            self.show_results(folder)

    def show_results(self, folder) -> bool:
        from cnnstudio.core.experiments.crossval import read_cv
        from cnnstudio.core.runs.records import read_history

        try:
            result = read_cv(folder)
        except StudioError as exc:
            errors.show_error(self, "Cannot open the cross-validation", str(exc))
            return False
        self.out_dir = Path(folder)
        self.table.setRowCount(result.k)
        self.plot.clear()
        self.curves, self.points = {}, {}
        for fold in range(1, result.k + 1):
            self._set_row(fold, {"status": "waiting"})
        damaged = []  # a fold whose history cannot be read has no curve, and says why
        for metrics in result.folds:
            fold = metrics["fold"]
            self._set_row(fold, metrics)
            try:
                rows = read_history(metrics["run_dir"])
            except StudioError as exc:
                damaged.append(str(exc))
                continue
            for row in rows:
                if row.get("val_accuracy") is not None:
                    self._add_point(fold, row["epoch"], row["val_accuracy"])
        self.summary.setText("\n".join(result.summary_lines() + damaged))
        return True

    def _set_row(self, fold: int, metrics: dict) -> None:
        values = [str(fold), metrics.get("status", ""), _fmt(metrics.get("val_accuracy")),
                  _fmt(metrics.get("val_loss")), _fmt(metrics.get("test_accuracy")),
                  str(metrics.get("epochs") or ""), _fmt(metrics.get("seconds"), 1)]
        for column, text in enumerate(values):
            self.table.setItem(fold - 1, column, QTableWidgetItem(text))

    def _add_point(self, fold: int, epoch: int, value: float) -> None:
        self.points.setdefault(fold, []).append((epoch, value))
        if fold not in self.curves:
            pen = pg.mkPen(COLORS[(fold - 1) % len(COLORS)], width=2)
            self.curves[fold] = self.plot.plot([], [], pen=pen, name=f"fold {fold}")
        xs, ys = zip(*self.points[fold], strict=True)
        self.curves[fold].setData(list(xs), list(ys))

    def _on_fold_started(self, fold: int, k: int) -> None:
        self.fold = fold
        self._set_row(fold, {"status": "training"})
        self.points.pop(fold, None)
        self.progress_label.setText(f"Fold {fold} of {k}")
        self.session.report_progress(f"Cross-validation: fold {fold}/{k}", fold - 1, k)

    def _on_epoch(self, event) -> None:
        value = event.logs.get("val_accuracy")
        if self.fold and value is not None:
            self._add_point(self.fold, event.epoch + 1, float(value))

    def _on_fold_ended(self, fold: int, metrics: dict) -> None:
        self._set_row(fold, metrics)

    def _on_finished(self, result) -> None:
        super()._on_finished(result)
        for metrics in result.folds:
            self._set_row(metrics["fold"], metrics)
        self.summary.setText("\n".join(result.summary_lines()))
        self.progress_label.setText(("Cross-validation finished" if result.reason == "completed" else
                                     "Stopped (start it again on the same folder with Open Results\u2026)")
                                    + f": {self.out_dir}")

    def _set_running(self, running: bool) -> None:
        self.start_button.setEnabled(not running)
        self.open_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        super()._set_running(running)


# ----------------------------------------------------------------------------- comparison


class _SortProxy(QSortFilterProxyModel):
    def __init__(self, parent=None):
        super().__init__(parent)
        self.setSortRole(SORT_ROLE)
        self.setFilterCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)
        self.setFilterKeyColumn(-1)


class CompareTab(QWidget):
    """Every run of the project in a sortable, filterable table; curves of the selected runs; a
    diff of two runs; and Run Again."""

    COLUMNS = (("Run", "name"), ("Model", "model"), ("Status", "status"), ("Epochs", "epochs"),
               ("Val accuracy", "val_accuracy"), ("Val loss", "val_loss"), ("Test accuracy", "test_accuracy"),
               ("Seconds", "train_seconds"), ("Created", "created"))

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.folder: Path | None = None
        self.summaries: dict[str, object] = {}
        self.worker: ExperimentWorker | None = None
        self._histories: dict[str, list[dict]] = {}

        self.folder_label = widgets.hint_label()
        self.folder_button = QPushButton("Folder\u2026")
        self.folder_button.setToolTip("Compare the runs of another folder")
        self.folder_button.clicked.connect(self._choose_folder)
        self.refresh_button = QPushButton("Refresh")
        self.refresh_button.setShortcut("F5")
        self.refresh_button.clicked.connect(self.refresh)
        self.filter = QLineEdit()
        self.filter.setPlaceholderText("Filter runs (name, model, status\u2026)")
        self.filter.setClearButtonEnabled(True)

        self.model = QStandardItemModel(0, len(self.COLUMNS))
        self.model.setHorizontalHeaderLabels([c for c, _ in self.COLUMNS])
        self.proxy = _SortProxy(self)
        self.proxy.setSourceModel(self.model)
        self.filter.textChanged.connect(self.proxy.setFilterFixedString)
        self.view = QTableView()
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(8, Qt.SortOrder.DescendingOrder)
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.verticalHeader().hide()
        self.view.setAlternatingRowColors(True)
        self.view.horizontalHeader().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)

        self.metric = QComboBox()
        for name in CURVE_METRICS:
            self.metric.addItem(name.replace("_", " "), name)
        self.metric.currentIndexChanged.connect(self._draw_curves)
        self.plot = _plot("", "validation accuracy", "epoch")
        legend_below(self.plot.getPlotItem(), self.plot.palette().color(QPalette.ColorRole.Text), columns=4)

        self.diff_button = QPushButton("Diff")
        self.diff_button.setToolTip("Compare two selected runs: changed settings, metrics, and the test images "
                                    "whose prediction changed")
        self.diff_button.clicked.connect(self.show_diff)
        self.rerun_button = QPushButton("Run Again")
        self.rerun_button.setToolTip("Train the selected run again on the same files, with the same settings and "
                                     "seeds, then diff the two")
        self.rerun_button.clicked.connect(self.run_again)
        self.diff_tree = QTreeWidget()
        self.diff_tree.setHeaderLabels(["", "A", "B"])
        self.diff_tree.setAlternatingRowColors(True)
        self.diff_label = widgets.hint_label("Select two runs and press Diff.")

        top = QHBoxLayout()
        top.addWidget(self.folder_label, 1)
        top.addWidget(self.filter, 1)
        top.addWidget(self.folder_button)
        top.addWidget(self.refresh_button)
        actions = QHBoxLayout()
        actions.addWidget(QLabel("Curves"))
        actions.addWidget(self.metric)
        actions.addStretch(1)
        actions.addWidget(self.diff_button)
        actions.addWidget(self.rerun_button)
        lower_right = QWidget()
        lr = QVBoxLayout(lower_right)
        lr.setContentsMargins(0, 0, 0, 0)
        lr.addWidget(self.diff_label)
        lr.addWidget(self.diff_tree, 1)
        lower = QSplitter(Qt.Orientation.Horizontal)
        lower.addWidget(self.plot)
        lower.addWidget(lower_right)
        lower.setStretchFactor(0, 1)
        lower.setStretchFactor(1, 1)
        lower.setSizes([500, 500])  # the plot's size hint would take most of it
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.view)
        body.addWidget(lower)
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(actions)
        layout.addWidget(body, 1)
        session.runsChanged.connect(self.refresh)
        self._on_selection()

    # -- the table ---------------------------------------------------------------------------

    def _choose_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Compare the runs in", str(self.current_folder()))
        if folder:
            self.folder = Path(folder)
            self.refresh()

    def current_folder(self) -> Path:
        return self.folder or Path(self.session.runs_folder())

    def refresh(self) -> None:
        from cnnstudio.core.runs.compare import find_runs

        folder = self.current_folder()
        summaries = find_runs(folder) if folder.is_dir() else []
        self.summaries = {s.path: s for s in summaries}
        self._histories.clear()
        self.model.removeRows(0, self.model.rowCount())
        for summary in summaries:
            row = []
            for _, key in self.COLUMNS:
                value = getattr(summary, key)
                if key == "created" and value:
                    text = str(value)[:16].replace("T", " ")  # to the minute, as a list shows times
                else:
                    text = _fmt(value, 1 if key == "train_seconds" else 4)
                item = QStandardItem(text)
                item.setData(value if value is not None else (-math.inf if key != "name" else ""), SORT_ROLE)
                item.setData(summary.path, PATH_ROLE)
                if summary.status == "unreadable":
                    item.setToolTip(summary.reason or "unreadable")
                    item.setForeground(QColor(widgets.ERROR_RED))
                row.append(item)
            self.model.appendRow(row)
        self.view.resizeColumnsToContents()
        n = len(summaries)
        self.folder_label.setText(f"{n} run{'s' if n != 1 else ''} in {folder}")
        self._on_selection()

    def select_runs(self, paths: list[str]) -> None:
        from PySide6.QtCore import QItemSelection, QItemSelectionModel

        selection = QItemSelection()
        for row in range(self.proxy.rowCount()):
            index = self.proxy.index(row, 0)
            if index.data(PATH_ROLE) in paths:
                selection.select(index, self.proxy.index(row, len(self.COLUMNS) - 1))
        self.view.selectionModel().select(selection, QItemSelectionModel.SelectionFlag.ClearAndSelect)

    def selected_runs(self) -> list[str]:
        rows = sorted({i.row() for i in self.view.selectionModel().selectedRows()})
        return [self.proxy.index(r, 0).data(PATH_ROLE) for r in rows]

    def _on_selection(self, *_args) -> None:
        selected = self.selected_runs()
        running = self.worker is not None and self.worker.is_running()
        self.diff_button.setEnabled(len(selected) == 2)
        self.rerun_button.setEnabled(len(selected) == 1 and not running)
        self._draw_curves()

    # -- curves -------------------------------------------------------------------------------

    def _history(self, path: str) -> list[dict]:
        """The run's history; none for a run whose history is damaged (the table lists it as
        unreadable, with the reason)."""
        from cnnstudio.core.runs.records import read_history

        if path not in self._histories:
            try:
                self._histories[path] = read_history(path)
            except StudioError:
                self._histories[path] = []
        return self._histories[path]

    def _draw_curves(self) -> None:
        metric = self.metric.currentData()
        self.plot.clear()
        self.plot.setLabel("left", metric.replace("_", " "))
        drawn = 0
        for i, path in enumerate(self.selected_runs()[: len(COLORS)]):
            points = [(r["epoch"], r[metric]) for r in self._history(path) if r.get(metric) is not None]
            if not points:
                continue
            xs, ys = zip(*points, strict=True)
            name = self.summaries[path].name if path in self.summaries else Path(path).name
            self.plot.plot(list(xs), list(ys), pen=pg.mkPen(COLORS[i], width=2), name=name,
                           symbol="o", symbolSize=5, symbolBrush=COLORS[i])
            drawn += 1
        self.plot.setTitle("" if drawn else "Select runs to overlay their curves")

    # -- diff ---------------------------------------------------------------------------------

    def show_diff(self, paths: list[str] | None = None) -> object | None:
        from cnnstudio.core.runs.compare import diff_runs

        paths = paths or self.selected_runs()
        if len(paths) != 2:
            return None
        try:
            diff = diff_runs(*paths)
        except StudioError as exc:
            errors.show_error(self, "Cannot compare the runs", str(exc))
            return None
        self.diff_tree.clear()
        a, b = (self.summaries[p].name if p in self.summaries else Path(p).name for p in paths)
        self.diff_tree.setHeaderLabels(["", f"A: {a}", f"B: {b}"])

        def section(title: str, rows) -> QTreeWidgetItem:
            item = QTreeWidgetItem([title])
            font = QFont(item.font(0))
            font.setBold(True)
            item.setFont(0, font)
            for row in rows:
                item.addChild(QTreeWidgetItem([str(x) for x in row]))
            self.diff_tree.addTopLevelItem(item)
            item.setExpanded(True)
            return item

        section(f"Changed settings ({len(diff.settings)})",
                [(k, _param_text(x), _param_text(y)) for k, x, y in diff.settings])
        section("Metrics", [(k, _fmt(x), _fmt(y)) for k, x, y in diff.metrics])
        changed = diff.changed_predictions
        section(f"Test images whose prediction changed ({len(changed)} of {diff.compared_predictions})",
                [(f"{c['path']} (true: {c['true']})", c["a"], c["b"]) for c in changed])
        if diff.only_in_a or diff.only_in_b:
            section(f"Test images of one run only ({len(diff.only_in_a)} A, {len(diff.only_in_b)} B)",
                    [(p, "\u2713", "") for p in diff.only_in_a] + [(p, "", "\u2713") for p in diff.only_in_b])
        for note in diff.notes:
            section(note, [])
        # Half for what changed (paths can be long), a quarter for each run's value.
        width = max(self.diff_tree.viewport().width(), 400)
        self.diff_tree.setColumnWidth(0, width // 2)
        self.diff_tree.setColumnWidth(1, width // 4)
        self.diff_label.setText(f"{len(diff.settings)} setting{'s' if len(diff.settings) != 1 else ''} differ; "
                                f"{len(changed)} test image{'s' if len(changed) != 1 else ''} changed prediction.")
        self.diff = diff
        return diff

    # -- run again ------------------------------------------------------------------------------

    def run_again(self) -> ExperimentWorker | None:
        from cnnstudio.core.experiments.reproduce import rerun

        selected = self.selected_runs()
        if len(selected) != 1 or (self.worker is not None and self.worker.is_running()):
            return None
        if self.session.job_refusal():
            errors.show_error(self, "Cannot run it again", self.session.job_refusal())
            return None
        original = Path(selected[0])
        out = original.parent / f"{original.name}-rerun"
        n = 2
        while out.exists():
            out = original.parent / f"{original.name}-rerun-{n}"
            n += 1
        registry = self.session.registry
        worker = ExperimentWorker(lambda state: rerun(original, out, registry, state=state),
                                  f"Running {original.name} again\u2026")
        self.session.start_job(worker, worker.what, page="experiments")  # first: the slot is free when this tab hears the end
        # Bound methods only: a lambda would run on the worker's thread, not queued to the GUI's.
        worker.finished.connect(self._rerun_done)
        worker.errored.connect(self._rerun_failed)
        worker.status.connect(self._rerun_status)
        worker.epoch_end.connect(self._rerun_epoch)
        self._rerun = (original, out)
        self.worker = worker
        worker.start()
        self._on_selection()
        return worker

    def _rerun_status(self, text: str) -> None:
        self.diff_label.setText(f"Running {self._rerun[0].name} again: {text}")

    def _rerun_epoch(self, event) -> None:
        self.diff_label.setText(f"Running {self._rerun[0].name} again: epoch {event.epoch + 1}")

    def _rerun_done(self, result) -> None:
        original, out = self._rerun
        self.refresh()
        if result.reason == "cancelled":
            self.diff_label.setText(f"Stopped; the partial rerun is in {out}")
            return
        self.select_runs([str(original), str(out)])
        self.show_diff([str(original), str(out)])

    def _rerun_failed(self, message: str, details: str) -> None:
        self._on_selection()
        self.diff_label.setText(f"Run Again failed: {message}")
        errors.show_error(self, "Cannot run it again", message, details)


class ExperimentsPanel(QWidget):
    """Search, Cross-validation and Compare runs, in tabs."""

    def __init__(self, session, parent=None):
        super().__init__(parent)
        self.session = session
        self.search = SearchTab(session)
        self.cv = CrossValTab(session)
        self.compare = CompareTab(session)
        self.tabs = QTabWidget()
        self.tabs.addTab(self.search, "Hyperparameter search")
        self.tabs.addTab(self.cv, "Cross-validation")
        self.tabs.addTab(self.compare, "Compare runs")
        self.tabs.currentChanged.connect(lambda i: self.tabs.widget(i) is self.compare and self.compare.refresh())
        for tab in (self.search, self.cv):
            tab.runningChanged.connect(lambda running: running or self.compare.refresh())
        layout = QVBoxLayout(self)
        layout.setContentsMargins(widgets.MARGIN, widgets.MARGIN, widgets.MARGIN, widgets.MARGIN)
        layout.addWidget(self.tabs)

    def is_running(self) -> bool:
        workers = (self.search.worker, self.cv.worker, self.compare.worker)
        return any(w is not None and w.is_running() for w in workers)

    def stop(self) -> None:
        for worker in (self.search.worker, self.cv.worker, self.compare.worker):
            if worker is not None:
                worker.stop()
