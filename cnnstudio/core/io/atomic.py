"""Atomic writes: a file is either its old content or its new content, never half of each.

Every file the studio writes for a user goes through here (temp file in the same folder,
fsync, ``os.replace``). Keras' own ``model.save`` writes in place, so models go through
:func:`atomic_save_model`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path``, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix or ".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        usual_mode(tmp_path, 0o666)
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def usual_mode(path: str | os.PathLike, mode: int = 0o666) -> None:
    """Give ``path`` the permissions a newly created file (0o666) or folder (0o777) gets under the
    umask: temporary files are private, but a user's models and reports must not be."""
    mask = os.umask(0o022)
    os.umask(mask)
    with contextlib.suppress(OSError):
        os.chmod(path, mode & ~mask)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
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


def atomic_save_model(model, path: str | os.PathLike) -> None:
    """Save a Keras model (``.keras`` or ``.weights.h5``) atomically."""
    path = Path(path)
    suffix = ".weights.h5" if path.name.endswith(".weights.h5") else path.suffix
    with atomic_path(path, suffix=suffix) as tmp:
        if suffix == ".weights.h5":
            model.save_weights(tmp, overwrite=True)
        else:
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
