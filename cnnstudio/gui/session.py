"""The window's shared state: one :class:`Session` that every panel reads and edits.

Panels never talk to each other; they change the session and listen to its signals. The
session is also what a project file saves and restores (:meth:`to_project`, :meth:`load_project`;
the file's format is :mod:`cnnstudio.core.project`).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path

from PySide6.QtCore import QObject, Signal

from cnnstudio.core.errors import StudioError
from cnnstudio.core.project import PROJECT_SUFFIX, Project, read_project, write_project
from cnnstudio.core.training.config import TrainConfig

# What a new project starts with: two conv blocks learn the sample shapes in a few CPU minutes.
DEFAULT_MODEL = "scratch"


MERGE_SECONDS = 1.0  # edits of one kind closer than this are one Undo step
UNDO_LIMIT = 100


@dataclass(frozen=True)
class _Settings:
    """The settings Undo restores, and the change that made them (``what``, for the menu)."""

    what: str
    when: float
    spec: object
    train_config: object
    split: tuple


class Session(QObject):
    datasetChanged = Signal()  # dataset_root / index changed
    splitChanged = Signal()  # val_fraction / test_fraction / seed changed
    specChanged = Signal()  # spec changed (backbone, params, head, augmentation, input size)
    configChanged = Signal()  # train_config changed
    runsChanged = Signal()  # a run was added or removed
    currentRunChanged = Signal(str)  # path of the selected run ("" for none)
    projectChanged = Signal()  # project_path or modified flag changed
    jobChanged = Signal(str)  # what the status bar shows: the running job or background work ("" when idle)
    registryChanged = Signal()  # plugins were registered again (installed, removed, enabled, disabled)
    movesChanged = Signal()  # an image was moved to another class folder, or moved back
    undoChanged = Signal()  # what Undo and Redo would do changed

    def __init__(self, registry, parent=None):
        super().__init__(parent)
        from cnnstudio.core.model.spec import resolve_spec

        self.registry = registry
        self.project_path: Path | None = None
        self.modified = False
        self.dataset_root: Path | None = None
        self.index = None  # cnnstudio.core.data.dataset.DatasetIndex once scanned
        self.val_fraction = 0.15
        self.test_fraction = 0.15
        self.seed = 0
        self.spec = resolve_spec(registry, DEFAULT_MODEL)
        self.train_config = TrainConfig()
        self.runs: list[dict] = []  # {"path": str, "name": str, "metrics": dict | None}
        self.current_run: str = ""
        self._job = None  # (worker, text) of the one job that trains, if any
        self._after_job: list = []  # what waits for it to end (plugin changes asked for meanwhile)
        self._activities: list = []  # (worker, text) of background work the status bar shows
        self.moves: list = []  # cnnstudio.core.data.relabel.Move, oldest first: the Evaluate page's undo journal
        # Undo and Redo of the settings (split, model, training): whole copies, cheap and exact.
        self._undo: list[_Settings] = []
        self._redo: list[_Settings] = []
        self._restoring = False
        self._current = self._settings("")

    # -- changes -------------------------------------------------------------------------

    def _touch(self):
        self.modified = True
        self.projectChanged.emit()

    # -- undo of the settings ------------------------------------------------------------

    def _settings(self, what: str) -> _Settings:
        return _Settings(what, time.monotonic(), copy.deepcopy(self.spec), copy.deepcopy(self.train_config),
                         (self.val_fraction, self.test_fraction, self.seed))

    def _changed(self, what: str) -> None:
        """Called after a settings change: the state before it becomes one Undo step. Edits of
        the same kind less than a second apart (typing a number, dragging a slider) are one step."""
        if self._restoring:
            return
        now = self._settings(what)
        if (now.spec, now.train_config, now.split) == (self._current.spec, self._current.train_config,
                                                       self._current.split):
            return  # set to what it was: nothing to undo
        if not (self._current.what == what and now.when - self._current.when < MERGE_SECONDS):
            self._undo.append(self._current)
            del self._undo[:-UNDO_LIMIT]
        self._redo.clear()
        self._current = now
        self.undoChanged.emit()

    def undo_text(self) -> str:
        """What Undo would take back ("" when nothing)."""
        return self._current.what if self._undo else ""

    def redo_text(self) -> str:
        return self._redo[-1].what if self._redo else ""

    def undo(self) -> bool:
        """Put the split, model and training settings back as they were before the last change."""
        if not self._undo:
            return False
        self._redo.append(self._current)
        self._restore(self._undo.pop())
        return True

    def redo(self) -> bool:
        if not self._redo:
            return False
        self._undo.append(self._current)
        self._restore(self._redo.pop())
        return True

    def _restore(self, state: _Settings) -> None:
        self._restoring = True
        try:
            self.spec = copy.deepcopy(state.spec)
            self.train_config = copy.deepcopy(state.train_config)
            self.val_fraction, self.test_fraction, self.seed = state.split
            self._touch()
            for signal in (self.splitChanged, self.specChanged, self.configChanged):
                signal.emit()
        finally:
            self._restoring = False
        self._current = _Settings(state.what, float("-inf"), state.spec, state.train_config, state.split)
        self.undoChanged.emit()

    def _forget_undo(self) -> None:
        self._undo.clear()
        self._redo.clear()
        self._current = self._settings("")
        self.undoChanged.emit()

    def set_dataset(self, root, index, touch: bool = True) -> None:
        """Set the dataset folder and its scan. ``touch=False`` when the scan only restores what
        an opened project already names, so the project does not read as modified."""
        self.dataset_root = Path(root) if root else None
        self.index = index
        if touch:
            self._touch()
        self.datasetChanged.emit()

    def registry_reloaded(self) -> None:
        """The registry (the same object) now holds what the plugins registered again.

        The spec stays as it is even when its backbone's plugin is gone, so nothing the user
        set is lost; the Model panel says so and training refuses it until the plugin is back
        or another model is chosen.
        """
        self.registryChanged.emit()

    def set_split(self, val_fraction: float, test_fraction: float, seed: int) -> None:
        if (val_fraction, test_fraction, seed) == (self.val_fraction, self.test_fraction, self.seed):
            return
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self._touch()
        self._changed("Split Change")
        self.splitChanged.emit()

    def set_spec(self, spec) -> None:
        """Set a spec; it is validated against the registry (raises SpecError when invalid)."""
        self.spec = spec.validate(self.registry)
        self._touch()
        self._changed("Model Change")
        self.specChanged.emit()

    def set_model_and_training(self, spec, config: TrainConfig, what: str) -> None:
        """Set both as one Undo step named ``what`` (a search's best configuration, say)."""
        spec = spec.validate(self.registry)
        self.spec, self.train_config = spec, config
        self._touch()
        self._changed(what)
        self.specChanged.emit()
        self.configChanged.emit()

    def set_train_config(self, config: TrainConfig) -> None:
        self.train_config = config
        self._touch()
        self._changed("Training Settings Change")
        self.configChanged.emit()

    def add_run(self, path, metrics: dict | None = None) -> None:
        path = str(path)
        self.runs = [r for r in self.runs if r["path"] != path]
        self.runs.append({"path": path, "name": Path(path).name, "metrics": metrics})
        self._touch()
        self.runsChanged.emit()
        self.select_run(path)

    def record_move(self, move) -> None:
        self.moves.append(move)
        self._touch()
        self.movesChanged.emit()

    def forget_last_move(self) -> None:
        """The last move was undone."""
        self.moves.pop()
        self._touch()
        self.movesChanged.emit()

    def select_run(self, path: str) -> None:
        self.current_run = str(path or "")
        self.currentRunChanged.emit(self.current_run)

    # -- the one job slot, and what runs in the background ------------------------------

    @property
    def job(self) -> str:
        """What the one job that trains is doing ("" when none runs)."""
        return self._job[1] if self._job else ""

    def job_refusal(self) -> str:
        """Why another job that trains cannot start now ("" when it can)."""
        if not self._job:
            return ""
        return f"{self._job[1]} is running; stop it or wait until it ends, then start again"

    def start_job(self, worker, text: str) -> None:
        """Take the process's one slot for a job that trains (a run, a search, a cross-validation,
        Run Again) until ``worker`` is done; call it before ``worker.start()``. One at a time:
        check :meth:`job_refusal` first."""
        if self._job:
            raise RuntimeError(self.job_refusal())
        self._job = (worker, text)
        worker.done.connect(self._job_done)
        self.track(worker, text)

    def after_job(self, fn) -> bool:
        """Run ``fn`` now when no job trains, else once it has ended; True when it was deferred."""
        if not self._job:
            fn()
            return False
        self._after_job.append(fn)
        return True

    def track(self, worker, text: str):
        """Show ``text`` in the status bar while ``worker`` runs (before ``worker.start()``)."""
        self._activities.append((worker, text))
        worker.done.connect(self._activity_done)
        self.jobChanged.emit(self.activity())
        return worker

    def activity(self) -> str:
        """What the status bar shows: the job that trains, else the latest background work."""
        if self._job:
            return self._job[1]
        return self._activities[-1][1] if self._activities else ""

    def _job_done(self) -> None:
        if self._job and self.sender() is self._job[0]:
            self._job = None
            waiting, self._after_job = self._after_job, []
            for fn in waiting:
                fn()
            self.jobChanged.emit(self.activity())

    def _activity_done(self) -> None:
        worker = self.sender()
        self._activities = [(w, t) for w, t in self._activities if w is not worker]
        self.jobChanged.emit(self.activity())

    def make_split(self):
        from cnnstudio.core.data.dataset import make_split

        if self.index is None:
            raise StudioError("no dataset is loaded")
        return make_split(self.index, self.val_fraction, self.test_fraction, self.seed)

    def runs_folder(self) -> Path:
        """Where new runs go: beside the project file, else in the user's data folder."""
        if self.project_path is not None:
            return self.project_path.parent / (self.project_path.name.removesuffix(PROJECT_SUFFIX) + "-runs")
        from cnnstudio.core.io.paths import data_dir

        return data_dir() / "runs"

    def reset(self) -> None:
        """Back to a new, unsaved project with the defaults (File > New)."""
        from cnnstudio.core.model.spec import resolve_spec

        self.project_path = None
        self.modified = False
        self.dataset_root = None
        self.index = None
        self.val_fraction, self.test_fraction, self.seed = 0.15, 0.15, 0
        self.spec = resolve_spec(self.registry, DEFAULT_MODEL)
        self.train_config = TrainConfig()
        self.runs = []
        self.current_run = ""
        self.moves = []
        self._forget_undo()
        for signal in (self.splitChanged, self.specChanged, self.configChanged, self.runsChanged,
                       self.datasetChanged, self.projectChanged, self.movesChanged):
            signal.emit()
        self.currentRunChanged.emit(self.current_run)

    # -- project files -------------------------------------------------------------------

    def project(self) -> Project:
        """The session's settings as a project file holds them."""
        return Project(self.spec, self.dataset_root, self.val_fraction, self.test_fraction, self.seed,
                       self.train_config, self.runs, self.current_run, list(self.moves))

    def to_project(self) -> dict:
        return self.project().to_dict()

    def save_project(self, path) -> None:
        path = Path(path)
        write_project(path, self.project())
        self.project_path = path
        self.modified = False
        self.projectChanged.emit()

    def load_project(self, path) -> dict:
        """Read a project file into the session. The dataset is NOT rescanned here: the caller
        starts a scan of ``self.dataset_root`` (in a worker) and calls :meth:`set_dataset`."""
        path = Path(path)
        project, data = read_project(path, self.registry)
        self.val_fraction, self.test_fraction, self.seed = project.val_fraction, project.test_fraction, project.seed
        self.spec = project.spec
        self.train_config = project.train
        self.runs = project.runs
        self.current_run = project.current_run
        self.moves = project.moves
        self.dataset_root = project.dataset
        self.index = None
        self.project_path = path
        self.modified = False
        self._forget_undo()
        for signal in (self.splitChanged, self.specChanged, self.configChanged, self.runsChanged,
                       self.datasetChanged, self.projectChanged, self.movesChanged):
            signal.emit()
        self.currentRunChanged.emit(self.current_run)
        return data
