"""What ImageNet sees: the top ImageNet-1k classes of an image, by a whole pretrained classifier.

A pretrained backbone (VGG16, VGG19, ResNet50) with its original top is a 1,000-class
ImageNet classifier; asking it about a photo shows what the weights a transfer-learning run
starts from already recognise ("bald_eagle 99.81%"). The class names ship in
``resources/imagenet_classes.json`` (Keras' class-index order, ``decode_predictions`` names).

Images go through the studio's one loader (:func:`cnnstudio.core.io.images.load_array`) at the
classifier's input size; the ``keras.applications`` classifier holds no preprocessing, so the
provider's ``preprocess_input`` is applied here. Random weights are never presented as
pretrained: :attr:`ImageNetClassifier.label` says "not pretrained" and every result carries it.

No Qt here; TensorFlow is imported only when a classifier is built.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import numpy as np

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.errors import StudioError, WeightsError
from cnnstudio.core.io.images import load_batches
from cnnstudio.core.io.paths import resources_dir
from cnnstudio.core.model import weights as weights_sources
from cnnstudio.core.tasks import TaskState
from cnnstudio.core.tf.preprocessing import preprocess_function

CLASSES_FILE = "imagenet_classes.json"
N_CLASSES = 1000
DEFAULT_MODEL = "vgg19"
DEFAULT_INPUT_SIZE = 224  # Keras' ImageNet classifiers are built for 224 px only
TOP_K = 5


@functools.lru_cache(maxsize=1)
def class_entries() -> tuple[tuple[str, str], ...]:
    """The 1,000 ImageNet classes in Keras' output order, as ``(synset, name)``."""
    path = resources_dir() / CLASSES_FILE
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["classes"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{path}: the ImageNet class names cannot be read ({exc})") from exc
    if len(rows) != N_CLASSES:
        raise StudioError(f"{path}: expected {N_CLASSES} ImageNet classes, found {len(rows)}")
    return tuple((str(synset), str(name)) for synset, name in rows)


def class_names() -> list[str]:
    return [name for _, name in class_entries()]


def top_k(probabilities, k: int = TOP_K) -> list[tuple[str, str, float]]:
    """The ``k`` most probable classes of one 1,000-way output: ``(name, synset, probability)``, best first."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    if p.size != N_CLASSES:
        raise ValueError(f"expected {N_CLASSES} ImageNet probabilities, got {p.size}")
    entries = class_entries()
    k = max(1, min(int(k), N_CLASSES))
    order = np.argsort(-p, kind="stable")[:k]
    return [(entries[i][1], entries[i][0], float(p[i])) for i in order]


@dataclass
class ImageNetPrediction:
    path: str
    top: list[tuple[str, str, float]] | None  # (name, synset, probability), best first
    error: str | None = None


def imagenet_providers(registry) -> list:
    """The backbones that can be a whole ImageNet classifier (have ``build_imagenet``)."""
    return [b for b in registry.backbones.values() if b.build_imagenet is not None]


def normalise_weights(weights) -> str:
    """``"imagenet"``, ``"none"`` (also for None) or a weights file path as given."""
    if weights is None:
        return weights_sources.RANDOM
    text = str(weights).strip()
    if text.lower() in (weights_sources.IMAGENET, weights_sources.RANDOM):
        return text.lower()
    if not text:
        raise WeightsError("no weights given: use 'imagenet', 'none' or the path of a weights file")
    return text


class ImageNetClassifier:
    """A backbone's whole ImageNet classifier, built once; :meth:`predict_paths` any number of times.

    ``weights`` is ``"imagenet"`` (fetched into Keras' cache first, reporting its status and the
    download's progress in bytes to ``state``: see :func:`cnnstudio.core.model.weights.fetch`),
    ``"none"`` (random initialisation, not pretrained) or the path of a weights file of the
    *whole* classifier (with its top). ``input_size`` applies to the two latter only: Keras'
    ImageNet weights need 224 px.
    """

    def __init__(self, provider_id: str = DEFAULT_MODEL, weights: str = weights_sources.IMAGENET,
                 registry=None, *, state: TaskState | None = None, input_size: int | None = None):
        if registry is None:
            registry = load_registry()
        provider = registry.backbones.get(provider_id)
        able = ", ".join(b.id for b in imagenet_providers(registry)) or "none"
        if provider is None:
            raise StudioError(f"no backbone {provider_id!r}; an ImageNet classifier is available for: {able}")
        if provider.build_imagenet is None:
            raise StudioError(
                f"{provider.display_name} ({provider.id}) has no ImageNet classifier "
                f"(no build_imagenet); choose one of: {able}"
            )
        self.provider = provider
        self.weights = normalise_weights(weights)
        self.pretrained = self.weights != weights_sources.RANDOM
        self.weights_label = weights_sources.describe(self.weights)
        self.label = f"{provider.display_name}, {self.weights_label}"
        if self.weights == weights_sources.IMAGENET:
            if input_size not in (None, DEFAULT_INPUT_SIZE):
                raise StudioError(
                    f"{provider.display_name}'s ImageNet weights need {DEFAULT_INPUT_SIZE} px input, "
                    f"not {input_size} px"
                )
            input_size = DEFAULT_INPUT_SIZE
            if provider.imagenet_top is not None:
                self._fetch(provider.imagenet_top, state)
        input_size = int(input_size or DEFAULT_INPUT_SIZE)
        if input_size < provider.min_input_size:
            raise StudioError(
                f"{provider.display_name} needs at least {provider.min_input_size} px input, not {input_size} px"
            )
        self._preprocess = preprocess_function(provider.preprocessing)
        self.model = provider.build_imagenet(self.weights, input_size)
        shape = self.model.input_shape
        self.input_size = int(shape[1]) if shape[1] is not None else input_size
        outputs = self.model.output_shape[-1]
        if outputs != N_CLASSES:
            raise StudioError(f"{provider.display_name}'s classifier has {outputs} outputs, not {N_CLASSES}")

    def _fetch(self, wf, state: TaskState | None) -> None:
        try:
            weights_sources.fetch(wf, self.provider.display_name, state=state)
        except WeightsError as exc:
            # The message must name the file with the top, not the base's *_notop.h5.
            cause = exc.__cause__ or exc
            reason = weights_sources.download_failure(cause) if exc.__cause__ is not None else str(exc)
            raise WeightsError(
                f"cannot download the ImageNet classifier of {self.provider.display_name} ({reason}). "
                f"Without internet, copy Keras' {wf.fname} into {weights_sources.keras_cache_dir()} "
                "or choose it as a local weights file, or use random initialisation (not pretrained)"
            ) from cause

    def predict_arrays(self, images: np.ndarray) -> np.ndarray:
        """1,000 probabilities per ``(n, size, size, 3)`` uint8 RGB image."""
        x = self._preprocess(np.array(images, dtype=np.float32))  # a copy: preprocess_input writes in place
        return np.asarray(self.model(x, training=False))

    def predict_paths(self, paths, k: int = TOP_K, batch_size: int = 16) -> list[ImageNetPrediction]:
        """Top-``k`` classes per file; a file that cannot be read gets its error, the rest still predict."""
        results: list[ImageNetPrediction | None] = [None] * len(paths)
        for kind, where, what in load_batches(paths, self.input_size, batch_size):
            if kind == "error":
                results[where] = ImageNetPrediction(str(paths[where]), None, what)
                continue
            for i, p in zip(where, self.predict_arrays(what)):
                results[i] = ImageNetPrediction(str(paths[i]), top_k(p, k), None)
        return results
