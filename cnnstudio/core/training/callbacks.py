"""Keras callbacks of the trainer: progress relay with cancel, checkpoints, resumable early stopping.

Imported only once training starts (it imports Keras).
"""

from __future__ import annotations

import time

import keras
import numpy as np

from cnnstudio.core.runs import checkpoint
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.training.events import BatchEvent, EpochEvent


def floats(logs) -> dict:
    return {k: float(v) for k, v in (logs or {}).items() if np.ndim(v) == 0}


class FirstPass(keras.callbacks.Callback):
    """Epoch k visits pass k's order (a resumed run's the same as if it had not stopped), whatever
    iterators Keras made before training began: ``fit`` under a distribution strategy draws one
    order already, for the batch it builds the model with."""

    def __init__(self, passes, initial_epoch: int = 0):
        super().__init__()
        self.passes = passes
        self.initial_epoch = initial_epoch

    def on_train_begin(self, logs=None):
        self.passes.restart(self.initial_epoch)


class Relay(keras.callbacks.Callback):
    """Relays batch and epoch progress to a ``TrainState`` and stops at the next batch on cancel.

    Batch events are throttled to one per ``min_interval`` seconds (plus the epoch's last batch),
    so a window or a terminal is never flooded.
    """

    def __init__(self, state, epochs, steps_per_epoch, min_interval=0.1, prior_seconds=0.0):
        super().__init__()
        self.state = state
        self.epochs = epochs
        self.steps = max(1, steps_per_epoch)
        self.min_interval = min_interval
        self.prior = prior_seconds
        self.cancelled = False
        self.epoch_times: list[float] = []
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return self.prior + time.perf_counter() - self.t0

    def on_train_begin(self, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch
        self.epoch_t0 = time.perf_counter()
        self.last_emit = 0.0

    def _eta(self, epoch, batches_done):
        spent = time.perf_counter() - self.epoch_t0
        if self.epoch_times:
            per_epoch = float(np.mean(self.epoch_times[-3:]))
        elif batches_done:
            per_epoch = spent / batches_done * self.steps
        else:
            return None
        remaining_this = max(0.0, per_epoch - spent) if batches_done < self.steps else 0.0
        return remaining_this + per_epoch * (self.epochs - epoch - 1)

    def _check_cancel(self):
        if not self.cancelled and self.state.should_stop():
            self.cancelled = True
        if self.cancelled:
            self.model.stop_training = True
            self.model.stop_evaluating = True

    def on_train_batch_end(self, batch, logs=None):
        self._check_cancel()
        now = time.perf_counter()
        done = batch + 1
        if now - self.last_emit >= self.min_interval or done >= self.steps or self.cancelled:
            self.last_emit = now
            self.state.on_batch(
                BatchEvent(self.epoch, done, self.steps, floats(logs), self.elapsed(), self._eta(self.epoch, done))
            )

    def on_test_batch_end(self, batch, logs=None):
        self._check_cancel()

    def on_epoch_end(self, epoch, logs=None):
        if self.cancelled:
            return  # an incomplete epoch is neither reported nor checkpointed
        self.epoch_times.append(time.perf_counter() - self.epoch_t0)
        self.state.on_epoch_end(EpochEvent(epoch, floats(logs), self.elapsed(), self._eta(epoch, self.steps)))


class ResumableEarlyStopping(keras.callbacks.EarlyStopping):
    """Keras' early stopping, with its counters restored when a run resumes."""

    def __init__(self, restored=None, **kwargs):
        super().__init__(**kwargs)
        self.restored = restored

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if self.restored:
            self.wait = self.restored["wait"]
            self.best = self.restored["best"]
            self.best_epoch = self.restored["best_epoch"]


class Checkpoint(keras.callbacks.Callback):
    """After every complete epoch, one commit (:func:`cnnstudio.core.runs.checkpoint.commit`):
    the last model, the best weights when the epoch improved, the history and the resumable
    state become visible together."""

    def __init__(self, paths: runs.RunPaths, monitor: str, history: list, relay: Relay, stopper=None, best=None,
                 extra: dict | None = None):
        super().__init__()
        self.extra = extra or {}  # e.g. the fine-tuning phase, written with each row and the state
        self.paths = paths
        self.monitor = monitor
        self.history = history
        self.relay = relay
        self.stopper = stopper
        self.best = best

    def on_epoch_end(self, epoch, logs=None):
        if self.relay.cancelled:
            return
        logs = floats(logs)
        logs["epoch"] = epoch + 1
        logs["seconds"] = self.relay.epoch_times[-1] if self.relay.epoch_times else 0.0
        if "phase" in self.extra:
            logs["phase"] = self.extra["phase"]
        history = [*self.history, logs]
        value = logs.get(self.monitor)
        improved = runs.improves(value, self.best, self.monitor)
        best = value if improved else self.best
        s = self.stopper
        checkpoint.commit(
            self.paths,
            {
                "epochs_done": epoch + 1,
                "history": history,
                "best": best,
                "monitor": self.monitor,
                "train_seconds": self.relay.elapsed(),
                "early_stopping": None if s is None else {"wait": s.wait, "best": s.best, "best_epoch": s.best_epoch},
                **self.extra,
            },
            last=self.model,
            best=self.model if improved else None,
            best_epoch=epoch + 1,
        )
        self.history.append(logs)  # the run's history holds committed epochs only
        self.best = best
