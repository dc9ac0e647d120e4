"""Run a function off the GUI thread and hear about it through Qt signals.

A :class:`FunctionWorker` is a ``QRunnable`` with a ``signals`` QObject (the shape of superqt's
``thread_worker`` and Orange's ``ConcurrentMixin``). Signals are emitted from the worker thread
and delivered queued on the GUI thread, so slots may touch widgets. Every exception becomes an
``errored(message, details)`` signal: a :class:`StudioError` speaks for itself, anything else
carries its traceback in ``details``.
"""

from __future__ import annotations

import inspect
import time

from PySide6.QtCore import QObject, QRunnable, QThreadPool, Signal

from cnnstudio.gui.errors import describe

# progress() is forwarded at most this often (seconds), plus the final call.
PROGRESS_INTERVAL = 0.1

# Workers wait on I/O and on TensorFlow more than on Python; a pool as small as the CPU count
# (2 here) would let one long job starve a scan or a model summary.
MIN_POOL_THREADS = 4

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


class FunctionWorker(QRunnable):
    """``fn(*args, **kwargs)`` on the global thread pool; connect to :attr:`signals`, then :meth:`start`.

    When ``fn`` takes a ``progress`` keyword, it gets a ``progress(done, total)`` callback that
    emits :attr:`WorkerSignals.progress`, throttled to about ten a second.
    """

    def __init__(self, fn, *args, **kwargs):
        super().__init__()
        self.setAutoDelete(False)
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.signals = WorkerSignals()
        if _accepts_progress(fn) and "progress" not in kwargs:
            self.kwargs["progress"] = self._progress
        self._last_progress = 0.0

    def start(self) -> FunctionWorker:
        pool = QThreadPool.globalInstance()
        if pool.maxThreadCount() < MIN_POOL_THREADS:
            pool.setMaxThreadCount(MIN_POOL_THREADS)
        # Connected last, so the caller's slots have run before the worker is let go.
        self.signals.finished.connect(self._release)
        self.signals.errored.connect(self._release)
        _active.add(self)
        pool.start(self)
        return self

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


def active_workers() -> int:
    """How many workers are running or waiting to deliver their result."""
    return len(_active)
