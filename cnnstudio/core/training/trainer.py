"""Training without a window: :class:`Trainer` wraps ``model.fit`` for one run folder.

The trainer reports to a small state object (:class:`TrainState`) and asks it whether to stop,
so the same code serves the command line, the window's worker thread and the tests. A Keras
callback relays batch and epoch events and sets ``model.stop_training`` on cancel; every epoch
commits a checkpoint as one (:mod:`cnnstudio.core.runs.checkpoint`), from which an interrupted
run resumes.
"""

from __future__ import annotations

import functools
import math
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from cnnstudio.core.data.dataset import DatasetIndex, Split
from cnnstudio.core.data.pipeline import ImagePipeline, cache_mode_for
from cnnstudio.core.errors import Cancelled, StudioError
from cnnstudio.core.io.atomic import disk_failure
from cnnstudio.core.io.hashing import content_hashes
from cnnstudio.core.io.lock import hold_folder
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.runs import checkpoint
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.tf import device_description, keras
from cnnstudio.core.tf.order import Passes
from cnnstudio.core.tf.seeding import load_model, seeded
from cnnstudio.core.training import devices
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.events import BeginEvent, EndEvent, QuietState, TrainState

# The pipeline skips unreadable files, so its length is unknown until the first epoch ends;
# Keras warns about that at every first epoch although nothing is wrong.
warnings.filterwarnings("ignore", message="Your input ran out of data", category=UserWarning)


@dataclass
class RunResult:
    run_dir: Path
    reason: str
    epochs_run: int
    history: list[dict]
    metrics: dict | None
    train_seconds: float
    skipped_files: list[dict] = field(default_factory=list)
    bundle: bool = False  # whether this session wrote the model bundle (the run's model is in run_dir/model)


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
        cluster=None,
        strategy=None,
    ):
        """``cluster`` (a :class:`~cnnstudio.core.training.cluster.Cluster`) with the
        ``strategy`` that joined it trains one run on several machines: every machine builds
        the same Trainer; the chief writes ``run_dir``, the others a temporary folder."""
        from cnnstudio.core.model.transfer import apply_mode

        self.index = index
        self.split = split
        self.config = config.validate()
        spec = spec.validate(registry)
        self.spec = apply_mode(spec, self.config.mode, registry.backbones[spec.backbone])
        self.run_dir = Path(run_dir)
        self.registry = registry.snapshot()  # the providers it started with, whatever a reload does meanwhile
        self.state = state or QuietState()
        index.raise_for_errors()
        if not split.train:
            raise StudioError("the training split is empty; lower the validation and test fractions")
        self.cluster = cluster
        c = self.config
        if cluster is not None:
            self.compute = devices.for_strategy(strategy, c.precision, c.jit)
        else:  # one machine: the devices the run asks for, MirroredStrategy over several
            self.compute = devices.resolve(c.devices, c.precision, c.jit)
            strategy = self.compute.strategy
        self.strategy = strategy
        replicas = self.compute.replicas
        if replicas > 1 and c.batch_size % replicas:
            over = f"the cluster's {replicas} replicas" if cluster is not None else f"the {replicas} devices"
            raise StudioError(f"--batch-size {c.batch_size} does not split over {over}; use a multiple of {replicas}")
        if cluster is not None:
            if len(split.train) < self.config.batch_size:
                raise StudioError(f"the training split ({len(split.train)} images) is smaller than one batch "
                                  f"({self.config.batch_size}) of the cluster; lower --batch-size")

    # The run folder's layout lives in core.runs.folder; these are shortcuts.
    @property
    def paths(self) -> runs.RunPaths:
        return runs.RunPaths(self.run_dir)

    def _compile(self, model, optimizer: str | None = None, learning_rate: float | None = None):
        K = keras()
        c = self.config
        optimizer = optimizer or c.optimizer
        learning_rate = learning_rate or c.learning_rate
        if optimizer == "sgd":
            opt = K.optimizers.SGD(learning_rate=learning_rate, momentum=c.momentum)
        else:
            opt = K.optimizers.Adam(learning_rate=learning_rate)
        from cnnstudio.core.training.devices import jit_compile

        model.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                      jit_compile=jit_compile(c.jit))
        self._jit = model.jit_compile

    def _class_weight(self):
        if self.config.class_weight != "auto":
            return None
        labels = np.array(self.index.labels(self.split.train))
        counts = np.bincount(labels, minlength=len(self.index.class_names)).astype(float)
        counts[counts == 0] = 1.0
        weights = len(labels) / (len(counts) * counts)
        return {i: float(w) for i, w in enumerate(weights)}

    def run(self, resume: bool = False, fallback: str | None = None) -> RunResult:
        """Train (or, with ``resume``, continue) the run, holding its folder: a second process or
        job on the same folder is refused at once (:class:`~cnnstudio.core.io.lock.FolderBusy`).

        A run with a damaged checkpoint is refused (:class:`~cnnstudio.core.runs.checkpoint.CheckpointError`)
        unless ``fallback`` says how to go on: ``"best"`` from the best epoch's weights (the epochs
        after it are trained again, the optimizer starts afresh), ``"last"`` from the last epoch
        without the best weights, ``"fresh"`` from epoch 1."""
        if fallback not in (None, "best", "last", "fresh"):
            raise ValueError(f"unknown fallback {fallback!r}")
        if self.cluster is not None and not self.cluster.is_chief:
            result = self._run_as_worker(resume, fallback)
        else:
            with hold_folder(self.run_dir, "trained"):
                result = self._train(resume, fallback)
        if self.cluster is not None:
            # The workers wait while the chief evaluates and writes the run, then all leave
            # together: a worker gone first reads as a crash in the chief's log.
            from cnnstudio.core.training.cluster import barrier

            barrier(self.strategy, self.cluster)
        return result

    def _run_as_worker(self, resume: bool, fallback: str | None) -> RunResult:
        """A worker other than the chief trains into a temporary folder, from a copy of the
        chief's checkpoint on a resume (read where every machine sees the run folder), and
        removes it at the end: it writes nothing the user keeps."""
        import shutil
        import tempfile

        chief_dir = self.run_dir
        with tempfile.TemporaryDirectory(prefix="cnnstudio-worker-") as private:
            self.run_dir = Path(private) / "run"
            self.run_dir.mkdir()
            if resume and fallback != "fresh":
                source = runs.RunPaths(chief_dir)
                if not source.train_state.exists() and not source.config.exists():
                    raise StudioError(f"{chief_dir}: {self.cluster.name()} cannot read the chief's run folder; "
                                      "--resume on a cluster needs it on a file system every machine reads")
                for path in (source.config, source.checkpoints):
                    if path.is_dir():
                        shutil.copytree(path, self.paths.root / path.name)
                    elif path.exists():
                        shutil.copy2(path, self.paths.root / path.name)
            try:
                return self._train(resume, fallback)
            finally:
                self.run_dir = chief_dir

    def _saved_checkpoint(self, resume: bool, fallback: str | None):
        """The committed checkpoint to go on from (None: train from epoch 1), after removing what
        an interrupted write left behind."""
        p = self.paths
        removed = checkpoint.clean(p)
        if removed:
            self.state.on_status(f"removed {len(removed)} file(s) an interrupted write left in {p.root}")
        if not resume or fallback == "fresh":
            if resume and p.train_state.exists():
                self.state.on_status(f"starting over: the checkpoint in {p.checkpoints} is discarded")
            checkpoint.discard(p)
            return None
        saved = checkpoint.resumable(p, fallback)
        if saved is None:
            if not p.config.exists():
                raise StudioError(f"{self.run_dir}: nothing to resume (no config.json)")
            self.state.on_status("no epoch was saved before the run stopped; training from epoch 1")
            checkpoint.write_history_view(p, [])
            return None
        checkpoint.write_history_view(p, saved.state["history"])  # repaired: the history may lag the commit
        if fallback == "last" and saved.best is not None:
            self.state.on_status(f"going on without the best epoch's weights ({saved.best.name})")
            checkpoint.rewrite(p, best=None, drop_best=True)
            saved = checkpoint.read(p)
        return saved

    def _scope(self):
        """Where models are built, loaded and compiled: the strategy's scope under one."""
        import contextlib

        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    def _load_last(self, saved):
        try:
            with self._scope(), self.compute.policy():
                return load_model(saved.last)
        except Exception as exc:  # noqa: BLE001 - a damaged model file, whatever Keras says about it
            raise checkpoint.damaged(saved, "last", _one_line(exc, saved.last)) from None

    def _from_best(self, saved, use_bottleneck: bool):
        """The model and state of the best epoch, committed as the checkpoint to go on from."""
        p = self.paths
        if saved.best is None or not checkpoint.resumable_from_best(saved) or use_bottleneck:
            raise StudioError(f"{p.train_state}: the run cannot go on from its best epoch (the best weights "
                              "are missing or belong to a phase of a transfer); start over with --fresh")
        n = int(saved.best_epoch)
        with seeded(self.config.seed):
            model = self._build()
        try:
            with warnings.catch_warnings():  # the optimizer's saved state is left out on purpose: it starts afresh
                warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
                model.load_weights(saved.best)
        except Exception as exc:  # noqa: BLE001
            raise checkpoint.damaged(saved, "best", _one_line(exc, saved.best)) from None
        state = dict(saved.state)
        history = state["history"][:n]
        best = history[-1].get(state["monitor"])
        state.update(epochs_done=n, history=history, best=best,
                     train_seconds=sum(float(r.get("seconds") or 0.0) for r in history),
                     early_stopping=None if state.get("early_stopping") is None
                     else {"wait": 0, "best": best, "best_epoch": n - 1})
        state = {k: v for k, v in state.items() if k not in ("generation", "files")}
        self.state.on_status(f"going on from the best epoch ({n}); epochs after it are trained again")
        checkpoint.commit(p, state, last=model)
        return model, checkpoint.read(p)

    def _train(self, resume: bool, fallback: str | None) -> RunResult:
        c = self.config
        p = self.paths
        device = self._device
        saved = self._saved_checkpoint(resume, fallback)
        state = saved.state if saved else None
        if state is not None:
            self._keep_precision()
        if self.compute.precision != "float32" and self.compute.kind == "CPU":
            self.state.on_status(f"{self.compute.precision} on the CPU: far slower than float32 (the CPU has no "
                                 "fast float16 arithmetic); mixed precision is for GPUs")
        phase = state.get("phase", "train") if state else ("head" if c.mode == "finetune" else "train")
        use_bottleneck = self._bottleneck_allowed() and phase in ("train", "head")
        self._saved = saved
        self._fingerprint = None
        if self.cluster is not None:
            self._check_cluster(state)

        if state is None:
            if not (resume and p.config.exists()):  # a resume keeps the run's record
                runs.write_config(p, self.index, self.split, self.spec, c, device, weights=self.weights_record(),
                                  extra={**self._cluster_record(), **self.compute.record()},
                                  fingerprint=self._fingerprint)
            with seeded(c.seed):
                model = self._build()
            history: list[dict] = []
            prior_seconds = 0.0
        else:
            if fallback == "best":
                model, saved = self._from_best(saved, use_bottleneck)
                self._saved, state = saved, saved.state
            history = list(state["history"])
            prior_seconds = state["train_seconds"]
            self.state.on_status(f"resuming from epoch {state['epochs_done'] + 1}")
            if fallback != "best":
                with seeded(c.seed):
                    if use_bottleneck:  # the checkpoint is the head alone; the base comes from its weights source
                        model = self._build()
                    else:
                        model = self._load_last(saved)

        size = self.spec.input_size
        # One decision for the run: training and validation images share the memory budget.
        cache = cache_mode_for(len(self.split.train) + len(self.split.val), size, c.cache)
        pipe = ImagePipeline(size, cache=cache, cache_dir=p.root / ".cache", file_kinds=self.index.file_kinds())
        self._bottleneck_info = None
        self._head_best = False  # the best weights on file are a bottleneck head's, not the model's
        self._blocks: dict[str, list] = dict(state.get("blocks") or {}) if state else {}  # phases before a resume
        t0 = time.perf_counter()
        try:
            return self._run(model, pipe, history, state, prior_seconds, phase, use_bottleneck, device, t0)
        except Cancelled:
            # Stopped before an epoch ended (decoding images, computing features): nothing new to save.
            seconds = prior_seconds + time.perf_counter() - t0
            self.state.on_end(EndEvent("cancelled", len(history), seconds))
            return RunResult(self.run_dir, "cancelled", len(history), history, None, seconds, pipe.recorder.as_list())
        except Exception as exc:
            # TensorFlow's own file operations fail with its errors (a full disk is a
            # ResourceExhaustedError): one line naming the run folder, as the studio's own writes.
            failure = disk_failure(self.run_dir, exc)
            if failure is None:
                raise
            raise failure from exc
        finally:
            pipe.close()

    def _run(self, model, pipe, history, state, prior_seconds, phase, use_bottleneck, device, t0) -> RunResult:
        c = self.config
        p = self.paths
        first_phase = "head" if c.mode == "finetune" else "train"
        reason = "completed"
        if phase == first_phase:
            if use_bottleneck:
                reason = self._fit_on_features(model, pipe, history, state, prior_seconds, first_phase)
            else:
                reason = self._fit(model, pipe, history, state, prior_seconds, c.epochs, first_phase)
            state = None
            best = checkpoint.best_weights(p)
            if c.restore_best and best is not None and history and reason != "cancelled":
                model.load_weights(best)
        if c.mode == "finetune" and reason != "cancelled":
            if phase != "finetune":
                from cnnstudio.core.model.transfer import unfreeze_top

                provider = self.registry.backbones[self.spec.backbone]
                unfrozen = unfreeze_top(model, provider, c.finetune_blocks, c.finetune_from or None)
                self.state.on_status(
                    f"fine-tuning {len(unfrozen)} layers of the base from {unfrozen[0] if unfrozen else '-'} up, "
                    f"{c.finetune_optimizer} at learning rate {c.finetune_learning_rate:g}"
                )
                with self._scope():
                    self._compile(model, c.finetune_optimizer, c.finetune_learning_rate)
                phase_start = len(history)
            else:
                phase_start = state.get("phase_start", 0)
            seconds = prior_seconds + time.perf_counter() - t0 if state is None else prior_seconds
            reason = self._fit(
                model, pipe, history, state, seconds, phase_start + c.finetune_epochs, "finetune",
                phase_start=phase_start,
            )
        train_seconds = prior_seconds + time.perf_counter() - t0
        best = checkpoint.best_weights(p)
        if c.restore_best and best is not None and history and not self._head_best:
            model.load_weights(best)
        epochs_run = len(history)
        self.state.on_end(EndEvent(reason, epochs_run, train_seconds))
        if self.cluster is not None and not self.cluster.is_chief:  # the chief evaluates and writes
            return RunResult(self.run_dir, reason, epochs_run, history, None, train_seconds, pipe.recorder.as_list())
        model = self._plain(model)

        metrics = None
        if reason != "cancelled" and self.split.test:
            from cnnstudio.core.evaluation.metrics import evaluate

            self.state.on_status("evaluating on the test split")
            result = evaluate(model, pipe, self.index, self.split.test, batch_size=c.batch_size)
            metrics = result.metrics()
            runs.write_predictions(p, result)
        skipped = pipe.recorder.as_list()
        extra = {"weights": self.weights_record(), "mode": c.mode, **self._cluster_record(),
                 **self.compute.record(jit=getattr(self, "_jit", None))}
        if self._bottleneck_info:
            extra["bottleneck"] = self._bottleneck_info
        from cnnstudio.core.model.transfer import parameter_split

        extra["parameters"] = parameter_split(model)
        if self._blocks:
            extra["blocks"] = self._blocks  # per phase: which blocks trained
        runs.write_results(
            p, model, self.index, self.spec, reason=reason, epochs_run=epochs_run, history=history,
            train_seconds=train_seconds, device=device, metrics=metrics, skipped=skipped,
            n_classes=len(self.index.class_names), monitor=self._monitor(), extra=extra,
        )
        return RunResult(self.run_dir, reason, epochs_run, history, metrics, train_seconds, skipped, bundle=True)

    # -- phases ------------------------------------------------------------------------------

    def _callbacks(self, history, state, prior_seconds, epochs, steps, monitor, phase, phase_start):
        from cnnstudio.core.training.callbacks import Checkpoint, Relay, ResumableEarlyStopping

        c = self.config
        relay = Relay(self.state, epochs, steps, prior_seconds=prior_seconds)
        stopper = None
        callbacks = [relay]
        if c.patience > 0:
            stopper = ResumableEarlyStopping(
                monitor=monitor, patience=c.patience, restore_best_weights=False,
                restored=state and state.get("early_stopping"),
            )
            callbacks.append(stopper)
        best = state.get("best") if state else (self._phase_best(history) if phase == "finetune" else None)
        callbacks.append(Checkpoint(
            self.paths, monitor, history, relay, stopper, best=best,
            extra={"phase": phase, "phase_start": phase_start, "blocks": self._blocks},
        ))
        return relay, stopper, callbacks

    def _phase_best(self, history):
        monitor = self._monitor()
        row = runs.best_row(history, monitor)
        return None if row is None else row[monitor]

    def _monitor(self) -> str:
        c = self.config
        return c.monitor if self.split.val else c.monitor.removeprefix("val_")

    def _summary(self, model, phase: str):
        """Per block, the trainable and frozen parameters of ``phase`` (kept for metrics.json)."""
        provider = self.registry.backbones[self.spec.backbone]
        if not provider.pretrained:
            return None
        from cnnstudio.core.model.transfer import block_summary

        rows = block_summary(model, provider)
        self._blocks[phase] = rows
        return rows

    def _fit(self, model, pipe, history, state, prior_seconds, epochs, phase, phase_start=0) -> str:
        """Fit on images up to ``epochs`` (a total over the run); returns the end reason."""
        from cnnstudio.core.training.callbacks import FirstPass

        c = self.config
        initial_epoch = state["epochs_done"] if state else len(history)
        train_ds = val_ds = None
        passes = Passes()
        if self.cluster is None:  # a cluster's workers make their shares in _fit_on_cluster
            train_ds = pipe.dataset(
                self.index.paths(self.split.train), self.index.labels(self.split.train),
                batch_size=c.batch_size, shuffle=True, seed=c.seed, name="train", passes=passes,
            )
        if self.split.val and self.cluster is None:
            val_ds = pipe.dataset(
                self.index.paths(self.split.val), self.index.labels(self.split.val),
                batch_size=c.batch_size, name="val",
            )
        for note in pipe.notes:
            self.state.on_status(note)
        pipe.notes.clear()
        steps = math.ceil(len(self.split.train) / c.batch_size)
        if self.cluster is not None:
            steps = len(self.split.train) // c.batch_size  # whole global batches (see loop.py)
        relay, stopper, callbacks = self._callbacks(
            history, state, prior_seconds, epochs, steps, self._monitor(), phase, phase_start,
        )
        self.state.on_begin(BeginEvent(
            epochs, initial_epoch, steps, len(self.split.train), len(self.split.val), self._device,
            phase=phase, summary=self._summary(model, phase),
        ))
        if initial_epoch < epochs:
            if self.cluster is not None:
                self._fit_on_cluster(model, pipe, epochs, initial_epoch, callbacks)
            else:
                model.fit(
                    train_ds, validation_data=val_ds, epochs=epochs, initial_epoch=initial_epoch,
                    class_weight=self._class_weight(), callbacks=[FirstPass(passes, initial_epoch), *callbacks], verbose=0,
                    shuffle=False,
                )
        return self._reason(relay, stopper)

    def _fit_on_cluster(self, model, pipe, epochs, initial_epoch, callbacks) -> None:
        """The studio's own step under the cluster's strategy (Keras' fit cannot run under it);
        each worker decodes only its replicas' slices of each batch."""
        from cnnstudio.core.training.cluster import lost_worker
        from cnnstudio.core.training.loop import Loop

        c = self.config
        strategy = self.strategy
        per_replica = c.batch_size // strategy.num_replicas_in_sync
        # Each pass is whole global batches, one epoch each: no decoding runs on past the last one.
        passes = epochs - initial_epoch
        order = Passes()  # pass k visits the order of epoch k, after a resume too
        order.restart(initial_epoch)

        def shards(items, shuffle, name):
            paths, labels = self.index.paths(items), self.index.labels(items)

            def make(context):
                local = strategy.num_replicas_in_sync // context.num_input_pipelines
                first = context.input_pipeline_id * local
                return pipe.dataset(paths, labels, batch_size=per_replica, shuffle=shuffle, seed=c.seed, name=name,
                                    shard=(first, local, strategy.num_replicas_in_sync), passes=order).repeat(passes)

            return strategy.distribute_datasets_from_function(make)

        train = shards(self.split.train, True, "train")
        val = None
        if self.split.val and self.cluster.is_chief:  # the chief validates, the others get its figures
            val = pipe.dataset(self.index.paths(self.split.val), self.index.labels(self.split.val),
                               batch_size=c.batch_size, name="val")
        with self._scope():
            loop = Loop(model, strategy, self._class_weight(), len(self.index.class_names),
                        chief=self.cluster.is_chief)
        self._loop = loop
        try:
            loop.fit(train, len(self.split.train) // c.batch_size, val, validation=bool(self.split.val),
                     epochs=epochs, initial_epoch=initial_epoch, callbacks=callbacks)
        except Exception as exc:
            failure = lost_worker(self.cluster, exc)
            if failure is None:
                raise
            raise failure from None

    def _fit_on_features(self, model, pipe, history, state, prior_seconds, phase) -> str:
        """Feature extraction's fast path: the base's features once (cached on disk), the head on them."""
        from cnnstudio.core.model import transfer
        from cnnstudio.core.training.callbacks import FirstPass

        c = self.config
        p = self.paths
        train, val = self._features(model, pipe)
        # The head phase ended before a stop, once its best weights were committed as the whole model's.
        ended = state is not None and state.get("best_of") == "model"
        if state is not None:
            head = self._load_last(self._saved)
            initial_epoch = state["epochs_done"]
        else:
            with self._scope(), self.compute.policy():
                head = transfer.head_model(model)  # the model's own head layers: nothing new is drawn
                self._compile(head)
            initial_epoch = 0
        passes = Passes()
        train_ds = transfer.features_dataset(train, c.batch_size, shuffle=True, seed=c.seed, passes=passes)
        val_ds = transfer.features_dataset(val, c.batch_size) if val is not None and len(val.labels) else None
        steps = math.ceil(len(train.labels) / c.batch_size)
        relay, stopper, callbacks = self._callbacks(
            history, state, prior_seconds, c.epochs, steps, self._monitor(), phase, 0,
        )
        self.state.on_begin(BeginEvent(
            c.epochs, initial_epoch, steps, len(self.split.train), len(self.split.val), self._device,
            phase=phase, summary=self._summary(model, phase),
        ))
        if initial_epoch < c.epochs and not ended:
            head.fit(
                train_ds, validation_data=val_ds, epochs=c.epochs, initial_epoch=initial_epoch,
                class_weight=self._class_weight(), callbacks=[FirstPass(passes, initial_epoch), *callbacks], verbose=0,
                shuffle=False,
            )
        best = checkpoint.best_weights(p)
        if ended:
            transfer.copy_head_weights(head, model)
            if c.restore_best and best is not None:
                model.load_weights(best)
            return self._reason(relay, stopper)
        if c.restore_best and best is not None and history:
            head.load_weights(best)
        transfer.copy_head_weights(head, model)
        if best is not None:
            if relay.cancelled:
                self._head_best = True  # the model holds them already where they count; a resume goes on
            else:
                # The best weights on file are the head's; from here on they must be the whole model's.
                saved = checkpoint.read(p)
                state = {k: v for k, v in saved.state.items() if k not in ("generation", "files")}
                checkpoint.commit(p, {**state, "best_of": "model"}, best=model, best_epoch=saved.best_epoch)
        return self._reason(relay, stopper)

    def _features(self, model, pipe):
        """Training and validation features, from the bottleneck cache or computed now (and cached)."""
        from cnnstudio.core.io.paths import cache_dir
        from cnnstudio.core.model import transfer

        c = self.config
        provider = self.registry.backbones[self.spec.backbone]
        self.state.on_status("checking the bottleneck feature cache")
        parts = {"train": self.split.train}
        if self.split.val:
            parts["val"] = self.split.val
        key = {
            "format": 1,
            "files": {part: content_hashes(self.index.paths(items)) for part, items in parts.items()},
            "labels": {part: self.index.labels(items) for part, items in parts.items()},
            "backbone": provider.id,
            "params": {k: v for k, v in self.spec.params.items() if k != "trainable"},
            "weights": transfer.weights_identity(self.spec.params.get("weights", "none"), provider, c.seed,
                                                 self.spec.params, self.spec.input_size),
            "input_size": self.spec.input_size,
            "preprocessing": provider.preprocessing,
        }
        cache = transfer.BottleneckCache(cache_dir() / "bottleneck", key)
        if cache.complete(parts):
            self.state.on_status(f"bottleneck features reused from the cache ({cache.folder})")
            self._bottleneck_info = {"cache": "reused", "key": cache.key}
            features = {part: cache.load(part) for part in parts}
        else:
            # Outside the strategy's scope: predict_on_batch would run the whole batch on every replica.
            extractor = transfer.feature_extractor(model)
            features = {}
            unsaved = None
            for part, items in parts.items():
                features[part] = transfer.extract_features(
                    extractor, pipe, self.index.paths(items), self.index.labels(items), c.batch_size,
                    state=self.state, task=f"computing {part} bottleneck features",
                )
                try:
                    cache.save(part, features[part])
                except OSError as exc:  # a full cache folder only costs the next run the time
                    unsaved = unsaved or exc
            self.state.on_status(f"bottleneck features not cached ({unsaved}); the run trains on them all the same"
                                 if unsaved else f"bottleneck features cached in {cache.folder}")
            removed = cache.prune()
            if removed:
                self.state.on_status(f"the bottleneck cache dropped {len(removed)} least recently used feature "
                                     f"set(s) to stay under {transfer.cache_limit() / 2**20:,.0f} MB")
            self._bottleneck_info = {"cache": "built", "key": cache.key}
        return features["train"], features.get("val")

    def _reason(self, relay, stopper) -> str:
        loop = getattr(self, "_loop", None)
        if relay.cancelled or (loop is not None and loop.stopped):
            return "cancelled"
        if stopper is not None and stopper.stopped_epoch > 0:
            return "early_stopped"
        return "completed"

    # -- weights and building ----------------------------------------------------------------

    def _bottleneck_allowed(self) -> bool:
        c = self.config
        if not c.bottleneck:
            return False
        if self.cluster is not None:
            if c.mode in ("extract", "finetune"):
                self.state.on_status("bottleneck features are off on a cluster: every worker trains the whole model")
            return False
        if c.mode not in ("extract", "finetune") and self.spec.params.get("trainable") is not False:
            self.state.on_status("bottleneck features are off: they need a frozen base (feature extraction)")
            return False
        if self.spec.augmentation.enabled():
            self.state.on_status(
                "bottleneck features are off: augmentation changes every image each epoch, so the base's "
                "features cannot be computed once"
            )
            return False
        return True

    def weights_record(self) -> dict | None:
        from cnnstudio.core.model.weights import source_record

        provider = self.registry.backbones[self.spec.backbone]
        if not provider.pretrained:
            return {"kind": "random", "label": "random initialisation (trained from scratch)", "pretrained": False}
        return source_record(self.spec.params.get("weights"))

    def _fetch_weights(self) -> None:
        """Download the base's ImageNet weights first, with progress, if they are not cached."""
        from cnnstudio.core.model import weights

        provider = self.registry.backbones[self.spec.backbone]
        if self.spec.params.get("weights") != weights.IMAGENET:
            return
        wf = provider.weights_file(self.spec.params, self.spec.input_size)
        if wf is None:
            return
        weights.fetch(wf, provider.display_name, state=self.state)

    @functools.cached_property
    def _device(self) -> str:
        """The device(s) this run trains on, asked of TensorFlow once."""
        return device_description() if self.cluster is not None else self.compute.label

    def _build(self):
        from cnnstudio.core.model.models import build_model

        self._fetch_weights()
        self.state.on_status(f"building {self.spec.backbone}")
        with self._scope(), self.compute.policy():
            model = build_model(self.spec, len(self.index.class_names), self.registry)
            self._compile(model)
        return model

    def _keep_precision(self) -> None:
        """A resumed run goes on in the precision it trained in ("auto" may mean another one on
        this machine): its checkpoint's layers and optimizer are that precision's."""
        from cnnstudio.core.io.atomic import read_json

        try:
            recorded = (read_json(self.paths.config).get("compute") or {}).get("precision")
        except (OSError, ValueError, StudioError, AttributeError):
            recorded = None
        if recorded in ("float32", "mixed_float16") and recorded != self.compute.precision:
            self.state.on_status(f"going on in {recorded}, the precision the run trained in")
            self.compute.precision = recorded

    def _check_cluster(self, state: dict | None) -> None:
        """Every worker has the chief's files and was asked for the chief's run, or all stop."""
        from dataclasses import asdict

        from cnnstudio.core.data.fingerprint import dataset_fingerprint
        from cnnstudio.core.training import cluster as clusters

        self.state.on_status(f"training on {self.cluster.size} machines as {self.cluster.name()}; "
                             "checking that every machine has the same data")
        asked = clusters.run_digest(self.split.train, self.split.val, self.split.test, self.spec.to_dict(),
                                    asdict(self.config), state and state.get("epochs_done"),
                                    state and state.get("phase"))
        self._fingerprint = dataset_fingerprint(self.index, self.split)  # config.json takes it too
        clusters.check_same_run(self.strategy, self.cluster, self._fingerprint, asked)

    def _cluster_record(self) -> dict:
        """``{"cluster": {...}}`` for the run's config and metrics; {} on one machine."""
        if self.cluster is None:
            return {}
        return {"cluster": {**self.cluster.record(), "replicas": self.strategy.num_replicas_in_sync,
                            "strategy": "MultiWorkerMirroredStrategy"}}

    def _plain(self, model):
        """Under a strategy (a cluster, several devices) or in mixed precision, a copy of ``model``
        outside the strategy, computing in float32, for evaluation and the bundle: a plain
        single-device model that predicts the same on any machine."""
        if self.strategy is None and self.compute.precision == "float32":
            return model
        K = keras()
        if self.compute.precision == "float32":
            plain = K.models.clone_model(model)
        else:
            def float32(layer):
                config = layer.get_config()
                config["dtype"] = "float32"
                return layer.__class__.from_config(config)

            plain = K.models.clone_model(model, clone_function=float32, recursive=True)
        plain.set_weights(model.get_weights())
        return plain


def _one_line(exc: BaseException, path=None) -> str:
    """What went wrong, in one line, without the file's name (the message names it)."""
    text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if path is not None:
        text = text.removeprefix(f"{path}: ")
    return text
