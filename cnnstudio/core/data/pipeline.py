"""The tf.data input pipeline: a fresh random order each epoch, decoding as training goes, a cache.

Each epoch visits the images in a new seeded random order over the whole list, whatever the
cache: the order is a shuffle of indices (a few bytes each, so the whole set fits in the
buffer), and each index is then decoded or read back from the cache. No batch depends on how
the files are sorted on disk.

The first epoch trains while images are decoded: an index whose image is not cached yet is
decoded (plain JPEG and PNG by TensorFlow's own decoders, everything else by Pillow; see
:mod:`cnnstudio.core.io.fastdecode`) and stored;
from then on it is read from the cache, one ``uint8`` row per index, in memory when the run's
images fit in :data:`MEMORY_CACHE_BUDGET`, in one reserved file on disk otherwise (read through
the page cache, outside the process' memory).

A file that turns out to be bad is skipped and recorded, never the end of an epoch. The
pipeline yields ``uint8`` RGB batches; the model's ``float32`` input casts them inside the
compiled step, and the backbone's own preprocessing is the model's first layer.
"""

from __future__ import annotations

import mmap
import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnstudio.core.data import CACHE_MODES
from cnnstudio.core.errors import ImageError
from cnnstudio.core.io import fastdecode
from cnnstudio.core.io.images import decoded_array, load_rgb, probe
from cnnstudio.core.tf.order import Passes, visiting_order  # noqa: F401 - visiting_order is the pipeline's too
from cnnstudio.core.tf import tf

# Decoded images are cached in RAM up to this many bytes (uint8), on disk beyond it.
MEMORY_CACHE_BUDGET = 256 << 20

_FETCH_CHUNK = 64  # indices whose cached images are read in one call

# What the pipeline knows of each image: not yet decoded, decoded (and cached), unusable.
# (Decoded but not kept: a write to the cache failed; decoded again next time, not a bad file.)
_UNSEEN, _READY, _BAD, _LOOSE = 0, 1, 2, 3


@dataclass
class BadFileRecorder:
    """Collects files that fail to decode inside the pipeline (thread-safe, one entry per file)."""

    problems: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, path: str, reason: str) -> None:
        with self._lock:
            self.problems.setdefault(path, reason)

    def as_list(self) -> list[dict]:
        with self._lock:
            return [{"path": p, "reason": r} for p, r in sorted(self.problems.items())]


def cache_mode_for(n_images: int, image_size: int, mode: str = "auto") -> str:
    """Resolve ``auto`` to ``memory`` or ``disk`` from the size of the decoded images."""
    if mode not in CACHE_MODES:
        raise ValueError(f"cache must be one of {', '.join(CACHE_MODES)}, not {mode!r}")
    if mode != "auto":
        return mode
    return "memory" if n_images * image_size * image_size * 3 <= MEMORY_CACHE_BUDGET else "disk"


def probe_all(paths: list[str], workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cnnstudio.core.io.images.probe` of every path (headers only, in threads): kinds and sizes."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        found = list(pool.map(probe, paths, chunksize=256))
    kinds = np.array([k for k, _ in found], np.int32)
    sizes = np.array([n for _, n in found], np.int64)
    return kinds, sizes


class _Rows:
    """The decoded images of one list, one fixed-size ``uint8`` row per index, and what is known
    of each index (unseen, ready, bad, or decoded but not kept).

    In memory the rows are one NumPy array (its pages are only taken as rows are written); on
    disk they are one file of ``n`` rows, reserved in full when the cache is made (a disk too
    full for it is known before training starts, not in the middle of an epoch) and read and
    written at each row's offset with ``preadv``/``pwrite``, which leave the interpreter lock
    while the kernel copies. Rows read from the file go through the page cache, not the
    process' memory. Both are called once per chunk of indices, never per image: a Python call
    from a tf.data thread costs about as much as decoding a small image.
    """

    def __init__(self, n: int, size: int, mode: str, folder: str | None):
        self.shape = (size, size, 3)
        self.row = size * size * 3
        self.state = np.zeros(n, np.int8)
        self.array = None
        self.fd = None
        self._blank = None
        if mode == "memory":
            # Anonymous memory in huge pages where the system allows: taking the memory page by
            # page as rows are first written costs more than decoding on some virtual machines.
            self._map = mmap.mmap(-1, max(1, n * self.row))
            if hasattr(mmap, "MADV_HUGEPAGE"):
                self._map.madvise(mmap.MADV_HUGEPAGE)
            self.array = np.frombuffer(self._map, np.uint8, count=n * self.row).reshape(n, *self.shape)
        else:
            path = os.path.join(folder, "images.u8")
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
            except OSError as exc:
                raise OSError(exc.errno, f"the image cache cannot be written in {folder} ({exc.strerror})") from None
            try:
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, max(1, n * self.row))
                else:  # pragma: no cover - platforms without posix_fallocate
                    os.ftruncate(fd, n * self.row)
            except OSError as exc:
                os.close(fd)
                os.unlink(path)
                raise OSError(exc.errno, f"no room for the image cache ({_size_text(n * self.row)}) in {folder} "
                              f"({exc.strerror or exc})") from None
            self.fd = fd

    def fetch(self, indices):
        """``(state, rows)`` of a chunk of indices: each ready index's cached image, zeros elsewhere."""
        state = self.state[indices]
        ready = state == _READY
        if self.array is not None and ready.all():
            return state, self.array[indices]
        if not ready.any():  # a first pass: one shared block of zeros, never written
            if self._blank is None or len(self._blank) < len(indices):
                self._blank = np.zeros((len(indices), *self.shape), np.uint8)
            return state, self._blank[:len(indices)]
        rows = np.zeros((len(indices), *self.shape), np.uint8)
        if self.array is not None:
            rows[ready] = self.array[indices[ready]]
            return state, rows
        for j in np.flatnonzero(ready):
            i = int(indices[j])
            if os.preadv(self.fd, [rows[j]], i * self.row) != self.row:  # only if the file was cut
                state[j] = self.state[i] = _LOOSE
        return state, rows

    def store(self, images, indices, fresh):
        """Keep the freshly decoded images of one batch; returns ``indices`` (a dependency)."""
        for j in np.flatnonzero(fresh):
            i = int(indices[j])
            if self.array is not None:
                self.array[i] = images[j]
                self.state[i] = _READY
                continue
            try:
                kept = os.pwrite(self.fd, images[j], i * self.row) == self.row
            except OSError:
                kept = False
            self.state[i] = _READY if kept else _LOOSE  # not kept: decoded again next time
        return indices

    def mark_bad(self, index: int) -> None:
        self.state[index] = _BAD

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        self.array = None  # the map itself is freed with the last tensor still viewing it


def _size_text(nbytes: int) -> str:
    return f"{nbytes / (1 << 30):.1f} GB" if nbytes >= 1 << 30 else f"{nbytes / (1 << 20):.0f} MB"


_NOT_KNOWN = (fastdecode.KIND_PIL, -1, 0, 0)  # (kind, bytes, width, height) of a file the scan did not see


def _entry(known) -> tuple:
    """A ``file_kinds`` entry as ``(kind, bytes, width, height)``: older callers give the first two."""
    known = tuple(known or ())
    return known + _NOT_KNOWN[len(known):]


class _Images:
    """One list of files as the pipeline sees it: their kinds, and their cache when there is one."""

    def __init__(self, pipe: ImagePipeline, paths: list[str], labels: list[int], mode: str, name: str):
        T = tf()
        self.pipe = pipe
        self.paths = list(paths)
        self.mode = mode
        n = len(paths)
        known = pipe.file_kinds
        widths = heights = np.zeros(n, np.int64)  # not known: a JPEG's header gives its scale
        if known is not None:
            found = np.array([_entry(known.get(p)) for p in self.paths], np.int64).reshape(-1, 4)
            kinds, sizes, widths, heights = found[:, 0].astype(np.int32), found[:, 1], found[:, 2], found[:, 3]
        else:
            kinds, sizes = probe_all(self.paths)
        branches = fastdecode.branches(kinds, sizes, widths, heights, pipe.image_size)
        self.tensors = (T.constant(self.paths, T.string), T.constant(list(labels), T.int32), T.constant(branches))
        # Without a cache, the images that decoded are tallied batch by batch instead.
        self.seen = np.zeros(n, bool)
        self.rows = None
        if mode != "none":
            self.rows = _Rows(n, pipe.image_size, mode, pipe._cache_folder(name) if mode == "disk" else None)

    # -- inside the graph -------------------------------------------------------------------

    def element(self, index, state=None, row=None):
        """``(image, label, index, ok, fresh)`` of one index: decoded, or from the cache when
        ``state`` (what :meth:`_Rows.fetch` said of it) is ready; ``fresh`` when decoded."""
        T = tf()
        paths, labels, branches = self.tensors
        size = self.pipe.image_size
        branch = T.gather(branches, index)
        if state is None:
            image, ok = self._decode(index, T.gather(paths, index), branch)
            fresh = T.constant(True)
        else:  # one switch for the cache's answer and the decoders: a cached image reads no file
            cached, bad = fastdecode.BRANCHES, fastdecode.BRANCHES + 1
            branch = T.where(T.equal(state, _READY), cached, T.where(T.equal(state, _BAD), bad, branch))
            image, ok = self._decode(index, T.gather(paths, index), branch, more=(
                lambda: (row, T.constant(True)),
                lambda: (row, T.constant(False)),  # not tried again
            ))
            fresh = T.less(branch, cached)
        image.set_shape((size, size, 3))
        return image, T.gather(labels, index), T.cast(index, T.int32), ok, fresh

    def _decode(self, index, path, branch, more=()):
        """One file's ``(image, ok)``: TensorFlow's decoder for a plain file, Pillow for every other."""
        T = tf()
        size = self.pipe.image_size

        def pillow():
            image, ok = T.numpy_function(self._decode_with_pillow, [index, path], [T.uint8, T.bool], stateful=True)
            image.set_shape((None, None, 3))
            ok.set_shape(())
            return fastdecode.resize_uint8(image, size), ok

        return fastdecode.decode_branch(path, branch, size, pillow, more)

    def _decode_with_pillow(self, index, path_bytes):
        image, ok = self.pipe._decode_with_pillow(path_bytes)
        if not ok and self.rows is not None:
            self.rows.mark_bad(int(index))
        return image, ok

    def tally(self, indices):
        """Without a cache: note the images of one batch as decoded (batches come in order)."""
        self.seen[indices] = True
        return indices

    def end_of_pass(self):
        """Called after every image of a pass: a file TensorFlow failed on is recorded by name."""
        if self.rows is None:
            missing, self.seen[:] = np.flatnonzero(~self.seen), False
        else:
            missing = np.flatnonzero(self.rows.state == _UNSEEN)
        for i in missing:
            path = self.paths[i]
            try:
                load_rgb(path)
                reason = "corrupt image data (TensorFlow's decoder rejected it)"
            except ImageError as exc:
                reason = exc.reason
            self.pipe.recorder.record(path, reason)
        return False

    def close(self):
        if self.rows is not None:
            self.rows.close()


class ImagePipeline:
    """Builds ``tf.data`` datasets over lists of files for one image size.

    One instance per training run: it owns the disk cache folder (removed by :meth:`close`),
    the caches of the lists it was given (a list given again, e.g. in fine-tuning's second
    phase, is read from its cache), and the recorder of bad files met while reading.

    ``file_kinds`` maps paths to :func:`cnnstudio.core.io.images.probe`'s answer and the image's
    width and height where a scan already knows them (the scale a JPEG is decoded at comes from them); other paths are probed when their dataset is built.
    """

    def __init__(self, image_size: int, cache: str = "auto", cache_dir: str | os.PathLike | None = None,
                 file_kinds: dict[str, tuple[int, ...]] | None = None):
        self.image_size = int(image_size)
        self.cache = cache
        self.file_kinds = file_kinds
        self.recorder = BadFileRecorder()
        self.notes: list[str] = []  # one line each, for the run's status (e.g. no room for the cache)
        self._cache_root = Path(cache_dir) if cache_dir else None
        self._tmp: Path | None = None
        self._lists: dict[tuple, _Images] = {}
        cache_mode_for(0, self.image_size, cache)  # validates the mode early

    def _decode_with_pillow(self, path_bytes):
        path = path_bytes.decode("utf-8")
        try:
            return decoded_array(path, self.image_size), True
        except ImageError as exc:
            self.recorder.record(path, exc.reason)
        except Exception as exc:  # never let one file abort an epoch
            self.recorder.record(path, f"unreadable ({type(exc).__name__}: {exc})")
        return np.zeros((1, 1, 3), np.uint8), False

    def _cache_folder(self, name: str) -> str:
        root = self._cache_root or Path(tempfile.gettempdir())
        try:
            if self._tmp is None:
                root.mkdir(parents=True, exist_ok=True)
                self._tmp = Path(tempfile.mkdtemp(prefix="cnnstudio-cache-", dir=root))
            folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._tmp))
        except OSError as exc:
            raise OSError(exc.errno, f"the image cache cannot be written in {root} ({exc.strerror})") from None
        return folder.as_posix()

    def dataset(
        self,
        paths: list[str],
        labels: list[int] | None = None,
        *,
        batch_size: int = 32,
        shuffle: bool = False,
        seed: int = 0,
        name: str = "data",
        with_index: bool = False,
        cache: bool = True,
        shard: tuple[int, int, int] | None = None,
        passes: Passes | None = None,
    ):
        """A batched dataset of ``(images, labels)`` (or ``(images, labels, index)``).

        ``cache=False`` for data read once (evaluation): caching it would only cost memory.
        ``shuffle`` visits the images in a new order each epoch, the same orders for the same
        ``seed`` whatever the cache. ``index`` is each image's position in ``paths``, so
        predictions can be matched to files even when a bad file was skipped.

        ``shard=(first, count, total)`` (``total`` replicas training one model, ``batch_size``
        each): of each run of ``batch_size * total`` images in the visiting order, this dataset
        keeps the ``count`` slices of ``batch_size`` from slice ``first`` on, and decodes only
        those, up to the last whole global batch; the replicas together see the batches one
        device would (a file that fails to decode shifts the slices by one image), the same
        order for the same ``seed``.
        """
        T = tf()
        n = len(paths)
        labels = list(labels) if labels is not None else [0] * n
        mode = cache_mode_for(n, self.image_size, self.cache) if cache else "none"
        key = (name, mode, tuple(paths), tuple(labels))
        images = self._lists.get(key)
        if images is None:
            try:
                images = _Images(self, paths, labels, mode, name)
            except OSError as exc:
                if mode != "disk":
                    raise
                # A disk too full (or not writable) for the cache: the run still trains.
                self.notes.append(f"{exc.strerror or exc}: images are decoded every epoch instead")
                mode = "none"
                images = _Images(self, paths, labels, mode, name)
            self._lists[key] = images
        order = visiting_order(n, shuffle, seed, passes)
        if shard is not None:
            first, count, total = shard
            group = T.constant(batch_size, T.int64)
            limit = T.constant(n // (batch_size * total) * batch_size * total, T.int64)  # whole global batches

            def mine(position, _index):
                replica = (position // group) % total
                return (replica >= first) & (replica < first + count) & (position < limit)

            order = order.enumerate().filter(mine).map(lambda _position, index: index)
        size = self.image_size
        rows = images.rows
        if rows is None:
            decoded = order.map(images.element, num_parallel_calls=T.data.AUTOTUNE, deterministic=True)
        else:
            def fetch(chunk):
                state, cached = T.numpy_function(rows.fetch, [chunk], [T.int8, T.uint8], stateful=True)
                state.set_shape(chunk.shape)
                cached.set_shape((None, size, size, 3))
                return chunk, state, cached

            # The cache is read a chunk of indices at a time (one Python call per chunk, not per image).
            fetched = order.batch(_FETCH_CHUNK).map(fetch, num_parallel_calls=T.data.AUTOTUNE, deterministic=True)
            decoded = fetched.unbatch().map(images.element, num_parallel_calls=T.data.AUTOTUNE, deterministic=True)
        ds = decoded.ignore_errors(log_warning=False).filter(lambda image, label, index, ok, fresh: ok)
        ds = ds.batch(batch_size)
        if rows is None:  # without a cache a bad file is tried again (and recorded once)
            def keep(image, label, index, ok, fresh):
                seen = T.numpy_function(images.tally, [index], T.int32, stateful=True)
                seen.set_shape(index.shape)
                return image, label, seen
        else:
            def keep(image, label, index, ok, fresh):
                kept = T.numpy_function(rows.store, [image, index, fresh], T.int32, stateful=True)
                kept.set_shape(index.shape)
                return image, label, kept

        ds = ds.map(keep)  # in order, one batch at a time

        def at_end(*_):
            flag = T.numpy_function(images.end_of_pass, [], T.bool, stateful=True)
            flag.set_shape(())
            return flag

        # Taken after every batch of the pass has come out: names the files TensorFlow failed on.
        side = self.image_size
        closing = T.data.Dataset.from_tensors(
            (T.zeros((0, side, side, 3), T.uint8), T.zeros([0], T.int32), T.zeros([0], T.int32))
        ).filter(at_end)
        if shard is None:  # a shard leaves the other replicas' images unseen on purpose
            ds = ds.concatenate(closing)
        ds = ds.map(lambda image, label, index: (image, label, index) if with_index else (image, label))
        return ds.prefetch(T.data.AUTOTUNE)

    def close(self) -> None:
        for images in self._lists.values():
            images.close()
        self._lists.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
