import json
from collections import Counter

import numpy as np
import pytest
from coretrain import RecordingState, tiny_spec
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.cli import main
from cnnstudio.core.data.dataset import scan_dataset
from cnnstudio.core.errors import StudioError
from cnnstudio.core.experiments.crossval import (
    CrossValidation,
    QuietCVState,
    fold_splits,
    read_cv,
    stratified_folds,
)
from cnnstudio.core.training.config import TrainConfig


@pytest.fixture
def index(make_dataset):
    return scan_dataset(make_dataset({"a": 13, "b": 7, "c": 5}))


def test_folds_are_stratified_disjoint_and_cover_the_data(index):
    folds = stratified_folds(index, 3, seed=4)
    assert len(folds) == 3
    assert sorted(i for fold in folds for i in fold) == list(range(len(index.items)))  # each image once
    for label in range(3):
        per_fold = [Counter(index.labels(fold))[label] for fold in folds]
        assert max(per_fold) - min(per_fold) <= 1, (label, per_fold)


def test_same_seed_same_folds_other_seed_other_folds(index):
    assert stratified_folds(index, 3, seed=4) == stratified_folds(index, 3, seed=4)
    assert stratified_folds(index, 3, seed=4) != stratified_folds(index, 3, seed=5)


def test_folds_of_some_files_cover_only_those(index):
    files = list(range(0, len(index.items), 2))
    folds = stratified_folds(index, 2, seed=0, files=files)
    assert sorted(i for fold in folds for i in fold) == files


def test_a_class_smaller_than_k_is_refused_by_name_and_count(index):
    with pytest.raises(StudioError, match="class 'c' has 5 images; 6-fold"):
        stratified_folds(index, 6, seed=0)
    with pytest.raises(StudioError, match="at least 2 folds"):
        stratified_folds(index, 1, seed=0)


def test_fold_splits_hold_out_the_same_test_split_for_every_fold(index):
    splits = fold_splits(index, 3, seed=1, test_fraction=0.2)
    test = splits[0].test
    assert test and all(s.test == test for s in splits)
    everything = set(range(len(index.items)))
    for s in splits:
        assert set(s.train) | set(s.val) | set(s.test) == everything
        assert not set(s.train) & set(s.val) and not (set(s.train) | set(s.val)) & set(test)
    # without a test split the folds use every image and test on none
    assert all(not s.test for s in fold_splits(index, 3, seed=1))


class FoldRecorder(RecordingState, QuietCVState):
    """Records fold events too; asks to stop after ``stop_after_folds`` folds ended."""

    def __init__(self, stop_after_folds=None, **kwargs):
        super().__init__(**kwargs)
        self.stop_after_folds = stop_after_folds

    def on_fold_start(self, fold, k):
        self.events.append(("fold_start", (fold, k)))

    def on_fold_end(self, fold, metrics):
        self.events.append(("fold_end", (fold, metrics)))

    def should_stop(self):
        ended = len(self.of("fold_end"))
        return super().should_stop() or (self.stop_after_folds is not None and ended >= self.stop_after_folds)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return scan_dataset(make_dataset(tmp_path_factory.mktemp("cv") / "data", per_class=8, size=16))


def cv(index, out, state=None, epochs=1, **kwargs):
    config = TrainConfig(epochs=epochs, batch_size=4, learning_rate=0.01, patience=0, seed=1)
    return CrossValidation(index, tiny_spec(), config, 2, out, load_registry(), seed=0, state=state, **kwargs)


def test_two_fold_cv_writes_both_runs_and_the_mean_and_sample_std(tiny, tmp_path):
    state = FoldRecorder()
    result = cv(tiny, tmp_path / "cv", state=state, test_fraction=0.25).run()

    assert result.reason == "completed" and [f["fold"] for f in result.folds] == [1, 2]
    for f in result.folds:
        run = tmp_path / "cv" / f"fold-{f['fold']}"
        assert f["run_dir"] == str(run) and f["status"] == "completed" and f["epochs"] == 1
        assert (run / "config.json").exists() and (run / "model" / "bundle.json").exists()
        assert 0 <= f["val_accuracy"] <= 1 and f["test_accuracy"] is not None
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss"):
        values = [f[key] for f in result.folds]
        s = result.summary[key]
        assert s["values"] == pytest.approx(values)
        assert s["mean"] == pytest.approx(np.mean(values))
        assert s["std"] == pytest.approx(np.std(values, ddof=1))
    assert "mean ± std over 2 folds" in result.summary_lines()[0] and "ddof=1" in result.summary_lines()[0]

    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["k"] == 2 and saved["seed"] == 0 and saved["status"] == "completed"
    assert saved["spec"]["backbone"] == "scratch" and saved["train"]["epochs"] == 1
    vals = [set(f["val"]) for f in saved["folds"]]
    assert not vals[0] & vals[1] and not (vals[0] | vals[1]) & set(saved["test"])
    assert len(vals[0] | vals[1]) + len(saved["test"]) == 24
    assert read_cv(tmp_path / "cv").summary == result.summary
    # each fold's run folder records its own split: its validation files are the fold's
    fold1 = json.loads((tmp_path / "cv" / "fold-1" / "config.json").read_text())
    assert set(fold1["split"]["val"]) == vals[0] and set(fold1["split"]["test"]) == set(saved["test"])

    order = [(kind, e[0]) for kind, e in state.events if kind in ("fold_start", "fold_end")]
    assert order == [("fold_start", 1), ("fold_end", 1), ("fold_start", 2), ("fold_end", 2)]
    assert len(state.of("begin")) == 2  # the trainer's events are relayed for every fold


def test_a_new_cv_on_the_same_folder_keeps_finished_folds_and_resumes_an_interrupted_one(tiny, tmp_path):
    out = tmp_path / "cv"
    # Fold 1 runs its two epochs; fold 2 is stopped after its first epoch (the third epoch seen).
    first = cv(tiny, out, state=FoldRecorder(stop_after_epochs=3), epochs=2).run()
    assert first.reason == "cancelled"
    assert [f["status"] for f in first.folds] == ["completed", "cancelled"]
    assert set(first.summary["val_loss"]["values"]) == {first.folds[0]["val_loss"]}
    assert json.loads((out / "cv.json").read_text())["status"] == "cancelled"
    kept = (out / "fold-1" / "metrics.json").stat().st_mtime_ns

    state = FoldRecorder()
    result = cv(tiny, out, state=state, epochs=2).run()
    assert result.reason == "completed" and [f["status"] for f in result.folds] == ["completed", "completed"]
    assert (out / "fold-1" / "metrics.json").stat().st_mtime_ns == kept  # fold 1 was not trained again
    begins = state.of("begin")
    assert len(begins) == 1 and begins[0].initial_epoch == 1  # fold 2 continued from its checkpoint
    assert result.folds[0] == {**first.folds[0]}
    assert len(result.summary["val_loss"]["values"]) == 2


def test_another_plan_in_the_same_folder_is_refused(tiny, tmp_path):
    out = tmp_path / "cv"
    out.mkdir()
    (out / "cv.json").write_text(json.dumps({"k": 3, "seed": 0, "folds": []}))
    with pytest.raises(StudioError, match=r"cv\.json: holds another cross-validation \(k, "):
        cv(tiny, out).run()


def test_cli_cv_prints_a_line_per_fold_then_mean_and_std_and_resumes(tiny, tmp_path, capsys):
    args = ["cv", str(tiny.root), "--folds", "2", "--out", str(tmp_path / "cv"), "--epochs", "1",
            "--image-size", "16", "--batch-size", "8", "--model", "scratch"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Fold 1/2: val_accuracy" in out and "Fold 2/2: val_accuracy" in out
    assert "mean ± std over 2 folds (sample standard deviation, ddof=1)" in out
    assert "val_accuracy" in out.split("ddof=1")[1] and "±" in out.split("ddof=1")[1]
    saved = json.loads((tmp_path / "cv" / "cv.json").read_text())
    assert saved["test"] == [] and saved["status"] == "completed"  # cv tests on nothing unless asked

    # The same command again trains nothing and prints the same folds.
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "finished earlier" in captured.err and "Training on" not in captured.err
    assert [ln for ln in captured.out.splitlines() if ln.startswith("Fold")] == \
        [ln for ln in out.splitlines() if ln.startswith("Fold")]

    assert main(args[:-2] + ["--lr", "0.5"]) == 1
    assert "holds another cross-validation (train differ)" in capsys.readouterr().err
    assert main(args + ["--val-split", "0.2"]) == 1
    assert "--val-split does not apply to cv" in capsys.readouterr().err


def test_a_resumed_cv_refuses_a_class_folder_added_since_it_started(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=8, size=16)
    out = tmp_path / "cv"
    first = cv(scan_dataset(root), out, state=FoldRecorder(stop_after_folds=1)).run()
    assert first.reason == "cancelled"
    make_dataset(root, classes=("yellow",), per_class=8, size=16)
    with pytest.raises(StudioError) as refused:
        cv(scan_dataset(root), out).run()
    assert str(refused.value) == (f"{root}: class folder 'yellow' was added since the cross-validation started; "
                                  "the resumed cross-validation would train on other labels")
    assert [d.name for d in sorted(out.glob("fold-*"))] == ["fold-1"]  # nothing trained on the new labels
