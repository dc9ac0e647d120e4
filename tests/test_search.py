"""Hyperparameter search: spaces, parameters applied to a spec, trials as real runs, pruning,
interruption and resume, the best configuration, and ``cnnstudio tune``."""

import dataclasses
import json
from pathlib import Path

import optuna
import pytest
from coretrain import RecordingState, tiny_spec
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.cli import main
from cnnstudio.core.data.dataset import make_split, scan_dataset
from cnnstudio.core.errors import StudioError
from cnnstudio.core.experiments.search import (
    PRESET_SPACES,
    Dimension,
    Search,
    SearchSpace,
    apply_params,
    best_configuration,
    default_space,
    load_configuration,
    read_search,
)
from cnnstudio.core.model.spec import HeadSpec, ModelSpec, resolve_spec
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.trainer import Trainer

SPACE = {
    "train.learning_rate": {"choices": [0.03, 0.01, 0.003]},
    "augmentation.rotation": {"low": 0.0, "high": 0.1, "step": 0.05},
    "blocks.filters.0": {"choices": [4, 8]},
}


def spec() -> ModelSpec:
    s = tiny_spec()
    s.head = HeadSpec(pooling="avg", dense=[8], dropout=0.0)
    return s


def config(epochs=1) -> TrainConfig:
    return TrainConfig(epochs=epochs, batch_size=8, learning_rate=0.01, patience=0, seed=1)


class SearchRecorder(RecordingState):
    """Records trial starts and ends; with ``stop_in_trial``, asks to stop after that trial's first epoch."""

    def __init__(self, stop_in_trial=None):
        super().__init__()
        self.started, self.ended, self.statuses = [], [], []
        self.stop_in_trial = stop_in_trial
        self.epochs_in = {}  # trial number -> epochs trained in it

    def on_trial_start(self, number, params):
        self.started.append((number, params))
        self.epochs_in[number] = 0

    def on_epoch_end(self, e):
        super().on_epoch_end(e)
        self.epochs_in[self.started[-1][0]] += 1

    def on_status(self, message):
        self.statuses.append(message)

    def on_trial_end(self, record):
        self.ended.append(record)

    def should_stop(self):
        return self.epochs_in.get(self.stop_in_trial, 0) >= 1


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("data"), per_class=12)
    index = scan_dataset(root)
    return root, index, make_split(index, 0.25, 0.2, seed=0)


def search(data, registry, out, space=SPACE, epochs=1, **kwargs):
    _, index, split = data
    space = None if space is None else SearchSpace.from_dict(space)
    return Search(index, split, spec(), config(epochs), space, out, registry, **kwargs)


@pytest.fixture(scope="module")
def finished(data, registry, tmp_path_factory):
    """A 3-trial TPE search, run once for the tests that read its results."""
    out = tmp_path_factory.mktemp("search")
    state = SearchRecorder()
    result = search(data, registry, out, trials=3, state=state).run()
    return out, result, state


# ----------------------------------------------------------------------------- spaces


def test_space_json_round_trip_and_kinds():
    space = SearchSpace.from_dict({
        "train.learning_rate": {"low": 1e-4, "high": 1e-2, "log": True},
        "train.batch_size": {"low": 8, "high": 32, "step": 8},
        "train.optimizer": {"choices": ["adam", "sgd"]},
        "head.dropout": {"low": 0, "high": 1},  # a float field, though both bounds are written as ints
        "params.width": {"low": 1, "high": 4},  # unknown field type: the bounds decide
        "blocks.filters.*": {"choices": [16, 32]},
    })
    kinds = {d.target: d.kind for d in space.dimensions}
    assert kinds == {"train.learning_rate": "float", "train.batch_size": "int", "train.optimizer": "choice",
                     "head.dropout": "float", "params.width": "int", "blocks.filters.*": "choice"}
    assert SearchSpace.from_dict(json.loads(json.dumps(space.to_dict()))) == space
    two_blocks = tiny_spec()
    two_blocks.params["blocks"] = two_blocks.params["blocks"] * 2
    assert [d.target for d in space.for_spec(two_blocks).dimensions][-2:] == ["blocks.filters.0", "blocks.filters.1"]


@pytest.mark.parametrize("space, message", [
    ({"train.learnin_rate": {"low": 0.1, "high": 0.2}}, "train.learnin_rate: unknown dimension; valid forms: train."),
    ({"blocks.filter.0": {"choices": [8]}}, "blocks.filters.<i>"),
    ({"head.dropout": {"low": 0.4, "high": 0.2}}, "head.dropout: low (0.4) is above high (0.2)"),
    ({"head.dropout": {"low": 0.2}}, "head.dropout: give high"),
    ({"train.learning_rate": {"low": 0, "high": 0.1, "log": True}}, "log scale needs low above 0"),
    ({"train.optimizer": {"low": 0, "high": 1}}, "train.optimizer: this setting is not a number; give choices"),
    ({"train.batch_size": {"low": 8, "high": 30, "step": 8}}, "not a whole number of steps of 8"),
    ({"head.units": {"choices": []}}, "head.units: give at least one choice"),
    ({"head.units": {"choices": [64, "big"]}}, "choices must be numbers"),
    ({"augmentation.zoom": [0.1, 0.2]}, "augmentation.zoom: expected"),
    ({"augmentation.zoom": {"low": 0.1, "high": 0.2, "scale": "log"}}, "unknown field 'scale'"),
])
def test_bad_spaces_are_refused_naming_the_dimension(space, message):
    with pytest.raises(StudioError) as info:
        SearchSpace.from_dict(space)
    assert message in str(info.value)


def test_load_names_the_file_and_the_reason(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(StudioError, match=r"nope\.json: no such search space file, and not a preset \(seed-report\)"):
        SearchSpace.load(missing)
    broken = tmp_path / "broken.json"
    broken.write_text('{"train.learning_rate": {"choices": [0.1,]}}')
    with pytest.raises(StudioError, match=r"broken\.json: not valid JSON .* at line 1"):
        SearchSpace.load(broken)
    wrong = tmp_path / "wrong.json"
    wrong.write_text('{"head.units": {"low": 64}}')
    with pytest.raises(StudioError, match=r"wrong\.json: head\.units: give high"):
        SearchSpace.load(wrong)
    good = tmp_path / "good.json"
    SearchSpace.from_dict(SPACE).save(good)
    assert SearchSpace.load(good).to_dict() == SPACE


def test_validate_checks_each_dimension_applies_to_the_model(registry):
    one_block = spec().validate(registry)
    with pytest.raises(StudioError, match=r"blocks\.filters\.1: the model has 1 block\(s\), numbered from 0"):
        SearchSpace.from_dict({"blocks.filters.1": {"choices": [8]}}).validate(one_block)
    vgg = resolve_spec(registry, "vgg16", weights="none")
    with pytest.raises(StudioError, match=r"blocks\.dropout: the vgg16 model has no blocks"):
        SearchSpace.from_dict({"blocks.dropout": {"low": 0.1, "high": 0.2}}).validate(vgg)
    with pytest.raises(StudioError, match=r"head\.units: the model's head has no dense layer"):
        SearchSpace.from_dict({"head.units": {"choices": [8]}}).validate(tiny_spec().validate(registry))
    with pytest.raises(StudioError, match=r"params\.depth: backbone 'scratch' has no parameter 'depth'; it takes: blocks"):
        SearchSpace.from_dict({"params.depth": {"low": 1, "high": 3}}).validate(one_block, registry=registry)
    # With the training settings, every bound is tried: a dropout the head refuses fails now.
    with pytest.raises(StudioError, match=r"head\.dropout: 0\.95 does not fit: head dropout: 0\.95 is above"):
        SearchSpace.from_dict({"head.dropout": {"low": 0.1, "high": 0.95}}).validate(one_block, config(), registry)


def test_seed_report_preset_expands_per_block_and_the_default_keeps_what_applies(registry):
    four = resolve_spec(registry, "seed-model-3")
    space = SearchSpace.load("seed-report").for_spec(four).validate(four, TrainConfig(), registry)
    dims = {d.target: d for d in space.dimensions}
    assert [f"blocks.filters.{i}" for i in range(4)] == [t for t in dims if t.startswith("blocks.filters")]
    assert dims["blocks.filters.2"].choices == (32, 64, 128, 256)
    assert dims["train.learning_rate"].choices == (0.01, 0.001, 0.0001)
    assert (dims["augmentation.rotation"].low, dims["augmentation.rotation"].high) == (0.01, 0.2)
    assert (dims["augmentation.zoom"].low, dims["augmentation.zoom"].high) == (0.01, 0.2)
    assert dims["head.units"].choices == (128, 256, 512)
    assert (dims["blocks.dropout"].low, dims["blocks.dropout"].high) == (0.05, 0.15)
    assert (dims["head.dropout"].low, dims["head.dropout"].high) == (0.2, 0.4)
    assert "blocks.filters.*" in PRESET_SPACES["seed-report"].targets  # the preset itself fits any depth
    # The default for a pretrained backbone keeps learning rate, augmentation and head.
    vgg = resolve_spec(registry, "vgg16", weights="none")
    assert default_space(vgg).targets == ["augmentation.rotation", "augmentation.zoom", "train.learning_rate",
                                          "head.units", "head.dropout"]


def test_apply_params_returns_checked_copies(registry):
    base = resolve_spec(registry, "seed-model-2")
    base_config = TrainConfig()
    params = {"train.learning_rate": 0.0001, "train.batch_size": 16.0, "augmentation.rotation": 0.12,
              "head.units": 512, "head.dropout": 0.3, "blocks.filters.1": 256, "blocks.dropout": 0.1,
              "input_size": 48}
    new_spec, new_config = apply_params(base, base_config, params, registry)
    assert new_config.learning_rate == 0.0001 and new_config.batch_size == 16
    assert isinstance(new_config.batch_size, int)
    assert new_spec.augmentation.rotation == 0.12 and new_spec.input_size == 48
    assert new_spec.head.dense == [512] and new_spec.head.dropout == 0.3
    assert [b["filters"] for b in new_spec.params["blocks"]] == [32, 256, 128]
    assert {b["dropout"] for b in new_spec.params["blocks"]} == {0.1}
    # The inputs are untouched.
    assert base_config.learning_rate == 1e-3 and base.input_size == 64 and base.head.dense == [128]
    assert [b["filters"] for b in base.params["blocks"]] == [32, 64, 128]
    with pytest.raises(StudioError, match="learning rate must be between 0 and 10"):
        apply_params(base, base_config, {"train.learning_rate": 20.0})
    with pytest.raises(StudioError, match=r"train\.batch_size: 16\.5 is not a whole number"):
        apply_params(base, base_config, {"train.batch_size": 16.5})


def test_dimension_checks_what_a_search_may_enqueue():
    d = Dimension("augmentation.rotation", "float", 0.0, 0.1, step=0.05)
    assert d.contains(0.05) and not d.contains(0.07) and not d.contains(0.2)
    choice = Dimension("train.optimizer", "choice", choices=("adam", "sgd"))
    assert choice.contains("sgd") and not choice.contains("rmsprop")


# ----------------------------------------------------------------------------- searching


def test_search_records_every_trial_and_writes_the_best(finished):
    out, result, state = finished
    assert result.reason == "completed" and len(result.trials) == 3
    assert [r.number for r in result.trials] == [0, 1, 2]
    for r in result.trials:
        assert r.status == "complete" and r.error == ""
        assert set(r.params) == set(SPACE) and 0.0 <= r.value <= 1.0
        assert r.value == r.metrics["val_accuracy"] and r.metrics["test_accuracy"] is not None
        assert r.epochs == 1 and r.seconds > 0
        # Every trial is an ordinary run folder, trained with the trial's own parameters.
        run = json.loads((out / "trials" / f"trial-{r.number + 1:03d}" / "config.json").read_text())
        assert r.run_dir == str(out / "trials" / f"trial-{r.number + 1:03d}")
        assert run["train"]["learning_rate"] == r.params["train.learning_rate"]
        assert run["spec"]["params"]["blocks"][0]["filters"] == r.params["blocks.filters.0"]
        assert run["spec"]["augmentation"]["rotation"] == r.params["augmentation.rotation"]
        assert json.loads((out / "trials" / f"trial-{r.number + 1:03d}" / "metrics.json").read_text())["status"] == \
            "completed"
    # The trials.json on disk says the same as the result, and the state saw each trial.
    assert read_search(out) == result
    assert [n for n, _ in state.started] == [0, 1, 2] and [r.number for r in state.ended] == [0, 1, 2]
    best = json.loads((out / "best.json").read_text())
    top = max(result.trials, key=lambda r: (r.value, -r.number))
    assert result.best == top
    assert (best["trial"], best["value"], best["objective"], best["params"]) == \
        (top.number, top.value, "val_accuracy", top.params)
    assert best["train"]["learning_rate"] == top.params["train.learning_rate"]
    assert best["spec"]["params"]["blocks"][0]["filters"] == top.params["blocks.filters.0"]
    saved = json.loads((out / "search.json").read_text())
    assert saved["space"] == SPACE and saved["settings"]["trials"] == 3 and saved["split"]["seed"] == 0
    assert (out / "study.db").exists()


def test_best_configuration_trains(finished, data, tmp_path, registry):
    out, result, _ = finished
    best_spec, best_config = best_configuration(out)
    assert best_config.learning_rate == result.best.params["train.learning_rate"]
    assert best_spec.params["blocks"][0]["filters"] == result.best.params["blocks.filters.0"]
    _, index, split = data
    run = Trainer(index, split, best_spec, best_config, tmp_path / "run", registry).run()
    assert run.reason == "completed" and run.epochs_run == 1 and run.metrics["test_accuracy"] is not None
    # A trial's own config.json gives the same configuration (what 'train --config' reads).
    trial_spec, trial_config = load_configuration(f"{result.best.run_dir}/config.json")
    assert (trial_spec.to_dict(), trial_config) == (best_spec.validate(registry).to_dict(), best_config)
    with pytest.raises(StudioError, match=r"trials\.json: holds no model spec and training settings"):
        load_configuration(out / "trials.json")


def test_interrupted_search_resumes_with_the_same_parameters(finished, data, registry, tmp_path):
    out = tmp_path / "search"
    state = SearchRecorder(stop_in_trial=1)
    first = search(data, registry, out, epochs=2, trials=3, state=state).run()
    assert first.reason == "cancelled"
    assert [r.status for r in first.trials] == ["complete", "running"]
    interrupted = first.trials[1]
    assert interrupted.epochs == 1
    # The same seed proposes the same parameters as the finished search did.
    _, done, _ = finished
    assert [r.params for r in first.trials] == [r.params for r in done.trials[:2]]
    assert read_search(out).reason == "cancelled"

    with pytest.raises(StudioError, match=r"search\.json: this folder holds a search over another space"):
        search(data, registry, out, space={"train.learning_rate": {"choices": [0.1, 0.01]}}, trials=3)

    again = SearchRecorder()
    resumed = search(data, registry, out, space=None, epochs=2, trials=3, state=again)
    assert resumed.resumed and resumed.space.to_dict() == SPACE
    result = resumed.run()
    assert result.reason == "completed"
    assert [(r.number, r.status) for r in result.trials] == [(0, "complete"), (1, "complete"), (2, "complete")]
    assert result.trials[0] == first.trials[0]
    assert result.trials[1].params == interrupted.params
    # Trial 2 went on from its checkpoint: two epochs in all, one of them run now.
    assert result.trials[1].epochs == 2 and [n for n, _ in again.started] == [1, 2]
    assert again.epochs_in == {1: 1, 2: 2} and any("trial 2 was interrupted" in s for s in again.statuses)
    assert read_search(out) == result


def test_a_trial_behind_the_median_is_pruned(data, registry, tmp_path):
    out = tmp_path / "search"
    s = search(data, registry, out, space={"train.learning_rate": {"choices": [0.01, 1e-06]}}, epochs=3,
               trials=2, objective="val_loss")
    # A sound learning rate first, then one so small that the model barely moves from its start.
    s.enqueue({"train.learning_rate": 0.01})
    s.enqueue({"train.learning_rate": 1e-06})
    result = s.run()
    good, bad = result.trials
    assert (good.status, good.epochs) == ("complete", 3)
    assert bad.status == "pruned" and bad.params == {"train.learning_rate": 1e-06}
    assert bad.epochs == 2  # the median pruner compares from the second epoch and stopped it there
    # Its run folder says so too, as the run comparison shows it.
    assert json.loads((Path(bad.run_dir) / "metrics.json").read_text())["status"] == "pruned"
    assert result.best == good and json.loads((out / "best.json").read_text())["trial"] == 0
    # It is Optuna's own verdict, on record in the study.
    study = optuna.load_study(study_name="cnnstudio", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "PRUNED"]


def test_a_trial_that_cannot_train_is_recorded_failed_and_the_search_goes_on(data, registry, tmp_path):
    root, index, split = data
    # A split with nothing to train on: every trial's Trainer refuses it.
    s = Search(index, dataclasses.replace(split, train=[]), spec(), config(),
               SearchSpace.from_dict({"train.learning_rate": {"choices": [0.01]}}), tmp_path / "search", registry,
               trials=1)
    result = s.run()
    assert [(r.status, r.value) for r in result.trials] == [("failed", None)]
    assert "training split is empty" in result.trials[0].error and result.best is None
    assert not (tmp_path / "search" / "best.json").exists()


def test_a_full_disk_stops_the_search_in_one_line_and_a_resume_runs_the_trial_again(data, registry, tmp_path,
                                                                                     monkeypatch):
    """A failed write would fail every later trial too: the search stops with it (not a column of
    failed trials), the trial left running, and the resumed search trains it."""
    import errno

    from cnnstudio.core.errors import WriteFailed

    out = tmp_path / "search"
    space = {"train.learning_rate": {"choices": [0.01]}}
    with monkeypatch.context() as patch:
        def full(self, resume=False):
            raise WriteFailed(self.run_dir / "checkpoints" / "last.keras", "no space left on device", errno.ENOSPC)

        patch.setattr(Trainer, "run", full)
        with pytest.raises(WriteFailed, match=r"last\.keras: no space left on device$"):
            search(data, registry, out, space=space, trials=1).run()
    assert [r.status for r in read_search(out).trials] == ["running"]
    result = search(data, registry, out, space=None, trials=1).run()
    assert [(r.number, r.status) for r in result.trials] == [(0, "complete")]


def test_search_refuses_settings_it_cannot_honour(data, registry, tmp_path):
    with pytest.raises(StudioError, match="give a number of trials or a time limit"):
        search(data, registry, tmp_path, trials=None)
    with pytest.raises(StudioError, match="objective must be one of val_accuracy, val_loss"):
        search(data, registry, tmp_path, objective="accuracy")
    with pytest.raises(StudioError, match=r"blocks\.filters\.3: the model has 1 block"):
        search(data, registry, tmp_path, space={"blocks.filters.3": {"choices": [8]}})
    _, index, _ = data
    no_val = make_split(index, 0.0, 0.2, seed=0)
    with pytest.raises(StudioError, match="validation split, which is empty"):
        Search(index, no_val, spec(), config(), SearchSpace.from_dict(SPACE), tmp_path, registry)


# ----------------------------------------------------------------------------- command line


def test_cli_tune_prints_a_line_per_trial_and_train_uses_the_best(data, tmp_path, capsys):
    root, _, _ = data
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train.learning_rate": {"choices": [0.02, 0.005]},
                                 "blocks.filters.0": {"choices": [4, 8]}}))
    out = tmp_path / "search"
    common = ["--model", "keras-small-convnet", "--image-size", "16", "--batch-size", "8", "--patience", "0",
              "--val-split", "0.25"]
    code = main(["tune", str(root), "--trials", "2", "--out", str(out), "--space", str(space), "--epochs", "2",
                 "--sampler", "random", *common])
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    trial_lines = [line for line in lines if line.startswith("trial ")]
    assert len(trial_lines) == 2
    assert trial_lines[0].startswith("trial 1/2  complete  val_accuracy ")
    assert "(best " in trial_lines[1] and " s  learning_rate=" in trial_lines[1] and "blocks.filters.0=" in trial_lines[1]
    best = json.loads((out / "best.json").read_text())
    assert best["train"]["batch_size"] == 8 and best["train"]["epochs"] == 2

    # The best configuration trains again; an option given on the command line wins over the file.
    run = tmp_path / "run"
    assert main(["train", str(root), "--config", str(out / "best.json"), "--out", str(run), "--epochs", "1"]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["learning_rate"] == best["params"]["train.learning_rate"]
    assert config["train"]["batch_size"] == 8 and config["train"]["epochs"] == 1
    assert config["spec"]["params"]["blocks"][0]["filters"] == best["params"]["blocks.filters.0"]
    assert config["spec"]["input_size"] == 16 and config["spec"]["preset"] == "keras-small-convnet"

    code = main(["train", str(root), "--config", str(tmp_path / "nope.json"), "--out", str(tmp_path / "run2")])
    assert code == 1 and "nope.json: no such file" in capsys.readouterr().err

    # Running the finished search's command again finds nothing left to do.
    capsys.readouterr()
    assert main(["tune", str(root), "--trials", "2", "--out", str(out), "--space", str(space), *common]) == 0
    assert not [line for line in capsys.readouterr().out.splitlines() if line.startswith("trial ")]


def test_a_resumed_search_refuses_a_class_folder_added_or_a_file_changed_since_it_started(registry, tmp_path):
    root = make_dataset(tmp_path / "data", per_class=8)
    index = scan_dataset(root)
    out = tmp_path / "search"
    split = make_split(index, 0.25, 0.2, seed=0)
    first = Search(index, split, spec(), config(), SearchSpace.from_dict(SPACE), out, registry, trials=1).run()
    assert len(first.trials) == 1

    make_dataset(root, classes=("yellow",), per_class=8)
    grown = scan_dataset(root)
    with pytest.raises(StudioError) as refused:
        Search(grown, make_split(grown, 0.25, 0.2, seed=0), spec(), config(), None, out, registry, trials=2)
    assert str(refused.value) == (f"{root}: class folder 'yellow' was added since the search started; "
                                  "the resumed search would train on other labels")

    for f in (root / "yellow").iterdir():
        f.unlink()
    (root / "yellow").rmdir()
    changed = root / "red" / "red_000.png"
    changed.write_bytes((root / "red" / "red_001.png").read_bytes())
    again = scan_dataset(root)
    with pytest.raises(StudioError, match=r"1 of the search's \d+ files differ from when it started: "
                                          r"red/red_000\.png \(content changed\); the resumed search would train on other data"):
        Search(again, make_split(again, 0.25, 0.2, seed=0), spec(), config(), None, out, registry, trials=2)
