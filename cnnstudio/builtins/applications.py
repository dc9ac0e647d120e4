"""VGG16, VGG19 and ResNet50 from ``keras.applications``: pretrained convolutional bases.

``weights`` is ``"imagenet"`` (Keras downloads and caches the file), ``"none"`` (random
initialisation) or the path of a weights file of the base, e.g. Keras' own
``vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5`` copied to a machine without internet,
or ``model.get_layer("backbone").save_weights("base.weights.h5")`` of a fine-tuned model.
"""

from __future__ import annotations

from pathlib import Path

from cnnstudio.core import weights as weights_sources
from cnnstudio.core.errors import WeightsError
from cnnstudio.core.providers import BackboneProvider, Param


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message: Keras' loading errors run to pages of tensors."""
    text = str(exc).strip().splitlines()
    line = text[0].rstrip(":. ") if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def _application_builder(factory_name: str, display_name: str):
    def build(params: dict, input_size: int, registry):
        from cnnstudio.core.tf import keras

        factory = getattr(keras().applications, factory_name)
        shape = (input_size, input_size, 3)
        weights = params["weights"]
        if weights == "imagenet":
            try:
                return factory(include_top=False, weights="imagenet", input_shape=shape, name="backbone")
            except Exception as exc:
                raise WeightsError(weights_sources.offline_message(display_name, _one_line(exc))) from exc
        base = factory(include_top=False, weights=None, input_shape=shape, name="backbone")
        if weights == "none":
            return base
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        try:
            base.load_weights(str(path))
        except Exception as exc:
            raise WeightsError(
                f"weights file {path} cannot be loaded into {display_name} without its classifier "
                f"(include_top=False): {_one_line(exc)}"
            ) from exc
        return base

    build.__name__ = f"build_{factory_name.lower()}"
    build.__qualname__ = build.__name__
    return build


def _imagenet_builder(factory_name: str, display_name: str):
    """The whole ImageNet classifier (with its top, 1,000 classes) for "What ImageNet sees"."""

    def build(weights: str, input_size: int = 224):
        from cnnstudio.core.tf import keras

        factory = getattr(keras().applications, factory_name)
        shape = (input_size, input_size, 3)
        if weights == weights_sources.IMAGENET:
            try:
                return factory(include_top=True, weights="imagenet", input_shape=shape)
            except Exception as exc:
                raise WeightsError(weights_sources.offline_message(display_name, _one_line(exc))) from exc
        model = factory(include_top=True, weights=None, input_shape=shape)
        if weights != weights_sources.RANDOM:
            path = Path(weights).expanduser()
            if not path.is_file():
                raise WeightsError(f"weights file {path} does not exist")
            try:
                model.load_weights(str(path))
            except Exception as exc:
                raise WeightsError(
                    f"weights file {path} cannot be loaded into {display_name} with its ImageNet "
                    f"classifier (include_top=True): {_one_line(exc)}"
                ) from exc
        return model

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
