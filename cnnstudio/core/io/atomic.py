"""Atomic writes: a file is either its old content or its new content, never half of each.

Every file the studio writes for a user goes through here: a temp file in the same folder, what
was written checked (its size; a model file's structure), the file fsynced, ``os.replace``, the
folder fsynced. Keras' own ``model.save`` writes in place, so models go through
:func:`atomic_save_model`, which also keeps HDF5's C library away from the disk (see there).

A write that fails raises :class:`~cnnstudio.core.errors.WriteFailed`, one line naming the file
and the cause ("PATH: no space left on device", "PATH: read-only file system"), with the temp
file removed and the previous file untouched.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from cnnstudio.core.errors import StudioError, WriteFailed

# What a failed write says, by errno: lower-case, as a user reads it after the file's name.
WRITE_REASONS = {
    errno.ENOSPC: "no space left on device",
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large",
}
# TensorFlow's file system and HDF5 say why in their message, not always with an errno.
_PHRASES = {
    "no space left on device": errno.ENOSPC,
    "read-only file system": errno.EROFS,
    "permission denied": errno.EACCES,
    "disk quota exceeded": errno.EDQUOT,
    "database or disk is full": errno.ENOSPC,  # SQLite's (a search's study)
}

# What a full or read-only disk looks like (unlike "permission denied", never a file not readable).
_DISK_ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EDQUOT)

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
PDF_END = b"%%EOF"


def write_failure(path: str | os.PathLike, exc: BaseException) -> WriteFailed | None:
    """The :class:`WriteFailed` that ``exc``, raised while writing ``path``, stands for; None when
    it is no failed write (a bug, a value that cannot be written) and should go on as it is."""
    if isinstance(exc, WriteFailed):
        return exc
    code = exc.errno if isinstance(exc, OSError) else None
    if code in WRITE_REASONS:
        return WriteFailed(path, WRITE_REASONS[code], code)
    text = str(exc).lower()
    for phrase, code in _PHRASES.items():
        if phrase in text:
            return WriteFailed(path, WRITE_REASONS[code], code)
    return None


def disk_failure(path: str | os.PathLike, exc: BaseException) -> WriteFailed | None:
    """For an error of code that reads as well as writes (TensorFlow's file operations in a
    training): a full or read-only disk, as :class:`WriteFailed` naming ``path``; anything else,
    a file it could not read included, is None."""
    if isinstance(exc, StudioError):
        return None
    failure = write_failure(path, exc)
    return failure if failure is not None and failure.errno in _DISK_ERRNOS else None


def write_failed(path: str | os.PathLike, exc: OSError) -> WriteFailed:
    """``exc``, an OSError of the writing itself (creating, syncing, renaming), as one line."""
    failure = write_failure(path, exc)
    if failure is not None:
        return failure
    reason = (exc.strerror or "").lower() or " ".join(str(exc).split()) or type(exc).__name__
    return WriteFailed(path, reason, exc.errno)


def _incomplete(path: Path, folder: Path, what: str) -> WriteFailed:
    """A written file that fails its check: a full disk when the folder has no room left (some
    writers, Qt's and HDF5's, lose the error), else what is missing."""
    with contextlib.suppress(OSError, AttributeError):
        stats = os.statvfs(folder)
        if stats.f_bavail == 0:
            return WriteFailed(path, WRITE_REASONS[errno.ENOSPC], errno.ENOSPC)
    return WriteFailed(path, f"the written file is incomplete ({what})")


def _remove(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _fsync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable. Where a folder cannot be opened (Windows) or synced
    (some file systems refuse), there is nothing more to do."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno in (errno.EIO, errno.ENOSPC):
            raise
    finally:
        os.close(fd)


def make_folder(path: str | os.PathLike) -> Path:
    """``path`` and its parents, created if need be; :class:`WriteFailed` when they cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_failed(path, exc) from None
    return path


Check = Callable[[Path], "str | None"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None, check: Check | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed.

    ``check(tmp)`` looks at what was written before it replaces anything: it returns what is
    wrong (a few words) or None. A failed write, in the block or here, is :class:`WriteFailed`
    naming ``path``; any other error goes on unchanged."""
    path = Path(path)
    make_folder(path.parent)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
        os.close(fd)
    except OSError as exc:
        raise write_failed(path, exc) from None
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    except BaseException as exc:
        _remove(tmp_path)
        failure = write_failure(path, exc) if isinstance(exc, Exception) else None
        if failure is None:
            raise
        raise failure from exc
    try:
        problem = check(tmp_path) if check is not None else None
        if problem:
            raise _incomplete(path, path.parent, problem)
        fd = os.open(tmp_path, os.O_RDWR)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        usual_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
        _fsync_folder(path.parent)
    except BaseException as exc:
        _remove(tmp_path)
        if isinstance(exc, OSError):
            raise write_failed(path, exc) from exc
        raise


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A new folder beside ``path``; on success it replaces ``path`` (an earlier one of the same
    kind: the caller decides), else it is removed. Failures as :func:`atomic_path`'s."""
    path = Path(path)
    make_folder(path.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise write_failed(path, exc) from None
    try:
        yield tmp
        usual_mode(tmp, 0o777)
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync_folder(path.parent)
    except BaseException as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        failure = write_failure(path, exc) if isinstance(exc, Exception) else None
        if failure is None:
            raise
        raise failure from exc


def usual_mode(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the permissions a newly created file (0o666) or folder (0o777) gets under the
    umask: temporary files are private, but a user's models and reports must not be."""
    mask = os.umask(0o022)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~mask)


def _size_is(expected: int) -> Check:
    def check(tmp: Path) -> str | None:
        size = tmp.stat().st_size
        return None if size == expected else f"{size:,} of {expected:,} bytes"

    return check


def _both(*checks: Check | None) -> Check:
    def check(tmp: Path) -> str | None:
        return next((p for p in (c(tmp) for c in checks if c is not None) if p), None)

    return check


def atomic_write_bytes(path: str | os.PathLike, data: bytes, check: Check | None = None) -> None:
    """Write ``data`` to ``path``; the temp file must hold all of it (and pass ``check``)."""
    with atomic_path(path, suffix=None, check=_both(_size_is(len(data)), check)) as tmp:
        with open(tmp, "wb") as f:
            f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default) + "\n")


def atomic_write_csv(path: str | os.PathLike, header: list[str], rows: list[list]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    atomic_write_text(path, buf.getvalue())


def keras_archive_problem(path: Path) -> str | None:
    """What a ``.keras`` file lacks: its zip directory (the end of the file) must list the
    model's config and weights. Reads the directory only, not the weights."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, OSError):
        return "not a whole zip archive"
    if "config.json" not in names:
        return "no config.json in the archive"
    if not any(n.startswith("model.weights.") for n in names):
        return "no weights in the archive"
    return None


def hdf5_problem(path: Path) -> str | None:
    with open(path, "rb") as f:
        return None if f.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE else "no HDF5 signature"


def pdf_problem(data: bytes) -> str | None:
    """A PDF ends with ``%%EOF`` (and perhaps a line break); one cut short does not."""
    return None if data.rstrip().endswith(PDF_END) else "no %%EOF at its end"


def atomic_save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model (``.keras``) or its weights (``.weights.h5``) atomically, checked.

    The weights file is built in memory and written here: HDF5 writing to a full disk leaves
    its file open with unwritten metadata, and the library then crashes the process when it
    closes that file at exit (a segmentation fault after the error). A ``.keras`` archive is
    written by Python's own file object (Keras builds its HDF5 part in memory)."""
    path = Path(path)
    if path.name.endswith(".weights.h5"):
        from cnnstudio.core.tf.savefile import weights_h5_bytes

        atomic_write_bytes(path, weights_h5_bytes(model), check=hdf5_problem)
        return
    check = keras_archive_problem if path.suffix == ".keras" else None
    with atomic_path(path, suffix=path.suffix, check=check) as tmp:
        model.save(tmp, overwrite=True)


def read_json(path: str | os.PathLike):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _json_default(obj):
    # NumPy scalars and arrays appear in metrics; write them as plain JSON.
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
