"""The studio's own training step for strategies that Keras' ``model.fit`` cannot drive.

``fit`` under ``MultiWorkerMirroredStrategy`` fails in Keras 3 (keras-team/keras#20585), so a
cluster trains here: one compiled step per batch under ``strategy.run``, the gradients applied by
the model's own compiled optimizer (which all-reduces them across the workers), and the same
Keras callbacks as ``fit`` called in the same order (:class:`keras.callbacks.CallbackList`), so
the progress relay, the per-epoch checkpoint commit and early stopping are the trainer's own.

Each global batch is exactly the batch one device would train on: every worker builds the same
seeded visiting order and takes its replicas' slices of each batch
(:meth:`cnnstudio.core.data.pipeline.ImagePipeline.dataset` with ``shard``), so it decodes only its
share of the images; the last, partial batch of an epoch is left out (a replica with an empty
batch would stall the others, and TensorFlow's CPU convolution fails on one), and the loss is
averaged over the global batch. Training metrics are sums reduced across all replicas and the
validation metrics are the chief's, shared, so every worker logs the same values and takes the
same early-stopping decision; a stop asked on any worker (Ctrl-C, the window's Stop) is
all-reduced with the next step and ends the epoch on all of them.
"""

from __future__ import annotations

import numpy as np

from cnnstudio.core.tf import keras as load_keras
from cnnstudio.core.tf import tf as load_tf


class Loop:
    """``fit`` and ``evaluate`` for one compiled classifier (sparse categorical cross-entropy and
    accuracy, as the trainer compiles it) under ``strategy``."""

    def __init__(self, model, strategy, class_weight: dict | None = None, num_classes: int | None = None,
                 chief: bool = True):
        T = load_tf()
        self.T = T
        self.model = model
        self.strategy = strategy
        self.stopped = False  # a stop of another worker's (or of this one) ended an epoch early
        weights = None
        if class_weight:
            k = num_classes or (max(class_weight) + 1)
            weights = T.constant([float(class_weight.get(i, 1.0)) for i in range(k)], T.float32)
        self._weights = weights
        if not model.optimizer.built:  # its slots are made here, in the strategy's scope, not inside a step
            model.optimizer.build(model.trainable_variables)
        self._train_step = self._make_train_step()
        self.chief = chief
        self._test_step = self._make_test_step()
        self._share = self._make_share()

    # -- steps ------------------------------------------------------------------------------

    def _losses(self, labels, probs):
        T = self.T
        K = load_keras()
        per = K.losses.sparse_categorical_crossentropy(labels, probs)
        per = T.cast(per, T.float32)
        predicted = T.argmax(probs, axis=-1, output_type=T.int64)
        correct = T.reduce_sum(T.cast(T.equal(predicted, T.cast(labels, T.int64)), T.float32))
        return per, correct

    def _make_train_step(self):
        T = self.T
        model, strategy, weights = self.model, self.strategy, self._weights
        SUM = T.distribute.ReduceOp.SUM

        def replica(images, labels, stop):
            context = T.distribute.get_replica_context()
            count = T.cast(T.shape(labels)[0], T.float32)
            total = context.all_reduce(SUM, count)
            with T.GradientTape() as tape:
                probs = model(images, training=True)
                per, correct = self._losses(labels, probs)
                weighted = per * T.gather(weights, T.cast(labels, T.int32)) if weights is not None else per
                loss = T.reduce_sum(weighted) / T.maximum(total, 1.0)
                if model.losses:  # regularisation: once per global batch, split over the replicas
                    loss += T.add_n([T.cast(x, T.float32) for x in model.losses]) / strategy.num_replicas_in_sync
                scaled = model.optimizer.scale_loss(loss)
            variables = model.trainable_variables
            grads = tape.gradient(scaled, variables)
            model.optimizer.apply(grads, variables)
            reg = (T.add_n([T.cast(x, T.float32) for x in model.losses]) / strategy.num_replicas_in_sync
                   if model.losses else 0.0)
            return T.stack([T.reduce_sum(weighted) + reg * count, correct, count, stop])

        @T.function
        def step(batch, stop):
            images, labels = batch[0], batch[1]
            out = strategy.run(replica, args=(images, labels, stop))
            return strategy.reduce(SUM, out, axis=None)

        return step

    def _make_test_step(self):
        T = self.T
        model = self.model

        @T.function
        def step(images, labels):
            probs = model(images, training=False)
            per, correct = self._losses(labels, probs)
            return T.stack([T.reduce_sum(per), correct, T.cast(T.shape(labels)[0], T.float32)])

        return step

    def _make_share(self):
        T = self.T
        strategy, chief = self.strategy, self.chief
        SUM = T.distribute.ReduceOp.SUM

        @T.function
        def share(values):
            def replica(values):
                context = T.distribute.get_replica_context()
                first = chief and context.replica_id_in_sync_group == 0
                return values if first else T.zeros_like(values)

            return strategy.reduce(SUM, strategy.run(replica, args=(values,)), axis=None)

        return share

    # -- epochs -----------------------------------------------------------------------------

    def validate(self, dataset) -> dict:
        """``{"val_loss": ..., "val_accuracy": ...}``: the chief predicts the whole validation
        set (``dataset``, plain batches; None on the other workers) and shares the result, so
        every worker logs the same values and takes the same early-stopping decision."""
        T = self.T
        totals = np.zeros(3, np.float32)
        if self.chief and dataset is not None:
            for batch in dataset:
                totals += self._test_step(batch[0], batch[1]).numpy()
        totals = self._share(T.constant(totals)).numpy()
        n = max(float(totals[2]), 1.0)
        reg = sum(float(x) for x in self.model.losses) if self.model.losses else 0.0
        return {"val_loss": float(totals[0]) / n + reg, "val_accuracy": float(totals[1]) / n}

    def fit(self, train, steps: int, val=None, *, validation: bool = False, epochs: int, initial_epoch: int = 0,
            callbacks=()) -> None:
        """Train from ``initial_epoch`` up to ``epochs`` (a total) of ``steps`` global batches
        each from ``train`` (a distributed dataset that repeats), calling ``callbacks`` as
        ``model.fit`` does: train begin, epoch begin, batch begin and end with the running
        ``loss`` and ``accuracy``, epoch end (with ``val_loss`` and ``val_accuracy`` when
        ``validation``: the chief's ``val`` dataset, see :meth:`validate`), train end."""
        K = load_keras()
        T = self.T
        model = self.model
        listed = K.callbacks.CallbackList(list(callbacks), model=model, add_history=False, add_progbar=False)
        model.stop_training = False
        listed.on_train_begin()
        batches = iter(train)
        for epoch in range(initial_epoch, epochs):
            listed.on_epoch_begin(epoch)
            totals = np.zeros(3, np.float64)
            for step in range(steps):
                listed.on_train_batch_begin(step)
                stop = T.constant(1.0 if model.stop_training else 0.0)
                values = self._train_step(next(batches), stop).numpy()
                if values[3] > 0:  # a worker was asked to stop before this step: no epoch is half-kept
                    self.stopped = True
                    break
                totals += values[:3]
                n = max(totals[2], 1.0)
                listed.on_train_batch_end(step, {"loss": totals[0] / n, "accuracy": totals[1] / n})
            if self.stopped:
                break
            n = max(totals[2], 1.0)
            logs = {"loss": float(totals[0] / n), "accuracy": float(totals[1] / n)}
            if validation:
                logs.update(self.validate(val))
            listed.on_epoch_end(epoch, logs)
            if model.stop_training:  # early stopping: the same logs, the same decision on every worker
                break
        listed.on_train_end()
