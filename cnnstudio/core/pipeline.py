"""The tf.data input pipeline: a fresh random order each epoch, decoding as training goes, a cache.

Each epoch visits the images in a new seeded random order over the whole list, whatever the
cache: the order is a shuffle of indices (a few bytes each, so the whole set fits in the
buffer), and each index is then decoded or read back from the cache. No batch depends on how
the files are sorted on disk.

The first epoch trains while images are decoded: an index whose image is not cached yet is
decoded (plain JPEG and PNG by TensorFlow's own decoders, everything else by Pillow; see
:mod:`cnnstudio.core.fastdecode`) and stored; from then on it is read from the cache, one
``uint8`` image per index, in memory when the run's images fit in :data:`MEMORY_CACHE_BUDGET`,
as one file per image on disk otherwise (read by TensorFlow, outside the process' memory).

A file that turns out to be bad is skipped and recorded, never the end of an epoch. The
pipeline yields ``uint8`` RGB batches; the model's ``float32`` input casts them inside the
compiled step, and the backbone's own preprocessing is the model's first layer.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnstudio.core import fastdecode
from cnnstudio.core.errors import ImageError
from cnnstudio.core.images import decoded_array, load_rgb, probe
from cnnstudio.core.tf import tf

# Decoded images are cached in RAM up to this many bytes (uint8), on disk beyond it.
MEMORY_CACHE_BUDGET = 256 << 20

CACHE_MODES = ("auto", "memory", "disk", "none")

# What the pipeline knows of each image: not yet decoded, decoded (and cached), unusable.
_UNSEEN, _READY, _BAD = 0, 1, 2


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


def visiting_order(n: int, shuffle: bool, seed: int):
    """The indices ``0..n-1`` as each pass of a dataset visits them: a new seeded permutation of
    the whole list per pass when ``shuffle`` (indices are small: the buffer holds them all)."""
    T = tf()
    order = T.data.Dataset.range(n)
    if shuffle:
        order = order.shuffle(max(n, 1), seed=seed, reshuffle_each_iteration=True)
    return order


def probe_all(paths: list[str], workers: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """:func:`cnnstudio.core.images.probe` of every path (headers only, in threads): kinds and sizes."""
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="probe") as pool:
        found = list(pool.map(probe, paths, chunksize=256))
    kinds = np.array([k for k, _ in found], np.int32)
    sizes = np.array([n for _, n in found], np.int64)
    return kinds, sizes


class _Images:
    """One list of files as the pipeline sees it: their kinds, their state and their cache."""

    def __init__(self, pipe: ImagePipeline, paths: list[str], labels: list[int], mode: str, name: str):
        T = tf()
        self.pipe = pipe
        self.paths = list(paths)
        self.mode = mode
        n = len(paths)
        size = pipe.image_size
        known = pipe.file_kinds
        if known is not None:
            found = [known.get(p, (fastdecode.KIND_PIL, -1)) for p in self.paths]
            kinds = np.array([k for k, _ in found], np.int32).reshape(-1)
            sizes = np.array([b for _, b in found], np.int64).reshape(-1)
        else:
            kinds, sizes = probe_all(self.paths)
        self.tensors = (
            T.constant(self.paths, T.string), T.constant(list(labels), T.int32),
            T.constant(kinds), T.constant(sizes),
        )
        # A cache must know inside the graph which images it holds. Without one, the images that
        # decoded are tallied batch by batch in Python instead: no variable writes per image.
        self.state = None
        self.seen = np.zeros(n, bool)
        if mode != "none":
            self.state = T.Variable(T.zeros([n], T.int8), trainable=False, name=f"{name}_state")
        self.memory = None
        self.folder = None
        if mode == "memory":
            self.memory = T.Variable(T.zeros([n, size, size, 3], T.uint8), trainable=False, name=f"{name}_images")
        elif mode == "disk":
            self.folder = pipe._cache_folder(name)

    # -- inside the graph -------------------------------------------------------------------

    def element(self, index):
        """``(image, label, index, ok)`` of one index: from the cache, or decoded (and stored)."""
        T = tf()
        paths, labels, kinds, sizes = self.tensors
        size = self.pipe.image_size
        path = T.gather(paths, index)

        def cached():
            if self.memory is not None:
                return self.memory.sparse_read(index), T.constant(True)
            data = T.io.read_file(self._cache_path(index))
            return T.reshape(T.io.parse_tensor(data, T.uint8), (size, size, 3)), T.constant(True)

        def fresh():
            image, ok = self._decode(path, T.gather(kinds, index), T.gather(sizes, index))
            stored = []
            if self.memory is not None:
                stored.append(T.cond(ok, lambda: self._store_memory(index, image), lambda: T.constant(False)))
            elif self.folder is not None:
                stored.append(T.cond(ok, lambda: self._store_file(index, image), lambda: T.constant(False)))
            with T.control_dependencies(stored + [image]):  # marked ready once decoded, never before
                mark = T.where(ok, T.constant(_READY, T.int8), T.constant(_BAD, T.int8))
                self.state.scatter_update(T.IndexedSlices(mark[None], index[None]))
            return T.identity(image), T.identity(ok)

        if self.state is None:
            image, ok = self._decode(path, T.gather(kinds, index), T.gather(sizes, index))
        else:
            image, ok = T.cond(T.equal(self.state.sparse_read(index), _READY), cached, fresh)
        image.set_shape((size, size, 3))
        return image, T.gather(labels, index), T.cast(index, T.int32), ok

    def _decode(self, path, kind, nbytes):
        T = tf()
        size = self.pipe.image_size
        plain = T.not_equal(kind, fastdecode.KIND_PIL)
        data = T.cond(plain, lambda: T.io.read_file(path), lambda: T.constant(b""))

        def fast():
            return fastdecode.decode_plain(data, kind, size), T.constant(True)

        def slow():
            image, ok = T.numpy_function(self.pipe._decode_with_pillow, [path], [T.uint8, T.bool], stateful=False)
            image.set_shape((None, None, 3))
            ok.set_shape(())
            return fastdecode.resize_uint8(image, size), ok

        return T.cond(T.logical_and(plain, fastdecode.looks_whole(data, kind, nbytes)), fast, slow)

    def _store_memory(self, index, image):
        T = tf()
        self.memory.scatter_update(T.IndexedSlices(image[None], index[None]))
        return T.constant(True)

    def _store_file(self, index, image):
        T = tf()
        T.io.write_file(self._cache_path(index), T.io.serialize_tensor(image))
        return T.constant(True)

    def _cache_path(self, index):
        T = tf()
        return T.strings.join([self.folder, "/", T.strings.as_string(index), ".t"])

    def tally(self, indices):
        """Without a cache: note the images of one batch as decoded (batches come in order)."""
        self.seen[indices] = True
        return indices

    def end_of_pass(self, state):
        """Called after every image of a pass: a file TensorFlow failed on is recorded by name."""
        if self.state is None:
            missing, self.seen[:] = np.flatnonzero(~self.seen), False
        else:
            missing = np.flatnonzero(state == _UNSEEN)
        for i in missing:
            path = self.paths[i]
            try:
                load_rgb(path)
                reason = "corrupt image data (TensorFlow's decoder rejected it)"
            except ImageError as exc:
                reason = exc.reason
            self.pipe.recorder.record(path, reason)
        return False


class ImagePipeline:
    """Builds ``tf.data`` datasets over lists of files for one image size.

    One instance per training run: it owns the disk cache folder (removed by :meth:`close`),
    the caches of the lists it was given (a list given again, e.g. in fine-tuning's second
    phase, is read from its cache), and the recorder of bad files met while reading.

    ``file_kinds`` maps paths to :func:`cnnstudio.core.images.probe`'s answer where a scan
    already knows it; other paths are probed when their dataset is built.
    """

    def __init__(self, image_size: int, cache: str = "auto", cache_dir: str | os.PathLike | None = None,
                 file_kinds: dict[str, tuple[int, int]] | None = None):
        self.image_size = int(image_size)
        self.cache = cache
        self.file_kinds = file_kinds
        self.recorder = BadFileRecorder()
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
        if self._tmp is None:
            root = self._cache_root or Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix="cnnstudio-cache-", dir=root))
        folder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self._tmp))
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
    ):
        """A batched dataset of ``(images, labels)`` (or ``(images, labels, index)``).

        ``cache=False`` for data read once (evaluation): caching it would only cost memory.
        ``shuffle`` visits the images in a new order each epoch, the same orders for the same
        ``seed`` whatever the cache. ``index`` is each image's position in ``paths``, so
        predictions can be matched to files even when a bad file was skipped.
        """
        T = tf()
        n = len(paths)
        labels = list(labels) if labels is not None else [0] * n
        mode = cache_mode_for(n, self.image_size, self.cache) if cache else "none"
        key = (name, mode, tuple(paths), tuple(labels))
        images = self._lists.get(key)
        if images is None:
            images = self._lists[key] = _Images(self, paths, labels, mode, name)
        state = images.state

        order = visiting_order(n, shuffle, seed)
        if mode != "none":  # without a cache a bad file is tried again (and recorded once)
            order = order.filter(lambda i: T.not_equal(state.sparse_read(i), _BAD))
        decoded = order.map(images.element, num_parallel_calls=T.data.AUTOTUNE, deterministic=True)
        ds = decoded.ignore_errors(log_warning=False).filter(lambda image, label, index, ok: ok).batch(batch_size)
        if state is None:
            def tally(image, label, index, ok):
                seen = T.numpy_function(images.tally, [index], T.int32, stateful=True)
                seen.set_shape(index.shape)
                return image, label, seen, ok

            ds = ds.map(tally)  # in order, one batch at a time

        def at_end(*_):
            now = state.read_value() if state is not None else T.zeros([0], T.int8)
            flag = T.numpy_function(images.end_of_pass, [now], T.bool, stateful=True)
            flag.set_shape(())
            return flag

        # Taken after every batch of the pass has come out: names the files TensorFlow failed on.
        side = self.image_size
        closing = T.data.Dataset.from_tensors(
            (T.zeros((0, side, side, 3), T.uint8), T.zeros([0], T.int32), T.zeros([0], T.int32), T.zeros([0], T.bool))
        ).filter(at_end)
        ds = ds.concatenate(closing)
        ds = ds.map(lambda image, label, index, ok: (image, label, index) if with_index else (image, label))
        return ds.prefetch(T.data.AUTOTUNE)

    def close(self) -> None:
        self._lists.clear()
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
