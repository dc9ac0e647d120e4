r"""The plugin module: MobileNetV2 and EfficientNetB0 from ``keras.applications`` as CNN Studio
backbones, registered through ``cnnstudio_register_backbones``.

Both are pretrained providers like the studio's own VGG16 and ResNet50: ``weights`` is
``"imagenet"`` (Keras downloads the file once into its cache), ``"none"`` (random
initialisation) or the path of a weights file of the base. Their ``block_pattern`` groups the
base's layers into the blocks fine-tuning unfreezes and the Model panel counts:

* MobileNetV2: ``expanded_conv``, ``block_1`` ... ``block_16`` (the inverted residual blocks)
  and ``Conv_1``, the last 1x1 convolution;
* EfficientNetB0: ``block1a`` ... ``block7a`` (the MBConv blocks) and ``top``, its last 1x1
  convolution.

The descriptors are light: TensorFlow is imported inside ``build`` only, so listing models or
opening the window does not wait for it.
"""

from __future__ import annotations

import math
from pathlib import Path

from cnnstudio.core.errors import WeightsError
from cnnstudio.core.model import weights as weights_sources
from cnnstudio.core.model.weights import WeightsFile
from cnnstudio.plugins import BackboneProvider, Param, hookimpl

# The plugin API this module is written for; a CNN Studio with an older API refuses to load it.
CNNSTUDIO_API_VERSION = 1

# Where and under which names keras.applications fetches ImageNet weights (Keras 3's
# mobilenet_v2.py and efficientnet.py); the names must match or Keras downloads a second copy.
MOBILENET_V2_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet_v2/"
EFFICIENTNET_URL = "https://storage.googleapis.com/keras-applications/"

# Widths and input sizes Keras has MobileNetV2 ImageNet weights for; other sizes load the 224 px file.
MOBILENET_V2_ALPHAS = (0.35, 0.5, 0.75, 1.0, 1.3, 1.4)
MOBILENET_V2_SIZES = (96, 128, 160, 192, 224)


def mobilenet_v2_weights(alpha: float = 1.0, input_size: int = 224, include_top: bool = False) -> WeightsFile:
    """The ImageNet weights file Keras loads for MobileNetV2 of width ``alpha`` at ``input_size``.

    Keras publishes no hash for these files, so none is checked.
    """
    rows = input_size if input_size in MOBILENET_V2_SIZES else 224
    fname = (
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{float(alpha)}_{rows}"
        f"{'' if include_top else '_no_top'}.h5"
    )
    return WeightsFile(fname, MOBILENET_V2_URL + fname)


# (without the classifier, with it), names and md5 hashes as in Keras' efficientnet.py ("b0").
EFFICIENTNETB0_FILES = (
    WeightsFile("efficientnetb0_notop.h5", EFFICIENTNET_URL + "efficientnetb0_notop.h5",
                "50bc09e76180e00e4465e1a485ddc09d"),
    WeightsFile("efficientnetb0.h5", EFFICIENTNET_URL + "efficientnetb0.h5",
                "902e53a9f72be733fc0bcb005b3ebbac"),
)


def load_application(factory_name: str, display_name: str, weights: str, input_size: int,
                     include_top: bool, for_weights_file=None, **options):
    """``keras.applications.<factory_name>`` with ImageNet weights, a weights file or random
    weights; a failure to get the weights is a :class:`WeightsError` the user can act on.

    ``for_weights_file(model)`` turns the randomly initialised model into the network the
    ImageNet weights belong to, where Keras builds the two differently (EfficientNet).
    The base is renamed ``"backbone"`` afterwards instead of passing ``name=``: EfficientNet
    derives the name of its ImageNet file from ``name`` and would look for ``backbone_notop.h5``.
    """
    from cnnstudio.core.tf import keras

    factory = getattr(keras().applications, factory_name)
    kwargs = {"include_top": include_top, "input_shape": (input_size, input_size, 3), **options}
    if weights == weights_sources.IMAGENET:
        try:
            model = factory(weights="imagenet", **kwargs)
        except Exception as exc:
            reason = weights_sources.failure_reason(exc)
            raise WeightsError(weights_sources.offline_message(display_name, reason)) from exc
    elif weights == weights_sources.RANDOM:
        model = factory(weights=None, **kwargs)
    else:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file {path} does not exist")
        model = factory(weights=None, **kwargs)
        if for_weights_file is not None:
            model = for_weights_file(model)
        _load_weights_file(model, path, display_name, include_top)
    if not include_top:
        model.name = "backbone"
    return model


def _load_weights_file(model, path: Path, display_name: str, include_top: bool) -> None:
    try:
        model.load_weights(str(path))
    except Exception as exc:
        what = ("with its ImageNet classifier (include_top=True)" if include_top
                else "without its classifier (include_top=False)")
        reason = weights_sources.failure_reason(exc)
        raise WeightsError(f"weights file {path} cannot be loaded into {display_name} {what}: {reason}") from exc


def build_mobilenetv2(params: dict, input_size: int, registry):
    return load_application("MobileNetV2", "MobileNetV2", params["weights"], input_size,
                            include_top=False, alpha=params["alpha"])


def build_mobilenetv2_imagenet(weights: str, input_size: int = 224):
    """The whole ImageNet classifier (width 1.0), for "What ImageNet sees"."""
    return load_application("MobileNetV2", "MobileNetV2", weights, input_size, include_top=True)


# Keras' efficientnet.py: with weights="imagenet" only, a Rescaling layer after the input
# Normalization divides once more by sqrt(stddev), as the original ImageNet training did.
IMAGENET_STDDEV_RGB = (0.229, 0.224, 0.225)


def efficientnet_as_for_imagenet(model):
    """``model`` (built with ``weights=None``) with the Rescaling layer Keras adds for ImageNet
    weights, so a weights file (Keras' own ``efficientnetb0_notop.h5`` copied to a machine
    without internet, or a fine-tuned base) gives the same network as ``weights="imagenet"``."""
    from cnnstudio.core.tf import keras

    K = keras()

    def call(layer, *args, **kwargs):
        outputs = layer(*args, **kwargs)
        if isinstance(layer, K.layers.Normalization):
            outputs = K.layers.Rescaling([1.0 / math.sqrt(s) for s in IMAGENET_STDDEV_RGB])(outputs)
        return outputs

    return K.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def build_efficientnetb0(params: dict, input_size: int, registry):
    return load_application("EfficientNetB0", "EfficientNetB0", params["weights"], input_size,
                            include_top=False, for_weights_file=efficientnet_as_for_imagenet)


def build_efficientnetb0_imagenet(weights: str, input_size: int = 224):
    """The whole ImageNet classifier, for "What ImageNet sees"."""
    return load_application("EfficientNetB0", "EfficientNetB0", weights, input_size, include_top=True,
                            for_weights_file=efficientnet_as_for_imagenet)


WEIGHTS = Param(
    "weights", "weights", "imagenet", label="Weights",
    help="'imagenet' (downloaded once), 'none' (random initialisation) or a .weights.h5 / .h5 file of the base.",
)
TRAINABLE = Param(
    "trainable", "bool", False, label="Train the base",
    help="Off: the base is frozen and only the head trains (feature extraction).",
)

MOBILENETV2 = BackboneProvider(
    id="mobilenetv2",
    display_name="MobileNetV2",
    build=build_mobilenetv2,
    params=(
        WEIGHTS,
        Param("alpha", "choice", 1.0, label="Width (alpha)", choices=MOBILENET_V2_ALPHAS,
              help="Multiplies the number of filters in every layer: below 1.0 is smaller and faster. "
                   "Keras has ImageNet weights for each of these widths."),
        TRAINABLE,
    ),
    default_input_size=224,
    min_input_size=32,
    preprocessing="keras.applications.mobilenet_v2",
    pretrained=True,
    description="MobileNetV2 (Sandler et al. 2018): a base of 2.3 M parameters at width 1.0, fast on a CPU; "
                "ImageNet weights; inputs scaled to [-1, 1].",
    # The file depends on the width and the input size: the studio fetches the right one, with progress.
    imagenet_weights=lambda params, input_size: mobilenet_v2_weights(params.get("alpha", 1.0), input_size),
    imagenet_top=mobilenet_v2_weights(1.0, 224, include_top=True),
    build_imagenet=build_mobilenetv2_imagenet,
    block_pattern=r"^(expanded_conv|block_\d+|Conv_1)(?:_|$)",
)

EFFICIENTNETB0 = BackboneProvider(
    id="efficientnetb0",
    display_name="EfficientNetB0",
    build=build_efficientnetb0,
    params=(WEIGHTS, TRAINABLE),
    default_input_size=224,
    min_input_size=32,
    preprocessing="keras.applications.efficientnet",
    pretrained=True,
    description="EfficientNetB0 (Tan & Le 2019): a base of 4.0 M parameters; ImageNet weights; the model "
                "normalises its own input.",
    imagenet_weights=EFFICIENTNETB0_FILES[0],
    imagenet_top=EFFICIENTNETB0_FILES[1],
    build_imagenet=build_efficientnetb0_imagenet,
    block_pattern=r"^(block\d+[a-z]|top)_",
)


@hookimpl
def cnnstudio_register_backbones(registry):
    for provider in (MOBILENETV2, EFFICIENTNETB0):
        registry.add_backbone(provider)
