"""Lazy access to TensorFlow and Keras.

Importing TensorFlow takes seconds, so nothing imports it at module level: the window and
``cnnstudio --help`` appear first. Call :func:`tf` / :func:`keras` where it is needed.
"""

from __future__ import annotations

import functools
import os


@functools.cache
def tf():
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow

    return tensorflow


@functools.cache
def keras():
    tf()
    import keras as _keras

    # Custom layers must be registered before any bundle is loaded.
    from cnnstudio.core import layers  # noqa: F401

    return _keras


def device_description() -> str:
    """The compute device training will use, e.g. ``GPU: NVIDIA H100`` or ``CPU (2 cores)``."""
    tensorflow = tf()
    gpus = tensorflow.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tensorflow.config.experimental.get_device_details(gpus[0]).get("device_name")
        except Exception:  # details are best effort; the device is still a GPU
            name = None
        extra = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
        return f"GPU: {name or gpus[0].name}{extra}"
    return f"CPU ({os.cpu_count()} cores)"
