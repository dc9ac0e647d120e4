"""Transfer learning: the three modes, fine-tuning's unfreezing by blocks, the per-block summary,
and bottleneck features computed once and cached on disk.

Modes, for a pretrained backbone:

* ``scratch``: the backbone's architecture with random weights, everything trainable;
* ``extract``: feature extraction, the base frozen and a new head trained on its features;
* ``finetune``: ``extract`` first, then the top N blocks (or everything from a named layer)
  unfrozen and trained on with a low learning rate; batch-norm layers stay in inference mode.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnstudio.core.errors import SpecError
from cnnstudio.core.io.hashing import file_digest
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.tasks import TaskState, check_stop, quiet

MODES = ("scratch", "extract", "finetune")
MODE_LABELS = {
    "scratch": "From scratch (architecture only, random weights)",
    "extract": "Feature extraction (frozen base, new head)",
    "finetune": "Fine-tuning (head first, then the top blocks)",
}
HEAD_LAYER_PREFIXES = ("flatten", "avg_pool", "max_pool", "dense_", "dropout_", "predictions")
STEM = "stem"


def apply_mode(spec: ModelSpec, mode: str | None, provider) -> ModelSpec:
    """``spec`` with the weights and trainability ``mode`` implies (a copy; ``None``: unchanged)."""
    if mode is None:
        return spec
    if mode not in MODES:
        raise SpecError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if not provider.pretrained:
        if mode == "scratch":
            return spec
        raise SpecError(
            f"mode {mode!r} needs a pretrained backbone; {provider.id!r} always trains from scratch"
        )
    params = dict(spec.params)
    if mode == "scratch":
        params["weights"] = "none"
        params["trainable"] = True
    else:
        params["trainable"] = False
    return ModelSpec(spec.backbone, params, spec.head, spec.augmentation, spec.input_size, spec.preset)


def recommend_mode(n_images: int, n_classes: int) -> tuple[str, str]:
    """The mode to suggest for a labelled dataset of ``n_images`` in ``n_classes``, with why.

    The usual rule of thumb (Yosinski et al. 2014; the Keras and CS231n transfer-learning
    guides): a small dataset overfits a fine-tuned base, so train only a head on its features;
    a few thousand images support fine-tuning the top blocks; tens of thousands of images
    different from ImageNet's may justify all of it.
    """
    per_class = n_images / max(1, n_classes)
    if n_images < 2000 or per_class < 100:
        return "extract", (
            f"{n_images} images ({per_class:.0f} per class) are few: a frozen pretrained base with a new "
            "head overfits least"
        )
    if n_images < 50_000:
        return "finetune", (
            f"{n_images} images are enough to fine-tune the top blocks after training the head"
        )
    return "finetune", (
        f"{n_images} images: fine-tuning usually wins; from scratch becomes an option for images unlike ImageNet's"
    )


# ----------------------------------------------------------------------------- blocks


def _pattern(provider) -> re.Pattern | None:
    return re.compile(provider.block_pattern) if getattr(provider, "block_pattern", None) else None


def base_blocks(base, provider) -> list[tuple[str, list]]:
    """The base's layers grouped into blocks, bottom to top: ``[(block name, [layers])]``.

    Layers before the first block, or not in any, belong to ``"stem"`` (ResNet's ``conv1``);
    without a ``block_pattern`` every layer with weights is its own block.
    """
    pattern = _pattern(provider)
    groups: list[tuple[str, list]] = []
    for layer in base.layers:
        if pattern is not None:
            match = pattern.match(layer.name)
            name = match.group(1) if match else STEM
        else:
            if not layer.weights:
                continue
            name = layer.name
        if groups and groups[-1][0] == name:
            groups[-1][1].append(layer)
        else:
            groups.append((name, [layer]))
    return groups


def unfreeze_top(model, provider, blocks: int | None = None, from_layer: str | None = None) -> list[str]:
    """Fine-tuning's second phase: unfreeze the top ``blocks`` blocks of the base, or everything
    from layer ``from_layer`` up; batch-norm stays frozen (inference mode). Returns the names of
    the base layers now trainable (those with weights). Recompile afterwards.
    """
    from cnnstudio.core.model.models import unfreeze_backbone

    base = model.get_layer("backbone")
    if from_layer:
        start = from_layer
    else:
        groups = [g for g in base_blocks(base, provider) if g[0] != STEM and any(lyr.weights for lyr in g[1])]
        if blocks is None or blocks < 1:
            raise SpecError("fine-tuning needs at least 1 block to unfreeze, or a layer to start from")
        if blocks > len(groups):
            raise SpecError(
                f"{provider.id} has {len(groups)} blocks with weights; cannot unfreeze {blocks}"
            )
        start = groups[-blocks][1][0].name
    unfreeze_backbone(model, from_layer=start)
    return [layer.name for layer in base.layers if layer.trainable and layer.weights]


def block_summary(model, provider) -> list[dict]:
    """Per block of the base, then the head: ``{"block", "trainable", "frozen", "state"}``.

    ``state`` is ``"trainable"``, ``"frozen"`` or ``"partly frozen"``; frozen counts include
    batch-norm statistics, as Keras' own summary counts them.
    """
    rows = []
    try:
        base = model.get_layer("backbone")
    except ValueError:
        base = None
    if base is not None:
        for name, layers in base_blocks(base, provider):
            rows.append(_row(name, layers))
    head = [layer for layer in model.layers if layer.name.startswith(HEAD_LAYER_PREFIXES)]
    rows.append(_row("head", head))
    return [r for r in rows if r["trainable"] or r["frozen"]]


def parameter_split(model) -> dict:
    """``{"trainable", "frozen"}`` parameter counts of the whole ``model`` as it is now."""
    row = _row("model", [model])
    return {"trainable": row["trainable"], "frozen": row["frozen"]}


def _is_batch_norm(layer) -> bool:
    """Layers whose weights are statistics, never trained: batch norm, and input normalisation
    (EfficientNet's stem), so a block of them does not read as partly frozen."""
    return type(layer).__name__ in ("BatchNormalization", "Normalization")


def _row(name: str, layers) -> dict:
    trainable = {id(w): w for layer in layers for w in layer.trainable_weights}
    frozen = {id(w): w for layer in layers for w in layer.non_trainable_weights}
    t = int(sum(math.prod(w.shape) for w in trainable.values()))
    f = int(sum(math.prod(w.shape) for w in frozen.values()))
    # A block counts as trainable when its kernels are: batch-norm layers stay frozen on purpose
    # when a pretrained base is fine-tuned (their statistics are never trainable anyway).
    kernels = [w for layer in layers if not _is_batch_norm(layer) for w in layer.weights]
    trainable_kernels = [w for w in kernels if id(w) in trainable]
    if not kernels or len(trainable_kernels) == len(kernels):
        state = "trainable" if t else "frozen"
    elif not trainable_kernels:
        state = "frozen"
    else:
        state = "partly frozen"
    return {"block": name, "trainable": t, "frozen": f, "state": state}


# ----------------------------------------------------------------------------- bottleneck features


def feature_extractor(model):
    """The image -> feature map part of a built classifier (preprocessing and base, no augmentation)."""
    from cnnstudio.core.tf import keras

    K = keras()
    inputs = K.Input(model.input.shape[1:], dtype=model.input.dtype, name="image")
    x = model.get_layer("preprocess")(inputs)
    x = model.get_layer("backbone")(x, training=False)
    return K.Model(inputs, x, name="feature_extractor")


def head_model(model):
    """The classifier's head as a model of its own on feature maps, sharing the head's layers
    (training it trains the whole model's head)."""
    from cnnstudio.core.tf import keras

    K = keras()
    base = model.get_layer("backbone")
    inputs = K.Input(base.output.shape[1:], name="features")
    x = inputs
    for layer in model.layers:
        if layer.name.startswith(HEAD_LAYER_PREFIXES):
            x = layer(x)
    return K.Model(inputs, x, name="head")


def copy_head_weights(head, model) -> None:
    """Put a (reloaded) head model's weights into the whole model's head layers, by name."""
    for layer in head.layers:
        if layer.name.startswith(HEAD_LAYER_PREFIXES) and layer.weights:
            model.get_layer(layer.name).set_weights(layer.get_weights())


def weights_identity(weights: str, provider, seed: int, params: dict | None = None, input_size: int = 224) -> dict:
    """What the features depend on about the base's weights."""
    if weights == "imagenet":
        wf = provider.weights_file(params or {}, input_size)
        return {"imagenet": [wf.fname, wf.file_hash] if wf is not None else provider.id}
    if weights == "none":
        return {"random": seed}
    return {"file_sha256": file_digest(weights)}


@dataclass
class Features:
    """Bottleneck features of one part of a split: ``features[i]`` belongs to file ``indices[i]``."""

    features: np.ndarray
    labels: np.ndarray
    indices: np.ndarray


class BottleneckCache:
    """Bottleneck features on disk under ``root/<key>/``, where the key covers the dataset's
    content, the split, the backbone, its weights and the input size; anything changed gives
    another key, so stale features are never read.
    """

    def __init__(self, root: str | Path, key_data: dict):
        self.key_data = key_data
        blob = json.dumps(key_data, sort_keys=True, separators=(",", ":")).encode()
        self.key = hashlib.sha256(blob).hexdigest()[:32]
        self.folder = Path(root) / self.key

    def complete(self, parts) -> bool:
        return all((self.folder / f"{part}.npz").is_file() for part in parts)

    def load(self, part: str) -> Features:
        with np.load(self.folder / f"{part}.npz") as data:
            features = Features(data["features"], data["labels"], data["indices"])
        self.touch()
        return features

    def touch(self) -> None:
        """Mark the features as just used: the cache drops the least recently used first."""
        try:
            os.utime(self.folder)
        except OSError:
            pass

    def save(self, part: str, features: Features) -> None:
        from cnnstudio.core.io.atomic import atomic_path, make_folder

        make_folder(self.folder)
        path = self.folder / f"{part}.npz"
        with atomic_path(path, suffix=".npz") as tmp:
            with open(tmp, "wb") as f:
                np.savez(f, features=features.features, labels=features.labels, indices=features.indices)
        meta = self.folder / "key.json"
        if not meta.exists():
            from cnnstudio.core.io.atomic import atomic_write_json

            atomic_write_json(meta, {k: v for k, v in self.key_data.items() if k != "files"})

    def clear(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)

    def prune(self, max_bytes: int | None = None) -> list[str]:
        """Delete the least recently used feature sets beside this one until the cache holds at
        most ``max_bytes`` (default :func:`cache_limit`); this one is always kept. Returns the
        keys deleted."""
        limit = cache_limit() if max_bytes is None else max_bytes
        entries = []
        for folder in self.folder.parent.iterdir() if self.folder.parent.is_dir() else []:
            if not folder.is_dir():
                continue
            try:
                size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
                used = folder.stat().st_mtime
            except OSError:
                continue  # another process is deleting it
            entries.append((used, folder, size))
        total = sum(size for _, _, size in entries)
        removed = []
        for _used, folder, size in sorted(entries, key=lambda e: (e[0], e[1].name)):
            if total <= limit:
                break
            if folder == self.folder:
                continue
            shutil.rmtree(folder, ignore_errors=True)
            total -= size
            removed.append(folder.name)
        return removed


DEFAULT_CACHE_LIMIT_MB = 4096


def cache_limit() -> int:
    """The bottleneck cache's size limit in bytes: 4 GiB, or ``CNNSTUDIO_FEATURE_CACHE_MB``."""
    text = os.environ.get("CNNSTUDIO_FEATURE_CACHE_MB", "")
    try:
        mb = float(text) if text else DEFAULT_CACHE_LIMIT_MB
    except ValueError:
        mb = DEFAULT_CACHE_LIMIT_MB
    return int(max(mb, 0) * 1024 * 1024)


def extract_features(extractor, pipe, paths, labels, batch_size: int, *, state: TaskState | None = None,
                     task: str = "computing bottleneck features") -> Features:
    """Run ``extractor`` once over the images, batched, reporting ``state.on_progress(task, done,
    total)`` after each batch and once with ``done == total``.

    Bad files are skipped (and recorded by ``pipe``). Raises :class:`Cancelled` if
    ``state.should_stop()`` turns true before the end (the features are all or nothing).
    """
    state = quiet(state)
    ds = pipe.dataset(paths, labels, batch_size=batch_size, with_index=True, cache=False)
    chunks, got_labels, got_index = [], [], []
    n = len(paths)
    for x, y, i in ds:
        chunks.append(np.asarray(extractor.predict_on_batch(x)))
        got_labels.append(y.numpy())
        got_index.append(i.numpy())
        state.on_progress(task, int(got_index[-1][-1]) + 1 if len(got_index[-1]) else 0, n)
        check_stop(state, "stopped while computing bottleneck features")
    state.on_progress(task, n, n)
    if not chunks:
        shape = tuple(int(d) for d in extractor.output.shape[1:])
        return Features(np.zeros((0, *shape), np.float32), np.zeros(0, np.int32), np.zeros(0, np.int32))
    return Features(np.concatenate(chunks), np.concatenate(got_labels), np.concatenate(got_index))


def features_dataset(features: Features, batch_size: int, shuffle: bool = False, seed: int = 0, passes=None):
    """A batched ``(features, labels)`` dataset, shuffled each epoch when asked (``passes``:
    :func:`cnnstudio.core.tf.order.visiting_order`'s)."""
    from cnnstudio.core.tf.order import visiting_order
    from cnnstudio.core.tf import tf

    T = tf()
    n = len(features.labels)
    arrays = (T.convert_to_tensor(features.features), T.convert_to_tensor(features.labels))
    order = visiting_order(n, shuffle, seed, passes)
    whole = T.data.Dataset.from_tensors(arrays).repeat()
    ds = T.data.Dataset.zip((order.batch(batch_size), whole))
    return ds.map(lambda i, data: (T.gather(data[0], i), T.gather(data[1], i))).prefetch(T.data.AUTOTUNE)
