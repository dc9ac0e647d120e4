"""The order in which a pass of a dataset visits its elements, the same for the same seed and
pass however many iterators Keras makes: shared by the image pipeline and the bottleneck
features' dataset."""

from __future__ import annotations

import threading

import numpy as np

from cnnstudio.core.tf.runtime import tf


class Passes:
    """Which pass over the data the next one is: counted when a pass draws its order, so a
    first iterator Keras makes and drops (``fit`` under a distribution strategy takes a batch
    of one to build the model) is put right by :meth:`restart` before training begins."""

    def __init__(self):
        self._next = 0
        self._lock = threading.Lock()

    def take(self) -> int:
        with self._lock:
            n, self._next = self._next, self._next + 1
            return n

    def restart(self, at: int = 0) -> None:
        with self._lock:
            self._next = at


def visiting_order(n: int, shuffle: bool, seed: int, passes: Passes | None = None):
    """The indices ``0..n-1`` as each pass of a dataset visits them: when ``shuffle``, pass k
    visits a seeded permutation of the whole list drawn from ``(seed, k)`` alone."""
    T = tf()
    if not shuffle:
        return T.data.Dataset.range(n)
    passes = passes or Passes()

    def permutation():
        k = passes.take()
        return np.random.default_rng([int(seed) % 2**32, k]).permutation(n).astype(np.int64)

    def draw(_):
        order = T.numpy_function(permutation, [], T.int64, stateful=True)
        order.set_shape([n])
        return order

    return T.data.Dataset.from_tensors(T.constant(0, T.int64)).map(draw).unbatch()
