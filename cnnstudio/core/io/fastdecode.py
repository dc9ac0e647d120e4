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

import numpy as np

from cnnstudio.core.tf import tf

# How a file is decoded (see cnnstudio.core.io.images.probe): by Pillow, or by TensorFlow as JPEG or PNG.
KIND_PIL, KIND_JPEG, KIND_PNG = 0, 1, 2

_JPEG_RATIOS = (1, 2, 4, 8)
# How the pipeline decodes one file (see :func:`branches`): Pillow, JPEG at each of _JPEG_RATIOS, PNG,
# or JPEG at the ratio its header gives (the size was not known in advance).
BRANCH_PIL, BRANCH_PNG, BRANCH_JPEG = 0, 1 + len(_JPEG_RATIOS), 2 + len(_JPEG_RATIOS)
BRANCHES = BRANCH_JPEG + 1  # the decoders' count: callers' own branches come after


def resize_uint8(image, size):
    """``image`` (h, w, 3) squashed to (size, size, 3) ``uint8``."""
    T = tf()
    resized = T.image.resize(image, (size, size), method="bilinear", antialias=False)
    return T.cast(T.round(resized), T.uint8)  # bilinear weights are convex: always within 0..255


def jpeg_ratio_index(height, width, size):
    """Which of :data:`_JPEG_RATIOS` decodes a ``height`` x ``width`` JPEG for ``size`` px: the
    largest scale that keeps both sides at least ``size`` (Pillow's ``draft`` rule). Works on
    NumPy arrays."""
    fits = np.minimum(height // size, width // size)
    return sum((fits >= r).astype(np.int64) for r in _JPEG_RATIOS[1:])


def branches(kinds, nbytes, widths, heights, size: int):
    """Per file, the decoder the pipeline's one ``switch_case`` takes (NumPy, once per list):
    Pillow for :data:`KIND_PIL` or an unknown size in bytes, the JPEG ratio from the scan's width
    and height, PNG; :data:`BRANCH_JPEG` (ratio from the header) for a JPEG of unknown size."""
    kinds, nbytes = np.asarray(kinds), np.asarray(nbytes)
    widths, heights = np.asarray(widths, np.int64), np.asarray(heights, np.int64)
    known = (widths > 0) & (heights > 0)
    jpeg = np.where(known, 1 + jpeg_ratio_index(heights, widths, size), BRANCH_JPEG)
    out = np.where(kinds == KIND_JPEG, jpeg, np.where(kinds == KIND_PNG, BRANCH_PNG, BRANCH_PIL))
    return np.where(nbytes >= 0, out, BRANCH_PIL).astype(np.int32)


def decode_branch(path, branch, size, pillow, more=()):
    """One file's ``(image, ok)`` by its :func:`branches` entry, in one ``switch_case`` and as few
    ops as can be: in a ``tf.data`` function each op costs about 10 µs, so every conditional or
    check per image would take a few per cent of a 224 px decode. The probe already sent to
    Pillow what TensorFlow should not see (files that do not end as a JPEG or PNG does); a file
    damaged after the scan makes TensorFlow's decoder fail, and the pipeline then asks Pillow
    what is wrong with it. ``pillow()`` returns Pillow's ``(image, ok)``; ``more`` are further
    branches (numbered from :data:`BRANCHES`), e.g. an image read from a cache.
    """
    T = tf()

    def jpeg_at(r):
        return lambda: (resize_uint8(T.io.decode_jpeg(T.io.read_file(path), channels=3, ratio=r), size),
                        T.constant(True))

    def png():
        return resize_uint8(T.io.decode_png(T.io.read_file(path), channels=3, dtype=T.uint8), size), T.constant(True)

    def jpeg():
        return decode_plain(T.io.read_file(path), KIND_JPEG, size), T.constant(True)

    return T.switch_case(branch, [pillow, *(jpeg_at(r) for r in _JPEG_RATIOS), png, jpeg, *more])


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
