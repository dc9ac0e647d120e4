"""The ``scratch`` backbone: a stack of registered blocks, trained from random initialisation."""

from __future__ import annotations

from cnnstudio.core.errors import StudioError
from cnnstudio.core.plugincode import PLUGIN_FAILURES, describe, reraise_if_pressed, users_ctrl_c
from cnnstudio.plugins import BackboneProvider, BuildError, Param


def build_scratch(params: dict, input_size: int, registry):
    """Apply the blocks of ``params["blocks"]`` in order; a failing block names its plugin."""
    from cnnstudio.core.tf import keras as load_keras

    keras = load_keras()
    inputs = keras.Input((input_size, input_size, 3), name="backbone_input")
    x = inputs
    for index, block in enumerate(params["blocks"], 1):
        block_id = block["type"]
        provider = registry.blocks[block_id]
        block_params = {k: v for k, v in block.items() if k != "type"}
        try:
            with users_ctrl_c() as pressed:
                x = provider.apply(x, block_params, f"block{index}")
        except StudioError:
            raise
        except PLUGIN_FAILURES as exc:
            reraise_if_pressed(exc, pressed)
            raise BuildError(
                f"block {block_id!r} from plugin {registry.origin('block', block_id)!r} "
                f"failed to build: {describe(exc)}"
            ) from exc
    return keras.Model(inputs, x, name="backbone")


SCRATCH = BackboneProvider(
    id="scratch",
    display_name="Scratch (blocks)",
    build=build_scratch,
    params=(
        Param(
            "blocks",
            "blocks",
            [{"type": "conv", "filters": 32}, {"type": "conv", "filters": 64}],
            label="Blocks",
            help="The blocks, in order; each pooling block halves the image size.",
        ),
    ),
    default_input_size=64,
    min_input_size=8,
    preprocessing="rescale",
    description="A stack of conv blocks trained from scratch on pixels scaled to [0, 1].",
)
