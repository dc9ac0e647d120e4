"""Digests of files' bytes: which files a run trained on, which weights a base was given.

:func:`content_hashes` fingerprints a dataset's files (the run's record, the bottleneck cache's
key); :func:`file_digest` checks a weights file against its published hash.
"""

from __future__ import annotations

import hashlib
import os


def content_hashes(paths: list[str]) -> list[str]:
    """A BLAKE2 digest of each file's bytes ("" for an unreadable file)."""
    out = []
    for path in paths:
        h = hashlib.blake2b(digest_size=16)
        try:
            with open(path, "rb") as f:
                while block := f.read(1 << 20):
                    h.update(block)
            out.append(h.hexdigest())
        except OSError:
            out.append("")
    return out


def file_digest(path: str | os.PathLike, algorithm: str = "sha256", chunk: int = 1 << 20) -> str:
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()
