"""The ``conv`` block of scratch stacks: the seed reports' VGG-like block."""

from __future__ import annotations

from cnnstudio.plugins import BlockProvider, Param


def apply_conv(x, params: dict, name: str):
    """``convs`` x (Conv2D same-padded [-> BatchNorm] -> ReLU), then 2x2 pooling, then dropout."""
    from cnnstudio.core.tf import keras

    layers = keras().layers
    batch_norm = params["batch_norm"]
    for i in range(1, params["convs"] + 1):
        x = layers.Conv2D(
            params["filters"],
            params["kernel"],
            padding="same",
            # Batch-norm's shift makes the conv bias redundant.
            use_bias=not batch_norm,
            activation=None if batch_norm else "relu",
            name=f"{name}_conv{i}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{i}")(x)
            x = layers.Activation("relu", name=f"{name}_relu{i}")(x)
    if params["pooling"] == "max":
        x = layers.MaxPooling2D(2, name=f"{name}_pool")(x)
    elif params["pooling"] == "avg":
        x = layers.AveragePooling2D(2, name=f"{name}_pool")(x)
    if params["dropout"] > 0:
        x = layers.Dropout(params["dropout"], name=f"{name}_dropout")(x)
    return x


CONV = BlockProvider(
    id="conv",
    display_name="Conv block",
    apply=apply_conv,
    params=(
        Param("filters", "int", 32, label="Filters", minimum=1, maximum=4096, step=1,
              help="Number of filters of each convolution."),
        Param("convs", "int", 2, label="Convolutions", minimum=1, maximum=8, step=1,
              help="Convolutions before the pooling."),
        Param("kernel", "int", 3, label="Kernel size", minimum=1, maximum=11, step=1),
        Param("batch_norm", "bool", False, label="Batch norm",
              help="Batch normalisation between each convolution and its ReLU."),
        Param("pooling", "choice", "max", label="Pooling", choices=("max", "avg", "none"),
              help="2x2 pooling after the convolutions (halves the image size)."),
        Param("dropout", "float", 0.0, label="Dropout", minimum=0.0, maximum=0.9, step=0.05,
              help="Dropout rate after the pooling."),
    ),
    description="Same-padded ReLU convolutions, optional batch norm, 2x2 pooling and dropout (VGG-like).",
)
