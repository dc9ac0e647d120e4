"""Hyperparameter search: many ordinary training runs over a stated space, the best one kept.

The seed reports tuned their last scratch model by hand over a stated space (rotation, zoom,
learning rate, filters per block, dense units, dropout). :class:`Search` does the same with
Optuna, which fits the studio because:

- its spaces are define-by-run: each trial asks ``trial.suggest_*`` for the dimensions of a
  :class:`SearchSpace` read from a JSON file, so a space needs no code;
- its TPE and random samplers are seeded, so the same search proposes the same parameters;
- its median pruner, fed the objective after every epoch, stops trials that fall behind;
- its SQLite storage (``study.db``, transactional, so never half-written) keeps every trial,
  so an interrupted search resumes from the file.

Optuna leaves model building and the training loop to the studio's own :class:`Trainer`, so each
trial is a normal run folder (config, history, checkpoints, metrics, bundle) that the comparison
view and the reports read like any other run. KerasTuner would want its own HyperModel, its own
training loop and its oracle files instead.

```
OUT_DIR/
  search.json        format, space, base spec, base training settings, split, settings
  study.db           Optuna's storage (samplers and pruner read their history from it)
  trials.json        every TrialRecord, rewritten when a trial starts and ends
  best.json          the best complete trial: its parameters, spec and training settings
  trials/trial-001/  a run folder per trial (numbered from 1, as the command line counts)
```

Optuna is imported only when a search runs; reading results (:func:`read_search`,
:func:`best_configuration`) does not need it.
"""

from __future__ import annotations

import copy
import json
import math
import os
import socket
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from cnnstudio.core.data.dataset import DatasetIndex, Split
from cnnstudio.core.data.fingerprint import dataset_fingerprint
from cnnstudio.core.errors import StudioError, WriteFailed
from cnnstudio.core.experiments import storage as storages
from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.io.lock import hold_folder
from cnnstudio.core.model.spec import AugmentSpec, ModelSpec
from cnnstudio.core.runs import checkpoint
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.runs.restore import check_contents, match_classes
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.events import QuietState, TrainState
from cnnstudio.core.training.trainer import Trainer

FORMAT = 1
STUDY_NAME = "cnnstudio"
OBJECTIVES = {"val_accuracy": "maximize", "val_loss": "minimize"}
SAMPLERS = ("tpe", "random")
FINISHED = ("complete", "pruned", "failed")
KINDS = ("float", "int", "choice")

TARGET_FORMS = (
    "train.<training setting> (e.g. train.learning_rate, train.batch_size, train.optimizer), "
    "augmentation.<flip|rotation|zoom|translation|contrast>, head.dropout, head.units, input_size, "
    "params.<backbone parameter>, blocks.filters.<i> (blocks counted from 0; blocks.filters.* for "
    "every block), blocks.dropout"
)

_TRAIN_FIELDS = {f.name: f.type for f in fields(TrainConfig)}
_AUGMENT_FIELDS = {f.name: f.type for f in fields(AugmentSpec)}
# Range dimensions take their number type from the field they set; params.* from their bounds.
_TARGET_TYPES = {"head.dropout": "float", "head.units": "int", "input_size": "int",
                 "blocks.filters": "int", "blocks.dropout": "float"}


class SearchError(StudioError):
    """A search space, a search folder or a search's settings cannot be used."""


# ----------------------------------------------------------------------------- targets


def _parse_target(target: str) -> tuple:
    """``("train", field)``, ``("augmentation", field)``, ``("head", name)``, ``("input_size",)``,
    ``("params", name)``, ``("blocks.filters", index_or_*)`` or ``("blocks.dropout",)``."""
    if not isinstance(target, str):
        raise SearchError(f"{target!r}: a dimension is named by a string; valid forms: {TARGET_FORMS}")
    section, _, rest = target.partition(".")
    if section == "train" and rest in _TRAIN_FIELDS:
        return ("train", rest)
    if section == "augmentation" and rest in _AUGMENT_FIELDS:
        return ("augmentation", rest)
    if target in ("head.dropout", "head.units"):
        return ("head", rest)
    if target == "input_size":
        return ("input_size",)
    if section == "params" and rest and "." not in rest:
        return ("params", rest)
    if target == "blocks.dropout":
        return ("blocks.dropout",)
    if rest.startswith("filters.") and section == "blocks":
        index = rest.removeprefix("filters.")
        if index == "*":
            return ("blocks.filters", "*")
        if index.isdigit():
            return ("blocks.filters", int(index))
    raise SearchError(f"{target}: unknown dimension; valid forms: {TARGET_FORMS}")


def _target_type(target: str) -> str | None:
    """``"int"`` or ``"float"`` where the target's field says so; None for strings and params.*."""
    parsed = _parse_target(target)
    if parsed[0] == "train":
        kind = _TRAIN_FIELDS[parsed[1]]
    elif parsed[0] == "augmentation":
        kind = _AUGMENT_FIELDS[parsed[1]]
    elif parsed[0] == "head":
        kind = _TARGET_TYPES[target]
    else:
        kind = _TARGET_TYPES.get(parsed[0])
    return kind if kind in ("int", "float") else (None if parsed[0] == "params" else "choice")


def short_name(target: str) -> str:
    """How a target is shown beside a value: ``learning_rate``, ``rotation``, ``head.units``..."""
    for prefix in ("train.", "augmentation.", "params."):
        if target.startswith(prefix):
            return target.removeprefix(prefix)
    return target


def format_params(params: dict) -> str:
    """``learning_rate=0.001 rotation=0.12 ...``: one trial's parameters on one line."""
    return " ".join(f"{short_name(k)}={_format_value(v)}" for k, v in params.items())


def _format_value(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _divisible(span, step) -> bool:
    ratio = span / step
    return abs(ratio - round(ratio)) < 1e-6


# ----------------------------------------------------------------------------- the space


@dataclass(frozen=True)
class Dimension:
    """One searched value: ``target`` is where it goes (see :data:`TARGET_FORMS`).

    ``kind`` "float" and "int" take ``low``..``high`` (``step`` for a grid, ``log`` for a
    log scale); "choice" takes ``choices``. Checked when made, so a bad space fails on load.
    """

    target: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    step: float | int | None = None
    log: bool = False
    choices: tuple = ()

    def __post_init__(self):
        object.__setattr__(self, "choices", tuple(self.choices))
        _parse_target(self.target)  # an unknown target fails first, with the valid forms
        name = self.target

        def bad(reason):
            raise SearchError(f"{name}: {reason}")

        if self.kind not in KINDS:
            bad(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.kind == "choice":
            if not self.choices:
                bad("give at least one choice")
            for c in self.choices:
                if c is not None and not isinstance(c, (bool, int, float, str)):
                    bad(f"choices must be numbers, strings, true/false or null, not {c!r}")
            if len(set(map(repr, self.choices))) != len(self.choices):
                bad("a choice is listed twice")
            if _target_type(self.target) in ("int", "float"):
                for c in self.choices:
                    if not _number(c):
                        bad(f"choices must be numbers, not {c!r}")
            return
        if self.choices:
            bad("give either choices or low/high, not both")
        if _target_type(self.target) == "choice":
            bad("this setting is not a number; give choices")
        for key in ("low", "high"):
            if not _number(getattr(self, key)):
                bad(f"{key} must be a number, not {getattr(self, key)!r}")
        if self.low > self.high:
            bad(f"low ({self.low}) is above high ({self.high})")
        if self.step is not None and (not _number(self.step) or self.step <= 0):
            bad(f"step must be a positive number, not {self.step!r}")
        if self.log:
            if self.low <= 0:
                bad(f"a log scale needs low above 0, not {self.low}")
            if self.step is not None and not (self.kind == "int" and self.step == 1):
                bad("a log scale takes no step")
        if self.kind == "int":
            for key in ("low", "high", "step"):
                value = getattr(self, key)
                if value is not None and float(value) != int(value):
                    bad(f"{key} must be a whole number, not {value}")
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    object.__setattr__(self, key, int(getattr(self, key)))
        else:
            for key in ("low", "high", "step"):
                if getattr(self, key) is not None:
                    object.__setattr__(self, key, float(getattr(self, key)))
        if self.step is not None and not _divisible(self.high - self.low, self.step):
            bad(f"high - low ({self.high - self.low:g}) is not a whole number of steps of {self.step:g}")

    @classmethod
    def from_value(cls, target: str, value) -> Dimension:
        """Read the JSON form: ``{"choices": [...]}`` or ``{"low", "high"[, "step"][, "log"][, "type"]}``."""
        if not isinstance(value, dict):
            raise SearchError(f"{target}: expected {{\"choices\": [...]}} or {{\"low\": ..., \"high\": ...}}, "
                              f"got {value!r}")
        unknown = sorted(set(value) - {"choices", "low", "high", "step", "log", "type"})
        if unknown:
            raise SearchError(f"{target}: unknown field {unknown[0]!r}; a dimension takes choices, or low, "
                              "high, step, log and type")
        if "choices" in value:
            if set(value) - {"choices", "type"} or value.get("type", "choice") != "choice":
                raise SearchError(f"{target}: give either choices or low/high, not both")
            if not isinstance(value["choices"], list):
                raise SearchError(f"{target}: choices must be a list, not {value['choices']!r}")
            return cls(target, "choice", choices=tuple(value["choices"]))
        for key in ("low", "high"):
            if key not in value:
                raise SearchError(f"{target}: give {key} (and the other bound), or choices")
        log = value.get("log", False)
        if not isinstance(log, bool):
            raise SearchError(f"{target}: log must be true or false, not {log!r}")
        kind = value.get("type") or _inferred_kind(target, value)
        if kind not in ("float", "int"):
            raise SearchError(f"{target}: type must be float or int for a range, not {kind!r}")
        return cls(target, kind, value["low"], value["high"], value.get("step"), log)

    def to_value(self) -> dict:
        """The JSON form; ``type`` only where the target and the bounds would not say it."""
        if self.kind == "choice":
            return {"choices": list(self.choices)}
        out = {"low": self.low, "high": self.high}
        if self.step is not None:
            out["step"] = self.step
        if self.log:
            out["log"] = True
        if _inferred_kind(self.target, out) != self.kind:
            out["type"] = self.kind
        return out

    def contains(self, value) -> bool:
        if self.kind == "choice":  # True == 1 in Python, but not as a choice
            return any(c == value and isinstance(c, bool) == isinstance(value, bool) for c in self.choices)
        if not _number(value) or not self.low <= value <= self.high:
            return False
        if self.kind == "int" and float(value) != int(value):
            return False
        return self.step is None or _divisible(value - self.low, self.step)

    def extremes(self) -> tuple:
        """The values that show whether every value of this dimension fits a model."""
        return self.choices if self.kind == "choice" else (self.low, self.high)

    def describe(self) -> str:
        name = short_name(self.target)
        if self.kind == "choice":
            return f"{name} in {{{', '.join(_format_value(c) for c in self.choices)}}}"
        scale = " (log)" if self.log else (f" step {_format_value(self.step)}" if self.step is not None else "")
        return f"{name} {_format_value(self.low)}..{_format_value(self.high)}{scale}"

    def suggest(self, trial):
        """This dimension's value for an Optuna trial (the enqueued value for a re-run)."""
        if self.kind == "choice":
            return trial.suggest_categorical(self.target, list(self.choices))
        if self.kind == "int":
            return trial.suggest_int(self.target, self.low, self.high, step=self.step or 1, log=self.log)
        value = trial.suggest_float(self.target, self.low, self.high, step=self.step, log=self.log)
        # A grid of 0.01 steps gives 0.15000000000000002; keep the value the grid means.
        return round(value, 12) if self.step is not None else value


def _inferred_kind(target: str, value: dict) -> str:
    kind = _target_type(target)
    if kind in ("int", "float"):
        return kind
    bounds = [value.get(k) for k in ("low", "high", "step") if value.get(k) is not None]
    return "int" if all(isinstance(b, int) and not isinstance(b, bool) for b in bounds) else "float"


@dataclass
class SearchSpace:
    """The dimensions a search varies. JSON form: ``{target: {"choices": [...]} | {"low", "high", ...}}``."""

    dimensions: list[Dimension] = field(default_factory=list)

    def __post_init__(self):
        self.dimensions = list(self.dimensions)
        seen = set()
        for d in self.dimensions:
            if d.target in seen:
                raise SearchError(f"{d.target}: the dimension is given twice")
            seen.add(d.target)

    @property
    def targets(self) -> list[str]:
        return [d.target for d in self.dimensions]

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        if not isinstance(d, dict):
            raise SearchError(f"a search space is a mapping of dimension to range or choices, got {type(d).__name__}")
        return cls([Dimension.from_value(target, value) for target, value in d.items()])

    def to_dict(self) -> dict:
        return {d.target: d.to_value() for d in self.dimensions}

    @classmethod
    def load(cls, path_or_preset: str | Path) -> SearchSpace:
        """A preset's space by name (see :data:`PRESET_SPACES`) or a JSON file's."""
        if str(path_or_preset) in PRESET_SPACES:
            return copy.deepcopy(PRESET_SPACES[str(path_or_preset)])
        path = Path(path_or_preset)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise SearchError(f"{path}: no such search space file, and not a preset "
                              f"({', '.join(PRESET_SPACES)})") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise SearchError(f"{path}: cannot read the search space ({exc})") from None
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SearchError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from None
        try:
            return cls.from_dict(data)
        except SearchError as exc:
            raise SearchError(f"{path}: {exc}") from None

    def save(self, path: str | Path) -> None:
        atomic_write_json(path, self.to_dict())

    def for_spec(self, spec: ModelSpec) -> SearchSpace:
        """This space with ``blocks.filters.*`` expanded into one dimension per block of ``spec``.

        A preset is written for stacks of any depth; a search needs one dimension per block.
        A spec without blocks keeps the ``*`` dimension, which :meth:`validate` then refuses.
        """
        blocks = spec.params.get("blocks")
        out = []
        for d in self.dimensions:
            if _parse_target(d.target) == ("blocks.filters", "*") and isinstance(blocks, list):
                out += [Dimension(f"blocks.filters.{i}", d.kind, d.low, d.high, d.step, d.log, d.choices)
                        for i in range(len(blocks))]
            else:
                out.append(d)
        return SearchSpace(out)

    def validate(self, spec: ModelSpec, config: TrainConfig | None = None, registry=None) -> SearchSpace:
        """Check that every dimension applies to ``spec``; with ``config`` (and ``registry``),
        also that each bound or choice gives a valid model and training configuration."""
        for d in self.dimensions:
            reason = _inapplicable(d.target, spec, registry)
            if reason:
                raise SearchError(f"{d.target}: {reason}")
        if config is not None:
            for d in self.dimensions:
                for value in d.extremes():
                    try:
                        apply_params(spec, config, {d.target: value}, registry)
                    except StudioError as exc:
                        raise SearchError(f"{d.target}: {_format_value(value)} does not fit: {exc}") from None
        return self


def _inapplicable(target: str, spec: ModelSpec, registry=None) -> str | None:
    """Why ``target`` does not apply to ``spec``, or None."""
    parsed = _parse_target(target)
    if parsed[0] in ("blocks.filters", "blocks.dropout"):
        blocks = spec.params.get("blocks")
        if not isinstance(blocks, list):
            return f"the {spec.backbone} model has no blocks (only stacks of blocks, like scratch, do)"
        if parsed[0] == "blocks.filters" and parsed[1] != "*" and parsed[1] >= len(blocks):
            return f"the model has {len(blocks)} block(s), numbered from 0"
    elif parsed[0] == "head" and not spec.head.dense:
        return "the model's head has no dense layer (its dropout follows each dense layer)"
    elif parsed[0] == "params":
        provider = registry.backbones.get(spec.backbone) if registry is not None else None
        names = [p.name for p in provider.params] if provider is not None else list(spec.params)
        if parsed[1] not in names:
            return f"backbone {spec.backbone!r} has no parameter {parsed[1]!r}; it takes: {', '.join(names) or 'none'}"
        if isinstance(spec.params.get(parsed[1]), (list, dict)):
            return "a structured parameter cannot be searched whole; use blocks.filters.<i> and blocks.dropout"
    return None


def default_space(spec: ModelSpec) -> SearchSpace:
    """The seed report's space, keeping the dimensions that apply to ``spec``.

    A scratch stack gets all of it; a pretrained backbone keeps learning rate, augmentation and
    head, so ``cnnstudio tune`` works for any model without a space file.
    """
    space = PRESET_SPACES["seed-report"].for_spec(spec)
    return SearchSpace([d for d in space.dimensions if _inapplicable(d.target, spec) is None])


PRESET_SPACES: dict[str, SearchSpace] = {
    # The space the seed reports searched for their tuned scratch model (seed-model-5).
    "seed-report": SearchSpace.from_dict({
        "augmentation.rotation": {"low": 0.01, "high": 0.2, "step": 0.01},
        "augmentation.zoom": {"low": 0.01, "high": 0.2, "step": 0.01},
        "train.learning_rate": {"choices": [0.01, 0.001, 0.0001]},
        "blocks.filters.*": {"choices": [32, 64, 128, 256]},
        "head.units": {"choices": [128, 256, 512]},
        "blocks.dropout": {"low": 0.05, "high": 0.15, "step": 0.01},
        "head.dropout": {"low": 0.2, "high": 0.4, "step": 0.05},
    }),
}


# ----------------------------------------------------------------------------- applying


def apply_params(spec: ModelSpec, config: TrainConfig, params: dict, registry=None) -> tuple[ModelSpec, TrainConfig]:
    """Copies of ``spec`` and ``config`` with ``params`` (target -> value) set; the inputs are untouched.

    The copies are checked (with ``registry``, the spec fully, as the trainer will), so a value
    that cannot work fails here with the field's name rather than halfway through a trial.
    """
    s = spec.to_dict()
    t = config.to_dict()
    for target, value in params.items():
        parsed = _parse_target(target)
        kind = parsed[0]
        if kind == "train":
            t[parsed[1]] = _typed(target, _TRAIN_FIELDS[parsed[1]], value)
        elif kind == "augmentation":
            s["augmentation"][parsed[1]] = value
        elif target == "head.dropout":
            s["head"]["dropout"] = value
        elif target == "head.units":
            if not s["head"]["dense"]:
                raise SearchError(f"{target}: the model's head has no dense layer")
            s["head"]["dense"] = [_typed(target, "int", value)] * len(s["head"]["dense"])
        elif kind == "input_size":
            s["input_size"] = _typed(target, "int", value)
        elif kind == "params":
            s["params"][parsed[1]] = value
        else:
            blocks = s["params"].get("blocks")
            reason = _inapplicable(target, spec)
            if reason or parsed[1:] == ("*",):
                raise SearchError(f"{target}: {reason or 'expand blocks.filters.* for the model first'}")
            if kind == "blocks.filters":
                blocks[parsed[1]]["filters"] = _typed(target, "int", value)
            else:
                for block in blocks:
                    block["dropout"] = value
    new_spec = ModelSpec.from_dict(s)
    if registry is not None:
        new_spec = new_spec.validate(registry)
    return new_spec, TrainConfig.from_dict(t).validate()


def _typed(target: str, kind: str, value):
    """An int field gets an int (a choice may be written 32.0); a float field a float."""
    if kind == "int":
        if not _number(value) or float(value) != int(value):
            raise SearchError(f"{target}: {value!r} is not a whole number")
        return int(value)
    if kind == "float":
        if not _number(value):
            raise SearchError(f"{target}: {value!r} is not a number")
        return float(value)
    return value


# ----------------------------------------------------------------------------- records


@dataclass
class TrialRecord:
    """One trial as the search records it (``trials.json``).

    ``number`` counts from 0 (the command line and the folder ``trials/trial-NNN`` count from 1).
    ``value`` is the objective of the trial's best epoch (for a pruned trial, the best before it
    was stopped); ``status`` "running" is also what an interrupted trial keeps until it is re-run.
    """

    number: int
    params: dict
    value: float | None = None
    status: str = "running"  # running | complete | pruned | failed
    error: str = ""
    run_dir: str = ""
    epochs: int = 0
    seconds: float = 0.0
    metrics: dict = field(default_factory=dict)  # val_accuracy, val_loss, best_epoch, test_accuracy

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrialRecord:
        return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})


@dataclass
class SearchResult:
    trials: list[TrialRecord]
    best: TrialRecord | None
    reason: str  # completed | timeout | cancelled ("running" when read while a search runs or after a crash)
    objective: str = "val_accuracy"


class SearchState(TrainState, Protocol):
    """A :class:`TrainState` (relayed for the trial that is running) told when trials start and end."""

    def on_trial_start(self, number: int, params: dict) -> None: ...
    def on_trial_end(self, record: TrialRecord) -> None: ...


class QuietSearchState(QuietState):
    """Reports nowhere and never stops; the default."""

    def on_trial_start(self, number, params):
        pass

    def on_trial_end(self, record):
        pass


def best_trial(records: list[TrialRecord], objective: str) -> TrialRecord | None:
    """The complete trial with the best value (the earliest of equals)."""
    done = [r for r in records if r.status == "complete" and r.value is not None]
    if not done:
        return None
    sign = -1.0 if OBJECTIVES[objective] == "maximize" else 1.0
    return min(done, key=lambda r: (sign * r.value, r.number))


# ----------------------------------------------------------------------------- the search


class _TrialRelay:
    """The state one trial's Trainer sees: relays to the search's state, reports the objective to
    Optuna after each epoch, and stops the trial after the epoch when Optuna prunes it or the
    user stops the search (a mid-epoch stop would lose the epoch that was nearly done)."""

    def __init__(self, outer, trial, objective: str, prune: bool):
        self.outer = outer
        self.trial = trial
        self.objective = objective
        self.prune = prune
        self.stop = False
        self.pruned = False

    def on_begin(self, event):
        self.outer.on_begin(event)

    def on_batch(self, event):
        self.outer.on_batch(event)

    def on_end(self, event):
        self.outer.on_end(event)

    def on_status(self, message):
        self.outer.on_status(message)

    def on_progress(self, task, done, total):
        self.outer.on_progress(task, done, total)

    def on_epoch_end(self, event):
        self.outer.on_epoch_end(event)
        self.report(event.epoch, event.logs.get(self.objective))
        if self.prune and not self.pruned and self.trial.should_prune():
            self.pruned = self.stop = True
            self.outer.on_status(f"pruned after epoch {event.epoch + 1}: its {self.objective} is behind "
                                 "the median of earlier trials")
        if self.outer.should_stop():
            self.stop = True

    def report(self, step: int, value) -> None:
        if value is not None:
            self.trial.report(float(value), step)

    def should_stop(self):
        return self.stop


class Search:
    """A hyperparameter search of ``space`` around ``spec`` and ``config``, into ``out_dir``.

    Each trial trains with :class:`Trainer` in ``out_dir/trials/trial-NNN``; its objective is
    the ``objective`` of its best epoch. The budget is ``trials`` finished trials (complete,
    pruned or failed) and/or ``timeout`` seconds of trials (checked between trials, as Optuna
    does). ``state.should_stop()`` stops the search after the current epoch; the trial that was
    running is re-run when the search resumes.

    On an ``out_dir`` that holds a ``search.json`` the search resumes: the saved spec, training
    settings, split, space, objective, sampler, seed and pruning win (``space`` may be None, and
    another space is refused); only the budget comes from the caller.
    """

    def __init__(
        self,
        index: DatasetIndex,
        split: Split,
        spec: ModelSpec,
        config: TrainConfig,
        space: SearchSpace | None,
        out_dir: str | Path,
        registry,
        *,
        trials: int | None = 10,
        timeout: float | None = None,
        sampler: str = "tpe",
        prune: bool = True,
        objective: str = "val_accuracy",
        seed: int = 0,
        state: SearchState | None = None,
        storage: str | None = None,
        study_name: str = STUDY_NAME,
        heartbeat: float = storages.DEFAULT_HEARTBEAT,
    ):
        self.out_dir = Path(out_dir).absolute()
        # With a storage URL the search is shared: every process given the same storage and study
        # works on it (see run); without one it is this folder's own, one process at a time.
        self.storage_url = storage
        if storage is not None:
            storages.kind(storage)  # a malformed URL fails now, in one line
        if not isinstance(study_name, str) or not study_name.strip():
            raise SearchError(f"the study name must be a non-empty string, not {study_name!r}")
        self.study_name = study_name
        if not (_number(heartbeat) and heartbeat > 0):
            raise SearchError(f"the heartbeat must be a positive number of seconds, not {heartbeat!r}")
        self.heartbeat = float(heartbeat)
        self.index = index
        self.registry = registry.snapshot()  # kept for every trial, whatever a reload does meanwhile
        self.state = state or QuietSearchState()
        index.raise_for_errors()
        if trials is None and timeout is None:
            raise SearchError("give a number of trials or a time limit, or the search never ends")
        if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int) or trials < 1):
            raise SearchError(f"the number of trials must be at least 1, not {trials!r}")
        if timeout is not None and not (_number(timeout) and timeout > 0):
            raise SearchError(f"the time limit must be a positive number of seconds, not {timeout!r}")
        self.trials = trials
        self.timeout = timeout
        self.records: list[TrialRecord] = []
        self._created = None
        saved = self._read_saved()
        self.resumed = saved is not None
        if saved is not None:
            try:
                index = match_classes(index, list(saved["dataset"]["class_names"]), purpose="the resumed search",
                                      since="the search started")
                check_contents(saved.get("fingerprint"), index, "the resumed search", whose="the search's",
                               since="it started")
                self.index = index
                spec = ModelSpec.from_dict(saved["spec"])
                config = TrainConfig.from_dict(saved["train"])
                split = Split.from_dict(saved["split"], index)
                saved_space = SearchSpace.from_dict(saved["space"])
                settings = saved["settings"]
                sampler, prune = settings["sampler"], settings["prune"]
                objective, seed = settings["objective"], settings["seed"]
            except (KeyError, TypeError) as exc:
                raise SearchError(f"{self.paths('search.json')}: incomplete search record (missing {exc})") from None
            if space is not None and space.for_spec(spec).to_dict() != saved_space.to_dict():
                raise SearchError(
                    f"{self.paths('search.json')}: this folder holds a search over another space "
                    f"({', '.join(saved_space.targets)}); give the same space to resume it, or another "
                    "folder for a new search"
                )
            space = saved_space
            self._created = saved.get("created")
            self.records = self._read_records()
        if sampler not in SAMPLERS:
            raise SearchError(f"sampler must be one of {', '.join(SAMPLERS)}, not {sampler!r}")
        if objective not in OBJECTIVES:
            raise SearchError(f"objective must be one of {', '.join(OBJECTIVES)}, not {objective!r}")
        self.sampler = sampler
        self.prune = bool(prune)
        self.objective = objective
        self.seed = int(seed)
        self.spec = spec.validate(registry)
        self.config = config.validate()
        space = default_space(self.spec) if space is None else space
        self.space = space.for_spec(self.spec).validate(self.spec, self.config, registry)
        if not self.space.dimensions:
            raise SearchError("the search space is empty: give at least one dimension to vary")
        if not split.val:
            raise SearchError("a search compares trials on the validation split, which is empty; "
                              "give a validation fraction above 0")
        self.split = split
        self._fingerprint = saved.get("fingerprint") if saved is not None else None
        self._queued: list[dict] = []

    # -- files -----------------------------------------------------------------------------

    def paths(self, name: str) -> Path:
        return self.out_dir / name

    def trial_dir(self, number: int) -> Path:
        return self.out_dir / "trials" / f"trial-{number + 1:03d}"

    def _read_saved(self) -> dict | None:
        path = self.paths("search.json")
        if not path.exists():
            return None
        saved = _read_record(path, "search record")
        if saved.get("format") != FORMAT:
            raise SearchError(f"{path}: search record format {saved.get('format')!r} is not one this "
                              f"CNN Studio reads ({FORMAT})")
        return saved

    def _read_records(self) -> list[TrialRecord]:
        path = self.paths("trials.json")
        if not path.exists():
            return []
        return [TrialRecord.from_dict(d) for d in _read_record(path, "trial list").get("trials", [])]

    def _write_search(self) -> None:
        self._created = self._created or time.strftime("%Y-%m-%dT%H:%M:%S%z")
        if self._fingerprint is None:  # what a resume checks the files against
            self._fingerprint = dataset_fingerprint(self.index, self.split)
        atomic_write_json(self.paths("search.json"), {
            "format": FORMAT,
            "created": self._created,
            "dataset": {"root": str(self.index.root), "class_names": self.index.class_names},
            "split": self.split.to_dict(self.index),
            "fingerprint": self._fingerprint,
            "spec": self.spec.to_dict(),
            "train": self.config.to_dict(),
            "space": self.space.to_dict(),
            "settings": {"trials": self.trials, "timeout": self.timeout, "sampler": self.sampler,
                         "prune": self.prune, "objective": self.objective, "seed": self.seed},
            "storage": "study.db" if self.storage_url is None else storages.masked(self.storage_url),
            "study": self.study_name,
        })

    def _write_trials(self, reason: str) -> None:
        atomic_write_json(self.paths("trials.json"), {
            "format": FORMAT, "objective": self.objective, "reason": reason,
            "trials": [r.to_dict() for r in self.records],
        })

    def _write_best(self) -> None:
        best = best_trial(self.records, self.objective)
        if best is None:
            return
        spec, config = apply_params(self.spec, self.config, best.params, self.registry)
        atomic_write_json(self.paths("best.json"), {
            "trial": best.number, "value": best.value, "objective": self.objective, "params": best.params,
            "spec": spec.to_dict(), "train": config.to_dict(), "run_dir": best.run_dir,
        })

    # -- running ---------------------------------------------------------------------------

    def enqueue(self, params: dict) -> None:
        """Try ``params`` (some or all dimensions; the rest are sampled) before sampled trials,
        e.g. the model's current settings. Enqueued once: a resumed search does not repeat it."""
        for target, value in params.items():
            dim = next((d for d in self.space.dimensions if d.target == target), None)
            if dim is None:
                raise SearchError(f"{target}: not a dimension of this search ({', '.join(self.space.targets)})")
            if not dim.contains(value):
                raise SearchError(f"{target}: {value!r} is outside the dimension ({dim.describe()})")
        self._queued.append(dict(params))

    def run(self) -> SearchResult:
        """Run the trials, holding the search folder: a second search on it is refused at once.

        A shared search (one given a storage URL) holds only the folder of the trial it runs:
        any number of processes with the same storage and study take the next trial each."""
        if self.storage_url is not None:
            return self._shared()
        with hold_folder(self.out_dir, "searched"):
            return self._search()

    def _search(self) -> SearchResult:
        optuna = _optuna()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self._write_search()
        storage = optuna.storages.RDBStorage(f"sqlite:///{self.paths('study.db').as_posix()}")
        reason = "running"
        try:
            study = optuna.create_study(
                storage=storage, study_name=STUDY_NAME, direction=OBJECTIVES[self.objective],
                load_if_exists=True, pruner=self._pruner(optuna),
            )
            self._recover(optuna, study)
            for params in self._queued:
                study.enqueue_trial(params, skip_if_exists=True)
            self._queued.clear()
            reason = self._loop(optuna, study)
        finally:
            self._write_trials(reason)
            storage.engine.dispose()
        return SearchResult(list(self.records), best_trial(self.records, self.objective), reason, self.objective)

    def _recover(self, optuna, study) -> None:
        """After an interruption: the trials Optuna still thinks are running are closed as failed
        (they will not report again), and each trial the record left running is queued with its
        parameters, so it is re-run under its own number."""
        for trial in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
        for record in self.records:
            if record.status == "running":
                self.state.on_status(f"trial {record.number + 1} was interrupted; it runs again")
                study.enqueue_trial(record.params, user_attrs={"rerun": record.number})

    def _loop(self, optuna, study) -> str:
        while True:
            if self.state.should_stop():
                return "cancelled"
            finished = sum(r.status in FINISHED for r in self.records)
            if self.trials is not None and finished >= self.trials:
                return "completed"
            if self.timeout is not None and sum(r.seconds for r in self.records) >= self.timeout:
                return "timeout"
            # A sampler seeded per trial number: the same search proposes the same parameters,
            # and a resumed one does not start its random stream over.
            study.sampler = self._sampler(optuna, len(self.records))
            trial = study.ask()
            rerun = trial.user_attrs.get("rerun")
            record = next((r for r in self.records if r.number == rerun and r.status == "running"), None)
            if record is None:
                record = TrialRecord(len(self.records), {})
                self.records.append(record)
            trial.set_user_attr("number", record.number)
            record.params = {d.target: d.suggest(trial) for d in self.space.dimensions}
            record.run_dir = str(self.trial_dir(record.number))
            self._write_trials("running")
            self.state.on_trial_start(record.number, dict(record.params))
            self._run_trial(optuna, study, trial, record, rerun=rerun is not None)
            self._write_trials("running")
            if record.status == "running":
                return "cancelled"
            self._write_best()
            self.state.on_trial_end(copy.deepcopy(record))

    def _run_trial(self, optuna, study, trial, record: TrialRecord, rerun: bool) -> None:
        self._train(trial, record, rerun)
        if record.status == "complete":
            study.tell(trial, record.value)
        elif record.status == "pruned":
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        elif record.status == "failed":
            study.tell(trial, state=optuna.trial.TrialState.FAIL)

    def _train(self, trial, record: TrialRecord, rerun: bool) -> None:
        """Train one trial into its folder and fill ``record``; the caller tells Optuna the outcome.
        A failed write propagates (with the record left running)."""
        relay = _TrialRelay(self.state, trial, self.objective, self.prune)
        t0 = time.perf_counter()
        prior = record.seconds  # an interrupted trial's time counts on
        run_dir = Path(record.run_dir)
        try:
            spec, config = apply_params(self.spec, self.config, record.params, self.registry)
            trainer = Trainer(self.index, self.split, spec, config, run_dir, self.registry, state=relay)
            # An interrupted trial goes on from its last checkpoint, as `cnnstudio train --resume` would.
            saved = checkpoint.read(runs.RunPaths(run_dir)) if rerun else None
            for row in saved.state["history"] if saved else []:
                relay.report(int(row["epoch"]) - 1, row.get(self.objective))
            result = trainer.run(resume=saved is not None)
        except WriteFailed:
            # A full or read-only disk would fail every trial after this one too: the search stops
            # in one line, the trial left running, so a resumed search runs it again.
            record.seconds = prior + time.perf_counter() - t0
            raise
        except Exception as exc:  # a trial that cannot train is recorded; the search goes on
            record.seconds = prior + time.perf_counter() - t0
            record.status = "failed"
            text = str(exc) if isinstance(exc, StudioError) else f"{type(exc).__name__}: {exc}"
            record.error = (text.strip().splitlines() or [type(exc).__name__])[0]
            return
        record.seconds = prior + time.perf_counter() - t0
        record.epochs = result.epochs_run
        best_row = self._best_row(result.history)
        record.value = best_row[self.objective] if best_row else None
        record.metrics = {
            "val_accuracy": _finite(best_row, "val_accuracy"), "val_loss": _finite(best_row, "val_loss"),
            "best_epoch": int(best_row["epoch"]) if best_row else None,
        }
        if result.metrics and result.metrics.get("test_accuracy") is not None:
            record.metrics["test_accuracy"] = result.metrics["test_accuracy"]
        if relay.pruned:
            record.status = "pruned"
            _mark_pruned(runs.RunPaths(run_dir))
        elif result.reason == "cancelled":
            record.status = "running"  # interrupted: re-run on resume
        elif record.value is None:
            record.status = "failed"
            record.error = f"no epoch gave a finite {self.objective} (the training diverged)"
        else:
            record.status = "complete"

    # -- a search shared by many processes ----------------------------------------------------

    def _shared(self) -> SearchResult:
        optuna = _optuna()
        self.out_dir.mkdir(parents=True, exist_ok=True)
        shown = storages.masked(self.storage_url)
        with warnings.catch_warnings():
            # Heartbeats and retries are marked experimental in Optuna; they are what sharing needs.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            storage = storages.open_storage(self.storage_url, self.paths("study.db"), self.heartbeat)
            reason = "running"
            joined = None
            try:
                try:
                    study = optuna.create_study(
                        storage=storage, study_name=self.study_name, direction=OBJECTIVES[self.objective],
                        load_if_exists=True, pruner=self._pruner(optuna), sampler=self._shared_sampler(optuna),
                    )
                except StudioError:
                    raise
                except Exception as exc:
                    raise storages.StorageError(f"{shown}: {storages.reason_of(exc)}") from None
                self._join(study)
                joined = study
                self._write_search()
                for params in self._queued:
                    study.enqueue_trial(params, skip_if_exists=True)
                self._queued.clear()
                reason = self._shared_loop(optuna, study)
            finally:
                if joined is not None:  # a refused process writes nothing
                    self._write_shared(joined, reason)
                storages.close(storage)
        return SearchResult(list(self.records), best_trial(self.records, self.objective), reason, self.objective)

    def _settings(self) -> dict:
        """What every process of a shared search must agree on."""
        if self._fingerprint is None:
            self._fingerprint = dataset_fingerprint(self.index, self.split)
        return json.loads(json.dumps({
            "space": self.space.to_dict(), "spec": self.spec.to_dict(), "train": self.config.to_dict(),
            "objective": self.objective, "sampler": self.sampler, "prune": self.prune, "seed": self.seed,
            "classes": list(self.index.class_names),
            "split": {"seed": self.split.seed, "val_fraction": self.split.val_fraction,
                      "test_fraction": self.split.test_fraction},
            "data": self._fingerprint["sha256"],
        }))

    def _join(self, study) -> None:
        """The first process records the search's settings in the study; a later one must match them."""
        mine = self._settings()
        saved = study.user_attrs.get("search")
        if saved is None:
            study.set_user_attr("search", mine)
            return
        differ = [key for key in mine if saved.get(key) != mine[key]]
        if differ:
            names = {"data": "the dataset's files", "split": "the split"}
            raise SearchError(
                f"{storages.masked(self.storage_url)}: study {self.study_name!r} is a search with other settings "
                f"({', '.join(names.get(k, k) for k in differ)} differ); give the same ones to join it, "
                "or another --study"
            )

    def _shared_sampler(self, optuna):
        # Each process its own stream (the same seed would propose the same trials in every one);
        # TPE's constant liar keeps parallel workers off the parameters the others are trying.
        seed = int(np.random.SeedSequence([self.seed, os.getpid(), zlib.crc32(socket.gethostname().encode())])
                   .generate_state(1)[0])
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        startup = 10 if self.trials is None else max(2, min(10, self.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)

    def _counted(self, optuna):
        s = optuna.trial.TrialState
        return (s.COMPLETE, s.PRUNED, s.FAIL, s.RUNNING, s.WAITING)

    def _retried(self, optuna, study) -> int:
        """Trials run again after their worker died: the dead one and its retry count once."""
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number
        return sum(retried(t) is not None for t in study.get_trials(deepcopy=False))

    def _spent(self, optuna, study) -> str | None:
        """"completed" or "timeout" once the budget is taken (running trials included), else None."""
        trials = study.get_trials(deepcopy=False)
        if self.timeout is not None and sum(t.user_attrs.get("seconds", 0.0) for t in trials) >= self.timeout:
            return "timeout"
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return None  # queued (a retry among them) trials still to run
        if self.trials is not None:
            counted = len(study.get_trials(deepcopy=False, states=self._counted(optuna)))
            if counted >= self.trials + self._retried(optuna, study):
                return "completed"
        return None

    def _shared_loop(self, optuna, study) -> str:
        def after_trial(study, frozen):
            self._write_shared(study, "running")
            if self.state.should_stop() or self._spent(optuna, study) == "timeout":
                study.stop()
            elif self.trials is not None:
                optuna.study.MaxTrialsCallback(self.trials + self._retried(optuna, study),
                                               states=self._counted(optuna))(study, frozen)

        said = None
        while True:
            if self.state.should_stop():
                return "cancelled"
            spent = self._spent(optuna, study)
            if spent is None:
                try:
                    study.optimize(self._objective(optuna, study), callbacks=[after_trial], catch=(_TrialFailed,),
                                   gc_after_trial=False)
                except _TrialStopped as stop:
                    # Stopped by the user or a failed write: another worker (or this one, later) runs
                    # it again as a new trial, in its own folder.
                    frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == stop.number)
                    optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=storages.RETRIES)(study, frozen)
                    if stop.cause is not None:
                        raise stop.cause from None
                    return "cancelled"
                continue
            running = [t.number for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))]
            if not running:
                return spent
            if not storages.has_heartbeat(self.storage_url):
                self.state.on_status(f"trial(s) {', '.join(str(n + 1) for n in running)} still run in other "
                                     "processes")
                return spent
            # The budget is taken, but other processes still run trials: wait for them, and retry
            # any whose worker stops beating.
            if said != running:
                self.state.on_status(f"waiting for trial(s) {', '.join(str(n + 1) for n in running)}, "
                                     "run by other processes")
                said = running
            deadline = time.monotonic() + min(self.heartbeat, 5.0)
            while time.monotonic() < deadline and not self.state.should_stop():
                time.sleep(0.2)
            optuna.storages.fail_stale_trials(study)
            self._write_shared(study, "running")

    def _objective(self, optuna, study):
        retried = optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number

        def objective(trial):
            record = TrialRecord(trial.number, {})
            record.params = {d.target: d.suggest(trial) for d in self.space.dimensions}
            record.run_dir = str(self.trial_dir(trial.number))
            for key in ("record", "seconds"):  # a retry starts with its own record
                trial.set_user_attr(key, None if key == "record" else 0.0)
            trial.set_user_attr("run_dir", record.run_dir)
            trial.set_user_attr("worker", f"{socket.gethostname()} pid {os.getpid()}")
            frozen = next(t for t in study.get_trials(deepcopy=False) if t.number == trial.number)
            again = retried(frozen)
            if again is not None:
                self.state.on_status(f"trial {trial.number + 1} runs trial {again + 1} again "
                                     "(its process stopped before it ended)")
            self.state.on_trial_start(record.number, dict(record.params))
            try:
                self._train(trial, record, rerun=False)
            except WriteFailed as exc:
                raise _TrialStopped(trial.number, exc) from None
            trial.set_user_attr("seconds", record.seconds)
            trial.set_user_attr("record", {"status": record.status, "error": record.error, "value": record.value,
                                           "epochs": record.epochs, "metrics": record.metrics})
            if record.status == "running":
                raise _TrialStopped(trial.number)
            self.state.on_trial_end(copy.deepcopy(record))
            if record.status == "pruned":
                raise optuna.TrialPruned()
            if record.status == "failed":
                raise _TrialFailed(record.error)
            return record.value

        return objective

    def _write_shared(self, study, reason: str) -> None:
        """trials.json and best.json of this folder, from the storage: every process's trials."""
        try:
            self.records = records_of(study.get_trials(deepcopy=False))
            self._write_trials(reason)
            self._write_best()
        except WriteFailed:
            raise
        except StudioError:
            pass

    def _best_row(self, history: list[dict]) -> dict | None:
        return runs.best_row(history, self.objective)

    def _sampler(self, optuna, number: int):
        seed = int(np.random.SeedSequence([self.seed, number]).generate_state(1)[0])
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # Optuna's 10 random start-up trials suit budgets of a hundred; a third of a small
        # budget explores at random before TPE models the results.
        startup = 10 if self.trials is None else max(2, min(10, self.trials // 3))
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)

    def _pruner(self, optuna):
        if not self.prune:
            return optuna.pruners.NopPruner()
        # Compare from the second epoch (the first is noisy) once a few trials have completed;
        # Optuna's default of 5 would leave a 10-trial search barely pruned.
        startup = 5 if self.trials is None else max(1, min(5, self.trials // 4))
        return optuna.pruners.MedianPruner(n_startup_trials=startup, n_warmup_steps=1)


class _TrialFailed(Exception):
    """A shared trial that could not train (recorded failed; the search goes on)."""


class _TrialStopped(Exception):
    """A shared trial stopped before it ended: by the user, or by ``cause`` (a failed write)."""

    def __init__(self, number: int, cause: Exception | None = None):
        super().__init__(f"trial {number + 1} stopped")
        self.number = number
        self.cause = cause


def records_of(trials) -> list[TrialRecord]:
    """The :class:`TrialRecord` of each trial of a shared study (queued ones left out), as the
    processes that ran them recorded them; a trial whose process stopped says so, and by which
    trial it was run again."""
    retried_as = {}
    for t in trials:
        failed = t.system_attrs.get("failed_trial")
        if failed is not None:
            retried_as.setdefault(failed, t.number)
    out = []
    for t in trials:
        state = t.state.name
        if state == "WAITING":
            continue
        saved = t.user_attrs.get("record") or {}
        record = TrialRecord(t.number, dict(t.params), run_dir=str(t.user_attrs.get("run_dir") or ""),
                             seconds=float(t.user_attrs.get("seconds") or 0.0),
                             epochs=int(saved.get("epochs") or len(t.intermediate_values)),
                             metrics=dict(saved.get("metrics") or {}))
        if state == "COMPLETE":
            record.status, record.value = "complete", t.value
        elif state == "PRUNED":
            record.status, record.value = "pruned", saved.get("value")
        elif state == "FAIL":
            record.status = "failed"
            if saved.get("status") == "failed":
                record.error = saved.get("error") or "failed"
            elif saved.get("status") == "running":
                record.error = "stopped before it ended"
            else:
                record.error = "its process stopped before the trial ended (no heartbeat)"
            if t.number in retried_as:
                record.error += f"; run again as trial {retried_as[t.number] + 1}"
        else:  # RUNNING: the last epoch's objective so far
            values = t.intermediate_values
            record.value = values[max(values)] if values else None
        out.append(record)
    return out


class StudyReader:
    """Reads a shared search's trials from its storage, again and again (a window showing a search
    other processes run polls it); the storage stays open between reads. Not for two threads at once."""

    def __init__(self, url: str, study_name: str = STUDY_NAME):
        storages.kind(url)
        self.url = url
        self.study_name = study_name
        self._storage = None

    def read(self) -> SearchResult:
        """The trials as the storage holds them now; a :class:`StorageError` (naming the URL) when the
        storage cannot be read or holds no such study yet."""
        optuna = _optuna()
        shown = storages.masked(self.url)
        if self._storage is None:
            self._storage = storages.open_storage(self.url, Path("study.db"), heartbeat=None)
        try:
            study = optuna.load_study(study_name=self.study_name, storage=self._storage)
            trials = study.get_trials(deepcopy=False)
            settings = study.user_attrs.get("search") or {}
        except KeyError:
            raise storages.StorageError(f"{shown}: no study named {self.study_name!r} (yet)") from None
        except Exception as exc:
            self.close()  # a dropped connection: open afresh next time
            raise storages.StorageError(f"{shown}: {storages.reason_of(exc)}") from None
        objective = settings.get("objective", "val_accuracy")
        records = records_of(trials)
        done = bool(records) and all(r.status in FINISHED for r in records)
        return SearchResult(records, best_trial(records, objective), "completed" if done else "running", objective)

    def close(self) -> None:
        if self._storage is not None:
            storages.close(self._storage)
            self._storage = None


def read_study(url: str, study_name: str = STUDY_NAME) -> SearchResult:
    """The trials of a shared search as its storage holds them now."""
    reader = StudyReader(url, study_name)
    try:
        return reader.read()
    finally:
        reader.close()


def _finite(row: dict | None, key: str):
    value = (row or {}).get(key)
    return float(value) if _number(value) else None


def _optuna():
    import optuna

    # Optuna logs every trial on its own; the studio's state reports them instead.
    # (ERROR: a shared trial that fails is one line of the studio's, not Optuna's traceback.)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna


def _read_record(path: Path, what: str) -> dict:
    try:
        data = read_json(path)
    except json.JSONDecodeError as exc:
        raise SearchError(f"{path}: not a readable {what} ({exc.msg} at line {exc.lineno})") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SearchError(f"{path}: cannot read the {what} ({exc})") from None
    if not isinstance(data, dict):
        raise SearchError(f"{path}: not a {what} (expected a JSON object)")
    return data


# ----------------------------------------------------------------------------- reading results


def read_search(out_dir: str | Path) -> SearchResult:
    """The trials of a search folder as last recorded; no Optuna needed."""
    path = Path(out_dir) / "trials.json"
    if not path.exists():
        raise SearchError(f"{path}: no search results here (no trials.json)")
    data = _read_record(path, "trial list")
    objective = data.get("objective", "val_accuracy")
    if objective not in OBJECTIVES:
        raise SearchError(f"{path}: unknown objective {objective!r}")
    records = [TrialRecord.from_dict(d) for d in data.get("trials", [])]
    return SearchResult(records, best_trial(records, objective), data.get("reason", "running"), objective)


def load_configuration(path: str | Path) -> tuple[ModelSpec, TrainConfig]:
    """The model spec and training settings of a search's ``best.json`` or a run's ``config.json``."""
    path = Path(path)
    if not path.exists():
        raise SearchError(f"{path}: no such file (give a search's best.json or a run's config.json)")
    data = _read_record(path, "configuration")
    if not isinstance(data.get("spec"), dict) or not isinstance(data.get("train"), dict):
        raise SearchError(f"{path}: holds no model spec and training settings (give a search's best.json "
                          "or a run's config.json)")
    try:
        return ModelSpec.from_dict(data["spec"]), TrainConfig.from_dict(data["train"]).validate()
    except StudioError as exc:
        raise SearchError(f"{path}: {exc}") from None


def best_configuration(out_dir: str | Path) -> tuple[ModelSpec, TrainConfig]:
    """The spec and training settings of a search's best trial, ready for a :class:`Trainer`."""
    path = Path(out_dir) / "best.json"
    if not path.exists():
        raise SearchError(f"{path}: no best configuration yet (no trial of this search has completed)")
    return load_configuration(path)


def _mark_pruned(paths: runs.RunPaths) -> None:
    """A pruned trial's run stopped on purpose: its metrics say "pruned", not "cancelled", so the
    run comparison does not read it as interrupted."""
    from cnnstudio.core.runs.records import read_metrics

    metrics = read_metrics(paths.root)
    if metrics is not None and metrics.get("status") == "cancelled":
        atomic_write_json(paths.metrics, {**metrics, "status": "pruned"})
