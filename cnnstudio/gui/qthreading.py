"""Work off the GUI thread, heard about through Qt signals: short jobs and training runs.

**Jobs.** A :class:`FunctionWorker` runs its function on a thread of its own with a ``signals``
QObject (the shape of superqt's ``thread_worker`` and Orange's ``ConcurrentMixin``). Not on Qt's
global thread pool: a pooled OS thread that runs Python again gets a fresh Python thread state
each time, and TensorFlow's eager ops that read variables (EfficientNet's ``Normalization``
layer, for one) crashed the process in the second job on such a thread. A Python thread keeps
one thread state for its life, and starting one costs well under a millisecond. Signals are
emitted from the worker thread and delivered queued on the GUI thread, so slots may touch
widgets. Every exception becomes an ``errored(message, details)`` signal: a :class:`StudioError`
speaks for itself, anything else carries its traceback in ``details``.

**Runs.** One training run on its own thread: the core's
:class:`~cnnstudio.core.training.trainer.Trainer` driven by a :class:`TrainWorker` that is the
trainer's ``TrainState``. The trainer calls the worker's ``on_*`` methods on the training
thread; each becomes a Qt signal, delivered queued on the GUI thread, so slots may touch
widgets. ``should_stop`` reads a ``threading.Event`` that :meth:`TrainWorker.stop` sets from the
GUI thread: the core's relay checks it after every batch, so Stop takes effect within a batch
and the core still saves the model trained so far. Every exception raised on the thread reaches
the window as ``errored(message, details)``; nothing dies silently.

A ``QThread`` with a worker object, rather than a pooled ``QRunnable``: a run takes minutes to
hours and must not hold one of the pool's few threads that scans and summaries need.
"""

from __future__ import annotations

import gc
import inspect
import os
import threading
import time

from PySide6.QtCore import QCoreApplication, QObject, QThread, Signal, Slot

from cnnstudio.gui.dialogs.errors import describe

# progress() is forwarded at most this often (seconds), plus the final call.
PROGRESS_INTERVAL = 0.1

# Workers that have started and whose result has not been delivered yet. Holding them here keeps
# the Python objects (and their signals) alive until the GUI thread has received the last signal.
_active: set[FunctionWorker] = set()


class WorkerSignals(QObject):
    started = Signal()
    progress = Signal(int, int)  # done, total
    finished = Signal(object)  # the function's return value
    errored = Signal(str, str)  # message, details


def _accepts_progress(fn) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return "progress" in params


class FunctionWorker:
    """``fn(*args, **kwargs)`` on a thread of its own; connect to :attr:`signals`, then :meth:`start`.

    When ``fn`` takes a ``progress`` keyword, it gets a ``progress(done, total)`` callback that
    emits :attr:`WorkerSignals.progress`, throttled to about ten a second.
    """

    def __init__(self, fn, *args, **kwargs):
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.signals = WorkerSignals()
        if _accepts_progress(fn) and "progress" not in kwargs:
            self.kwargs["progress"] = self._progress
        self._last_progress = 0.0

    def start(self) -> FunctionWorker:
        # Connected last, so the caller's slots have run before the worker is let go.
        self.signals.finished.connect(self._release)
        self.signals.errored.connect(self._release)
        _active.add(self)
        name = getattr(self.fn, "__name__", "job")
        self.thread = threading.Thread(target=self.run, name=f"cnnstudio-{name}", daemon=True)
        self.thread.start()
        return self

    def wait(self, timeout: float | None = None) -> bool:
        """Block until the function has returned (its signals may still be queued)."""
        thread = getattr(self, "thread", None)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def run(self) -> None:
        self.signals.started.emit()
        try:
            result = self.fn(*self.args, **self.kwargs)
        except BaseException as exc:  # noqa: BLE001 - every failure must reach the window
            message, details = describe(exc)
            self.signals.errored.emit(message, details)
        else:
            self.signals.finished.emit(result)

    def _progress(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_progress < PROGRESS_INTERVAL:
            return
        self._last_progress = now
        self.signals.progress.emit(int(done), int(total))

    def _release(self, *args) -> None:
        _active.discard(self)


def wait_for_all(timeout: float = 120.0) -> bool:
    """Wait until every started worker's function has returned; False if ``timeout`` passed first."""
    deadline = time.monotonic() + timeout
    for worker in list(_active):
        if not worker.wait(max(0.0, deadline - time.monotonic())):
            return False
    return True


def active_workers() -> int:
    """How many workers are running or waiting to deliver their result."""
    return len(_active)


# ----------------------------------------------------------------------------- training runs

# Workers whose thread may still run. Holding them here keeps the QThread alive even when the
# window that started it is gone; a QThread destroyed while running aborts the process.
_alive: set[TrainWorker] = set()
_quit_hooked = False
_frozen = False


def _stop_all_on_quit() -> None:
    """At application exit: stop every run after its current batch and wait until its model is saved."""
    for worker in list(_alive):
        worker.stop()
        worker.wait(120_000)


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


class TrainWorker(QObject):
    """Trains ``spec`` on ``split`` of ``index`` into ``run_dir``; start it with :meth:`start`.

    Signals: ``started()``; ``begin(BeginEvent)``; ``batch(BatchEvent)`` (at most ~10 a second,
    the core throttles them); ``epoch_end(EpochEvent)``; ``ended(EndEvent)`` when fitting is over
    (evaluation on the test split follows); ``status(str)``; then exactly one of
    ``finished(RunResult)`` (also after Stop: the result's reason is ``"cancelled"``, preceded by
    ``aborted()``) or ``errored(message, details)``.
    """

    started = Signal()
    begin = Signal(object)
    batch = Signal(object)
    epoch_end = Signal(object)
    ended = Signal(object)
    status = Signal(str)
    progress = Signal(str, int, int)  # task, done, total: work before the first epoch
    finished = Signal(object)
    errored = Signal(str, str)
    aborted = Signal()

    def __init__(self, index, split, spec, config, run_dir, registry, resume: bool = False):
        super().__init__()
        self.index = index
        self.split = split
        self.spec = spec
        self.config = config
        self.run_dir = run_dir
        self.registry = registry
        self.resume = resume
        self._stop = threading.Event()
        self._threads_yielded = False
        self._thread: QThread | None = None

    # -- control, from the GUI thread ----------------------------------------------------

    def start(self) -> QThread:
        """Move to a new thread and train there. Returns the thread (it quits when the run ends)."""
        if self._thread is not None:
            raise RuntimeError("a TrainWorker runs once")
        thread = QThread()
        thread.setObjectName("cnnstudio-training")
        self.moveToThread(thread)
        thread.started.connect(self.run)
        self._thread = thread
        global _quit_hooked
        if not _quit_hooked:
            QCoreApplication.instance().aboutToQuit.connect(_stop_all_on_quit)
            _quit_hooked = True
        _alive.add(self)
        thread.start()
        return thread

    def stop(self) -> None:
        """Ask the run to stop after the current batch; the model trained so far is saved."""
        self._stop.set()

    def is_running(self) -> bool:
        return self._thread is not None and self._thread.isRunning()

    def wait(self, msecs: int = 60_000) -> bool:
        """Block until the thread has ended (True) or ``msecs`` passed (False)."""
        if self._thread is None:
            return True
        done = self._thread.wait(msecs)
        if done:
            _alive.discard(self)
        return done

    # -- the run, on the training thread -------------------------------------------------

    @Slot()
    def run(self) -> None:
        self.started.emit()
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
            if result.reason == "cancelled":
                self.aborted.emit()
            self.finished.emit(result)
        finally:
            # Back to the GUI thread, so the worker may be dropped there once the thread is gone.
            self.moveToThread(QCoreApplication.instance().thread())
            self._thread.quit()

    def _work(self):
        from cnnstudio.core.training.trainer import Trainer

        trainer = Trainer(self.index, self.split, self.spec, self.config, self.run_dir, self.registry, state=self)
        return trainer.run(resume=self.resume)

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

    def on_status(self, message: str) -> None:
        self.status.emit(message)

    def on_progress(self, task: str, done: int, total: int) -> None:
        self.progress.emit(task, done, total)

    def should_stop(self) -> bool:
        return self._stop.is_set()


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

    def __init__(self, job):
        super().__init__(None, None, None, None, None, None)
        self.job = job

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
