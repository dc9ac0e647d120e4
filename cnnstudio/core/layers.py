"""Custom Keras layers the studio's models contain; registered so bundles load with safe_mode=True.

Imported by :func:`cnnstudio.core.tf.keras` before any model is loaded.
"""

from __future__ import annotations

import importlib

from cnnstudio.core.providers import APPLICATION_MODULE
from cnnstudio.core.tf import tensorflow_backend, tf

if tensorflow_backend():
    tf()  # TensorFlow first, through the facade that quiets its start-up logs
import keras  # noqa: E402

RESCALE = "rescale"


def preprocess_function(mode: str):
    """The function :class:`Preprocess` applies for ``mode``; ``ValueError`` for any other mode.

    Only ``keras.applications`` modules are imported, so a model file cannot make the loader
    import arbitrary code through this layer's config.
    """
    if mode == RESCALE:
        return _rescale
    if isinstance(mode, str) and APPLICATION_MODULE.fullmatch(mode):
        try:
            module = importlib.import_module(mode)
        except ImportError:
            module = None
        function = getattr(module, "preprocess_input", None)
        if callable(function):
            return function
        raise ValueError(f"preprocessing {mode!r}: {mode} has no preprocess_input")
    raise ValueError(
        f"preprocessing must be 'rescale' or a keras.applications module such as "
        f"'keras.applications.vgg16', got {mode!r}"
    )


def _rescale(x):
    return x / 255.0


@keras.saving.register_keras_serializable(package="cnnstudio")
class Preprocess(keras.layers.Layer):
    """Raw RGB in [0, 255] -> what the backbone expects: ``x / 255`` or a ``preprocess_input``.

    It lives inside the model, so a saved model preprocesses exactly as in training and a
    bundle needs no separate preprocessing code.
    """

    def __init__(self, mode: str = RESCALE, **kwargs):
        super().__init__(**kwargs)
        self._function = preprocess_function(mode)
        self.mode = mode

    def call(self, inputs):
        return self._function(keras.ops.cast(inputs, self.compute_dtype))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}
