"""Which runs are there, and what differs between two of them.

:func:`find_runs` lists every run folder under a folder (plain runs, cross-validation folds,
search trials: all are run folders with a ``config.json``) with its numbers and its settings
flattened to dotted keys (``train.learning_rate``, ``spec.head.dropout``), so runs can be
sorted, filtered and tabulated. A run whose files cannot be read is listed as "unreadable" with
the reason: one damaged folder must not hide the others.

:func:`diff_runs` answers "why did these two runs come out differently": the settings that
changed (hyper-parameters, seeds, the split's files and their fingerprint, versions), the
numbers side by side, and the test images whose predicted class changed.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from cnnstudio.core.errors import StudioError
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.runs import records

# config.json entries left out of the settings: bookkeeping, or long lists compared on their own.
SKIPPED_SETTINGS = frozenset({
    "format", "created", "split.train", "split.val", "split.test", "fingerprint.contents", "dataset.problems",
})
SPLIT_PARTS = ("train", "val", "test")
# The numbers of a run, in the order they are shown.
METRICS = ("status", "epochs", "best_epoch", "val_accuracy", "val_loss", "test_accuracy", "test_loss",
           "train_seconds")
# Changed predictions written out in full by format_diff; the JSON has them all.
SHOWN_PREDICTIONS = 50


@dataclass
class RunSummary:
    path: str
    name: str  # the path relative to the folder searched
    created: str | None = None
    model: str | None = None  # the preset, or the backbone
    status: str = "unfinished"  # completed | early_stopped | cancelled | unfinished | unreadable
    epochs: int | None = None
    best_epoch: int | None = None
    val_accuracy: float | None = None  # of the best epoch (the weights the run keeps)
    val_loss: float | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    train_seconds: float | None = None
    settings: dict = field(default_factory=dict)
    reason: str | None = None  # why the run is unreadable

    def to_dict(self) -> dict:
        return asdict(self)


def flatten(obj, prefix: str = "", skip: frozenset = frozenset()) -> dict:
    """Nested dicts as one dict of dotted keys; lists of dicts by position (``blocks[0].filters``),
    other lists kept as values; keys in ``skip`` (dotted) left out with all below them."""
    out = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            dotted = f"{prefix}.{key}" if prefix else str(key)
            if dotted not in skip:
                out.update(flatten(value, dotted, skip))
    elif isinstance(obj, list) and any(isinstance(v, dict) for v in obj):
        for i, value in enumerate(obj):
            out.update(flatten(value, f"{prefix}[{i}]", skip))
    else:
        out[prefix] = obj
    return out


def settings_of(config: dict) -> dict:
    """A run's ``config.json`` as flat settings, without bookkeeping and file lists."""
    return flatten(config, skip=SKIPPED_SETTINGS)


def find_runs(folder) -> list[RunSummary]:
    """Every run folder under ``folder`` (itself included), sorted by name; never raises for a
    damaged run."""
    folder = Path(folder)
    if not folder.is_dir():
        raise StudioError(f"{folder}: no such folder")
    found = []
    for top, dirs, _files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        top = Path(top)
        if records.is_run(top) is False:
            continue
        dirs[:] = []  # a run's own folders (model, checkpoints) hold no runs
        found.append(summarise_run(top, folder))
    return sorted(found, key=lambda r: r.name)


def summarise_run(run_dir, base=None) -> RunSummary:
    """One run's summary; status "unreadable" with the reason when one of its files is damaged."""
    run_dir = Path(run_dir)
    name = run_dir.name if base is None or run_dir == Path(base) else run_dir.relative_to(base).as_posix()
    summary = RunSummary(path=str(run_dir), name=name)
    run = records.RunRecords(run_dir)
    try:
        config = run.config
        spec = config.get("spec") or {}
        summary.created = config.get("created")
        summary.model = spec.get("preset") or spec.get("backbone")
        summary.settings = settings_of(config)
        metrics = run.metrics or {}
        history = run.history
        summary.status = metrics.get("status", "unfinished")
        summary.epochs = metrics.get("epochs_run", len(history) if history else None)
        summary.train_seconds = metrics.get("train_seconds")
        summary.test_accuracy = metrics.get("test_accuracy")
        summary.test_loss = metrics.get("test_loss")
        best = runs.best_row(history, (config.get("train") or {}).get("monitor", "val_loss"))
        if best is not None:
            summary.best_epoch = int(best["epoch"])
            summary.val_accuracy = best.get("val_accuracy")
            summary.val_loss = best.get("val_loss")
    except StudioError as exc:
        summary.status = "unreadable"
        summary.reason = str(exc)
    return summary


# ----------------------------------------------------------------------------- diff


@dataclass
class RunDiff:
    run_a: str
    run_b: str
    settings: list[tuple[str, object, object]]  # only the changed ones
    metrics: list[tuple[str, object, object]]
    changed_predictions: list[dict]  # {"path", "true", "a", "b"} for test images in both runs
    only_in_a: list[str] = field(default_factory=list)  # test images B's predictions do not have
    only_in_b: list[str] = field(default_factory=list)
    compared_predictions: int = 0  # test images predicted by both
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["settings"] = [{"key": k, "a": a, "b": b} for k, a, b in self.settings]
        d["metrics"] = [{"key": k, "a": a, "b": b} for k, a, b in self.metrics]
        return d


def diff_runs(run_a, run_b) -> RunDiff:
    """What differs between two run folders: settings, numbers and test predictions."""
    a, b = records.RunRecords(run_a), records.RunRecords(run_b)
    summaries = []
    for run in (a, b):
        if not run.paths.config.exists():
            raise StudioError(f"{run.root}: not a run folder (no {run.paths.config.name})")
        s = summarise_run(run.root)
        if s.status == "unreadable":
            raise StudioError(s.reason)
        summaries.append(s)
    sa, sb = summaries
    settings = [(key, sa.settings.get(key), sb.settings.get(key))
                for key in sorted(set(sa.settings) | set(sb.settings))
                if _plain(sa.settings.get(key)) != _plain(sb.settings.get(key))]
    settings += _split_changes(a.config, b.config)
    metrics = [(key, getattr(sa, key), getattr(sb, key)) for key in METRICS
               if getattr(sa, key) is not None or getattr(sb, key) is not None]
    diff = RunDiff(str(a.root), str(b.root), settings, metrics, [])
    preds = []
    for label, run in (("A", a), ("B", b)):
        if run.predictions is not None:
            preds.append({r.path: (r.true, r.predicted) for r in run.predictions.rows})
        else:
            diff.notes.append(f"{label} ({run.root}) has no {run.paths.predictions.name}: no test split, "
                              "or the run did not finish")
    if len(preds) == 2:
        pa, pb = preds
        both = sorted(set(pa) & set(pb))
        diff.compared_predictions = len(both)
        diff.changed_predictions = [{"path": path, "true": pa[path][0], "a": pa[path][1], "b": pb[path][1]}
                                    for path in both if pa[path][1] != pb[path][1]]
        diff.only_in_a = sorted(set(pa) - set(pb))
        diff.only_in_b = sorted(set(pb) - set(pa))
    return diff


def _plain(value):
    return json.dumps(value, sort_keys=True)


def _split_changes(ca: dict, cb: dict) -> list[tuple[str, str, str]]:
    """The split's file lists, compared as sets: how many files each part has, and how many moved."""
    out = []
    for part in SPLIT_PARTS:
        fa = set((ca.get("split") or {}).get(part) or [])
        fb = set((cb.get("split") or {}).get(part) or [])
        if fa != fb:
            out.append((f"split.{part}", f"{len(fa)} files",
                        f"{len(fb)} files ({len(fb - fa)} not in A's, {len(fa - fb)} of A's left out)"))
    return out


def _value(v, key: str = "") -> str:
    if isinstance(v, float):
        return f"{v:.1f}" if key.endswith("seconds") else f"{v:.4f}" if abs(v) < 1e4 else f"{v:g}"
    if v is None:
        return "-"
    return v if isinstance(v, str) else json.dumps(v)


def format_diff(diff: RunDiff) -> str:
    """The diff as text for a terminal."""
    lines = [f"A: {diff.run_a}", f"B: {diff.run_b}"]
    if diff.settings:
        width = max(len(k) for k, _, _ in diff.settings)
        lines.append(f"Settings that differ ({len(diff.settings)}):")
        lines += [f"  {k:<{width}}  {_value(va)}  ->  {_value(vb)}" for k, va, vb in diff.settings]
    else:
        lines.append("Settings: the same (hyper-parameters, seeds, split and its files' fingerprint)")
    if diff.metrics:
        width = max(len(k) for k, _, _ in diff.metrics)
        lines.append(f"{'Results':<{width + 2}}  {'A':>12}  {'B':>12}")
        lines += [f"  {k:<{width}}  {_value(va, k):>12}  {_value(vb, k):>12}" for k, va, vb in diff.metrics]
    if diff.compared_predictions:
        lines.append(f"Test images whose prediction changed: {len(diff.changed_predictions)} of "
                     f"{diff.compared_predictions}")
        for p in diff.changed_predictions[:SHOWN_PREDICTIONS]:
            lines.append(f"  {p['path']}  (true {p['true']}): A {p['a']}, B {p['b']}")
        if len(diff.changed_predictions) > SHOWN_PREDICTIONS:
            lines.append(f"  ... and {len(diff.changed_predictions) - SHOWN_PREDICTIONS} more (--json lists all)")
    for label, only in (("A", diff.only_in_a), ("B", diff.only_in_b)):
        if only:
            lines.append(f"Test images only in {label}'s predictions: {len(only)} (the splits differ)")
    lines += [f"Note: {n}" for n in diff.notes]
    return "\n".join(lines)
