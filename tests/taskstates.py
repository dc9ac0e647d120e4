"""Task states for the tests of long core jobs: one that records, one that stops part-way."""

from __future__ import annotations

from cnnstudio.core.tasks import QuietTask


class Recording(QuietTask):
    """Records every status and every ``(task, done, total)``; asks to stop once ``stop_after``
    progress reports (of any task, or of ``stop_task`` only) were seen, or from the
    ``stop_at_ask``-th time it is asked on."""

    def __init__(self, stop_after: int | None = None, stop_task: str | None = None,
                 stop_at_ask: int | None = None):
        self.statuses: list[str] = []
        self.progress: list[tuple[str, int, int]] = []
        self.stop_after = stop_after
        self.stop_task = stop_task
        self.stop_at_ask = stop_at_ask
        self.asked = 0  # how many times should_stop() was asked

    def on_status(self, message):
        self.statuses.append(message)

    def on_progress(self, task, done, total):
        self.progress.append((task, done, total))

    def should_stop(self):
        self.asked += 1
        if self.stop_at_ask is not None and self.asked >= self.stop_at_ask:
            return True
        seen = [p for p in self.progress if self.stop_task is None or p[0] == self.stop_task]
        return self.stop_after is not None and len(seen) >= self.stop_after

    def of(self, task: str) -> list[tuple[int, int]]:
        """The ``(done, total)`` reports of ``task``."""
        return [(d, t) for k, d, t in self.progress if k == task]


class Callbacks(QuietTask):
    """A state that hands progress to ``progress(done, total)`` and status to ``status(message)``
    (how tests written for the callbacks the jobs once took still check the same values)."""

    def __init__(self, progress=None, status=None):
        self._progress, self._status = progress, status

    def on_status(self, message):
        if self._status is not None:
            self._status(message)

    def on_progress(self, task, done, total):
        if self._progress is not None:
            self._progress(done, total)
