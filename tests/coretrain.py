"""Shared pieces for tests that train tiny models through the core."""

from __future__ import annotations

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.data.dataset import make_split, scan_dataset
from cnnstudio.core.model.spec import AugmentSpec, HeadSpec, ModelSpec
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.events import QuietState
from cnnstudio.core.training.trainer import Trainer


def tiny_spec(size: int = 16) -> ModelSpec:
    return ModelSpec(
        backbone="scratch",
        params={"blocks": [{"type": "conv", "filters": 8, "convs": 1, "kernel": 3, "batch_norm": False,
                            "pooling": "max", "dropout": 0.0}]},
        head=HeadSpec(pooling="avg", dense=[], dropout=0.0),
        augmentation=AugmentSpec(),
        input_size=size,
    )


class RecordingState(QuietState):
    """Records every event; asks to stop once ``stop_after_batches`` batch events (which are
    throttled) or ``stop_after_epochs`` epoch events were seen."""

    def __init__(self, stop_after_batches: int | None = None, stop_after_epochs: int | None = None):
        self.events = []
        self.batches = 0
        self.epochs = 0
        self.stop_after = stop_after_batches
        self.stop_after_epochs = stop_after_epochs

    def on_begin(self, e):
        self.events.append(("begin", e))

    def on_batch(self, e):
        self.batches += 1
        self.events.append(("batch", e))

    def on_epoch_end(self, e):
        self.epochs += 1
        self.events.append(("epoch", e))

    def on_end(self, e):
        self.events.append(("end", e))

    def should_stop(self):
        return (self.stop_after is not None and self.batches >= self.stop_after) or (
            self.stop_after_epochs is not None and self.epochs >= self.stop_after_epochs
        )

    def of(self, kind):
        return [e for k, e in self.events if k == kind]


def train(data_dir, run_dir, state=None, spec=None, resume=False, split_seed=0, fallback=None, **config):
    registry = load_registry()
    index = scan_dataset(data_dir)
    split = make_split(index, 0.2, 0.2, seed=split_seed)
    defaults = dict(epochs=3, batch_size=4, learning_rate=0.01, patience=0, seed=1)
    defaults.update(config)
    trainer = Trainer(index, split, spec or tiny_spec(), TrainConfig(**defaults), run_dir, registry, state=state)
    return trainer.run(resume=resume, fallback=fallback)
