"""What a backbone's ``preprocessing`` may name, and the function it stands for.

``"rescale"`` (``x / 255``) or a ``keras.applications`` module whose ``preprocess_input`` the
model applies; :class:`~cnnstudio.core.tf.layers.Preprocess` runs it inside the model and the
plugin registry refuses any other value. Importing this module never imports TensorFlow.
"""

from __future__ import annotations

import importlib
import re

RESCALE = "rescale"
# ``preprocess_input`` is only ever taken from keras.applications (see core.tf.layers).
APPLICATION_MODULE = re.compile(r"keras\.applications\.[a-z][a-z0-9_]*")


def preprocess_function(mode: str):
    """The function :class:`~cnnstudio.core.tf.layers.Preprocess` applies for ``mode``;
    ``ValueError`` for any other mode.

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
