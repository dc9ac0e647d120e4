"""A run folder's records read back, and checked: the one reader of what a run wrote.

``config.json``, ``metrics.json``, ``history.csv``, ``predictions.csv``, ``problems.json`` and
``checkpoints/state.json`` (the layout and the writers: :mod:`cnnstudio.core.runs.folder`) are read here, by the report,
the window's pages, the comparison of runs, the evaluation, the search, the cross-validation
and the rerun alike. Each record is checked for the shape and the types its readers rely on;
a required record that is missing, or any record that is malformed (not JSON, not an object, a
number that is text or NaN, a class the run does not have, a header without a column, a row
cut short), raises :class:`~cnnstudio.core.errors.RecordError` with one line:
``PATH: what is wrong``, and ``PATH: row N: ...`` in a CSV file (the header is row 1, as in a
spreadsheet). Nothing is skipped, and nothing missing is read as 0.

Optional records read as nothing: the metrics of a run that has not finished (None), the
history before the first epoch ([]), the predictions of a run without a test split (None),
the problems of a run that has not finished ([]). NaN is kept where it records something that
happened: a loss or an accuracy of a training that diverged.
"""

from __future__ import annotations

import csv
import json
import math
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath

import numpy as np

from cnnstudio.core.errors import RecordError, StudioError
from cnnstudio.core.io.atomic import read_json
from cnnstudio.core.runs.folder import HISTORY_COLUMNS, PREDICTION_COLUMNS, RunPaths, probability_column

CONFIG_SECTIONS = ("dataset", "split", "spec", "train", "seeds")
SPLIT_PARTS = ("train", "val", "test")
# history.csv columns that say where an epoch is, as opposed to what it measured: never NaN.
HISTORY_BOOKKEEPING = ("epoch", "learning_rate", "seconds")
METRIC_COUNTS = ("epochs_run", "test_images", "skipped_files")
METRIC_SECTIONS = ("per_class", "macro_avg", "weighted_avg", "final")
SHOWN_CLASSES = 8  # classes named in a message about an unknown one; the rest are counted


# ----------------------------------------------------------------------------- config.json


def read_config(run_dir) -> dict:
    """The run's ``config.json``: a JSON object whose sections, where present, are objects, with
    the dataset's class names and folder and the split's file lists of the right types."""
    path = RunPaths(Path(run_dir)).config
    if not path.exists():
        raise RecordError(f"{run_dir}: not a run folder (no {path.name})")
    config = _json_object(path)
    for key in CONFIG_SECTIONS:
        if key in config and not isinstance(config[key], dict):
            raise RecordError(f"{path}: '{key}' is not an object")
    dataset = config.get("dataset") or {}
    if "class_names" in dataset:
        _check_names(path, dataset["class_names"], "dataset.class_names")
    if "root" in dataset and not isinstance(dataset["root"], str):
        raise RecordError(f"{path}: dataset.root is not a folder path")
    for part in SPLIT_PARTS:
        files = (config.get("split") or {}).get(part)
        if files is not None and not (isinstance(files, list) and all(isinstance(f, str) for f in files)):
            raise RecordError(f"{path}: split.{part} is not a list of file paths")
    return config


def is_run(folder) -> bool | None:
    """True when ``folder`` holds a run's ``config.json``; False when it holds none, or another
    tool's (no spec or training settings in it); None when it cannot be read: a damaged run."""
    if not RunPaths(Path(folder)).config.is_file():
        return False
    try:
        data = read_json(RunPaths(Path(folder)).config)
    except (OSError, ValueError):
        return None
    if not (isinstance(data, dict) and ("spec" in data or "train" in data)):
        return False
    try:
        read_config(folder)
    except RecordError:
        return None
    return True


def open_finished_run(run_dir, error=StudioError) -> tuple[RunPaths, dict]:
    """The paths and ``config.json`` of a run that finished (its model bundle written). Raises
    ``error`` (a :class:`StudioError`) naming the folder or the file and the reason otherwise."""
    from cnnstudio.core.model.bundle import META_FILE

    run_dir = Path(run_dir)
    paths = RunPaths(run_dir)
    if not run_dir.is_dir():
        raise error(f"{run_dir}: no such run folder")
    try:
        config = read_config(run_dir)
    except RecordError as exc:
        raise error(str(exc)) from None
    if not (paths.bundle / META_FILE).exists():
        raise error(f"{run_dir}: no model bundle in {paths.bundle} (the run did not finish)")
    return paths, config


# ----------------------------------------------------------------------------- metrics.json


def read_metrics(run_dir) -> dict | None:
    """The run's ``metrics.json``, None when the run has not finished (no file).

    Checked: the status is text, the class names a list of names, the counts whole numbers, the
    seconds and the test accuracy finite, the test loss a number (NaN: the model diverged), the
    confusion matrix a square of counts, one row per class.
    """
    path = RunPaths(Path(run_dir)).metrics
    if not path.exists():
        return None
    m = _json_object(path)
    if "status" in m and not isinstance(m["status"], str):
        raise RecordError(f"{path}: status is {m['status']!r}, not text")
    names = m.get("class_names")
    if names is not None:
        _check_names(path, names, "class_names")
    for key in METRIC_COUNTS:
        if key in m and not _count(m[key]):
            raise RecordError(f"{path}: {key} is {m[key]!r}, not a count")
    if m.get("best_epoch") is not None and not (_count(m["best_epoch"]) and m["best_epoch"] >= 1):
        raise RecordError(f"{path}: best_epoch is {m['best_epoch']!r}, not an epoch number")
    if m.get("train_seconds") is not None and not (_finite(m["train_seconds"]) and m["train_seconds"] >= 0):
        raise RecordError(f"{path}: train_seconds is {m['train_seconds']!r}, not a number of seconds")
    if m.get("test_accuracy") is not None and not (_finite(m["test_accuracy"]) and 0 <= m["test_accuracy"] <= 1):
        raise RecordError(f"{path}: test_accuracy is {m['test_accuracy']!r}, not a number from 0 to 1")
    if m.get("test_loss") is not None and not _number(m["test_loss"]):
        raise RecordError(f"{path}: test_loss is {m['test_loss']!r}, not a number")
    for key in METRIC_SECTIONS:
        if m.get(key) is not None and not isinstance(m[key], dict):
            raise RecordError(f"{path}: {key} is not an object")
    cm = m.get("confusion_matrix")
    if cm is not None:
        k = len(names) if names is not None else len(cm) if isinstance(cm, list) else 0
        if not (isinstance(cm, list) and len(cm) == k
                and all(isinstance(row, list) and len(row) == k and all(_count(v) for v in row) for row in cm)):
            raise RecordError(f"{path}: confusion_matrix is not {k} rows of {k} counts (one per class)")
    return m


# ----------------------------------------------------------------------------- history.csv


def read_history(run_dir) -> list[dict]:
    """The run's ``history.csv``, one dict per epoch ([] before the first epoch ends).

    ``epoch`` is a whole number from 1; the other columns of numbers are floats (a loss or an
    accuracy may be NaN: the training diverged), empty cells None, and a column of text (the
    fine-tuning ``phase``) text. A measured column holding text is refused.
    """
    path = RunPaths(Path(run_dir)).history
    if not path.exists():
        return []
    header, rows = _csv(path)
    if "epoch" not in header:
        raise RecordError(f"{path}: the header has no 'epoch' column (it has {', '.join(header)})")
    out = []
    for n, fields in rows:
        row = {}
        for name, text in zip(header, fields):
            row[name] = _history_cell(path, n, name, text)
        out.append(row)
    return out


def _history_cell(path: Path, n: int, name: str, text: str):
    if name == "epoch":
        value = _float(text)
        if value is None or not (math.isfinite(value) and value >= 1 and value == int(value)):
            raise RecordError(f"{path}: row {n}: epoch is {text!r}, not an epoch number")
        return int(value)
    if text == "":
        return None
    value = _float(text)
    if value is None:
        if name in HISTORY_COLUMNS:
            raise RecordError(f"{path}: row {n}: {name} is {text!r}, not a number")
        return text
    if name in HISTORY_BOOKKEEPING and not math.isfinite(value):
        raise RecordError(f"{path}: row {n}: {name} is {text!r}, not a finite number")
    return value


# ----------------------------------------------------------------------------- checkpoints/state.json

TRAIN_PHASES = ("train", "head", "finetune")
# The files a generation of the checkpoint names (see cnnstudio.core.runs.checkpoint).
CHECKPOINT_FILE = re.compile(r"(last-[0-9]{4,}\.keras|best-[0-9]{4,}\.weights\.h5)")


def read_train_state(run_dir) -> dict | None:
    """The run's checkpoint record, ``checkpoints/state.json`` (None when no epoch was saved).

    Checked: ``epochs_done`` a count, ``history`` one object per epoch numbered 1, 2, ... in
    order, ``monitor`` text, ``best`` a number or null, ``train_seconds`` finite, the early
    stopping counters, the fine-tuning ``phase`` and ``phase_start``, and the files of its
    generation (``files``: plain names of this folder with their sizes; absent in run folders
    written before generations, which name ``last.keras`` and ``best.weights.h5``).
    """
    path = RunPaths(Path(run_dir)).train_state
    if not path.exists():
        return None
    s = _json_object(path)
    done = s.get("epochs_done")
    if not (_count(done) and done >= 1):
        raise RecordError(f"{path}: epochs_done is {done!r}, not a number of epochs")
    history = s.get("history")
    if not isinstance(history, list):
        raise RecordError(f"{path}: history is not a list of epochs")
    if len(history) != done:
        raise RecordError(f"{path}: history has {len(history)} epochs, epochs_done says {done}")
    for n, row in enumerate(history, 1):
        if not isinstance(row, dict):
            raise RecordError(f"{path}: history entry {n} is not an object")
        if not (_count(row.get("epoch")) and row["epoch"] == n):
            raise RecordError(f"{path}: history entry {n} is epoch {row.get('epoch')!r}, not {n}")
        for key, value in row.items():
            if not (value is None or _number(value) or isinstance(value, str)):
                raise RecordError(f"{path}: history entry {n}: {key} is {value!r}, not a number")
    if not isinstance(s.get("monitor"), str) or not s["monitor"]:
        raise RecordError(f"{path}: monitor is {s.get('monitor')!r}, not a metric name")
    if s.get("best") is not None and not _number(s["best"]):
        raise RecordError(f"{path}: best is {s['best']!r}, not a number")
    seconds = s.get("train_seconds")
    if not (_finite(seconds) and seconds >= 0):
        raise RecordError(f"{path}: train_seconds is {seconds!r}, not a number of seconds")
    stopping = s.get("early_stopping")
    if stopping is not None and not (isinstance(stopping, dict) and _count(stopping.get("wait"))
                                     and _number(stopping.get("best")) and _count(stopping.get("best_epoch"))):
        raise RecordError(f"{path}: early_stopping is not a wait count, a best value and a best epoch")
    if "phase" in s and s["phase"] not in TRAIN_PHASES:
        raise RecordError(f"{path}: phase is {s['phase']!r}, not one of {', '.join(TRAIN_PHASES)}")
    if "phase_start" in s and not (_count(s["phase_start"]) and s["phase_start"] <= done):
        raise RecordError(f"{path}: phase_start is {s['phase_start']!r}, not an epoch count up to {done}")
    if s.get("blocks") is not None and not isinstance(s["blocks"], dict):
        raise RecordError(f"{path}: blocks is not an object")
    if "files" in s:
        _check_checkpoint_files(path, s)
    return s


def _check_checkpoint_files(path: Path, s: dict) -> None:
    if not _count(s.get("generation")):
        raise RecordError(f"{path}: generation is {s.get('generation')!r}, not a count")
    files = s["files"]
    if not isinstance(files, dict) or not isinstance(files.get("last"), dict):
        raise RecordError(f"{path}: files does not name the last epoch's model")
    for key in ("last", "best"):
        entry = files.get(key)
        if entry is None:
            continue
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str)
                and CHECKPOINT_FILE.fullmatch(entry["name"]) and _count(entry.get("size"))):
            raise RecordError(f"{path}: files.{key} is not a checkpoint file's name and size")
        if entry.get("epoch") is not None and not (_count(entry["epoch"]) and 1 <= entry["epoch"] <= s["epochs_done"]):
            raise RecordError(f"{path}: files.{key}.epoch is {entry['epoch']!r}, not an epoch number")


# ----------------------------------------------------------------------------- predictions.csv


@dataclass(frozen=True)
class Prediction:
    """One test image's row of ``predictions.csv``."""

    path: str  # relative to the dataset root
    true: str
    predicted: str
    confidence: float  # the probability of the predicted class
    p_true: float | None = None  # the probability of the true class, when the file has probabilities

    @property
    def correct(self) -> bool:
        return self.true == self.predicted

    @property
    def loss(self) -> float | None:
        """The image's cross-entropy, ``-log p(true class)``; None without probabilities."""
        return None if self.p_true is None else -math.log(max(self.p_true, 1e-7))


@dataclass(frozen=True)
class Predictions:
    """A run's ``predictions.csv``: its rows in file order, and the probabilities as an array."""

    path: Path
    class_names: list[str]
    rows: list[Prediction]
    probs: np.ndarray | None  # (rows, classes) in class_names order; None when the file has no p_ columns

    def __len__(self) -> int:
        return len(self.rows)

    def y_true(self) -> np.ndarray:
        """The true classes as indices into ``class_names``."""
        index = {n: i for i, n in enumerate(self.class_names)}
        return np.array([index[r.true] for r in self.rows], dtype=int)


def read_predictions(run_dir, class_names: list[str]) -> Predictions | None:
    """The run's ``predictions.csv`` (None when the run has none: no test split, or unfinished).

    Every row's true and predicted class must be one of ``class_names`` (the run's), its
    confidence and probabilities numbers from 0 to 1, and each image listed once. The
    probability columns (``p_<class>``) are all there or all absent (``probs`` None); a column
    for a class the run does not have is refused. The ``correct`` column is not read: a row is
    correct when its true class is the predicted one.
    """
    path = RunPaths(Path(run_dir)).predictions
    if not path.exists():
        return None
    names = list(class_names)
    if not names:
        raise RecordError(f"{path}: cannot be checked: the run records no class names")
    header, rows = _csv(path)
    required = [c for c in PREDICTION_COLUMNS if c != "correct"]
    for column in required:
        if column not in header:
            raise RecordError(f"{path}: the header has no '{column}' column (it has {', '.join(header)})")
    wanted = [probability_column(n) for n in names]
    stray = [c for c in header if c.startswith(probability_column("")) and c not in wanted]
    if stray:
        raise RecordError(f"{path}: column '{stray[0]}' is for a class the run does not have "
                          f"(its classes: {_listed(names)})")
    present = [c for c in wanted if c in header]
    if present and len(present) < len(wanted):
        missing = next(c for c in wanted if c not in header)
        raise RecordError(f"{path}: the header has no '{missing}' column (the other classes have one)")
    at = {c: i for i, c in enumerate(header)}
    known = set(names)
    seen: dict[str, int] = {}
    out: list[Prediction] = []
    probs: list[list[float]] = []
    for n, fields in rows:
        image = fields[at["path"]]
        if not image:
            raise RecordError(f"{path}: row {n}: no path")
        relative = PurePosixPath(image.replace("\\", "/"))
        if relative.is_absolute() or ".." in relative.parts:
            # a report embeds the image the row names: only ever one inside the dataset folder
            raise RecordError(f"{path}: row {n}: {image!r} is not a path inside the dataset folder")
        if image in seen:
            raise RecordError(f"{path}: row {n}: {image} is listed twice (also row {seen[image]})")
        seen[image] = n
        true, predicted = fields[at["true"]], fields[at["predicted"]]
        for what, name in (("true class", true), ("predicted class", predicted)):
            if name not in known:
                raise RecordError(f"{path}: row {n}: {what} {name!r} is not one of the run's classes "
                                  f"({_listed(names)})")
        confidence = _share(path, n, "confidence", fields[at["confidence"]])
        p_true = None
        if present:
            row = [_share(path, n, c, fields[at[c]]) for c in wanted]
            probs.append(row)
            p_true = row[names.index(true)]
        out.append(Prediction(image, true, predicted, confidence, p_true))
    array = np.asarray(probs, dtype=np.float64).reshape(len(out), len(names)) if present else None
    return Predictions(path, names, out, array)


def _share(path: Path, n: int, column: str, text: str) -> float:
    value = _float(text)
    if value is None:
        raise RecordError(f"{path}: row {n}: {column} is {text!r}, not a number")
    if math.isnan(value):  # what a diverged model puts out, not a damaged file: say so
        raise RecordError(f"{path}: row {n}: {column} is nan: the model's outputs are not numbers "
                          "(its training diverged; train it again with a lower learning rate)")
    if not (0.0 <= value <= 1.0):
        raise RecordError(f"{path}: row {n}: {column} is {text}, not a number from 0 to 1")
    return value


# ----------------------------------------------------------------------------- problems.json


def read_problems(run_dir) -> list[dict]:
    """The files skipped while training, from ``problems.json``: ``{"path", "reason"}`` each
    ([] when the run has not finished)."""
    path = RunPaths(Path(run_dir)).problems
    if not path.exists():
        return []
    data = _json_object(path)
    skipped = data.get("skipped_during_training", [])
    if not isinstance(skipped, list):
        raise RecordError(f"{path}: skipped_during_training is not a list")
    for i, entry in enumerate(skipped, 1):
        if not (isinstance(entry, dict) and isinstance(entry.get("path"), str)
                and isinstance(entry.get("reason"), str)):
            raise RecordError(f"{path}: skipped file {i} has no path and reason")
    return skipped


# ----------------------------------------------------------------------------- one run


class RunRecords:
    """The records of one run folder, each read and checked once, when first asked for."""

    def __init__(self, run_dir):
        self.root = Path(run_dir)
        self.paths = RunPaths(self.root)

    @cached_property
    def config(self) -> dict:
        return read_config(self.root)

    @cached_property
    def metrics(self) -> dict | None:
        return read_metrics(self.root)

    @cached_property
    def history(self) -> list[dict]:
        return read_history(self.root)

    @cached_property
    def problems(self) -> list[dict]:
        return read_problems(self.root)

    @cached_property
    def class_names(self) -> list[str]:
        """The classes in the model's output order: the metrics', else the dataset's the run recorded."""
        return list((self.metrics or {}).get("class_names") or (self.config.get("dataset") or {}).get("class_names")
                    or [])

    @cached_property
    def predictions(self) -> Predictions | None:
        return read_predictions(self.root, self.class_names)


# ----------------------------------------------------------------------------- helpers


def _json_object(path: Path) -> dict:
    try:
        data = read_json(path)
    except json.JSONDecodeError as exc:
        raise RecordError(f"{path}: unreadable (not JSON: {exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: unreadable (not UTF-8 text at byte {exc.start})") from None
    except OSError as exc:
        raise RecordError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if not isinstance(data, dict):
        raise RecordError(f"{path}: not a JSON object (it holds a {type(data).__name__})")
    return data


def _csv(path: Path) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """The header and the rows (with their row numbers, the header being row 1) of a CSV file
    whose rows all have the header's number of fields; blank lines are left out."""
    reader = None
    try:
        with open(path, encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            if not header:
                raise RecordError(f"{path}: empty (no header row)")
            twice = next((c for i, c in enumerate(header) if c in header[:i]), None)
            if twice is not None:
                raise RecordError(f"{path}: the header has column '{twice}' twice")
            rows = []
            for fields in reader:
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise RecordError(f"{path}: row {reader.line_num}: {len(fields)} fields, the header has "
                                      f"{len(header)}")
                rows.append((reader.line_num, fields))
    except UnicodeDecodeError as exc:
        raise RecordError(f"{path}: unreadable (not UTF-8 text at byte {exc.start})") from None
    except csv.Error as exc:
        raise RecordError(f"{path}: row {reader.line_num if reader else 1}: {exc}") from None
    except OSError as exc:
        raise RecordError(f"{path}: unreadable ({exc.strerror or exc})") from None
    return header, rows


def _check_names(path: Path, names, key: str) -> None:
    if not (isinstance(names, list) and all(isinstance(n, str) and n for n in names)):
        raise RecordError(f"{path}: {key} is not a list of class names")
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        raise RecordError(f"{path}: {key} names class '{twice}' twice")


def _listed(names: list[str]) -> str:
    more = f" and {len(names) - SHOWN_CLASSES} more" if len(names) > SHOWN_CLASSES else ""
    return ", ".join(names[:SHOWN_CLASSES]) + more


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value) -> bool:
    return _number(value) and math.isfinite(value)


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
