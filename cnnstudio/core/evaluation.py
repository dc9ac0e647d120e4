"""Evaluation on a split: loss, accuracy, confusion matrix, per-class precision / recall / F1.

The metrics are computed with NumPy from the per-image probabilities, so the numbers in the
report, the window and ``metrics.json`` all come from the same predictions, which are kept
(``EvalResult.paths`` / ``probs``) to find the misclassified images later.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class EvalResult:
    class_names: list[str]
    paths: list[str]  # relative to the dataset root
    y_true: np.ndarray  # (n,) int
    probs: np.ndarray  # (n, classes) float
    skipped: list[dict]  # files that could not be read

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1) if len(self.probs) else np.zeros(0, int)

    def metrics(self) -> dict:
        return classification_metrics(self.y_true, self.probs, self.class_names)


def classification_metrics(y_true, probs, class_names) -> dict:
    """Test metrics as plain JSON data. Precision of a class never predicted is 0, as sklearn's default."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    k = len(class_names)
    n = len(y_true)
    y_pred = probs.argmax(axis=1) if n else np.zeros(0, int)
    cm = np.zeros((k, k), dtype=int)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    support = cm.sum(axis=1).astype(float)
    predicted = cm.sum(axis=0).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    per_class = {
        name: {"precision": precision[i], "recall": recall[i], "f1": f1[i], "support": int(support[i])}
        for i, name in enumerate(class_names)
    }
    weights = support / support.sum() if support.sum() else np.zeros(k)
    p_true = probs[np.arange(n), y_true] if n else np.zeros(0)
    loss = float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0)))) if n else None
    return {
        "test_accuracy": float(tp.sum() / n) if n else None,
        "test_loss": loss,
        "test_images": n,
        "confusion_matrix": cm.tolist(),
        "per_class": {name: {k2: float(v) if k2 != "support" else v for k2, v in d.items()} for name, d in per_class.items()},
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
                      "support": int(support.sum())},
        "weighted_avg": {"precision": float(precision @ weights), "recall": float(recall @ weights),
                         "f1": float(f1 @ weights), "support": int(support.sum())},
    }


def evaluate(model, pipeline, index, indices, batch_size: int = 32) -> EvalResult:
    """Predict every image of ``indices`` through ``pipeline``; unreadable files are skipped and listed."""
    paths = index.paths(indices)
    labels = index.labels(indices)
    ds = pipeline.dataset(paths, labels, batch_size=batch_size, name="eval", with_index=True, cache=False)
    all_probs, all_idx = [], []
    for images, _labels, idx in ds:
        all_probs.append(np.asarray(model.predict_on_batch(images)))  # compiled once, not op by op
        all_idx.append(idx.numpy())
    k = len(index.class_names)
    probs = np.concatenate(all_probs) if all_probs else np.zeros((0, k))
    order = np.concatenate(all_idx) if all_idx else np.zeros(0, int)
    rel = [index.items[indices[i]].path for i in order]
    y_true = np.array([labels[i] for i in order], dtype=int)
    kept = set(int(i) for i in order)
    skipped_abs = {paths[i] for i in range(len(paths)) if i not in kept}
    skipped = [d for d in pipeline.recorder.as_list() if d["path"] in skipped_abs]
    return EvalResult(list(index.class_names), rel, y_true, probs, skipped)
