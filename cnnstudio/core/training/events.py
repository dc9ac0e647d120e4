"""What a training run reports as it goes, and to what: the events and the state object.

The trainer calls a :class:`TrainState` (the command line's, the window's worker, a test's) at
the beginning, after every batch and epoch and at the end, and asks it whether to stop;
:class:`QuietState` reports nowhere and never stops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from cnnstudio.core.tasks import QuietTask, TaskState


@dataclass
class BeginEvent:
    epochs: int
    initial_epoch: int
    steps_per_epoch: int
    n_train: int
    n_val: int
    device: str
    # "train"; for fine-tuning "head" then "finetune", whose BeginEvent marks where it starts.
    phase: str = "train"
    summary: list | None = None  # per block: trainable and frozen parameters (transfer learning)


@dataclass
class BatchEvent:
    epoch: int  # 0-based
    batch: int  # 1-based count of batches done in this epoch
    steps: int
    logs: dict
    elapsed: float
    eta: float | None


@dataclass
class EpochEvent:
    epoch: int  # 0-based
    logs: dict  # loss, accuracy, val_loss, val_accuracy, ...
    elapsed: float
    eta: float | None


@dataclass
class EndEvent:
    reason: str  # "completed" | "early_stopped" | "cancelled"
    epochs_run: int
    elapsed: float


class TrainState(TaskState, Protocol):
    """What the trainer reports to, and asks whether to stop: the core's :class:`TaskState`
    (status, progress, stop) plus the run's events. Implemented by the CLI and the GUI."""

    def on_begin(self, event: BeginEvent) -> None: ...
    def on_batch(self, event: BatchEvent) -> None: ...
    def on_epoch_end(self, event: EpochEvent) -> None: ...
    def on_end(self, event: EndEvent) -> None: ...


class QuietState(QuietTask):
    """A state that reports nowhere and never stops; the default."""

    def on_begin(self, event):
        pass

    def on_batch(self, event):
        pass

    def on_epoch_end(self, event):
        pass

    def on_end(self, event):
        pass
