"""What the commands show on the terminal: JSON, progress bars, training progress, and Ctrl-C.

Every command reports through one terminal task state (:class:`TerminalTask`; training's
:class:`TerminalState` extends it): status lines and a progress bar per task go to standard
error (a bar only on an interactive terminal, so logs stay clean); results go to standard
output. The first Ctrl-C asks the work to stop where it can (after the batch or epoch, leaving
a run resumable; a scan or an export stops with nothing written); a second one aborts.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import threading


def print_json(obj) -> None:
    from cnnstudio.core.io.atomic import _json_default

    print(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default))


def progress_bar(desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm bar on an interactive terminal, nothing otherwise (logs stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)


# A task whose name ends so counts bytes (a download).
BYTES = " (bytes)"


def _unit(task: str) -> str:
    if task.endswith(BYTES):
        return "B"
    return "files" if task == "scanning" else "img"


class TerminalTask:
    """The command line's :class:`~cnnstudio.core.tasks.TaskState`, shared by every command:
    status lines and one progress bar per task on standard error, and ``should_stop()`` true once
    :func:`stop_on_ctrl_c` saw the first Ctrl-C. ``quiet`` (``--json``) shows nothing."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.stop = threading.Event()
        self.bar = None
        self.bar_task = None  # the task the bar shows (scanning, decoding, a download...)
        self._lock = threading.RLock()  # a download reports from a watcher thread

    def _say(self, text):
        text = "\n".join(printable(line) for line in str(text).split("\n"))  # a status naming a file stays its lines
        if not self.quiet:
            with self._lock:
                if self.bar is not None:
                    self.bar.write(text, file=sys.stderr)
                else:
                    print(text, file=sys.stderr)

    def on_status(self, message):
        self._say(message)

    def on_progress(self, task, done, total):
        if self.quiet:
            return
        with self._lock:
            if self.bar is None or self.bar_task != task:
                self.close()
                desc = task.removesuffix(BYTES)
                self.bar = progress_bar(desc[:1].upper() + desc[1:], total=total or None, unit=_unit(task))
                self.bar_task = task
                if task.endswith(BYTES):
                    self.bar.unit_scale = True
            if total:
                self.bar.total = total  # a download's size may become known late
            self.bar.n = done
            self.bar.refresh()
            if (total and done >= total) or total == done == 0:
                self.close()

    def should_stop(self):
        return self.stop.is_set()

    def close(self) -> None:
        """Take down the progress bar shown now, if any."""
        with self._lock:
            if self.bar is not None:
                self.bar.close()
                self.bar = None
                self.bar_task = None


def scan_folder(data_dir: str, state: TerminalTask):
    """Scan ``data_dir`` with a progress bar; the first Ctrl-C stops the scan (:class:`Cancelled`)."""
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.tasks import check_stop

    try:
        with stop_on_ctrl_c(state, at="batch of files"):
            index = scan_dataset(data_dir, state=state)
            check_stop(state, "stopped after scanning the dataset")  # a Ctrl-C as the last file was done
            return index
    finally:
        state.close()


# Files named when a scan left some out; the rest are counted.
LEFT_OUT_SHOWN = 5


def printable(text: str) -> str:
    """``text`` with control characters (ANSI escapes, newlines, ...) escaped, so a file or class
    name read from disk cannot move the cursor, recolour the terminal or split a message."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def say_left_out(index, state: TerminalTask, where: str) -> None:
    """On standard error: how many files the scan left out, the first few with their reasons,
    and ``where`` the whole list is kept."""
    left_out = [p for p in index.problems if p.scope == "file" and p.level == "error"]
    if not left_out:
        return
    n = len(left_out)
    state._say(f"{n} file{'s' if n != 1 else ''} left out (unreadable or not images); the whole list is "
               f"in {where}:")
    for problem in left_out[:LEFT_OUT_SHOWN]:
        state._say(f"  {printable(problem.path)}: {printable(problem.reason)}")
    if n > LEFT_OUT_SHOWN:
        state._say(f"  and {n - LEFT_OUT_SHOWN} more")


class TerminalState(TerminalTask):
    """Reports training on the terminal; the first Ctrl-C asks training to stop at the next batch."""

    def on_begin(self, e):
        self.epochs = e.epochs
        if e.phase == "finetune":
            self._say(f"Fine-tuning from epoch {e.initial_epoch + 1} to {e.epochs}")
        else:
            self._say(f"Training on {e.device}: {e.n_train} training and {e.n_val} validation images, "
                      f"{e.steps_per_epoch} batches per epoch")
        if e.summary:
            self._say(format_block_summary(e.summary))

    def on_batch(self, e):
        if self.quiet:
            return
        task = f"Epoch {e.epoch + 1}/{self.epochs}"
        with self._lock:
            if self.bar is None or self.bar_task != task:
                self.close()
                self.bar = progress_bar(task, total=e.steps, unit="batch")
                self.bar_task = task
            self.bar.n = e.batch
            post = {k: f"{v:.4f}" for k, v in e.logs.items() if k in ("loss", "accuracy")}
            if e.eta is not None:
                post["eta"] = f"{e.eta:.0f}s"
            self.bar.set_postfix(post, refresh=False)
            self.bar.refresh()

    def on_epoch_end(self, e):
        self.close()
        parts = [f"{k} {v:.4f}" for k, v in e.logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
        eta = f", eta {e.eta:.0f}s" if e.eta else ""
        self._say(f"Epoch {e.epoch + 1}/{self.epochs}: " + ", ".join(parts) + f" ({e.elapsed:.1f}s{eta})")

    def on_end(self, e):
        self.close()
        what = {"completed": "finished", "early_stopped": "stopped early", "cancelled": "stopped"}[e.reason]
        self._say(f"Training {what} after {e.epochs_run} epoch(s) in {e.elapsed:.1f}s")


def format_block_summary(rows: list[dict]) -> str:
    """The per-block table of trainable and frozen parameters."""
    width = max(len(r["block"]) for r in rows)
    lines = [f"  {'block':<{width}}  {'trainable':>11}  {'frozen':>11}  state"]
    for r in rows:
        lines.append(f"  {r['block']:<{width}}  {r['trainable']:>11,}  {r['frozen']:>11,}  {r['state']}")
    return "\n".join(lines)


@contextlib.contextmanager
def stop_on_ctrl_c(state: TerminalTask, at: str = "batch"):
    """The first Ctrl-C asks ``state`` to stop after this ``at`` (a run stays resumable); a
    second one aborts at once."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if state.stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        state._say(f"Stopping after this {at} (Ctrl-C again to abort)...")
        state.stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
