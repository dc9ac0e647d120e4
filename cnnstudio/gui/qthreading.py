"""Work off the GUI thread, heard about through Qt signals: one worker mechanism for every job.

A :class:`Worker` runs ``fn(*args, **kwargs)`` on a Python thread of its own and is the job's
:class:`~cnnstudio.core.tasks.TaskState`: when ``fn`` takes a ``state`` keyword it gets the
worker, whose ``on_status`` and ``on_progress(task, done, total)`` become the ``status`` and
``progress`` signals and whose ``should_stop`` reads the flag :meth:`Worker.stop` sets from the
GUI thread (cooperative abort: the job stops at its next check and says so by raising
:class:`~cnnstudio.core.errors.Cancelled`). :class:`TrainWorker` is the same worker as a
training's ``TrainState`` (the run's events as signals too) and :class:`ExperimentWorker` the
same for a search, a cross-validation or a rerun. Orange's ``TaskState`` and superqt's
``thread_worker`` are the models.

The worker object lives on the GUI thread; its signals are emitted from the job's thread and
delivered queued on the GUI thread, so slots may touch widgets (connect bound methods of
QObjects). A Python thread rather than Qt's global pool: a pooled OS thread that runs Python
again gets a fresh Python thread state each time, and TensorFlow's eager ops that read variables
(EfficientNet's ``Normalization`` layer, for one) crashed the process in the second job on such
a thread; a Python thread keeps one thread state for its life and starts in well under a
millisecond. Every exception becomes an ``errored(message, details)`` signal: a
:class:`StudioError` speaks for itself, anything else carries its traceback in ``details``.

Every started worker stays in a module-wide set until its last signal is delivered, so the
window can say what is still running when it quits and wait for it (:func:`pending`,
:func:`wait_for_all`): nothing is killed silently.
"""

from __future__ import annotations

import gc
import inspect
import os
import threading
import time

from PySide6.QtCore import QCoreApplication, QObject, Signal

from cnnstudio.core.errors import Cancelled
from cnnstudio.gui.dialogs.errors import describe

# on_progress() is forwarded at most this often per task (seconds), plus the final call.
PROGRESS_INTERVAL = 0.1

# Workers that have started and whose last signal has not been delivered yet. Holding them
# here keeps the Python objects (and their signals) alive until the GUI thread has received it.
_active: dict[Worker, None] = {}  # in the order they started


def _takes(fn, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


class Worker(QObject):
    """``fn(*args, **kwargs)`` on a thread of its own; connect to its signals, then :meth:`start`.

    Signals: ``started()``; ``status(str)`` and ``progress(task, done, total)`` as the job goes
    (progress at most about ten a second per task); then exactly one of ``finished(result)``,
    ``errored(message, details)`` or, when the job stopped on request before producing
    anything, ``aborted()``; then ``done()``. ``what`` names the job where the window lists what
    is running; ``writes`` marks a job that writes something the user asked for (an export, a
    report), which quitting must not cut short without asking. ``quit_waits`` False marks a job
    that quitting does not wait for (finding the installed plugins writes nothing, and a plugin
    that hangs at import must not keep the window open).
    """

    started = Signal()
    status = Signal(str)
    progress = Signal(str, int, int)  # task, done, total
    finished = Signal(object)
    errored = Signal(str, str)  # message, details
    aborted = Signal()
    done = Signal()

    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.what = getattr(fn, "__name__", "job").strip("_").replace("_", " ")
        self.writes = False
        self.quit_waits = True
        self._stop = threading.Event()
        self._last_progress: dict[str, float] = {}
        self.thread: threading.Thread | None = None
        if fn is not None and _takes(fn, "state") and "state" not in kwargs:
            self.kwargs["state"] = self

    def describe(self, what: str, writes: bool = False) -> Worker:
        """Name the job (what the window shows while it runs) and say whether it writes files."""
        self.what, self.writes = what, writes
        return self

    # -- control, from the GUI thread ----------------------------------------------------

    def start(self) -> Worker:
        if self.thread is not None:
            raise RuntimeError("a worker runs once")
        # Connected last, so the caller's slots have run before the worker is let go.
        self.done.connect(self._release)
        global _quit_hooked
        if not _quit_hooked and QCoreApplication.instance() is not None:
            QCoreApplication.instance().aboutToQuit.connect(_finish_on_quit)
            _quit_hooked = True
        _active[self] = None
        self.thread = threading.Thread(target=self._main, name=f"cnnstudio-{self.what}", daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the job to stop at its next check (a training: after the current batch, keeping
        the model trained so far)."""
        self._stop.set()

    def is_running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the function has returned (its signals may still be queued); False if
        ``timeout`` seconds passed first."""
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True

    # -- the job, on its thread ----------------------------------------------------------

    def _main(self) -> None:
        self.started.emit()
        try:
            self.run_job()
        finally:
            self.done.emit()

    def run_job(self) -> None:
        try:
            result = self._work()
        except Cancelled:
            self.aborted.emit()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the window
            message, details = describe(exc)
            self.errored.emit(message, details)
        else:
            self.finished.emit(result)

    def _work(self):
        return self.fn(*self.args, **self.kwargs)

    def _release(self) -> None:
        _active.pop(self, None)

    # -- the core's TaskState (called on the job's thread) ---------------------------------

    def on_status(self, message: str) -> None:
        self.status.emit(message)

    def on_progress(self, task: str, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_progress.get(task, 0.0) < PROGRESS_INTERVAL:
            return
        self._last_progress[task] = now
        self.progress.emit(task, int(done), int(total))

    def should_stop(self) -> bool:
        return self._stop.is_set()


_quit_hooked = False


def _finish_on_quit() -> None:
    """At application exit (the window has asked already): stop every training after its batch
    and wait for every job, so a model being saved or a file being written is finished."""
    for worker in list(_active):
        if isinstance(worker, TrainWorker):
            worker.stop()
    wait_for_all(300.0)


def pending() -> list[Worker]:
    """The workers started and not yet delivered that quitting waits for, oldest first."""
    return [w for w in _active if w.quit_waits]


def wait_for_all(timeout: float = 120.0) -> bool:
    """Wait until every started worker's function that quitting waits for has returned; False
    if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    for worker in pending():
        if not worker.wait(max(0.0, deadline - time.monotonic())):
            return False
    return True


def active_workers() -> int:
    """How many workers are running or waiting to deliver their last signal."""
    return len(_active)


# ----------------------------------------------------------------------------- training runs

_frozen = False


def freeze_imported_objects() -> None:
    """Import TensorFlow and Keras (on the calling thread) and exempt their objects from the
    cyclic garbage collector, once per process.

    A full collection stops every thread, the GUI's included; with TensorFlow's million or so
    long-lived objects each one took 140-270 ms, measured while training; frozen, about half.
    """
    global _frozen
    if not _frozen:
        from cnnstudio.core.tf import keras

        keras()
        gc.freeze()
        _frozen = True


def yield_cpu_to_gui_thread() -> None:
    """Put every thread of this process but the main (GUI) one under Linux's SCHED_BATCH policy.

    A batch thread keeps its full share of the CPU but does not preempt others when it wakes,
    and a waking normal thread preempts it: the GUI thread then gets a core as soon as it has an
    event to handle. Without it, TensorFlow's pools on a 2-core machine held the event loop up
    for tens of milliseconds at a time. New threads inherit the policy of their creator, and
    TensorFlow creates its pools lazily, so this runs again once training is under way.
    Elsewhere it does nothing.
    """
    if not hasattr(os, "SCHED_BATCH") or not os.path.isdir("/proc/self/task"):
        return
    gui = threading.main_thread().native_id
    try:
        tids = [int(t) for t in os.listdir("/proc/self/task")]
    except OSError:
        return
    for tid in tids:
        if tid == gui:
            continue
        try:
            if os.sched_getscheduler(tid) == os.SCHED_OTHER:
                os.sched_setscheduler(tid, os.SCHED_BATCH, os.sched_param(0))
        except OSError:  # the thread ended meanwhile, or the system refuses: not worth a failure
            pass


class TrainWorker(Worker):
    """Trains ``spec`` on ``split`` of ``index`` into ``run_dir``; start it with :meth:`start`.

    A :class:`Worker` that is the trainer's ``TrainState``. Signals besides the worker's:
    ``begin(BeginEvent)``; ``batch(BatchEvent)`` (at most ~10 a second, the core throttles
    them); ``epoch_end(EpochEvent)``; ``ended(EndEvent)`` when fitting is over (evaluation on the
    test split follows). A run ends with ``finished(RunResult)``, also after Stop (the result's
    reason is ``"cancelled"``, preceded by ``aborted()``), or ``errored``; then ``done()``.
    """

    begin = Signal(object)
    batch = Signal(object)
    epoch_end = Signal(object)
    ended = Signal(object)

    def __init__(self, index, split, spec, config, run_dir, registry, resume: bool = False,
                 fallback: str | None = None):
        super().__init__(None)
        self.what = f"training {getattr(run_dir, 'name', 'a run')}"
        self.index = index
        self.split = split
        self.spec = spec
        self.config = config
        self.run_dir = run_dir
        self.registry = registry
        self.resume = resume
        self.fallback = fallback  # how a resume gets round a damaged checkpoint (Trainer.run's fallback)
        self._threads_yielded = False

    def run_job(self) -> None:
        yield_cpu_to_gui_thread()
        try:
            if not _frozen:
                self.status.emit("loading TensorFlow")
            freeze_imported_objects()  # TensorFlow loads here, on this thread, never on the GUI's
            self.status.emit("preparing the data and the model")
            result = self._work()
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the window
            message, details = describe(exc)
            self.errored.emit(message, details)
        else:
            if getattr(result, "reason", None) == "cancelled":
                self.aborted.emit()
            self.finished.emit(result)

    def _work(self):
        from cnnstudio.core.training.trainer import Trainer

        trainer = Trainer(self.index, self.split, self.spec, self.config, self.run_dir, self.registry, state=self)
        return trainer.run(resume=self.resume, fallback=self.fallback)

    # -- the core's TrainState protocol (called on the training thread) -------------------

    def on_begin(self, event) -> None:
        yield_cpu_to_gui_thread()
        self.begin.emit(event)

    def on_batch(self, event) -> None:
        if not self._threads_yielded:  # TensorFlow's threads all exist once the first batch is done
            self._threads_yielded = True
            yield_cpu_to_gui_thread()
        self.batch.emit(event)

    def on_epoch_end(self, event) -> None:
        self.epoch_end.emit(event)

    def on_end(self, event) -> None:
        self.ended.emit(event)


class ExperimentWorker(TrainWorker):
    """Runs ``job(state)`` on its own thread: a hyperparameter search, a cross-validation or a rerun.

    ``state`` is this worker: the TrainState of whichever run is training, plus the search's and
    the cross-validation's own events, each relayed as a signal. ``finished`` carries what
    ``job`` returns; a stop reaches the running run through :meth:`should_stop`.
    """

    trial_started = Signal(int, object)  # number, params
    trial_ended = Signal(object)  # TrialRecord
    fold_started = Signal(int, int)  # fold (1-based), k
    fold_ended = Signal(int, object)  # fold, metrics

    def __init__(self, job, what: str = "an experiment"):
        super().__init__(None, None, None, None, None, None)
        self.job = job
        self.what = what

    def _work(self):
        return self.job(self)

    def on_trial_start(self, number: int, params: dict) -> None:
        self.trial_started.emit(number, params)

    def on_trial_end(self, record) -> None:
        self.trial_ended.emit(record)

    def on_fold_start(self, fold: int, k: int) -> None:
        self.fold_started.emit(fold, k)

    def on_fold_end(self, fold: int, metrics: dict) -> None:
        self.fold_ended.emit(fold, metrics)
