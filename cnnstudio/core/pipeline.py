"""The tf.data input pipeline: parallel decode and resize, an optional cache, shuffle, batch, prefetch.

Images are decoded by the one loader (:mod:`cnnstudio.core.images`) inside the pipeline, so a
file that turns out to be bad while training is skipped and recorded instead of aborting the
epoch. The pipeline yields ``uint8`` RGB batches; the model's ``float32`` input casts them inside
the compiled step (a quarter of the bytes through the queues, no cast on tf.data's threads), and
the backbone's own preprocessing is the model's first layer
(:class:`cnnstudio.core.layers.Preprocess`), which keeps the saved model complete from image to
class.

Memory stays bounded: the dataset is never held as float32. The cache keeps decoded, resized
``uint8`` images, in memory when they fit in :data:`MEMORY_CACHE_BUDGET`, on disk otherwise.
In memory they are one tensor, decoded before the first epoch, and each batch is one ``gather``
of shuffled indices: as fast as training from arrays already in memory.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnstudio.core.errors import Cancelled, ImageError
from cnnstudio.core.images import load_array
from cnnstudio.core.tf import tf

# Decoded images are cached in RAM up to this many bytes (uint8), on disk beyond it.
MEMORY_CACHE_BUDGET = 256 << 20
# The shuffle buffer holds at most this many bytes of images.
SHUFFLE_BUFFER_BYTES = 64 << 20

CACHE_MODES = ("auto", "memory", "disk", "none")
# Files decoded per step when the whole dataset is read into memory.
PRELOAD_BATCH = 64


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


class ImagePipeline:
    """Builds ``tf.data`` datasets over lists of files for one image size.

    One instance per training run: it owns the disk cache folder (removed by :meth:`close`) and
    the recorder of bad files met while reading.
    """

    def __init__(
        self,
        image_size: int,
        cache: str = "auto",
        cache_dir: str | os.PathLike | None = None,
        progress=None,
        should_stop=None,
    ):
        self.image_size = int(image_size)
        self.progress = progress  # progress(done, total) while images are decoded into memory
        self.should_stop = should_stop  # () -> bool: stop decoding into memory (raises Cancelled)
        self.cache = cache
        self.recorder = BadFileRecorder()
        self._cache_root = Path(cache_dir) if cache_dir else None
        self._tmp: Path | None = None
        cache_mode_for(0, self.image_size, cache)  # validates the mode early

    def _load(self, path_bytes):
        path = path_bytes.decode("utf-8")
        try:
            return load_array(path, self.image_size), True
        except ImageError as exc:
            self.recorder.record(path, exc.reason)
        except Exception as exc:  # never let one file abort an epoch
            self.recorder.record(path, f"unreadable ({type(exc).__name__}: {exc})")
        return np.zeros((self.image_size, self.image_size, 3), np.uint8), False

    def _cache_file(self, name: str) -> str:
        if self._tmp is None:
            root = self._cache_root or Path(tempfile.gettempdir())
            root.mkdir(parents=True, exist_ok=True)
            self._tmp = Path(tempfile.mkdtemp(prefix="cnnstudio-cache-", dir=root))
        return str(self._tmp / name)

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

        ``index`` is each image's position in ``paths``, so predictions can be matched to files
        even when a bad file was skipped.
        """
        T = tf()
        n = len(paths)
        labels = list(labels) if labels is not None else [0] * n
        mode = cache_mode_for(n, self.image_size, self.cache) if cache else "none"
        if mode == "memory":
            return self._in_memory(paths, labels, batch_size, shuffle, seed, with_index)
        ds = self._decoded(paths, labels)
        if mode == "disk":
            ds = ds.cache(self._cache_file(name))
        if shuffle:
            per_image = self.image_size * self.image_size * 3
            buffer = max(1, min(n, SHUFFLE_BUFFER_BYTES // per_image))
            ds = ds.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
        ds = ds.batch(batch_size)
        if not with_index:
            ds = ds.map(lambda image, label, index: (image, label))
        return ds.prefetch(T.data.AUTOTUNE)

    def _decoded(self, paths: list[str], labels: list[int]):
        """Unbatched ``(uint8 image, label, index)`` of the files that decode, in order, decoded in parallel."""
        T = tf()
        size = self.image_size
        ds = T.data.Dataset.from_tensor_slices(
            (T.constant(list(paths), T.string), T.constant(labels, T.int32), T.range(len(paths), dtype=T.int32))
        )

        def load(path, label, index):
            image, ok = T.numpy_function(self._load, [path], [T.uint8, T.bool], stateful=False)
            image.set_shape((size, size, 3))
            ok.set_shape(())
            return image, label, index, ok

        ds = ds.map(load, num_parallel_calls=T.data.AUTOTUNE, deterministic=True)
        ds = ds.filter(lambda image, label, index, ok: ok)
        return ds.map(lambda image, label, index, ok: (image, label, index))

    def decode_all(self, paths: list[str], labels: list[int] | None = None, progress=None, should_stop=None):
        """Decode every file once into ``(images uint8 (m, s, s, 3), labels, indices)`` of the good ones.

        ``progress(done, total)`` is called as batches of files finish. Bad files are recorded.
        :class:`Cancelled` is raised as soon as ``should_stop()`` turns true.
        """
        n = len(paths)
        labels = list(labels) if labels is not None else [0] * n
        size = self.image_size
        images = np.empty((n, size, size, 3), np.uint8)
        got_labels = np.empty(n, np.int32)
        got_index = np.empty(n, np.int32)
        m = 0
        done = 0
        for image, label, index in self._decoded(paths, labels).batch(PRELOAD_BATCH).as_numpy_iterator():
            k = len(index)
            images[m:m + k], got_labels[m:m + k], got_index[m:m + k] = image, label, index
            m += k
            done = int(index[-1]) + 1
            if progress is not None:
                progress(done, n)
            if should_stop is not None and should_stop():
                raise Cancelled("stopped while decoding images")
        if progress is not None and done != n:
            progress(n, n)
        return images[:m], got_labels[:m], got_index[:m]

    def _in_memory(self, paths, labels, batch_size, shuffle, seed, with_index):
        """Decode everything now, then serve batches by gathering shuffled indices from one tensor.

        One ``gather`` per batch costs far less than shuffling and batching image by image, so
        later epochs run as fast as training from arrays already in memory.
        """
        T = tf()
        images, labels, indices = self.decode_all(paths, labels, self.progress, self.should_stop)
        m = len(labels)
        arrays = (T.convert_to_tensor(images), T.convert_to_tensor(labels), T.convert_to_tensor(indices))
        del images
        order = T.data.Dataset.range(m)
        if shuffle:
            order = order.shuffle(max(m, 1), seed=seed, reshuffle_each_iteration=True)
        order = order.batch(batch_size)
        whole = T.data.Dataset.from_tensors(arrays).repeat()

        def gather(batch, data):
            x, y, i = (T.gather(a, batch) for a in data)
            return (x, y, i) if with_index else (x, y)

        return T.data.Dataset.zip((order, whole)).map(gather).prefetch(T.data.AUTOTUNE)

    def close(self) -> None:
        if self._tmp is not None:
            shutil.rmtree(self._tmp, ignore_errors=True)
            self._tmp = None
