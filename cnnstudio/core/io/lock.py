"""One owner at a time for a run folder or a search folder.

Two processes training into one run folder used to both finish and leave one run's settings
beside the other's metrics and model; two searches on one folder ran the same trial. Whatever
writes a folder's records (a training, a resume, a search, a cross-validation, a rerun; from the
command line or the window) holds the folder's lock while it works, and a second one is refused
at once in one line naming the holder: "RUN: being trained by process 4242 since 14:02".

The lock is an advisory ``flock`` on ``FOLDER/.cnnstudio-lock`` (``msvcrt`` on Windows): the
operating system releases it when the holder's process ends however it ends, so a lock left by
a killed process is simply taken over. The file also says who holds it (process, host, since
when, doing what), for the refusal; once released it is emptied, and an empty or stale file
means nothing.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import write_failed

LOCK_NAME = ".cnnstudio-lock"

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
    import msvcrt

_BUSY = {errno.EAGAIN, errno.EACCES, getattr(errno, "EWOULDBLOCK", errno.EAGAIN), getattr(errno, "EDEADLK", -1)}
_FAR = 2**31 - 2  # msvcrt locks a byte range: one far beyond the holder's note


class FolderBusy(StudioError):
    """Another process (or another job of this one) holds the folder."""


def _try_lock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    else:
        os.lseek(fd, _FAR, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)


def _unlock(fd: int) -> None:
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_UN)
    else:
        os.lseek(fd, _FAR, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _holder(path: Path) -> str:
    """Who holds the lock, as the lock file says; "another process" when it says nothing usable."""
    try:
        note = json.loads(path.read_text(encoding="utf-8") or "null")
        pid, host, since = int(note["pid"]), str(note["host"]), float(note["since"])
    except (OSError, ValueError, TypeError, KeyError):
        return "another process"
    when = time.strftime("%H:%M" if time.time() - since < 86_400 else "%Y-%m-%d %H:%M", time.localtime(since))
    where = "" if host == socket.gethostname() else f" on {host}"
    if pid == os.getpid() and not where:
        return f"another job of this process since {when}"
    return f"process {pid}{where} since {when}"


@contextmanager
def hold_folder(folder, doing: str = "trained"):
    """Hold ``folder`` (created if need be) while the block runs; :class:`FolderBusy` at once when
    another holds it. ``doing`` says what the holder does, for a refusal ("trained", "searched")."""
    folder = Path(folder)
    path = folder / LOCK_NAME
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise write_failed(folder, exc) from None
    try:
        try:
            _try_lock(fd)
        except OSError as exc:
            if exc.errno in _BUSY:
                raise FolderBusy(f"{folder}: being {doing} by {_holder(path)}; wait until it ends or choose "
                                 "another folder") from None
            raise StudioError(f"{path}: cannot lock ({exc.strerror or exc})") from None
        note = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time(), "doing": doing})
        try:
            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, note.encode())
        except OSError:
            pass  # the note only names the holder in a refusal; the lock holds without it
        try:
            yield
        finally:
            try:
                os.ftruncate(fd, 0)
            except OSError:
                pass
            _unlock(fd)
    finally:
        os.close(fd)


def refuse_if_held(folder, doing: str = "trained") -> None:
    """:class:`FolderBusy` now when another holds ``folder`` (before any check that would read its
    records half-way through another's work); nothing is created."""
    if (Path(folder) / LOCK_NAME).exists():
        with hold_folder(folder, doing):
            pass
