"""What several commands share: their usage error, the plugin registry, the dataset folder, and the
model and training settings that the training options describe ('train', 'tune', 'cv').
"""

from __future__ import annotations

import json
import sys

from cnnstudio.core.errors import StudioError


class CliError(StudioError):
    """A usage problem found after parsing (e.g. a folder that does not exist)."""


def dataset_dir(args, state) -> str:
    """DATA_DIR, or with ``--sample`` the sample dataset's folder, generated first if need be,
    reporting to the command's terminal ``state`` (which the caller lets Ctrl-C stop)."""
    if getattr(args, "sample", False):
        from cnnstudio.core.data.sample import sample_dataset_path

        if args.data_dir:
            raise CliError("give either DATA_DIR or --sample, not both")
        print("Using the built-in sample dataset", file=sys.stderr)
        try:
            return str(sample_dataset_path(state=state))
        finally:
            state.close()
    if not args.data_dir:
        raise CliError("give a DATA_DIR (a folder with one sub-folder per class) or --sample")
    return args.data_dir


def plugin_registry():
    from cnnstudio.builtins.manager import default_manager

    return default_manager().registry


# 'train' options and the TrainConfig fields they set (and, for 'train --config FILE', override).
CONFIG_OPTIONS = {
    "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "learning_rate",
    "momentum": "momentum", "patience": "patience", "monitor": "monitor", "class_weights": "class_weight",
    "seed": "seed", "cache": "cache", "mode": "mode",
    "finetune_blocks": "finetune_blocks", "finetune_from": "finetune_from", "finetune_epochs": "finetune_epochs",
    "finetune_lr": "finetune_learning_rate", "bottleneck": "bottleneck",
    "devices": "devices", "precision": "precision", "jit": "jit",  # 'train' alone has these
}


def backbone_params(items: list[str]) -> dict:
    """``--param NAME=VALUE`` options as a dict: VALUE as JSON when it is a list or a mapping (a
    scratch stack's blocks), else as typed (the backbone's schema converts numbers and booleans)."""
    params = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--param {item!r}: expected NAME=VALUE, e.g. alpha=0.35")
        value = value.strip()
        if value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CliError(f"--param {name}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        params[name.strip()] = value
    return params


def train_config(args):
    """The training configuration that the training options describe, checked by
    :meth:`TrainConfig.validate` (a value it refuses is a one-line error)."""
    from cnnstudio.core.training.config import TrainConfig

    options = {field: getattr(args, dest) for dest, field in CONFIG_OPTIONS.items() if hasattr(args, dest)}
    for name in ("epochs", "devices", "precision", "jit"):
        if options.get(name, 0) is None:  # not given: the TrainConfig default
            del options[name]
    return TrainConfig(**options).validate()


def spec_and_config(args, registry):
    """The model spec and training configuration that the training options describe."""
    from cnnstudio.core.model.spec import resolve_spec

    config = train_config(args)
    spec = resolve_spec(registry, args.model, input_size=args.image_size, weights=args.weights,
                        params=backbone_params(args.param))
    return spec, config
