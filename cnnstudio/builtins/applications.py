"""VGG16, VGG19 and ResNet50 from ``keras.applications``: pretrained convolutional bases.

``weights`` is ``"imagenet"`` (Keras downloads and caches the file), ``"none"`` (random
initialisation) or the path of a weights file of the base, e.g. Keras' own
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` copied to a machine without internet,
or ``model.get_layer("backbone").save_weights("base.weights.h5")`` of a fine-tuned model.
"""

from __future__ import annotations

from pathlib import Path

from cnnstudio.core.errors import WeightsError
from cnnstudio.core.model import weights as weights_sources
from cnnstudio.plugins import BackboneProvider, Param


def _load_application(factory_name: str, display_name: str, weights: str, input_size: int, include_top: bool):
    """``keras.applications.<factory_name>`` with ImageNet weights (Keras' download), a weights file
    or random weights; every failure to get the weights is a :class:`WeightsError`."""
    from cnnstudio.core.tf import keras

    factory = getattr(keras().applications, factory_name)
    kwargs = {"include_top": include_top, "input_shape": (input_size, input_size, 3)}
    if not include_top:
        kwargs["name"] = "backbone"
    if weights == weights_sources.IMAGENET:
        try:
            return factory(weights="imagenet", **kwargs)
        except Exception as exc:
            reason = weights_sources.failure_reason(exc)
            raise WeightsError(weights_sources.offline_message(display_name, reason)) from exc
    model = factory(weights=None, **kwargs)
    if weights == weights_sources.RANDOM:
        return model
    path = Path(weights).expanduser()
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    try:
        model.load_weights(str(path))
    except Exception as exc:
        what = "with its ImageNet classifier (include_top=True)" if include_top else \
            "without its classifier (include_top=False)"
        reason = weights_sources.failure_reason(exc)
        raise WeightsError(f"weights file {path} cannot be loaded into {display_name} {what}: {reason}") from exc
    return model


def _application_builder(factory_name: str, display_name: str):
    def build(params: dict, input_size: int, registry):
        return _load_application(factory_name, display_name, params["weights"], input_size, include_top=False)

    build.__name__ = f"build_{factory_name.lower()}"
    build.__qualname__ = build.__name__
    return build


def _imagenet_builder(factory_name: str, display_name: str):
    """The whole ImageNet classifier (with its top, 1,000 classes) for "What ImageNet sees"."""

    def build(weights: str, input_size: int = 224):
        return _load_application(factory_name, display_name, weights, input_size, include_top=True)

    build.__name__ = f"build_{factory_name.lower()}_imagenet"
    build.__qualname__ = build.__name__
    return build


def _pretrained(id: str, factory_name: str, display_name: str, description: str, files,
                block_pattern: str) -> BackboneProvider:
    return BackboneProvider(
        id=id,
        display_name=display_name,
        build=_application_builder(factory_name, display_name),
        params=(
            Param("weights", "weights", "imagenet", label="Weights",
                  help="'imagenet' (downloaded once), 'none' (random initialisation) "
                       "or a .weights.h5 / .h5 file of the base."),
            Param("trainable", "bool", False, label="Train the base",
                  help="Off: the base is frozen and only the head trains (feature extraction)."),
        ),
        default_input_size=224,
        min_input_size=32,
        preprocessing=f"keras.applications.{id}",
        pretrained=True,
        description=description,
        imagenet_weights=files[0],
        imagenet_top=files[1],
        build_imagenet=_imagenet_builder(factory_name, display_name),
        block_pattern=block_pattern,
    )


VGG16 = _pretrained(
    "vgg16", "VGG16", "VGG16",
    "VGG16's 13 convolution layers (Simonyan & Zisserman 2014) with ImageNet weights; caffe preprocessing.",
    weights_sources.VGG16_FILES, r"^(block\d+)_",
)
VGG19 = _pretrained(
    "vgg19", "VGG19", "VGG19",
    "VGG19's 16 convolution layers (Simonyan & Zisserman 2014) with ImageNet weights; caffe preprocessing.",
    weights_sources.VGG19_FILES, r"^(block\d+)_",
)
RESNET50 = _pretrained(
    "resnet50", "ResNet50", "ResNet50",
    "ResNet50 (He et al. 2015) with ImageNet weights; caffe preprocessing.",
    weights_sources.RESNET50_FILES, r"^(conv\d+_block\d+)_",
)
