"""What a run trained on, in one digest: every file of its split, its class and its bytes.

A split records file paths, which is not enough to reproduce a run: a photo replaced under the
same name, or moved to another class folder, trains another model. The fingerprint covers
path, class and content of every file the split uses, so "run again" can tell the same data
from changed data, and say which files changed. The per-file content hashes are the ones the
bottleneck cache already uses (:func:`cnnstudio.core.io.hashing.content_hashes`), so one kind of
hash identifies a file everywhere.
"""

from __future__ import annotations

import hashlib

from cnnstudio.core.data.dataset import DatasetIndex, Split
from cnnstudio.core.io.hashing import content_hashes

# How each file's bytes are hashed (by content_hashes); recorded so a later change is visible.
FILE_HASH = "blake2b-128"


def dataset_fingerprint(index: DatasetIndex, split: Split) -> dict:
    """``{"files": N, "sha256": ..., "file_hash": ..., "contents": {path: hash}}`` of the split's files.

    ``sha256`` digests the sorted ``(relative path, class, content hash)`` of every file in
    train, validation and test; ``contents`` keeps each file's hash so a changed file can be named.
    """
    used = sorted(set(split.train) | set(split.val) | set(split.test))
    paths = [index.items[i].path for i in used]
    classes = [index.class_names[index.items[i].label] for i in used]
    hashes = content_hashes(index.paths(used))
    return {
        "files": len(used),
        "sha256": _digest(zip(paths, classes, hashes)),
        "file_hash": FILE_HASH,
        "contents": dict(zip(paths, hashes)),
    }


def _digest(entries) -> str:
    h = hashlib.sha256()
    for path, cls, digest in sorted(entries):
        h.update(f"{path}\t{cls}\t{digest}\n".encode())
    return h.hexdigest()


def fingerprint_changes(recorded: dict, index: DatasetIndex) -> list[tuple[str, str]]:
    """The recorded files that are gone or differ now, as ``(relative path, what changed)``.

    The class is part of the path (its first folder), so a file moved to another class is
    reported as missing under its old path.
    """
    contents = recorded.get("contents") or {}
    position = {item.path: i for i, item in enumerate(index.items)}
    present = [path for path in contents if path in position]
    now = dict(zip(present, content_hashes(index.paths(position[p] for p in present))))
    changes = []
    for path, digest in sorted(contents.items()):
        if path not in now:
            changes.append((path, "missing, or no longer a usable image"))
        elif now[path] != digest:
            changes.append((path, "content changed"))
    return changes
