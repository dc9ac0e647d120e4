"""Calibration: does a confidence of 80 % mean right four times out of five?

* :func:`reliability` — the reliability diagram's data: the confidence of each prediction (its
  highest probability) in equal-width bins, with each bin's count, mean confidence and accuracy.
* :func:`expected_calibration_error` — ECE: the bins' ``|accuracy - confidence|`` weighted by the
  share of predictions in each bin.
* :func:`fit_temperature` / :func:`apply_temperature` — temperature scaling (Guo et al., 2017):
  one number ``T > 0`` that divides the logits, fitted on the validation split by minimising the
  negative log-likelihood. It never changes which class wins, only how sure the model says it is.

The model gives probabilities, not logits; ``log(p)`` are logits up to a constant per image, which
softmax ignores, so ``softmax(log(p) / T)`` is temperature scaling of the model's own logits.

Pure NumPy; every function returns plain JSON-able data.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_BINS = 10
# The temperatures searched: far wider than any real model needs. A fit at a bound means the
# validation split does not pin the temperature down (e.g. every image right, and more confident
# is always better); see :func:`at_bound`.
T_MIN, T_MAX = 0.05, 20.0
# Probabilities are clipped here before the log, so a probability of exactly 0 stays finite.
_P_FLOOR = 1e-30


def _confidences(y_true, probs) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(probs, dtype=np.float64)
    y_true = np.asarray(y_true, dtype=int)
    if len(probs) == 0:
        return np.zeros(0), np.zeros(0, bool)
    return probs.max(axis=1), probs.argmax(axis=1) == y_true


def reliability(y_true, probs, bins: int = DEFAULT_BINS) -> list[dict]:
    """The reliability diagram: ``bins`` equal-width confidence bins over [0, 1].

    Bin ``i`` holds the confidences in ``(i / bins, (i + 1) / bins]`` (the first bin also holds 0).
    Each bin is ``{"lower", "upper", "count", "confidence", "accuracy"}``; ``confidence`` (the mean
    confidence) and ``accuracy`` are ``None`` for an empty bin.
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    conf, correct = _confidences(y_true, probs)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges[1:-1], conf, side="left"), 0, bins - 1)
    out = []
    for i in range(bins):
        mask = which == i
        count = int(mask.sum())
        out.append({
            "lower": float(edges[i]),
            "upper": float(edges[i + 1]),
            "count": count,
            "confidence": float(conf[mask].mean()) if count else None,
            "accuracy": float(correct[mask].mean()) if count else None,
        })
    return out


def ece_of_bins(bins: list[dict]) -> float | None:
    """ECE from :func:`reliability`'s bins; ``None`` when there are no predictions."""
    n = sum(b["count"] for b in bins)
    if not n:
        return None
    return float(sum(b["count"] / n * abs(b["accuracy"] - b["confidence"]) for b in bins if b["count"]))


def expected_calibration_error(y_true, probs, bins: int = DEFAULT_BINS) -> float | None:
    """``sum_b (n_b / n) * |accuracy_b - confidence_b|`` over :func:`reliability`'s bins."""
    return ece_of_bins(reliability(y_true, probs, bins))


def calibration_report(y_true, probs, bins: int = DEFAULT_BINS) -> dict:
    """``{"ece", "bins"}``: the expected calibration error and the reliability diagram's bins."""
    table = reliability(y_true, probs, bins)
    return {"ece": ece_of_bins(table), "bins": table}


def _scaled(log_p: np.ndarray, T: float) -> np.ndarray:
    """``log softmax(log_p / T)``, stable."""
    z = log_p / T
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def apply_temperature(probs, T: float) -> np.ndarray:
    """``softmax(log(probs) / T)``, row by row; ``T == 1`` returns the probabilities unchanged."""
    probs = np.asarray(probs)
    T = float(T)
    if not (T > 0 and math.isfinite(T)):
        raise ValueError(f"temperature must be a positive number, not {T}")
    if T == 1.0 or probs.size == 0:
        return probs
    log_p = np.log(np.clip(probs.astype(np.float64), _P_FLOOR, None))
    return np.exp(_scaled(log_p, T)).astype(probs.dtype if probs.dtype.kind == "f" else np.float64)


def nll(y_true, probs, T: float = 1.0) -> float | None:
    """Mean negative log-likelihood of the true classes after temperature ``T``; ``None`` when empty."""
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y_true) == 0:
        return None
    log_p = np.log(np.clip(probs, _P_FLOOR, None))
    scaled = _scaled(log_p, float(T)) if T != 1.0 else log_p
    return float(-scaled[np.arange(len(y_true)), y_true].mean()) + 0.0  # never -0.0


def at_bound(T: float) -> bool:
    """Whether a fitted temperature stopped at the edge of the search range."""
    return T <= T_MIN * 1.001 or T >= T_MAX / 1.001


def refusal(T: float, nll_before: float, nll_after: float, images: int) -> str | None:
    """Why a temperature fitted on ``images`` validation images must not be stored, or ``None``.

    A fit at the edge of the range (:func:`at_bound`) is the search giving up, not a measured
    temperature: at ``T_MIN`` every later prediction would read close to 100 %. A fit that does
    not lower the validation NLL below the model's own (``T = 1``) calibrates nothing.
    """
    if at_bound(T):
        return (f"the fitted temperature {T:.3g} stopped at the edge of its range ({T_MIN:g} to {T_MAX:g}): "
                f"the {images} validation images are too few or too easy to pin it down")
    if T == 1.0 or not nll_after < nll_before:
        return (f"no temperature lowers the validation NLL below the model's own ({nll_before:.4f}, "
                f"on {images} validation images)")
    return None


def fit_temperature(y_true, probs, tol: float = 1e-6) -> float:
    """The ``T`` in ``[T_MIN, T_MAX]`` minimising :func:`nll` on (validation) ``y_true``, ``probs``.

    Golden-section search on ``log T``: the NLL is convex in ``1 / T``, so it has one minimum
    along ``log T``. The result never has a higher NLL than ``T = 1`` (then 1 is returned), and
    no predictions give 1.
    """
    y_true = np.asarray(y_true, dtype=int)
    probs = np.asarray(probs, dtype=np.float64)
    if len(y_true) == 0:
        return 1.0
    log_p = np.log(np.clip(probs, _P_FLOOR, None))
    rows = np.arange(len(y_true))

    def f(log_t: float) -> float:
        return float(-_scaled(log_p, math.exp(log_t))[rows, y_true].mean())

    a, b = math.log(T_MIN), math.log(T_MAX)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = f(c), f(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = f(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = f(d)
    best = (a + b) / 2
    T = math.exp(best)
    return T if f(best) <= f(0.0) else 1.0
