"""The one way a long core job reports what it does and hears that it should stop.

Every job that takes more than a moment (scanning a folder, generating the sample dataset,
fetching weights, computing features, predicting a folder, exporting, training) takes a
``state`` keyword: a :class:`TaskState`. The job calls ``state.on_status(message)`` when it
starts a new stage, ``state.on_progress(task, done, total)`` as it goes (``total`` may be 0 when
unknown), and checks ``state.should_stop()`` between units of work; when asked to stop before it
produced anything it raises :class:`~cnnstudio.core.errors.Cancelled`. The command line's
terminal, the window's worker and tests implement it; :class:`QuietTask` (the default) reports
nowhere and never stops. Orange's ``TaskState`` is the model.

Jobs throttle nothing themselves beyond what is cheap for them: a state that draws (a progress
bar, a terminal line) keeps only what it can show.
"""

from __future__ import annotations

from typing import Protocol

from cnnstudio.core.errors import Cancelled


class TaskState(Protocol):
    def on_status(self, message: str) -> None: ...
    def on_progress(self, task: str, done: int, total: int) -> None: ...
    def should_stop(self) -> bool: ...


class QuietTask:
    """Reports nowhere and never stops: the state of a job nobody watches."""

    def on_status(self, message: str) -> None:
        pass

    def on_progress(self, task: str, done: int, total: int) -> None:
        pass

    def should_stop(self) -> bool:
        return False


QUIET = QuietTask()


def quiet(state: TaskState | None) -> TaskState:
    """``state``, or a quiet one when there is none."""
    return QUIET if state is None else state


def check_stop(state: TaskState | None, what: str = "stopped") -> None:
    """Raise :class:`Cancelled` (saying ``what``) when the state asks to stop."""
    if state is not None and state.should_stop():
        raise Cancelled(what)


def reporter(state: TaskState | None, task: str):
    """A ``progress(done, total)`` callable reporting ``task`` to ``state`` (for code that
    counts with a plain callback, such as a download hook)."""
    state = quiet(state)

    def progress(done: int, total: int | None) -> None:
        state.on_progress(task, int(done), int(total or 0))

    return progress
