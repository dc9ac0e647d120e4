"""The run folder: one folder per training run, every file written atomically.

```
RUN_DIR/
  config.json        spec, hyper-parameters, dataset, split (seed and file lists), fingerprint of the
                     split's files, seeds, device, versions
  history.csv        one row per epoch (a view of checkpoints/state.json)
  checkpoints/       state.json, last-NNNN.keras, best-NNNN.weights.h5: what resume needs, an
                     epoch committed as one (see core.runs.checkpoint, which alone names them)
  metrics.json       test metrics, status, timings
  predictions.csv    per test image: true class, predicted class, confidence, probabilities
  problems.json      files skipped while training
  model/             the bundle (see core.model.bundle)
```

Everything here writes; :mod:`cnnstudio.core.runs.records` reads the records back and checks them.
"""

from __future__ import annotations

import math
import platform
import re
import time
from dataclasses import dataclass
from pathlib import Path

from cnnstudio import __version__
from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import atomic_write_csv, atomic_write_json

CONFIG_FORMAT = 1


@dataclass(frozen=True)
class RunPaths:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "config.json"

    @property
    def history(self) -> Path:
        return self.root / "history.csv"

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def train_state(self) -> Path:
        return self.checkpoints / "state.json"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics.json"

    @property
    def predictions(self) -> Path:
        return self.root / "predictions.csv"

    @property
    def problems(self) -> Path:
        return self.root / "problems.json"

    @property
    def bundle(self) -> Path:
        return self.root / "model"


def run_folder_name(spec, when: float | None = None) -> str:
    """``20240601-142530-seed-model-2``: sorts by date, says which model."""
    model = spec.preset or spec.backbone
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(when))
    return f"{stamp}-{re.sub(r'[^A-Za-z0-9._-]+', '-', model).strip('-') or 'model'}"


def versions() -> dict:
    import keras
    import numpy
    import tensorflow

    return {
        "cnnstudio": __version__,
        "python": platform.python_version(),
        "tensorflow": tensorflow.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }


def write_config(p: RunPaths, index, split, spec, config, device: str, weights: dict | None = None,
                 extra: dict | None = None, fingerprint: dict | None = None) -> None:
    """Everything needed to train the run again: the split's files with a fingerprint of their
    contents (so changed data is noticed; ``fingerprint`` when the caller has just computed it),
    the seeds, the spec and hyper-parameters, versions."""
    from cnnstudio.core.data.fingerprint import dataset_fingerprint

    atomic_write_json(
        p.config,
        {
            "format": CONFIG_FORMAT,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "dataset": {
                "root": str(index.root), "class_names": index.class_names, "counts": index.counts(),
                # what the scan found: bad files (left out), empty or tiny classes, imbalance
                "problems": [{"path": q.path, "reason": q.reason, "level": q.level, "scope": q.scope}
                             for q in index.problems],
            },
            "split": split.to_dict(index),
            "fingerprint": fingerprint or dataset_fingerprint(index, split),
            "seeds": {"split": split.seed, "training": config.seed},
            "spec": spec.to_dict(),
            "train": config.to_dict(),
            "weights": weights,
            "device": device,
            "versions": versions(),
            **(extra or {}),
        },
    )


def recorded_split(paths: RunPaths, config: dict, part: str, error=StudioError, why: str = "") -> list[str]:
    """The files of one part (``train``, ``val``, ``test``) of the run's split; ``error`` when
    there are none (``why`` says what needed them)."""
    files = list((config.get("split") or {}).get(part) or [])
    if not files:
        name = {"val": "validation"}.get(part, part)
        raise error(f"{paths.root}: the run has no {name} split (trained with a {name} fraction of 0)"
                    + (f"; {why}" if why else ""))
    return files


def dataset_folder(paths: RunPaths, config: dict, data_dir=None, error=StudioError, hint: str = "") -> Path:
    """``data_dir`` when given, else the dataset folder the run recorded; ``error`` naming the
    folder when it is not there (``hint`` says what to do)."""
    tail = f"; {hint}" if hint else ""
    if data_dir is not None:
        if not Path(data_dir).is_dir():
            raise error(f"{data_dir}: no such folder")
        return Path(data_dir)
    recorded = (config.get("dataset") or {}).get("root")
    if not recorded:
        raise error(f"{paths.config}: records no dataset folder{tail}")
    if not Path(recorded).is_dir():
        raise error(f"{recorded}: the run's dataset folder is not there{tail}")
    return Path(recorded)


HISTORY_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "learning_rate", "seconds")


def write_history(p: RunPaths, history: list[dict]) -> None:
    extra = sorted({k for row in history for k in row} - set(HISTORY_COLUMNS))
    header = [c for c in HISTORY_COLUMNS if any(c in row for row in history)] + extra
    atomic_write_csv(p.history, header, [[row.get(c, "") for c in header] for row in history])


# predictions.csv: these columns, then one probability column per class (probability_column).
PREDICTION_COLUMNS = ("path", "true", "predicted", "confidence", "correct")


def probability_column(class_name: str) -> str:
    """The predictions.csv column of one class's probability: ``p_<class>``."""
    return f"p_{class_name}"


def write_predictions(p: RunPaths, result) -> None:
    names = result.class_names
    header = list(PREDICTION_COLUMNS) + [probability_column(n) for n in names]
    rows = []
    for path, true, probs in zip(result.paths, result.y_true, result.probs):
        pred = int(probs.argmax())
        rows.append([path, names[true], names[pred], f"{probs[pred]:.6f}", int(pred == true)] + [f"{x:.6f}" for x in probs])
    atomic_write_csv(p.predictions, header, rows)


def write_results(p: RunPaths, model, index, spec, *, reason, epochs_run, history, train_seconds, device,
                  metrics, skipped, n_classes, monitor: str = "val_loss", extra: dict | None = None) -> None:
    from cnnstudio.core.model.bundle import save_bundle

    save_bundle(model, p.bundle, class_names=index.class_names, spec=spec,
                weights=(extra or {}).get("weights"))
    atomic_write_json(p.problems, {"skipped_during_training": skipped})
    out = {
        "status": reason,
        "epochs_run": epochs_run,
        "train_seconds": round(train_seconds, 3),
        "device": device,
        "class_names": index.class_names,
        "best_epoch": _best_epoch(history, monitor),
        "monitor": monitor,
        "final": history[-1] if history else None,
        "skipped_files": len(skipped),
        **(extra or {}),
    }
    if metrics:
        out.update(metrics)
    atomic_write_json(p.metrics, out)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def improves(value, best, monitor: str) -> bool:
    """The one best-epoch rule: whether ``value`` of ``monitor`` beats ``best`` (lower loss,
    higher accuracy). A value that is not a finite number never does; any finite value beats
    no best, or a best that was not finite."""
    if not _finite(value):
        return False
    if not _finite(best):
        return True
    return value > best if "acc" in monitor else value < best


def best_row(history: list[dict], monitor: str = "val_loss") -> dict | None:
    """The history row of the epoch whose weights a run keeps: the best by ``monitor`` under
    :func:`improves` (the earliest of equals, as the checkpoint keeps it); None when no epoch has it."""
    best = None
    for row in history:
        if improves(row.get(monitor), None if best is None else best[monitor], monitor):
            best = row
    return best


def _best_epoch(history, monitor: str):
    row = best_row(history, monitor)
    return int(row["epoch"]) if row is not None else None
