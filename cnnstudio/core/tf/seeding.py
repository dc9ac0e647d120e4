"""Randomness per run, not per process.

Keras draws the seed of every initializer and random layer it builds (weights, dropout,
augmentation) from Python's ``random`` module at construction when none is given; from then on
each layer keeps a generator of its own. So a run is reproducible when nothing else draws from
``random`` between its seeding and the end of its model building, and it leaves the rest of the
process alone when the process's generators are put back afterwards. :func:`seeded` does both:
under the one building lock, which every model build and model load in the studio takes, it
seeds Python's and NumPy's generators and restores them on exit. Nothing sets TensorFlow's global
seed: the studio's ``tf.data`` shuffles pass seeds of their own, so their order depends on the
run's seed alone, never on what ran before in the process.

The lock is also what keeps graph building single-threaded: the window builds a model summary
in one worker while a run builds its model on another thread, and once, with both at it, Keras
failed inside a layer call ("Only input tensors may be passed as positional arguments"). Keras
does not promise thread-safe graph building; one build at a time costs well under a second to
a few seconds, and fitting is never held.
"""

from __future__ import annotations

import random
import threading
from contextlib import contextmanager

import numpy as np

BUILD_LOCK = threading.RLock()


@contextmanager
def seeded(seed: int):
    """Build under ``seed``: Python's and NumPy's generators seeded, put back as they were after."""
    with BUILD_LOCK:
        python_state = random.getstate()
        numpy_state = np.random.get_state()
        random.seed(seed)
        np.random.seed(int(seed) % 2**32)
        try:
            yield
        finally:
            random.setstate(python_state)
            np.random.set_state(numpy_state)


def fresh_seed() -> int:
    """A seed for work that wants new draws each time (a preview), from the OS, not from ``random``."""
    import secrets

    return secrets.randbits(31)


def load_model(path):
    """A saved Keras model (``safe_mode``), loaded under the build lock: loading builds layers,
    and random layers draw their seeds as they are made. The file's ``config.json`` is checked
    first (:func:`cnnstudio.core.tf.modelfile.check_model_file`): a file holding a ``Lambda`` or
    another layer that runs code it names is refused (ModelFileError) before Keras reads it."""
    from cnnstudio.core.tf import keras
    from cnnstudio.core.tf.modelfile import check_model_file

    check_model_file(path)
    with BUILD_LOCK:
        return keras().saving.load_model(path, safe_mode=True)
