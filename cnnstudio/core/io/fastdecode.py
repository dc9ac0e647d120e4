"""TensorFlow's own decoders for plain files, and the one resize every image goes through.

Most of a user's photos are plain: 8-bit RGB or grey JPEG or PNG, upright, opaque. For those,
libjpeg-turbo and libpng run inside the ``tf.data`` graph (no Python, no GIL, on every core), with
JPEG decoded at a reduced DCT scale exactly as Pillow's ``draft`` does. Every other file goes
through Pillow (:mod:`cnnstudio.core.io.images`: EXIF rotation, CMYK, 16-bit, palette, alpha).
Either way the decoded RGB image is squashed to the model's input by :func:`resize_uint8`,
TensorFlow's bilinear resize with half-pixel centres (what Keras' ``image_dataset_from_directory``
uses), rounded to ``uint8``. Training, evaluation and prediction all call these functions, so one
file gives one input whatever reads it.
"""

from __future__ import annotations

import functools

from cnnstudio.core.tf import tf

# How a file is decoded (see cnnstudio.core.io.images.probe): by Pillow, or by TensorFlow as JPEG or PNG.
KIND_PIL, KIND_JPEG, KIND_PNG = 0, 1, 2

_JPEG_RATIOS = (1, 2, 4, 8)
_PNG_END = b"IEND\xaeB`\x82"


def resize_uint8(image, size):
    """``image`` (h, w, 3) squashed to (size, size, 3) ``uint8``."""
    T = tf()
    resized = T.image.resize(image, (size, size), method="bilinear", antialias=False)
    return T.cast(T.round(resized), T.uint8)  # bilinear weights are convex: always within 0..255


def looks_whole(data, kind, nbytes):
    """Whether the bytes read are the file the probe saw, ending as a complete JPEG or PNG does.

    A file cut short after it was probed then goes to Pillow, which names the problem.
    """
    T = tf()
    n = T.strings.length(data)
    jpeg_end = T.strings.substr(data, T.maximum(n - 2, 0), 2) == b"\xff\xd9"
    png_end = T.strings.substr(data, T.maximum(n - 8, 0), 8) == _PNG_END
    ends = T.where(T.equal(kind, KIND_JPEG), jpeg_end, png_end)
    return T.logical_and(T.equal(T.cast(n, T.int64), T.cast(nbytes, T.int64)), ends)


def decode_plain(data, kind, size):
    """A plain JPEG or PNG's bytes to the model's (size, size, 3) ``uint8`` input.

    JPEG is decoded at the largest of 1/1, 1/2, 1/4, 1/8 that keeps both sides at least
    ``size`` (Pillow's ``draft`` rule), with TensorFlow's default (fast integer) inverse DCT, as
    Keras' own loader decodes: about 8% less work than the accurate one Pillow uses, for at most a
    few grey levels of difference (within one on average; the resize that follows smooths it).
    """
    T = tf()

    def jpeg():
        shape = T.image.extract_jpeg_shape(data)
        fits = T.minimum(shape[0] // size, shape[1] // size)
        branch = T.reduce_sum(T.cast(fits >= T.constant(_JPEG_RATIOS[1:]), T.int32))
        decoders = [
            functools.partial(T.io.decode_jpeg, data, channels=3, ratio=r)
            for r in _JPEG_RATIOS
        ]
        return T.switch_case(branch, decoders)

    def png():
        return T.io.decode_png(data, channels=3, dtype=T.uint8)

    image = T.cond(T.equal(kind, KIND_JPEG), jpeg, png)
    image.set_shape((None, None, 3))
    return resize_uint8(image, size)


@functools.cache
def _eager_plain():
    T = tf()
    return T.function(
        decode_plain,
        input_signature=[T.TensorSpec((), T.string), T.TensorSpec((), T.int32), T.TensorSpec((), T.int32)],
    )


@functools.cache
def _eager_resize():
    T = tf()
    return T.function(resize_uint8, input_signature=[T.TensorSpec((None, None, 3), T.uint8),
                                                     T.TensorSpec((), T.int32)])


def plain_array(data: bytes, kind: int, size: int):
    """:func:`decode_plain` on one file's bytes, outside a pipeline (prediction)."""
    return _eager_plain()(data, kind, size).numpy()


def resized_array(image, size: int):
    """:func:`resize_uint8` on one decoded image, outside a pipeline (prediction)."""
    return _eager_resize()(image, size).numpy()
