"""Grad-CAM: where in an image a classifier looked for the class it gives (Selvaraju et al. 2017).

For one class score ``y`` (its logit, before the softmax, so a confident prediction still has
gradients) and the feature maps ``A`` of a convolutional layer, each channel is weighted by the
mean gradient ``dy/dA`` over space; the weighted sum of the maps, through a ReLU, normalised to
[0, 1] and resized (bilinearly) to the model's input, is the heatmap.

The layer is by default the backbone's last convolutional feature map: the last layer inside the
nested ``backbone`` model with a 4D output, pooling, dropout and padding layers passed over
(``block5_conv3`` for VGG16, ``conv5_block3_out`` for ResNet50, the last conv or its ReLU of a
scratch stack); any other 4D layer of the backbone can be named instead.

The classifier is split around its nested backbone: ``preprocess`` -> a backbone with two outputs
(the chosen layer's and its own) -> the head's layers, so one forward pass under a
``GradientTape`` gives both the feature maps and the score. Augmentation layers are left out
(they only act in training).

No Qt here: :class:`GradCam` works on arrays, :func:`overlay` colours an image, and
:func:`gradcam_paths` writes ``<stem>.gradcam.png`` files for ``cnnstudio predict --gradcam``.
The Predict panel and the misclassified browser call :func:`gradcam_image` per file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from cnnstudio.core.errors import ImageError, SpecError, StudioError

SUFFIX = ".gradcam.png"
ALPHA = 0.4
MAX_SIDE = 1024  # overlays are written on the original image, its longer side at most this
# Layers that only move, pick or drop values: Grad-CAM's default looks past them, to the last
# layer that computes features (the last convolution or its activation).
_PASS_OVER = (
    "MaxPooling2D", "AveragePooling2D", "Dropout", "SpatialDropout2D", "GaussianDropout", "GaussianNoise",
    "AlphaDropout", "ZeroPadding2D", "Cropping2D", "UpSampling2D", "InputLayer",
)


def _keras():
    from cnnstudio.core.tf import keras

    return keras()


def _backbone(model):
    try:
        return model.get_layer("backbone")
    except ValueError:
        raise SpecError("Grad-CAM needs a CNN Studio classifier: the model has no 'backbone' layer") from None


def _output_rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError, RuntimeError):  # no output, or shared by several calls
        return 0


def candidate_layers(model) -> list[str]:
    """The backbone's layers Grad-CAM can use (4D outputs), bottom to top."""
    return [layer.name for layer in _backbone(model).layers
            if type(layer).__name__ != "InputLayer" and _output_rank(layer) == 4]


def default_layer(model) -> str:
    """The backbone's last convolutional feature map (see the module's docstring)."""
    base = _backbone(model)
    for layer in reversed(base.layers):
        if type(layer).__name__ not in _PASS_OVER and _output_rank(layer) == 4:
            return layer.name
    names = candidate_layers(model)
    if names:
        return names[-1]
    raise SpecError("the backbone has no layer with a 4D feature map for Grad-CAM")


class GradCam:
    """Grad-CAM of one classifier (built from a model spec; a bundle's ``model``) at one layer.

    ``layer``: a layer of the backbone by name, ``None`` for :func:`default_layer`. Build it once
    and reuse it: the split model is made here.
    """

    def __init__(self, model, layer: str | None = None):
        keras = _keras()
        base = _backbone(model)
        if layer is None:
            layer = default_layer(model)
        names = candidate_layers(model)
        if layer not in names:
            shown = ", ".join(names[-12:]) + (f" (and {len(names) - 12} earlier)" if len(names) > 12 else "")
            raise SpecError(f"Grad-CAM layer {layer!r} is not a 4D layer of the backbone; choose one of: {shown}")
        self.model = model
        self.layer = layer
        self.input_size = int(model.input.shape[1])
        self._split = keras.Model(base.inputs, [base.get_layer(layer).output, base.output], name="gradcam_backbone")
        index = model.layers.index(base)
        self._before = [lyr for lyr in model.layers[:index]
                        if type(lyr).__name__ != "InputLayer" and not lyr.name.startswith("augment_")]
        self._after = model.layers[index + 1:]

    def _score_layers(self):
        """The head's layers and, when the last one is a softmax Dense layer, that layer (for its logits)."""
        last = self._after[-1] if self._after else None
        activation = getattr(getattr(last, "activation", None), "__name__", "")
        if last is not None and activation == "softmax" and hasattr(last, "kernel"):
            return self._after[:-1], last
        return self._after, None

    def compute(self, images: np.ndarray, class_index=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Heatmaps of a batch of ``(n, size, size, 3)`` uint8 RGB images.

        ``class_index``: ``None`` for each image's predicted class, an int for every image, or one
        per image. Returns ``(heatmaps (n, size, size) float32 in [0, 1], classes (n,), probabilities
        (n, classes))``, the model's own probabilities (a bundle's calibration temperature changes
        neither the predicted class nor the normalised map). A map is all zeros where nothing in
        the layer speaks for the class.
        """
        from cnnstudio.core.tf import tf

        T = tf()
        ops = _keras().ops
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        x = T.convert_to_tensor(images.astype(np.float32))
        head, dense = self._score_layers()
        with T.GradientTape() as tape:
            tape.watch(x)  # not only the trainable weights: a frozen base must still carry gradients
            h = x
            for layer in self._before:
                h = layer(h, training=False)
            features, h = self._split(h, training=False)
            for layer in head:
                h = layer(h, training=False)
            if dense is not None:
                h = T.cast(h, dense.kernel.dtype)
                logits = ops.matmul(h, dense.kernel)
                if getattr(dense, "bias", None) is not None:
                    logits = logits + dense.bias
                probs = ops.softmax(T.cast(logits, "float32"))
            else:
                logits = probs = T.cast(h, "float32")
            probs_np = np.asarray(probs)
            if class_index is None:
                classes = probs_np.argmax(axis=-1)
            else:
                classes = np.broadcast_to(np.asarray(class_index, dtype=np.int64), (len(images),)).copy()
            if np.any(classes < 0) or np.any(classes >= probs_np.shape[-1]):
                raise SpecError(f"class index out of range (the model has {probs_np.shape[-1]} classes)")
            score = T.reduce_sum(T.gather(T.cast(logits, "float32"), classes, axis=1, batch_dims=1))
        grads = tape.gradient(score, features)
        features = T.cast(features, "float32")
        grads = T.cast(grads, "float32")
        weights = T.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (n, 1, 1, channels)
        cam = T.nn.relu(T.reduce_sum(weights * features, axis=-1))  # (n, h, w)
        cam = cam / T.maximum(T.reduce_max(cam, axis=(1, 2), keepdims=True), 1e-12)
        size = self.input_size
        cam = T.image.resize(cam[..., None], (size, size), method="bilinear")[..., 0]
        return np.clip(np.asarray(cam, dtype=np.float32), 0.0, 1.0), classes, probs_np

    def heatmap(self, image: np.ndarray, class_index: int | None = None) -> np.ndarray:
        """The ``(size, size)`` heatmap of one uint8 RGB image (of the model's input size)."""
        return self.compute(image[None], class_index)[0][0]


# ----------------------------------------------------------------------------- colours


# A jet-like map: dark blue (cold) -> blue -> cyan -> yellow -> red -> dark red (hot).
_STOPS = np.array([0.0, 0.125, 0.375, 0.625, 0.875, 1.0])
_COLOURS = np.array([
    [0, 0, 128], [0, 0, 255], [0, 255, 255], [255, 255, 0], [255, 0, 0], [128, 0, 0],
], dtype=np.float32)


def colormap(values: np.ndarray) -> np.ndarray:
    """Values in [0, 1] -> uint8 RGB (one more axis of 3), on a jet-like scale."""
    v = np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0)
    channels = [np.interp(v, _STOPS, _COLOURS[:, c]) for c in range(3)]
    return np.stack(channels, axis=-1).round().astype(np.uint8)


def resize_heatmap(heatmap: np.ndarray, width: int, height: int) -> np.ndarray:
    """``heatmap`` bilinearly resized to ``(height, width)``."""
    heatmap = np.asarray(heatmap, dtype=np.float32)
    if heatmap.shape == (height, width):
        return heatmap
    resized = Image.fromarray(heatmap).resize((width, height), Image.Resampling.BILINEAR)
    return np.clip(np.asarray(resized, dtype=np.float32), 0.0, 1.0)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = ALPHA) -> np.ndarray:
    """``image`` (h, w, 3) uint8 RGB with the coloured ``heatmap`` blended over it (``alpha`` of the
    colour); the heatmap is resized to the image if its size differs."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an (h, w, 3) RGB image, got shape {image.shape}")
    heat = resize_heatmap(heatmap, image.shape[1], image.shape[0])
    blended = (1.0 - alpha) * image.astype(np.float32) + alpha * colormap(heat).astype(np.float32)
    return np.clip(blended.round(), 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- files


@dataclass
class GradCamImage:
    """One file's Grad-CAM: the overlay on the (downscaled) original, the heatmap at the model's
    input size, and the class it explains with its probability."""

    path: str
    overlay: np.ndarray
    heatmap: np.ndarray
    class_index: int
    probability: float


def gradcam_image(cam: GradCam, path, class_index: int | None = None, max_side: int = MAX_SIDE,
                  alpha: float = ALPHA) -> GradCamImage:
    """Grad-CAM of the file ``path``, overlaid on the original image (aspect kept, its longer side
    at most ``max_side``). Raises :class:`ImageError` for a file that cannot be used."""
    from cnnstudio.core.io.images import load_array, load_rgb

    array = load_array(path, cam.input_size)
    heatmaps, classes, probs = cam.compute(array[None], class_index)
    original = load_rgb(path, draft_size=max_side)
    if max(original.size) > max_side:
        original.thumbnail((max_side, max_side), Image.Resampling.BILINEAR)
    c = int(classes[0])
    return GradCamImage(str(path), overlay(np.asarray(original), heatmaps[0], alpha), heatmaps[0], c,
                        float(probs[0][c]))


@dataclass
class GradCamFile:
    path: str
    out: str | None  # the PNG written, None on error
    class_name: str | None = None
    probability: float | None = None
    error: str | None = None


def output_name(path) -> str:
    return Path(path).stem + SUFFIX


def gradcam_paths(bundle, paths, out_dir, layer: str | None = None, class_index: int | None = None,
                  max_side: int = MAX_SIDE, cam: GradCam | None = None) -> list[GradCamFile]:
    """Write ``OUT_DIR/<stem>.gradcam.png`` (atomically) for each image: the overlay of the class
    predicted (or ``class_index``) on the original image, its longer side at most ``max_side``.

    A file that cannot be read gets its own error and the rest are still written. Two inputs
    with the same stem get ``<stem>-2.gradcam.png`` and so on. An unknown ``layer`` raises
    :class:`SpecError` before anything is written. ``cam``: a :class:`GradCam` of the bundle's
    model already made (``layer`` is then not used).
    """
    from cnnstudio.core.io.atomic import atomic_path

    if cam is None:
        cam = GradCam(bundle.model, layer)
    out_dir = Path(out_dir)
    used: set[str] = set()
    results = []
    for path in paths:
        name = output_name(path)
        n = 1
        while name in used:
            n += 1
            name = f"{Path(path).stem}-{n}{SUFFIX}"
        used.add(name)
        try:
            result = gradcam_image(cam, path, class_index, max_side)
        except ImageError as exc:
            results.append(GradCamFile(str(path), None, error=exc.reason))
            continue
        target = out_dir / name
        try:
            with atomic_path(target, suffix=".png") as tmp:
                Image.fromarray(result.overlay).save(tmp, "PNG")
        except OSError as exc:
            raise StudioError(f"{target}: cannot write ({exc.strerror or exc})") from exc
        results.append(GradCamFile(str(path), os.fspath(target), bundle.class_names[result.class_index],
                                   result.probability))
    return results
