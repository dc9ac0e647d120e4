"""Run a function off the GUI thread and hear about it through Qt signals.

A :class:`FunctionWorker` runs its function on a thread of its own with a ``signals`` QObject
(the shape of superqt's ``thread_worker`` and Orange's ``ConcurrentMixin``). Not on Qt's
global thread pool: a pooled OS thread that runs Python again gets a fresh Python thread state
each time, and TensorFlow's eager ops that read variables (EfficientNet's ``Normalization``
layer, for one) crashed the process in the second job on such a thread. A Python thread keeps
one thread state for its life, and starting one costs well under a millisecond. Signals are emitted from the worker thread
and delivered queued on the GUI thread, so slots may touch widgets. Every exception becomes an
``errored(message, details)`` signal: a :class:`StudioError` speaks for itself, anything else
carries its traceback in ``details``.
"""

from __future__ import annotations

import inspect
import threading
import time

from PySide6.QtCore import QObject, Signal

from cnnstudio.gui.errors import describe

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
