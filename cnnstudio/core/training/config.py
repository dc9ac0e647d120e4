"""The hyper-parameters of one run: plain data, stored in the run's ``config.json``.

:class:`TrainConfig` is the one source of their defaults and of their checks: the command line's
options, the window's Train page and the search take their defaults and choices from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from cnnstudio.core.data import CACHE_MODES
from cnnstudio.core.errors import StudioError

OPTIMIZERS = ("adam", "sgd")
MONITORS = ("val_loss", "val_accuracy", "loss", "accuracy")  # what picks the best epoch
CLASS_WEIGHTS = ("none", "auto")  # auto: inverse class frequency
MODES = ("scratch", "extract", "finetune")  # what a pretrained backbone's training does with it


@dataclass
class TrainConfig:
    """Hyper-parameters of one run. Plain data: stored in the run's ``config.json``."""

    epochs: int = 10
    batch_size: int = 32
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    momentum: float = 0.9  # SGD only
    patience: int = 5  # early stopping; 0 turns it off
    monitor: str = "val_loss"
    restore_best: bool = True
    class_weight: str = "none"  # "none" | "auto" (inverse class frequency)
    seed: int = 0
    cache: str = "auto"  # decoded-image cache: auto | memory | disk | none
    # Transfer learning (pretrained backbones): None keeps the spec's own weights and trainable.
    mode: str | None = None  # scratch | extract | finetune
    finetune_blocks: int = 1  # top blocks of the base unfrozen in fine-tuning's second phase
    finetune_from: str = ""  # or: every layer from this one up (overrides finetune_blocks)
    finetune_epochs: int = 5
    finetune_optimizer: str = "sgd"
    finetune_learning_rate: float = 1e-4
    bottleneck: bool = False  # train the head on cached base features (extract / finetune's first phase)
    # Where and how it computes (see core.training.devices): the choices, resolved on the machine that trains.
    devices: str = "auto"  # auto | cpu | N | GPU indices 0,2
    precision: str = "auto"  # auto | float32 | mixed
    jit: str = "auto"  # XLA: auto (Keras' default) | on | off

    def validate(self) -> TrainConfig:
        def bad(msg):
            raise StudioError(msg)

        if self.epochs < 1:
            bad(f"epochs must be at least 1, not {self.epochs}")
        if self.batch_size < 1:
            bad(f"batch size must be at least 1, not {self.batch_size}")
        if self.optimizer not in OPTIMIZERS:
            bad(f"optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.optimizer!r}")
        if not (0 < self.learning_rate < 10):
            bad(f"learning rate must be between 0 and 10, not {self.learning_rate}")
        if self.patience < 0:
            bad(f"patience must be 0 (off) or more, not {self.patience}")
        if self.monitor not in MONITORS:
            bad(f"monitor must be one of {', '.join(MONITORS)}, not {self.monitor!r}")
        if self.cache not in CACHE_MODES:
            bad(f"cache must be one of {', '.join(CACHE_MODES)}, not {self.cache!r}")
        if not (0 <= self.momentum < 1):
            bad(f"momentum must be at least 0 and below 1, not {self.momentum}")
        if self.class_weight not in CLASS_WEIGHTS:
            bad(f"class weights must be one of {', '.join(CLASS_WEIGHTS)}, not {self.class_weight!r}")
        if self.mode is not None and self.mode not in MODES:
            bad(f"mode must be one of {', '.join(MODES)}, not {self.mode!r}")
        from cnnstudio.core.training.devices import check_options

        check_options(self.devices, self.precision, self.jit)
        if self.mode == "finetune":
            if self.finetune_epochs < 1:
                bad(f"fine-tuning epochs must be at least 1, not {self.finetune_epochs}")
            if self.finetune_blocks < 1 and not self.finetune_from:
                bad(f"fine-tuning needs at least 1 block to unfreeze, not {self.finetune_blocks}")
            if self.finetune_optimizer not in OPTIMIZERS:
                bad(f"fine-tuning optimizer must be one of {', '.join(OPTIMIZERS)}, not {self.finetune_optimizer!r}")
            if not (0 < self.finetune_learning_rate < 10):
                bad(f"fine-tuning learning rate must be between 0 and 10, not {self.finetune_learning_rate}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)
