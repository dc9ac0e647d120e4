"""Custom Keras layers the studio's models contain; registered so bundles load with safe_mode=True.

Imported by :func:`cnnstudio.core.tf.keras` before any model is loaded.
"""

from __future__ import annotations

from cnnstudio.core.tf.preprocessing import RESCALE, preprocess_function
from cnnstudio.core.tf.runtime import tensorflow_backend, tf

if tensorflow_backend():
    tf()  # TensorFlow first, through the facade that quiets its start-up logs
import keras  # noqa: E402


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
