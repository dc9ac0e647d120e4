"""Evaluation on a split: loss, accuracy, confusion matrix, per-class precision / recall / F1.

The metrics are computed with NumPy from the per-image probabilities, so the numbers in the
report, the window and ``metrics.json`` all come from the same predictions, which are kept
(``EvalResult.paths`` / ``probs``) to find the misclassified images later.

Beyond :func:`classification_metrics`: the normalised confusion matrix, top-k accuracy, and for
two classes the ROC and precision-recall curves (the positive class is class index 1, the
second class name in sorted order; its probability is the score). :func:`evaluation_report`
gathers all of them with the calibration numbers (:mod:`cnnstudio.core.evaluation.calibration`);
every function returns plain JSON-able data. A finished run is evaluated again by
:mod:`cnnstudio.core.runs.evaluate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnnstudio.core.tasks import TaskState, check_stop, quiet


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
    loss = float(-np.mean(np.log(np.clip(p_true, 1e-7, 1.0)))) + 0.0 if n else None  # + 0.0: never -0.0
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


def evaluate(model, pipeline, index, indices, batch_size: int = 32, *, state: TaskState | None = None,
             task: str = "evaluating") -> EvalResult:
    """Predict every image of ``indices`` through ``pipeline``; unreadable files are skipped and listed.

    Reports ``state.on_progress(task, done, total)`` after each batch and once with ``done ==
    total``; raises :class:`~cnnstudio.core.errors.Cancelled` when ``state.should_stop()`` turns
    true before the last batch (the result is all or nothing).
    """
    state = quiet(state)
    paths = index.paths(indices)
    labels = index.labels(indices)
    ds = pipeline.dataset(paths, labels, batch_size=batch_size, name="eval", with_index=True, cache=False)
    all_probs, all_idx = [], []
    n = len(paths)
    for images, _labels, idx in ds:
        all_probs.append(np.asarray(model.predict_on_batch(images)))  # compiled once, not op by op
        all_idx.append(idx.numpy())
        state.on_progress(task, int(all_idx[-1][-1]) + 1 if len(all_idx[-1]) else 0, n)
        check_stop(state, f"stopped while {task}")
    state.on_progress(task, n, n)
    k = len(index.class_names)
    probs = np.concatenate(all_probs) if all_probs else np.zeros((0, k))
    order = np.concatenate(all_idx) if all_idx else np.zeros(0, int)
    rel = [index.items[indices[i]].path for i in order]
    y_true = np.array([labels[i] for i in order], dtype=int)
    kept = set(int(i) for i in order)
    skipped_abs = {paths[i] for i in range(len(paths)) if i not in kept}
    skipped = [d for d in pipeline.recorder.as_list() if d["path"] in skipped_abs]
    return EvalResult(list(index.class_names), rel, y_true, probs, skipped)


# ----------------------------------------------------------------------------- more views

MAX_TOP_K = 5
POSITIVE_CLASS = 1  # with two classes: the class whose probability is the score of ROC and PR


def normalized_confusion(cm) -> list[list[float]]:
    """Each row of a confusion matrix divided by its sum (the share of each true class predicted as
    each class): rows sum to 1, and a class with no samples is a row of zeros."""
    cm = np.asarray(cm, dtype=np.float64)
    rows = cm.sum(axis=1, keepdims=True)
    return np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0).tolist()


def top_k_accuracy(y_true, probs, max_k: int = MAX_TOP_K) -> dict[str, float | None]:
    """``{"1": a1, "2": a2, ...}`` for k = 1 .. min(max_k, classes): the share of images whose true
    class is among the k most probable. Ties go to the lower class index, as ``argmax``, so
    ``"1"`` is the accuracy. ``None`` values when there are no images."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    classes = probs.shape[1] if probs.ndim == 2 else 0
    ks = range(1, min(max_k, classes) + 1)
    if len(y_true) == 0:
        return {str(k): None for k in ks}
    order = np.argsort(-probs, axis=1, kind="stable")
    rank = (order == y_true[:, None]).argmax(axis=1)  # 0 = the most probable class
    return {str(k): float((rank < k).mean()) for k in ks}


def _threshold_counts(y_true, scores):
    """True and false positives when every score >= each distinct threshold (highest first)
    counts as positive; equal scores move together (one point per distinct score)."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], y_true[order]
    ends = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last position of each run of equal scores
    tps = np.cumsum(y)[ends]
    fps = ends + 1 - tps
    return tps.astype(float), fps.astype(float), s[ends]


def _trapezoid(x, y) -> float:
    x, y = np.asarray(x, float), np.asarray(y, float)
    return float(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def roc_curve(y_true, scores) -> dict | None:
    """ROC points ``{"fpr", "tpr", "thresholds", "auc"}``, from (0, 0) to (1, 1).

    ``y_true`` is 1 for the positive class, 0 otherwise. Point ``i > 0`` counts every score
    ``>= thresholds[i]`` as positive; the first point (nothing positive) has threshold ``None``.
    Tied scores make one point, so the area (trapezoids) gives a tie half credit, as the
    Mann-Whitney statistic. ``None`` when either class has no samples.
    """
    y = (np.asarray(y_true) == 1).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    P, N = int(y.sum()), int(len(y) - y.sum())
    if P == 0 or N == 0:
        return None
    tps, fps, thr = _threshold_counts(y, scores)
    fpr = np.r_[0.0, fps / N]
    tpr = np.r_[0.0, tps / P]
    return {"fpr": fpr.tolist(), "tpr": tpr.tolist(), "thresholds": [None] + thr.tolist(),
            "auc": _trapezoid(fpr, tpr)}


def pr_curve(y_true, scores) -> dict | None:
    """Precision-recall points ``{"precision", "recall", "thresholds", "average_precision"}``.

    The first point is (recall 0, precision 1, threshold ``None``); point ``i > 0`` counts every
    score ``>= thresholds[i]`` as positive. Average precision is ``sum_i (R_i - R_{i-1}) P_i``
    (steps, not interpolated; as sklearn). ``None`` when there are no positive samples.
    """
    y = (np.asarray(y_true) == 1).astype(int)
    scores = np.asarray(scores, dtype=np.float64)
    P = int(y.sum())
    if P == 0:
        return None
    tps, fps, thr = _threshold_counts(y, scores)
    precision = np.r_[1.0, tps / (tps + fps)]
    recall = np.r_[0.0, tps / P]
    ap = float(np.sum(np.diff(recall) * precision[1:]))
    return {"precision": precision.tolist(), "recall": recall.tolist(), "thresholds": [None] + thr.tolist(),
            "average_precision": ap}


def binary_curves(y_true, probs, class_names) -> dict | None:
    """For two classes: ROC and PR curves with class index 1 (``class_names[1]``) as the positive
    class and its probability as the score; ``None`` for any other number of classes."""
    if len(class_names) != 2:
        return None
    y = np.asarray(y_true, dtype=int) == POSITIVE_CLASS
    probs = np.asarray(probs, dtype=np.float64)
    scores = probs[:, POSITIVE_CLASS] if len(probs) else np.zeros(0)
    roc = roc_curve(y, scores)
    pr = pr_curve(y, scores)
    return {
        "positive_class": class_names[POSITIVE_CLASS],
        "roc_auc": roc["auc"] if roc else None,
        "average_precision": pr["average_precision"] if pr else None,
        "roc": roc,
        "pr": pr,
    }


def evaluation_report(y_true, probs, class_names, bins: int = 10) -> dict:
    """Every number of the evaluation views: :func:`classification_metrics` plus the normalised
    confusion matrix, top-k accuracy, the two-class curves (``None`` otherwise) and calibration
    (``{"ece", "bins"}``, see :func:`cnnstudio.core.evaluation.calibration.calibration_report`)."""
    from cnnstudio.core.evaluation.calibration import calibration_report

    out = classification_metrics(y_true, probs, class_names)
    out["class_names"] = list(class_names)
    out["confusion_matrix_normalized"] = normalized_confusion(out["confusion_matrix"])
    out["top_k_accuracy"] = top_k_accuracy(y_true, probs)
    out["binary"] = binary_curves(y_true, probs, class_names)
    out["calibration"] = calibration_report(y_true, probs, bins)
    return out


def format_evaluation(r: dict) -> str:
    """The text report of ``cnnstudio evaluate``: :func:`evaluation_report` plus ``run_dir``,
    ``dataset_root``, ``temperature``, ``test_files``, ``missing_files``, ``skipped_files`` and an
    optional ``calibrate``."""
    names = r["class_names"]
    w = max([len(n) for n in names] + [12])
    cw = max([len(n) for n in names] + [6])
    lines = [f"Run {r['run_dir']}: {r['test_images']} test images from {r['dataset_root']}"
             + (f", temperature {r['temperature']:.4g}" if r["temperature"] != 1.0 else "")]
    if r["missing_files"]:
        lines.append(f"{len(r['missing_files'])} of the {r['test_files']} recorded test file(s) are no longer "
                     "in the dataset and were left out:")
        lines += [f"  {p}" for p in r["missing_files"]]
    if r["skipped_files"]:
        lines.append(f"{len(r['skipped_files'])} test file(s) could not be read and were skipped:")
        lines += [f"  {d['path']}: {d['reason']}" for d in r["skipped_files"]]
    lines.append(f"Accuracy {r['test_accuracy']:.4f}, loss {r['test_loss'] + 0.0:.4f}")  # + 0.0: no -0.0

    header = f"  {'':<{w}}" + "".join(f"  {n:>{cw}}" for n in names)
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class)", header]
    lines += [f"  {n:<{w}}" + "".join(f"  {v:>{cw}}" for v in row) for n, row in zip(names, r["confusion_matrix"])]
    lines += ["", "Normalised (each true class's row sums to 1)", header]
    lines += [f"  {n:<{w}}" + "".join(f"  {v:>{cw}.3f}" for v in row)
              for n, row in zip(names, r["confusion_matrix_normalized"])]

    lines += ["", f"  {'class':<{w}}  {'precision':>9}  {'recall':>9}  {'f1':>9}  {'support':>7}"]
    rows = [(n, r["per_class"][n]) for n in names] + [("macro avg", r["macro_avg"]), ("weighted avg", r["weighted_avg"])]
    for i, (n, d) in enumerate(rows):
        if i == len(names):
            lines.append("")
        lines.append(f"  {n:<{w}}  {d['precision']:>9.4f}  {d['recall']:>9.4f}  {d['f1']:>9.4f}  {d['support']:>7}")

    lines += ["", "Top-k accuracy: " + ", ".join(f"top-{k} {v:.4f}" for k, v in r["top_k_accuracy"].items())]
    b = r["binary"]
    if b is not None:
        auc = "n/a" if b["roc_auc"] is None else f"{b['roc_auc']:.4f}"
        ap = "n/a" if b["average_precision"] is None else f"{b['average_precision']:.4f}"
        lines.append(f"ROC AUC {auc}, average precision {ap} (positive class: {b['positive_class']})")

    cal = r["calibration"]
    lines += ["", f"Calibration: expected calibration error {cal['ece']:.4f} ({len(cal['bins'])} bins)",
              f"  {'confidence':<11}  {'images':>6}  {'mean conf.':>10}  {'accuracy':>8}"]
    for bin_ in cal["bins"]:
        span = f"{bin_['lower']:.2f}-{bin_['upper']:.2f}"
        if bin_["count"]:
            lines.append(f"  {span:<11}  {bin_['count']:>6}  {bin_['confidence']:>10.4f}  {bin_['accuracy']:>8.4f}")
        else:
            lines.append(f"  {span:<11}  {0:>6}  {'-':>10}  {'-':>8}")

    c = r.get("calibrate")
    if c is not None:
        lines += ["", f"Temperature {c['temperature']:.4f} fitted on {c['val_images']} validation images "
                      f"(NLL {c['val_nll_before']:.4f} -> {c['val_nll_after']:.4f}), stored in {c['stored_in']}",
                  f"Test ECE {c['test_ece_before']:.4f} before (temperature 1), {c['test_ece_after']:.4f} after"]
    return "\n".join(lines)
