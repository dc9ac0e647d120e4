"""Disks that fail: a small tmpfs that fills up, a read-only folder, for the write-failure tests.

Where this process may mount (root, and the system lets it), the faults are real: a tmpfs of a
few megabytes, filled by a filler file, and a tmpfs remounted read-only. Elsewhere a full disk is
a patched ``open`` whose files under the folder raise ENOSPC once the folder's budget of bytes is
spent (what the studio writes goes through Python's file objects), and a read-only folder is a
``chmod``: which stops everyone but root, so root without mounting skips those tests.

Every mount is unmounted when its context ends, whatever happened inside.
"""

from __future__ import annotations

import builtins
import contextlib
import errno
import functools
import io
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CHUNK = 64 << 10


@functools.lru_cache(maxsize=1)
def can_mount() -> bool:
    """Whether this process can mount a tmpfs (asked once, by trying). CNNSTUDIO_TEST_NO_MOUNT=1
    takes the other path, as on a machine that does not let it mount."""
    if os.environ.get("CNNSTUDIO_TEST_NO_MOUNT") == "1":
        return False
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return False
    folder = tempfile.mkdtemp(prefix="cnnstudio-mount-check-")
    try:
        if _run("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", folder).returncode != 0:
            return False
        _unmount(folder)
        return True
    finally:
        with contextlib.suppress(OSError):
            os.rmdir(folder)


def is_root() -> bool:
    return hasattr(os, "geteuid") and os.geteuid() == 0


READ_ONLY_SKIP = "root without permission to mount: a chmod'ed folder does not stop root"


def _run(*command) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def _unmount(folder) -> None:
    if _run("umount", str(folder)).returncode != 0:
        _run("umount", "-l", str(folder))  # something still holds a file there: detach it


class SmallDisk:
    """A folder on a small disk. ``fill()`` leaves no room (or ``room`` bytes); ``free()`` gives
    the room back. With a tmpfs the disk is real; without, see the module's docstring."""

    def __init__(self, folder: Path, real: bool):
        self.folder = Path(folder)
        self.real = real
        self.filler = self.folder / ".filler"
        self.budget: int | None = None  # the patched writer's bytes left; None: no limit

    def fill(self, room: int = 0) -> None:
        if not self.real:
            self.budget = room
            return
        with contextlib.suppress(OSError), open(self.filler, "ab") as f:
            block = b"\0" * CHUNK
            while True:
                f.write(block)
                f.flush()
        with contextlib.suppress(OSError), open(self.filler, "ab") as f:  # the last partial pages
            while True:
                f.write(b"\0" * 4096)
                f.flush()
        if room:
            size = self.filler.stat().st_size
            os.truncate(self.filler, max(0, size - room))

    def free(self) -> None:
        self.budget = None
        with contextlib.suppress(FileNotFoundError):
            self.filler.unlink()

    def spend(self, n: int) -> None:
        """The patched writer's accounting: ENOSPC once the budget is gone."""
        if self.budget is None:
            return
        if n > self.budget:
            self.budget = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.budget -= n


class _LimitedFile:
    """A file object whose writes draw on a :class:`SmallDisk`'s budget."""

    def __init__(self, f, disk: SmallDisk):
        self._f = f
        self._disk = disk

    def write(self, data):
        self._disk.spend(len(data))
        return self._f.write(data)

    def fileno(self):  # no fileno: shutil and friends then copy through write()
        raise io.UnsupportedOperation("fileno")

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()

    def __iter__(self):
        return iter(self._f)


def patch_writes(disk: SmallDisk, monkeypatch=None):
    """Route ``open`` for writing under ``disk.folder`` through its budget (the no-mount fault).
    With ``monkeypatch`` the patch ends with the test; without, it lasts for the process."""
    real_open = builtins.open
    root = str(disk.folder.resolve())

    def limited_open(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)
        if isinstance(file, (str, os.PathLike)) and any(c in mode for c in "wax+") \
                and os.path.abspath(os.fspath(file)).startswith(root):
            return _LimitedFile(f, disk)
        return f

    for target, name in ((builtins, "open"), (io, "open")):
        if monkeypatch is not None:
            monkeypatch.setattr(target, name, limited_open)
        else:
            setattr(target, name, limited_open)


@contextlib.contextmanager
def small_disk(folder: Path, size: str = "3m", monkeypatch=None):
    """A :class:`SmallDisk` at ``folder``: a tmpfs of ``size`` where this process can mount,
    else ``folder`` as it is with the patched writer (``monkeypatch`` given: in this process)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if can_mount():
        result = _run("mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder))
        assert result.returncode == 0, result.stderr
        try:
            yield SmallDisk(folder, real=True)
        finally:
            _unmount(folder)
        return
    disk = SmallDisk(folder, real=False)
    if monkeypatch is not None:
        patch_writes(disk, monkeypatch)
    yield disk


@contextlib.contextmanager
def read_only(folder: Path):
    """``folder`` (holding what it holds now) made read-only for the block: a tmpfs remounted
    read-only where this process can mount, else a chmod (not for root: see READ_ONLY_SKIP).
    Yields the reason a write there fails with, as the studio words it."""
    import pytest

    folder = Path(folder)
    if can_mount():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as keep:
            saved = Path(keep) / "saved"
            if folder.exists():
                os.rename(folder, saved)  # kept aside while the tmpfs covers the folder's name
            folder.mkdir(parents=True)
            try:
                assert _run("mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(folder)).returncode == 0
                if saved.exists():
                    for item in saved.iterdir():
                        _copy(item, folder / item.name)
                assert _run("mount", "-o", "remount,ro", str(folder)).returncode == 0
                yield "read-only file system"
            finally:
                _unmount(folder)
                os.rmdir(folder)
                if saved.exists():
                    os.rename(saved, folder)
        return
    if is_root():
        pytest.skip(READ_ONLY_SKIP)
    modes = {}
    for p in [folder, *folder.rglob("*")]:
        if p.is_dir():
            modes[p] = p.stat().st_mode
            p.chmod(0o555)
    try:
        yield "permission denied"
    finally:
        for p, mode in modes.items():
            p.chmod(mode)


def _copy(src: Path, dst: Path) -> None:
    if src.is_dir():
        shutil.copytree(src, dst)
    else:
        shutil.copy2(src, dst)
