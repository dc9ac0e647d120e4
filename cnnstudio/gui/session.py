"""The window's shared state: one :class:`Session` that every panel reads and edits.

Panels never talk to each other; they change the session and listen to its signals. The
session is also what a project file saves and restores (:meth:`to_project`, :meth:`load_project`;
the file's format is :mod:`cnnstudio.core.project`).

Edit > Undo and Redo walk one history, the session's :attr:`Session.undo_stack` (a QUndoStack):
changes of the split, model and training settings (:class:`SettingsCommand`, quick edits of one
kind merged into one step) and images moved to another class folder (:class:`MoveCommand`), in
the order they were made. The stack's clean state is the saved project: :attr:`Session.modified`
is true when the stack is away from it, or when work that is not undoable was done since the
project was saved or opened (a run added, another dataset folder chosen).
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QUndoCommand, QUndoStack

from cnnstudio.core.data import relabel
from cnnstudio.core.errors import StudioError
from cnnstudio.core.project import PROJECT_SUFFIX, Project, read_project, write_project
from cnnstudio.core.training.config import TrainConfig

# What a new project starts with: two conv blocks learn the sample shapes in a few CPU minutes.
DEFAULT_MODEL = "scratch"


MERGE_SECONDS = 1.0  # edits of one kind closer than this are one Undo step
UNDO_LIMIT = 100

# The settings changes that merge when quick (typing a number, dragging a slider), with their
# command ids; any other (Apply Best, say) is always a step of its own.
_MERGING = {"Split Change": 1, "Model Change": 2, "Training Settings Change": 3}


class SettingsCommand(QUndoCommand):
    """A change of the split, model or training settings, named ``what`` ("Model Change").

    It holds the whole settings before and after (deep copies, as :meth:`Session._settings`
    makes them; they are small). A later edit of the same kind less than MERGE_SECONDS after the
    last one merges into it, unless an Undo or Redo came between; merged back to where it
    started, the step is obsolete and leaves the history.
    """

    def __init__(self, session: Session, what: str, before: tuple, after: tuple):
        super().__init__(what)
        self._session = session
        self._id = _MERGING.get(what, -1)
        self._before, self._after = before, after
        self._when = time.monotonic()
        self._generation = session._generation
        self._done = False

    def id(self) -> int:  # noqa: A003 - Qt's name
        return self._id

    def mergeWith(self, other) -> bool:  # noqa: N802 - Qt's name
        if not (isinstance(other, SettingsCommand) and other.id() == self._id != -1
                and other._generation == self._generation and other._when - self._when < MERGE_SECONDS):
            return False
        self._after, self._when = other._after, other._when
        self.setObsolete(self._after == self._before)
        return True

    def redo(self) -> None:
        if self._done:
            self._session._generation += 1
        self._done = True
        self._session._apply_settings(self._after)

    def undo(self) -> None:
        self._session._generation += 1
        self._session._apply_settings(self._before)

    def refusal(self) -> str:
        return ""


class MoveCommand(QUndoCommand):
    """An image moved to another class folder ("Move of cat_01.jpg"), pushed once the file moved.

    Undo moves the file back and Redo moves it again (:mod:`cnnstudio.core.data.relabel`); the
    session's ``moves`` lists the moves done. When the file system refuses, the reason is sent
    as ``undoRefused`` and the step leaves the history (obsolete), the file where it is.
    """

    def __init__(self, session: Session, move: relabel.Move):
        super().__init__(f"Move of {Path(move.source).name}")
        self._session = session
        self.move = move
        self._done = False

    def redo(self) -> None:
        session = self._session
        if self._done:  # again, after an Undo
            session._generation += 1
            try:
                moved = relabel.redo(self.move)
            except (relabel.RelabelError, OSError) as exc:
                self.setObsolete(True)
                session.undoRefused.emit("Cannot redo", f"Cannot move {Path(self.move.source).name} again: {exc}")
                return
            if moved != self.move:  # under another name: the saved project names the old one
                session._work_done()
            self.move = moved
            session.moves.append(moved)
            session.movesChanged.emit()
            session.datasetEdited.emit(str(moved.root), f"Moved {moved.source} to {moved.target}.")
            return
        self._done = True
        session.moves.append(self.move)
        session.movesChanged.emit()

    def undo(self) -> None:
        session = self._session
        session._generation += 1
        move = self.move
        try:
            relabel.undo(move)
        except (relabel.RelabelError, OSError) as exc:
            self.setObsolete(True)
            session.undoRefused.emit("Cannot undo", self._refused_text(exc))
            return
        session.moves.remove(move)
        session.movesChanged.emit()
        session.datasetEdited.emit(str(move.root), f"Moved {move.target} back to {move.source}.")

    def refusal(self) -> str:
        """Why Undo would be refused now ("" when it would not): checked before the stack moves,
        so the step stays to be tried again once the reason is gone."""
        try:
            relabel.check_undo(self.move)
        except relabel.RelabelError as exc:
            return self._refused_text(exc)
        return ""

    def _refused_text(self, exc: Exception) -> str:
        return f"Cannot move {Path(self.move.source).name} back: {exc}"


class Session(QObject):
    datasetChanged = Signal()  # dataset_root / index changed
    splitChanged = Signal()  # val_fraction / test_fraction / seed changed
    specChanged = Signal()  # spec changed (backbone, params, head, augmentation, input size)
    configChanged = Signal()  # train_config changed
    runsChanged = Signal()  # a run was added or removed
    currentRunChanged = Signal(str)  # path of the selected run ("" for none)
    projectChanged = Signal()  # project_path or modified flag changed
    jobChanged = Signal(str)  # what the status bar shows: the running job or background work ("" when idle)
    jobProgress = Signal(str, int, int)  # the job that trains: where it is (text), done and total (0, 0: busy)
    registryChanged = Signal()  # plugins were registered again (installed, removed, enabled, disabled)
    movesChanged = Signal()  # an image was moved to another class folder, or moved back
    # The files of the dataset at this root changed (an image moved, or moved back): root, what happened.
    datasetEdited = Signal(str, str)
    undoChanged = Signal()  # what Undo and Redo would do changed
    undoRefused = Signal(str, str)  # Undo or Redo could not be done: a title and a one-line reason

    def __init__(self, registry, parent=None):
        super().__init__(parent)
        from cnnstudio.core.model.spec import resolve_spec

        self.registry = registry
        self.project_path: Path | None = None
        self.load_warnings: list[str] = []  # what the last opened project file held that was left out
        self.dataset_root: Path | None = None
        self.index = None  # cnnstudio.core.data.dataset.DatasetIndex once scanned
        self.dataset_error = ""  # why the folder at dataset_root could not be scanned ("" when it was)
        self.val_fraction = 0.15
        self.test_fraction = 0.15
        self.seed = 0
        self.spec = resolve_spec(registry, DEFAULT_MODEL)
        self.train_config = TrainConfig()
        self.runs: list[dict] = []  # {"path": str, "name": str, "metrics": dict | None}
        self.current_run: str = ""
        self._job = None  # (worker, text) of the one job that trains, if any
        self.job_page = ""  # the page that runs it, where the status bar's job line leads
        self._after_job: list = []  # what waits for it to end (plugin changes asked for meanwhile)
        self._activities: list = []  # (worker, text) of background work the status bar shows
        self.moves: list = []  # cnnstudio.core.data.relabel.Move done (not undone), oldest first
        self._unsaved_work = False  # work that is not on the undo stack, done since the last save
        self._generation = 0  # counts Undos and Redos: no edit merges into a step made before one
        self.undo_stack = QUndoStack(self)
        self.undo_stack.setUndoLimit(UNDO_LIMIT)
        for signal in (self.undo_stack.indexChanged, self.undo_stack.undoTextChanged,
                       self.undo_stack.redoTextChanged):
            signal.connect(self._undo_stack_changed)  # bound methods: dropped when the session goes
        self.undo_stack.cleanChanged.connect(self._clean_changed)

    def _undo_stack_changed(self, *_args) -> None:
        self.undoChanged.emit()

    def _clean_changed(self, _clean: bool) -> None:
        self.projectChanged.emit()

    # -- the modified flag ---------------------------------------------------------------

    @property
    def modified(self) -> bool:
        """Whether the project has changes that are not saved: the undo stack is away from its
        clean state (undoing back to it is unmodified again), or work that is not undoable was done."""
        return self._unsaved_work or not self.undo_stack.isClean()

    def mark_saved(self) -> None:
        """What the session holds now is what the project file holds (saved, opened or new)."""
        self._unsaved_work = False
        self.undo_stack.setClean()
        self.projectChanged.emit()

    def _work_done(self) -> None:
        if not self._unsaved_work:
            self._unsaved_work = True
            self.projectChanged.emit()

    # -- undo and redo -------------------------------------------------------------------

    def undo_text(self) -> str:
        """What Undo would take back ("Model Change", "Move of cat_01.jpg"; "" when nothing)."""
        return self.undo_stack.undoText()

    def redo_text(self) -> str:
        return self.undo_stack.redoText()

    def undo(self) -> bool:
        """Take back the last change (Edit > Undo). False when there is none, or when it cannot be
        undone now (the reason goes out as ``undoRefused`` and the history stays as it was)."""
        stack = self.undo_stack
        if not stack.canUndo():
            return False
        refusal = stack.command(stack.index() - 1).refusal()
        if refusal:
            self.undoRefused.emit("Cannot undo", refusal)
            return False
        count = stack.count()
        stack.undo()
        return stack.count() == count  # a step that failed on the way leaves the history

    def redo(self) -> bool:
        stack = self.undo_stack
        if not stack.canRedo():
            return False
        count = stack.count()
        stack.redo()
        return stack.count() == count

    def move_to_undo(self):
        """The :class:`~cnnstudio.core.data.relabel.Move` that Undo would take back, if it is one."""
        stack = self.undo_stack
        command = stack.command(stack.index() - 1) if stack.canUndo() else None
        return command.move if isinstance(command, MoveCommand) else None

    def _settings(self) -> tuple:
        """The settings Undo restores, as deep copies: (spec, train_config, split)."""
        return (copy.deepcopy(self.spec), copy.deepcopy(self.train_config),
                (self.val_fraction, self.test_fraction, self.seed))

    def _apply_settings(self, state: tuple) -> None:
        """Make ``state`` (from :meth:`_settings`) the settings; signals for the parts that changed."""
        spec, config, split = state
        changed = []
        if split != (self.val_fraction, self.test_fraction, self.seed):
            self.val_fraction, self.test_fraction, self.seed = split
            changed.append(self.splitChanged)
        if spec != self.spec:
            self.spec = copy.deepcopy(spec)
            changed.append(self.specChanged)
        if config != self.train_config:
            self.train_config = copy.deepcopy(config)
            changed.append(self.configChanged)
        for signal in changed:
            signal.emit()

    def _change_settings(self, what: str, spec=None, config=None, split=None) -> bool:
        """One step named ``what`` that sets the given parts; False (no step) when they are as they were."""
        before = self._settings()
        after = (copy.deepcopy(spec) if spec is not None else before[0],
                 copy.deepcopy(config) if config is not None else before[1],
                 split if split is not None else before[2])
        if after == before:
            return False
        self.undo_stack.push(SettingsCommand(self, what, before, after))
        return True

    def set_dataset(self, root, index, touch: bool = True, error: str = "") -> None:
        """Set the dataset folder and its scan. Another folder is work to save (not undoable);
        ``touch=False`` when it is not: the scan only restores what an opened project already
        names, or the window starts on the sample dataset. A rescan of the same folder is no change.
        A folder that could not be scanned has no index and ``error``, the one-line reason."""
        root = Path(root) if root else None
        if touch and root != self.dataset_root:
            self._work_done()
        self.dataset_root = root
        self.index = index
        self.dataset_error = error if index is None else ""
        self.datasetChanged.emit()

    def dataset_refusal(self) -> str:
        """Why no run can train on the dataset ("" when one can): none is loaded, its folder could
        not be read, or it is not one a classifier learns from (no class sub-folders, no images,
        one class only)."""
        from cnnstudio.core.data.dataset import unusable_reason

        if self.index is None:
            return self.dataset_error or "Load a dataset in the Data panel to train"
        return unusable_reason(self.index)

    def train_refusal(self) -> str:
        """Why a run cannot start now ("" when it can): the dataset, or another job training."""
        return self.dataset_refusal() or self.job_refusal()

    def registry_reloaded(self) -> None:
        """The registry (the same object) now holds what the plugins registered again.

        The spec stays as it is even when its backbone's plugin is gone, so nothing the user
        set is lost; the Model panel says so and training refuses it until the plugin is back
        or another model is chosen.
        """
        self.registryChanged.emit()

    def set_split(self, val_fraction: float, test_fraction: float, seed: int) -> None:
        self._change_settings("Split Change", split=(val_fraction, test_fraction, seed))

    def set_spec(self, spec) -> None:
        """Set a spec; it is validated against the registry (raises SpecError when invalid)."""
        if not self._change_settings("Model Change", spec=spec.validate(self.registry)):
            self.specChanged.emit()  # the same as before: the forms show it again

    def set_model_and_training(self, spec, config: TrainConfig, what: str) -> None:
        """Set both as one Undo step named ``what`` (a search's best configuration, say)."""
        if not self._change_settings(what, spec=spec.validate(self.registry), config=config):
            self.specChanged.emit()
            self.configChanged.emit()

    def set_train_config(self, config: TrainConfig) -> None:
        if not self._change_settings("Training Settings Change", config=config):
            self.configChanged.emit()

    def add_run(self, path, metrics: dict | None = None) -> None:
        path = str(path)
        self.runs = [r for r in self.runs if r["path"] != path]
        self.runs.append({"path": path, "name": Path(path).name, "metrics": metrics})
        self._work_done()
        self.runsChanged.emit()
        self.select_run(path)

    def record_move(self, move) -> None:
        """An image was moved to another class folder (``move``, done): one step of the history."""
        self.undo_stack.push(MoveCommand(self, move))
        self.datasetEdited.emit(str(move.root), f"Moved {move.source} to {move.target}.")

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

    def start_job(self, worker, text: str, page: str = "") -> None:
        """Take the process's one slot for a job that trains (a run, a search, a cross-validation,
        Run Again) until ``worker`` is done; call it before ``worker.start()``. One at a time:
        check :meth:`job_refusal` first. ``page``: the window's page that shows it."""
        if self._job:
            raise RuntimeError(self.job_refusal())
        self._job = (worker, text)
        self.job_page = page
        # Free once the result is delivered (its thread only returns after that): connected before
        # the caller's slots, so they see the slot free.
        for signal in (worker.finished, worker.errored, worker.done):
            signal.connect(self._job_done)
        self.track(worker, text)

    def report_progress(self, text: str, done: int = 0, total: int = 0) -> None:
        """Where the job that trains is (for the status bar on every page); nothing when none runs."""
        if self._job:
            self.jobProgress.emit(text, int(done), int(total))

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
        for signal in (worker.finished, worker.errored, worker.aborted, worker.done):
            signal.connect(self._activity_done)  # the first of them ends it
        self.jobChanged.emit(self.activity())
        return worker

    def activity(self) -> str:
        """What the status bar shows: the job that trains, else the latest background work."""
        if self._job:
            return self._job[1]
        return self._activities[-1][1] if self._activities else ""

    def _job_done(self, *_args) -> None:
        if self._job and self.sender() is self._job[0]:
            self._job = None
            self.job_page = ""
            waiting, self._after_job = self._after_job, []
            for fn in waiting:
                fn()
            self.jobChanged.emit(self.activity())

    def _activity_done(self, *_args) -> None:
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
        self.dataset_root = None
        self.index = None
        self.dataset_error = ""
        self.val_fraction, self.test_fraction, self.seed = 0.15, 0.15, 0
        self.spec = resolve_spec(self.registry, DEFAULT_MODEL)
        self.train_config = TrainConfig()
        self.runs = []
        self.current_run = ""
        self.moves = []
        self.undo_stack.clear()
        self.mark_saved()
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
        self.mark_saved()

    def load_project(self, path) -> dict:
        """Read a project file into the session. The dataset is NOT rescanned here: the caller
        starts a scan of ``self.dataset_root`` (in a worker) and calls :meth:`set_dataset`."""
        path = Path(path)
        project, data = read_project(path, self.registry)
        self.load_warnings = list(project.warnings)  # what the file held that was left out
        self.val_fraction, self.test_fraction, self.seed = project.val_fraction, project.test_fraction, project.seed
        self.spec = project.spec
        self.train_config = project.train
        self.runs = project.runs
        self.current_run = project.current_run
        self.dataset_root = project.dataset
        self.index = None
        self.dataset_error = ""
        self.project_path = path
        self.moves = []
        self.undo_stack.clear()
        for move in project.moves:  # still undoable after a restart, oldest first
            self.undo_stack.push(MoveCommand(self, move))
        self.mark_saved()
        for signal in (self.splitChanged, self.specChanged, self.configChanged, self.runsChanged,
                       self.datasetChanged, self.projectChanged, self.movesChanged):
            signal.emit()
        self.currentRunChanged.emit(self.current_run)
        return data
