"""Lazy access to TensorFlow and Keras.

Importing TensorFlow takes seconds, so nothing imports it at module level: the window and
``cnnstudio --help`` appear first. Call :func:`tf` / :func:`keras` where it is needed.

:mod:`~cnnstudio.core.tf.runtime` starts TensorFlow; :mod:`~cnnstudio.core.tf.layers` holds the
custom layer every studio model contains; :func:`keras` is Keras with that layer registered,
so a saved model loads (``safe_mode=True``) wherever Keras is taken from here.
"""

from __future__ import annotations

from cnnstudio.core.tf.runtime import device_description, import_keras, tensorflow_backend, tf

__all__ = ["device_description", "keras", "tensorflow_backend", "tf"]

_registered: list = []


def keras():
    """Keras, with the studio's custom layers registered (bundles need them to load)."""
    if not _registered:
        module = import_keras()
        from cnnstudio.core.tf import layers  # noqa: F401  (importing it registers the layers)

        _registered.append(module)
    return _registered[0]
