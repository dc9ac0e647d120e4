"""k-fold cross-validation: k ordinary training runs on stratified folds, and their mean ± std.

One split's validation accuracy on a small dataset depends on which images landed in it; the
spread over k folds says how much. Each fold is a normal run folder (``OUT/fold-1`` ...
``OUT/fold-k``), so reports, evaluation, export and the run listing work on folds as on any
run. ``OUT/cv.json`` holds the plan (k, seed, spec, hyper-parameters, each fold's validation
files, the held-out test files) and the results so far; it is rewritten after every fold, so an
interrupted cross-validation resumes: finished folds are kept, an interrupted fold continues
from its last checkpoint.
"""

from __future__ import annotations

import json
import os
import socket
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from cnnstudio.core.data.dataset import DatasetIndex, Split, deal_folds, make_split
from cnnstudio.core.data.fingerprint import dataset_fingerprint
from cnnstudio.core.errors import StudioError
from cnnstudio.core.experiments import storage as storages
from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.io.lock import hold_folder
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.runs import records
from cnnstudio.core.runs.restore import check_contents, match_classes
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.events import QuietState, TrainState
from cnnstudio.core.training.trainer import Trainer

CV_FILE = "cv.json"
CV_FORMAT = 1
# Per-fold numbers summarised over the folds, in the order they are shown.
METRICS = ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
FINISHED = ("completed", "early_stopped")
CV_STUDY = "cnnstudio-cv"


def fold_name(fold: int) -> str:
    """The run folder of fold ``fold`` (1-based) inside the cross-validation folder."""
    return f"fold-{fold}"


# ----------------------------------------------------------------------------- folds


def stratified_folds(index: DatasetIndex, k: int, seed: int, files: list[int] | None = None) -> list[list[int]]:
    """``k`` disjoint folds of ``files`` (indices into ``index.items``; default all), each class
    dealt in proportion after a seeded shuffle, so per-class counts of two folds differ by at most 1.
    """
    if k < 2:
        raise StudioError(f"cross-validation needs at least 2 folds, not {k}")
    chosen = range(len(index.items)) if files is None else sorted(set(files))
    groups: list[list[int]] = [[] for _ in index.class_names]
    for i in chosen:
        groups[index.items[i].label].append(i)
    left = "" if files is None else " left for the folds"
    for name, members in zip(index.class_names, groups, strict=True):
        if len(members) < k:
            raise StudioError(
                f"{index.root}: class '{name}' has {len(members)} image{'s' if len(members) != 1 else ''}{left}; "
                f"{k}-fold cross-validation needs at least {k} per class"
            )
    return deal_folds(groups, k, seed)


def fold_splits(index: DatasetIndex, k: int, seed: int, test_fraction: float = 0.0) -> list[Split]:
    """One split per fold: fold i validates, the other folds train, and a test split held out
    first (as :func:`make_split` takes it, the same for every fold) tests; it may be empty."""
    test: list[int] = []
    rest = None
    if test_fraction > 0:
        try:
            held = make_split(index, 0.0, test_fraction, seed)
        except ValueError as exc:
            raise StudioError(f"test fraction: {exc}") from exc
        rest, test = held.train, held.test
    folds = stratified_folds(index, k, seed, files=rest)
    pool = {i for fold in folds for i in fold}
    return [
        Split(seed, round(1.0 / k, 6), test_fraction, sorted(pool - set(fold)), list(fold), list(test))
        for fold in folds
    ]


# ----------------------------------------------------------------------------- state and result


class CVState(TrainState, Protocol):
    """A :class:`TrainState` for the fold being trained, told when each fold starts and ends."""

    def on_fold_start(self, fold: int, k: int) -> None: ...
    def on_fold_end(self, fold: int, metrics: dict) -> None: ...


class QuietCVState(QuietState):
    """A cross-validation state that reports nowhere and never stops; the default."""

    def on_fold_start(self, fold, k):
        pass

    def on_fold_end(self, fold, metrics):
        pass


@dataclass
class CVResult:
    out_dir: Path
    k: int
    folds: list[dict]  # per fold: fold, status, epochs, best_epoch, val_*, test_*, seconds, run_dir
    summary: dict  # metric -> {"mean", "std" (sample std, ddof=1; None from one fold), "values"}
    reason: str  # "completed" | "cancelled"
    test_files: int = 0  # images of the held-out test split every fold is tested on

    def summary_lines(self) -> list[str]:
        """``val_accuracy 0.8123 ± 0.0150`` per metric, under a line saying what ± means."""
        n = max((len(s["values"]) for s in self.summary.values()), default=0)
        over = f"{n} folds" if n == self.k else f"{n} of {self.k} folds"
        lines = [f"mean ± std over {over} (sample standard deviation, ddof=1):"]
        width = max((len(key) for key in self.summary), default=0)
        for key, s in self.summary.items():
            std = "n/a" if s["std"] is None else f"{s['std']:.4f}"
            lines.append(f"  {key:<{width}}  {s['mean']:.4f} ± {std}")
        return lines


def summarise(folds: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) of each metric over the finished folds."""
    finished = [f for f in folds if f.get("status") in FINISHED]
    out = {}
    for key in METRICS:
        values = [float(f[key]) for f in finished if f.get(key) is not None]
        if values:
            out[key] = {
                "mean": float(np.mean(values)),
                "std": float(np.std(values, ddof=1)) if len(values) > 1 else None,
                "values": values,
            }
    return out


def fold_metrics(run_dir: Path, monitor: str = "val_loss") -> dict:
    """A fold's numbers, read from its run folder: validation ones of the best epoch by
    ``monitor`` (the epoch whose weights the run keeps), test ones from its metrics."""
    run = records.RunRecords(run_dir)
    saved = run.metrics or {}
    history = run.history
    out = {
        "status": saved.get("status", "cancelled"),
        "epochs": saved.get("epochs_run", len(history)),
        "seconds": saved.get("train_seconds"),
        "best_epoch": None,
        "val_accuracy": None,
        "val_loss": None,
    }
    best = runs.best_row(history, monitor)
    if best is not None:
        out.update(best_epoch=int(best["epoch"]), val_accuracy=best.get("val_accuracy"), val_loss=best.get("val_loss"))
    if saved.get("test_accuracy") is not None:
        out.update(test_accuracy=saved["test_accuracy"], test_loss=saved.get("test_loss"))
    return out


def read_cv(out_dir) -> CVResult:
    """The cross-validation in ``out_dir`` as far as it went."""
    out_dir = Path(out_dir)
    record = _read_record(out_dir / CV_FILE)
    if record is None:
        raise StudioError(f"{out_dir}: not a cross-validation folder (no {CV_FILE})")
    return _result(out_dir, record)


def _result(out_dir: Path, record: dict) -> CVResult:
    folds = []
    for f in record["folds"]:
        shown = {key: value for key, value in f.items() if key != "val"}
        shown["run_dir"] = str(out_dir / f["run_dir"])
        folds.append(shown)
    return CVResult(out_dir, record["k"], folds, record.get("summary") or {}, record.get("status", "cancelled"),
                    test_files=len(record.get("test") or []))


def _read_record(path: Path) -> dict | None:
    if not path.exists():
        return None
    try:
        record = read_json(path)
    except (OSError, ValueError) as exc:
        raise StudioError(f"{path}: unreadable cross-validation record ({exc})") from exc
    if not isinstance(record, dict) or not isinstance(record.get("folds"), list) or "k" not in record:
        raise StudioError(f"{path}: not a cross-validation record (no k or folds)")
    return record


class _Spare(Exception):
    """A trial asked for when every fold was already taken."""


class _FoldFailed(Exception):
    """A shared fold that trained but gave no result to summarise."""


class _FoldStopped(Exception):
    """A shared fold stopped before it ended (Ctrl-C)."""

    def __init__(self, number: int):
        super().__init__(f"trial {number} stopped")
        self.number = number


def _plain(obj):
    """``obj`` as it reads back from JSON, so a saved plan compares equal to a new one."""
    return json.loads(json.dumps(obj))


# ----------------------------------------------------------------------------- runner


class CrossValidation:
    """Trains ``spec`` with ``config`` on each of ``k`` folds into ``out_dir/fold-i``.

    ``seed`` shuffles the folds (and the held-out test split); ``config.seed`` initialises and
    shuffles training, the same in every fold so folds differ only by their data.
    """

    def __init__(
        self,
        index: DatasetIndex,
        spec: ModelSpec,
        config: TrainConfig,
        k: int,
        out_dir: str | Path,
        registry,
        *,
        seed: int = 0,
        test_fraction: float = 0.0,
        state: CVState | None = None,
        storage: str | None = None,
        study_name: str = CV_STUDY,
        heartbeat: float = storages.DEFAULT_HEARTBEAT,
    ):
        index.raise_for_errors()
        # With a storage URL the folds are shared: every process given the same storage and study
        # takes the next fold not yet taken (see run).
        self.storage_url = storage
        if storage is not None:
            storages.kind(storage)
        self.study_name = study_name
        if isinstance(heartbeat, bool) or not isinstance(heartbeat, (int, float)) or not 0 < heartbeat < float("inf"):
            raise StudioError(f"the heartbeat must be a positive number of seconds, not {heartbeat!r}")
        self.heartbeat = float(heartbeat)
        self.index = index
        self.spec = spec.validate(registry)
        self.config = config.validate()
        self.k = k
        self.out_dir = Path(out_dir)
        self.registry = registry.snapshot()  # kept for every fold, whatever a reload does meanwhile
        self.seed = seed
        self.test_fraction = test_fraction
        self.state = state or QuietCVState()
        self.path = self.out_dir / CV_FILE

    def _plan(self) -> tuple[list[Split], dict]:
        """The folds and the record: a saved plan when this folder holds one, else a new one."""
        record = _read_record(self.path)
        if record is not None and isinstance(record.get("class_names"), list):
            # The same checks as a resumed run: the classes (and their labels) and the files' contents.
            purpose = "the resumed cross-validation"
            self.index = match_classes(self.index, list(record["class_names"]), purpose=purpose,
                                       since="the cross-validation started")
            check_contents(record.get("fingerprint"), self.index, purpose, whose="the cross-validation's",
                           since="it started")
        idx = self.index
        wanted = _plain({
            "k": self.k, "seed": self.seed, "test_fraction": self.test_fraction,
            "class_names": idx.class_names, "spec": self.spec.to_dict(), "train": self.config.to_dict(),
        })
        if record is None:
            stray = [d.name for d in self.out_dir.glob("fold-*") if runs.RunPaths(d).config.exists()]
            if stray:
                raise StudioError(f"{self.out_dir}: holds runs ({', '.join(sorted(stray))}) but no {CV_FILE}; "
                                  "choose another folder")
            splits = fold_splits(idx, self.k, self.seed, self.test_fraction)
            record = {
                "format": CV_FORMAT,
                **wanted,
                "dataset": str(idx.root),
                "fingerprint": dataset_fingerprint(idx, splits[0]),  # fold 1's parts hold every file
                "test": [idx.items[i].path for i in splits[0].test],
                "folds": [
                    {"fold": i, "run_dir": fold_name(i), "status": "pending",
                     "val": [idx.items[j].path for j in split.val]}
                    for i, split in enumerate(splits, 1)
                ],
                "summary": {},
                "status": "running",
            }
            return splits, record
        differ = [key for key, value in wanted.items() if _plain(record.get(key)) != value]
        if differ:
            raise StudioError(
                f"{self.path}: holds another cross-validation ({', '.join(differ)} differ); "
                "choose another folder, or repeat the command that started it to resume"
            )
        vals = [f["val"] for f in record["folds"]]
        splits = []
        for i, val in enumerate(vals):
            train = [path for j, other in enumerate(vals) if j != i for path in other]
            saved = {"seed": self.seed, "val_fraction": round(1.0 / self.k, 6), "test_fraction": self.test_fraction,
                     "train": train, "val": val, "test": record.get("test") or []}
            splits.append(Split.from_dict(saved, idx))
        return splits, record

    def run(self) -> CVResult:
        """Train the folds, holding the folder: a second cross-validation on it is refused at once.

        A shared cross-validation (one given a storage URL) holds only the fold it trains: the
        folds are the trials of an Optuna study, numbered 0..k-1, each taken by one process."""
        if self.storage_url is not None:
            return self._shared()
        with hold_folder(self.out_dir, "cross-validated"):
            return self._folds()

    # -- folds shared by many processes ----------------------------------------------------

    def _shared(self) -> CVResult:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        splits, record = self._plan()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        shown = storages.masked(self.storage_url)
        storage = storages.open_storage(self.storage_url, self.out_dir / "study.db", self.heartbeat)
        reason = "running"
        joined = None
        try:
            try:
                study = optuna.create_study(storage=storage, study_name=self.study_name, load_if_exists=True,
                                            direction="minimize")
            except StudioError:
                raise
            except Exception as exc:
                raise storages.StorageError(f"{shown}: {storages.reason_of(exc)}") from None
            plan = _plain({key: record[key] for key in ("k", "seed", "test_fraction", "class_names", "spec", "train")}
                          | {"data": record["fingerprint"]["sha256"]})
            saved = study.user_attrs.get("cv")
            if saved is None:
                study.set_user_attr("cv", plan)
            elif saved != plan:
                differ = [key for key in plan if saved.get(key) != plan[key]]
                raise StudioError(f"{shown}: study {self.study_name!r} is a cross-validation with other settings "
                                  f"({', '.join(differ)} differ); give the same ones to join it, or another --study")
            joined = study
            atomic_write_json(self.path, record)
            reason = self._shared_loop(optuna, study, splits, record)
        finally:
            if joined is not None:  # a refused process writes nothing
                self._record_shared(joined, record, reason)
            storages.close(storage)
        return _result(self.out_dir, record)

    def _left(self, optuna, study) -> bool:
        """Whether a fold is still to be taken: fewer than k trials, or a fold queued to run again."""
        trials = study.get_trials(deepcopy=False)
        return len(trials) < self.k or any(t.state == optuna.trial.TrialState.WAITING for t in trials)

    def _shared_loop(self, optuna, study, splits, record) -> str:
        def after_fold(study, frozen):
            self._record_shared(study, record, "running")
            if self.state.should_stop() or not self._left(optuna, study):
                study.stop()

        said = None
        while True:
            if self.state.should_stop():
                return "cancelled"
            if self._left(optuna, study):
                try:
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                        study.optimize(self._objective(optuna, splits), callbacks=[after_fold],
                                       catch=(_Spare, _FoldFailed), gc_after_trial=False)
                except _FoldStopped as stop:
                    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == stop.number)
                    # Queued again for whichever process comes next; it goes on from the checkpoint.
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=storages.RETRIES)(study, frozen)
                    return "cancelled"
                continue
            running = sorted(t.user_attrs.get("fold", t.number + 1)
                             for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)))
            if not running or not storages.has_heartbeat(self.storage_url):
                return "completed" if all(f.get("status") in FINISHED for f in record["folds"]) else "running"
            if said != running:
                self.state.on_status(f"waiting for fold(s) {', '.join(map(str, running))}, run by other processes")
                said = running
            deadline = time.monotonic() + min(self.heartbeat, 5.0)
            while time.monotonic() < deadline and not self.state.should_stop():
                time.sleep(0.2)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                optuna.storages.fail_stale_trials(study)
            self._record_shared(study, record, "running")

    def _objective(self, optuna, splits):
        def objective(trial):
            # Trial n is fold n+1; a fold run again (its process stopped) keeps its fold.
            fold = trial.user_attrs.get("fold")
            if fold is None:
                if trial.number >= self.k:
                    trial.set_user_attr("spare", True)  # every fold was taken meanwhile
                    raise _Spare()
                fold = trial.number + 1
                trial.set_user_attr("fold", fold)
            trial.set_user_attr("metrics", None)
            trial.set_user_attr("worker", f"{socket.gethostname()} pid {os.getpid()}")
            run_dir = self.out_dir / fold_name(fold)
            self.state.on_fold_start(fold, self.k)
            resume = runs.RunPaths(run_dir).train_state.exists()
            trainer = Trainer(self.index, splits[fold - 1], self.spec, self.config, run_dir, self.registry,
                              state=self.state)
            trainer.run(resume=resume)
            metrics = {"fold": fold, **fold_metrics(run_dir, self.config.monitor), "run_dir": fold_name(fold)}
            if metrics["status"] == "cancelled":
                raise _FoldStopped(trial.number)
            trial.set_user_attr("metrics", _plain(metrics))
            self.state.on_fold_end(fold, {**metrics, "run_dir": str(run_dir)})
            if metrics["status"] not in FINISHED or metrics.get(self.config.monitor) is None:
                raise _FoldFailed()
            return float(metrics[self.config.monitor])

        return objective

    def _record_shared(self, study, record: dict, reason: str) -> None:
        """cv.json from the storage: every process's folds, their summary, and the status."""
        for t in study.get_trials(deepcopy=False):
            fold, metrics = t.user_attrs.get("fold"), t.user_attrs.get("metrics")
            if fold is None or not 1 <= fold <= self.k:
                continue
            entry = record["folds"][fold - 1]
            if metrics and (entry.get("status") not in FINISHED or metrics.get("status") in FINISHED):
                record["folds"][fold - 1] = {**entry, **metrics}
            elif not metrics and entry.get("status") == "pending" and t.state.name == "RUNNING":
                record["folds"][fold - 1] = {**entry, "status": "running"}
        record["summary"] = summarise(record["folds"])
        done = all(f.get("status") in FINISHED for f in record["folds"])
        record["status"] = "completed" if done else ("cancelled" if reason == "cancelled" else "running")
        atomic_write_json(self.path, record)

    def _folds(self) -> CVResult:
        splits, record = self._plan()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_json(self.path, record)
        reason = "completed"
        for i, split in enumerate(splits, 1):
            if self.state.should_stop():
                reason = "cancelled"
                break
            run_dir = self.out_dir / fold_name(i)
            self.state.on_fold_start(i, self.k)
            metrics = self._finished(run_dir)
            if metrics is not None:
                self.state.on_status(f"fold {i} of {self.k} finished earlier; its results are kept")
            else:
                resume = runs.RunPaths(run_dir).train_state.exists()  # the trainer checks the checkpoint
                trainer = Trainer(self.index, split, self.spec, self.config, run_dir, self.registry, state=self.state)
                trainer.run(resume=resume)
                metrics = fold_metrics(run_dir, self.config.monitor)
            metrics = {"fold": i, **metrics, "run_dir": fold_name(i)}
            record["folds"][i - 1] = {**record["folds"][i - 1], **metrics}
            record["summary"] = summarise(record["folds"])
            if metrics["status"] not in FINISHED:
                reason = "cancelled"
            record["status"] = "running" if reason == "completed" and i < self.k else reason
            atomic_write_json(self.path, record)
            self.state.on_fold_end(i, {**metrics, "run_dir": str(run_dir)})
            if reason == "cancelled":
                break
        if reason == "cancelled" and record["status"] != "cancelled":
            record["status"] = "cancelled"
            atomic_write_json(self.path, record)
        return _result(self.out_dir, record)

    def _finished(self, run_dir: Path) -> dict | None:
        """The fold's metrics when its run folder holds a finished run, else None."""
        p = runs.RunPaths(run_dir)
        if not p.metrics.exists():
            return None
        try:
            metrics = fold_metrics(run_dir, self.config.monitor)
        except (OSError, ValueError) as exc:
            raise StudioError(f"{p.metrics}: unreadable ({exc})") from exc
        return metrics if metrics["status"] in FINISHED else None
