"""A model's weights as the bytes of a ``.weights.h5`` file, built in memory.

``model.save_weights(path)`` lets HDF5's C library write the file itself. On a full disk the
library fails half-way, the file stays open with metadata it cannot write, and closing it at
interpreter exit crashes the process (a segmentation fault after the OSError). Built in a
``BytesIO`` as Keras builds the weights part of a ``.keras`` archive, the file never meets the
disk through HDF5, and :func:`cnnstudio.core.io.atomic.atomic_save_model` writes the bytes with
Python's file object, whose errors are ordinary exceptions. The bytes are exactly what
``save_weights`` writes, and ``model.load_weights`` reads them back.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile


def weights_h5_bytes(model) -> bytes:
    from cnnstudio.core.tf.runtime import import_keras

    import_keras()  # started the studio's way (backend, logging) before Keras' saving module
    if not model.built:
        raise ValueError("the model is not built yet: it has no weights to save")
    try:
        from keras.src.saving import saving_lib

        buffer = io.BytesIO()
        store = saving_lib.H5IOStore(buffer, mode="w")
    except (ImportError, AttributeError, TypeError):  # Keras' private saving API changed
        return _through_a_file(model)
    try:
        # what keras.saving.save_weights does, with the store in memory (positional arguments:
        # their names changed between Keras 3 releases)
        saving_lib._save_state(model, store, None, "", set())
    except (AttributeError, TypeError):
        store.close()
        return _through_a_file(model)
    finally:
        with contextlib.suppress(Exception):
            store.close()
    return buffer.getvalue()


def _through_a_file(model) -> bytes:
    """Keras' public ``save_weights`` into a temporary file, read back: for a Keras whose
    private saving API is not the one above (the full-disk crash is back there, so the file
    goes to the system's temporary folder, not beside the run)."""
    with tempfile.TemporaryDirectory(prefix="cnnstudio-weights-") as folder:
        path = os.path.join(folder, "model.weights.h5")
        model.save_weights(path)
        with open(path, "rb") as f:
            return f.read()
