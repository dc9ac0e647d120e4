"""Build a classifier from a model spec: augmentation -> preprocessing -> backbone -> head.

Everything from raw RGB pixels to class probabilities is inside the one Keras model, so a
saved model needs nothing else to predict exactly as it was trained:

``image`` (s, s, 3) float32 in [0, 255] -> ``augment_*`` (active in training only) ->
``preprocess`` (the backbone's own preprocessing) -> ``backbone`` (a nested model) ->
``flatten`` / ``avg_pool`` / ``max_pool`` -> ``dense_<i>`` (+ ``dropout_<i>``) -> ``predictions``.
"""

from __future__ import annotations

import math

from cnnstudio.core.errors import BuildError, SpecError, StudioError
from cnnstudio.core.model.spec import AugmentSpec, ModelSpec
from cnnstudio.core.plugincode import PLUGIN_FAILURES, describe, reraise_if_pressed, users_ctrl_c
from cnnstudio.core.tf import keras as load_keras
from cnnstudio.core.tf.layers import Preprocess
from cnnstudio.core.tf.seeding import BUILD_LOCK

keras = load_keras()


def build_model(spec: ModelSpec, num_classes: int, registry) -> keras.Model:
    """The uncompiled classifier for ``spec`` (validated here) with ``num_classes`` softmax outputs.

    One build at a time in the process (:data:`~cnnstudio.core.tf.seeding.BUILD_LOCK`); a run
    builds under :func:`~cnnstudio.core.tf.seeding.seeded` so its weights depend on its seed alone.
    """
    with BUILD_LOCK:
        return _build_model(spec, num_classes, registry)


def _build_model(spec: ModelSpec, num_classes: int, registry) -> keras.Model:
    spec = spec.validate(registry)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise SpecError(f"a classifier needs at least 2 classes, got {num_classes!r}")
    provider = registry.backbones[spec.backbone]
    size = spec.input_size
    inputs = keras.Input((size, size, 3), dtype="float32", name="image")
    x = inputs
    for layer in augmentation_layers(spec.augmentation):
        x = layer(x)
    x = Preprocess(provider.preprocessing, name="preprocess")(x)
    x = _apply_backbone(provider, spec, registry, x)

    head = spec.head
    if head.pooling == "flatten":
        x = keras.layers.Flatten(name="flatten")(x)
    elif head.pooling == "avg":
        x = keras.layers.GlobalAveragePooling2D(name="avg_pool")(x)
    else:
        x = keras.layers.GlobalMaxPooling2D(name="max_pool")(x)
    for i, units in enumerate(head.dense, 1):
        x = keras.layers.Dense(units, activation="relu", name=f"dense_{i}")(x)
        if head.dropout > 0:
            x = keras.layers.Dropout(head.dropout, name=f"dropout_{i}")(x)
    # float32 probabilities even under a mixed-precision policy (softmax in float16 saturates).
    outputs = keras.layers.Dense(num_classes, activation="softmax", name="predictions", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=spec.preset or spec.backbone)


def parameter_counts(model) -> dict:
    """``trainable``, ``frozen`` (non-trainable: frozen layers and batch-norm statistics, as
    Keras' summary counts them) and ``total`` numbers of parameters."""
    trainable = _count(model.trainable_weights)
    frozen = _count(model.non_trainable_weights)
    return {"trainable": trainable, "frozen": frozen, "total": trainable + frozen}


def unfreeze_backbone(model, from_layer: str | None = None) -> None:
    """Make the backbone trainable for fine-tuning: all of it, or from layer ``from_layer``
    (e.g. ``"block5_conv1"``, the last VGG block) to its top. Recompile afterwards.

    Batch-norm layers stay frozen, so they keep their pretrained statistics: a frozen Keras 3
    BatchNormalization runs in inference mode, whereas the ``training=False`` a base is called
    with does not survive ``fit`` (keras-team/keras#20285).
    """
    base = model.get_layer("backbone")
    base.trainable = True
    if from_layer is not None:
        names = [layer.name for layer in base.layers]
        if from_layer not in names:
            raise SpecError(f"the backbone has no layer {from_layer!r}")
        for layer in base.layers[: names.index(from_layer)]:
            layer.trainable = False
    _freeze_batch_norm(base)


def _freeze_batch_norm(layer) -> None:
    # A pretrained base fine-tuned whole keeps its batch-norm statistics (see unfreeze_backbone).
    if isinstance(layer, keras.layers.BatchNormalization):
        layer.trainable = False
    for sublayer in getattr(layer, "layers", ()):
        _freeze_batch_norm(sublayer)


def _apply_backbone(provider, spec: ModelSpec, registry, x):
    """Build the provider's base (a registry's backbone provider) and call it on ``x``; a plugin's
    failure names the plugin, a ``KeyboardInterrupt`` or ``SystemExit`` it raises too (the user's
    Ctrl-C meanwhile still stops)."""
    with users_ctrl_c() as pressed:
        return _call_backbone(provider, spec, registry, x, pressed)


def _call_backbone(provider, spec: ModelSpec, registry, x, pressed):
    try:
        base = provider.build(dict(spec.params), spec.input_size, registry)
        if not isinstance(base, keras.Model):
            raise TypeError(f"build returned {type(base).__name__}, expected a keras.Model")
        if base.name != "backbone":
            base.name = "backbone"
        frozen = spec.params.get("trainable") is False
        if frozen:
            base.trainable = False
        elif provider.pretrained and spec.params.get("weights") != "none":
            _freeze_batch_norm(base)
        features = base(x, training=False) if frozen else base(x)
        if len(features.shape) != 4:
            raise ValueError(f"the backbone's output has shape {tuple(features.shape)}, expected a 4D feature map")
        return features
    except StudioError:
        raise
    except PLUGIN_FAILURES as exc:
        reraise_if_pressed(exc, pressed)
        raise BuildError(
            f"backbone {provider.id!r} from plugin {_origin(registry, provider.id)!r} "
            f"failed to build: {describe(exc)}"
        ) from exc


def augmentation_layers(augmentation: AugmentSpec) -> list:
    """The random layers of ``augmentation``, in the order the model applies them. Their seeds
    are drawn when they are made: make them under the build lock (``build_model`` does)."""
    layers = keras.layers
    out = []
    if augmentation.flip != "none":
        out.append(layers.RandomFlip(augmentation.flip, name="augment_flip"))
    if augmentation.rotation:
        out.append(layers.RandomRotation(augmentation.rotation, name="augment_rotation"))
    if augmentation.zoom:
        out.append(layers.RandomZoom(augmentation.zoom, name="augment_zoom"))
    if augmentation.translation:
        out.append(
            layers.RandomTranslation(augmentation.translation, augmentation.translation, name="augment_translation")
        )
    if augmentation.contrast:
        out.append(layers.RandomContrast(augmentation.contrast, value_range=(0, 255), name="augment_contrast"))
    return out


def _count(weights) -> int:
    unique = {id(w): w for w in weights}.values()
    return int(sum(math.prod(w.shape) for w in unique))


def _origin(registry, backbone_id: str) -> str:
    try:
        return registry.origin("backbone", backbone_id)
    except KeyError:
        return "unknown"
