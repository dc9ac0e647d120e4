"""Training without a window: :class:`Trainer` wraps ``model.fit`` for one run folder.

The trainer reports to a small state object (:class:`TrainState`) and asks it whether to stop,
so the same code serves the command line, the window's worker thread and the tests. A Keras
callback relays batch and epoch events and sets ``model.stop_training`` on cancel; every epoch
leaves an atomic checkpoint from which an interrupted run resumes.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from cnnstudio.core import runs
from cnnstudio.core.atomic import read_json
from cnnstudio.core.dataset import DatasetIndex, Split
from cnnstudio.core.errors import StudioError
from cnnstudio.core.pipeline import ImagePipeline, cache_mode_for
from cnnstudio.core.spec import ModelSpec
from cnnstudio.core.tf import device_description, keras

OPTIMIZERS = ("adam", "sgd")

# The pipeline skips unreadable files, so its length is unknown until the first epoch ends;
# Keras warns about that at every first epoch although nothing is wrong.
warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)


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
        if self.class_weight not in ("none", "auto"):
            bad(f"class weights must be 'none' or 'auto', not {self.class_weight!r}")
        return self

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


# ----------------------------------------------------------------------------- events


@dataclass
class BeginEvent:
    epochs: int
    initial_epoch: int
    steps_per_epoch: int
    n_train: int
    n_val: int
    device: str


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


class TrainState(Protocol):
    """What the trainer reports to, and asks whether to stop. Implemented by the CLI and the GUI."""

    def on_begin(self, event: BeginEvent) -> None: ...
    def on_batch(self, event: BatchEvent) -> None: ...
    def on_epoch_end(self, event: EpochEvent) -> None: ...
    def on_end(self, event: EndEvent) -> None: ...
    def on_status(self, message: str) -> None: ...
    def on_progress(self, task: str, done: int, total: int) -> None: ...
    def should_stop(self) -> bool: ...


class QuietState:
    """A state that reports nowhere and never stops; the default."""

    def on_begin(self, event):
        pass

    def on_batch(self, event):
        pass

    def on_epoch_end(self, event):
        pass

    def on_end(self, event):
        pass

    def on_status(self, message):
        pass

    def on_progress(self, task, done, total):
        pass

    def should_stop(self):
        return False


@dataclass
class RunResult:
    run_dir: Path
    reason: str
    epochs_run: int
    history: list[dict]
    metrics: dict | None
    train_seconds: float
    skipped_files: list[dict] = field(default_factory=list)


# ----------------------------------------------------------------------------- trainer


class Trainer:
    """Trains one model spec on one split of a dataset into ``run_dir``.

    ``run()`` builds (or, with ``resume=True``, reloads) the model, fits it with checkpoints
    every epoch, evaluates it on the test split and writes the run folder and model bundle.
    """

    def __init__(
        self,
        index: DatasetIndex,
        split: Split,
        spec: ModelSpec,
        config: TrainConfig,
        run_dir: str | Path,
        registry,
        state: TrainState | None = None,
    ):
        self.index = index
        self.split = split
        self.spec = spec.validate(registry)
        self.config = config.validate()
        self.run_dir = Path(run_dir)
        self.registry = registry
        self.state = state or QuietState()
        index.raise_for_errors()
        if not split.train:
            raise StudioError("the training split is empty; lower the validation and test fractions")

    # The run folder's layout lives in core.runs; these are shortcuts.
    @property
    def paths(self) -> runs.RunPaths:
        return runs.RunPaths(self.run_dir)

    def _compile(self, model):
        K = keras()
        c = self.config
        if c.optimizer == "sgd":
            opt = K.optimizers.SGD(learning_rate=c.learning_rate, momentum=c.momentum)
        else:
            opt = K.optimizers.Adam(learning_rate=c.learning_rate)
        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    def _class_weight(self):
        if self.config.class_weight != "auto":
            return None
        labels = np.array(self.index.labels(self.split.train))
        counts = np.bincount(labels, minlength=len(self.index.class_names)).astype(float)
        counts[counts == 0] = 1.0
        weights = len(labels) / (len(counts) * counts)
        return {i: float(w) for i, w in enumerate(weights)}

    def run(self, resume: bool = False) -> RunResult:
        from cnnstudio.core.callbacks import Checkpoint, Relay, ResumableEarlyStopping

        K = keras()
        c = self.config
        p = self.paths
        K.utils.set_random_seed(c.seed)
        device = device_description()
        state = runs.load_train_state(p) if resume else None
        if resume and state is None:
            raise StudioError(f"{self.run_dir}: nothing to resume (no checkpoint in {p.checkpoints})")

        if state is None:
            runs.write_config(p, self.index, self.split, self.spec, c, device)
            model = self._build()
            history: list[dict] = []
            initial_epoch = 0
            prior_seconds = 0.0
        else:
            model = K.saving.load_model(p.last_checkpoint, safe_mode=True)
            history = state["history"]
            initial_epoch = state["epochs_done"]
            prior_seconds = state["train_seconds"]
            self.state.on_status(f"resuming from epoch {initial_epoch + 1}")

        n_classes = len(self.index.class_names)
        size = self.spec.input_size
        # One decision for the run: training and validation images share the memory budget.
        cache = cache_mode_for(len(self.split.train) + len(self.split.val), size, c.cache)
        pipe = ImagePipeline(size, cache=cache, cache_dir=p.root / ".cache", progress=self._progress("decoding images"))
        try:
            train_ds = pipe.dataset(
                self.index.paths(self.split.train), self.index.labels(self.split.train),
                batch_size=c.batch_size, shuffle=True, seed=c.seed, name="train",
            )
            val_ds = None
            if self.split.val:
                val_ds = pipe.dataset(
                    self.index.paths(self.split.val), self.index.labels(self.split.val),
                    batch_size=c.batch_size, name="val",
                )
            monitor = c.monitor if val_ds is not None else c.monitor.removeprefix("val_")
            steps = math.ceil(len(self.split.train) / c.batch_size)
            relay = Relay(self.state, c.epochs, steps, prior_seconds=prior_seconds)
            stopper = None
            callbacks = [relay]
            if c.patience > 0:
                stopper = ResumableEarlyStopping(
                    monitor=monitor, patience=c.patience, restore_best_weights=False,
                    restored=state and state.get("early_stopping"),
                )
                callbacks.append(stopper)
            callbacks.append(Checkpoint(p, monitor, history, relay, stopper, best=state and state.get("best")))
            self.state.on_begin(
                BeginEvent(c.epochs, initial_epoch, steps, len(self.split.train), len(self.split.val), device)
            )
            t0 = time.perf_counter()
            if initial_epoch < c.epochs:
                model.fit(
                    train_ds, validation_data=val_ds, epochs=c.epochs, initial_epoch=initial_epoch,
                    class_weight=self._class_weight(), callbacks=callbacks, verbose=0, shuffle=False,
                )
            train_seconds = prior_seconds + time.perf_counter() - t0
            if relay.cancelled:
                reason = "cancelled"
            elif stopper is not None and stopper.stopped_epoch > 0:
                reason = "early_stopped"
            else:
                reason = "completed"
            if c.restore_best and p.best_weights.exists() and history:
                model.load_weights(p.best_weights)
            epochs_run = len(history)
            self.state.on_end(EndEvent(reason, epochs_run, train_seconds))

            metrics = None
            if reason != "cancelled" and self.split.test:
                from cnnstudio.core.evaluation import evaluate

                self.state.on_status("evaluating on the test split")
                result = evaluate(model, pipe, self.index, self.split.test, batch_size=c.batch_size)
                metrics = result.metrics()
                runs.write_predictions(p, result)
            skipped = pipe.recorder.as_list()
            runs.write_results(
                p, model, self.index, self.spec, reason=reason, epochs_run=epochs_run, history=history,
                train_seconds=train_seconds, device=device, metrics=metrics, skipped=skipped, n_classes=n_classes,
            )
        finally:
            pipe.close()
        return RunResult(self.run_dir, reason, epochs_run, history, metrics, train_seconds, skipped)

    def _progress(self, task: str):
        """A ``progress(done, total)`` callback reporting ``task`` to the state, if it takes progress."""
        report = getattr(self.state, "on_progress", None)
        if report is None:
            return None
        return lambda done, total: report(task, done, total)

    def _build(self):
        from cnnstudio.core.models import build_model

        self.state.on_status(f"building {self.spec.backbone}")
        model = build_model(self.spec, len(self.index.class_names), self.registry)
        self._compile(model)
        return model


def read_history(run_dir) -> list[dict]:
    return read_json(runs.RunPaths(Path(run_dir)).train_state)["history"]
