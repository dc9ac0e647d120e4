"""Run listing and run diff, on run folders written as the trainer writes them (no training needed)."""

import csv
import json

import pytest

from cnnstudio.cli import main
from cnnstudio.core.errors import StudioError
from cnnstudio.core.runs.compare import diff_runs, find_runs, format_diff

CLASSES = ["cat", "dog"]


def write_run(folder, *, lr=0.001, seed=0, predictions=None, history=None, test_accuracy=0.5, status="completed",
              test_files=None):
    """A run folder with the files the trainer writes: config, metrics, history and predictions."""
    folder.mkdir(parents=True)
    predictions = predictions or {}
    test = sorted(test_files if test_files is not None else predictions)
    config = {
        "format": 1, "created": "2024-06-01T10:00:00+0000",
        "dataset": {"root": "/data/pets", "class_names": CLASSES, "counts": [10, 10], "problems": []},
        "split": {"seed": seed, "val_fraction": 0.2, "test_fraction": 0.2, "train": ["cat/1.png"],
                  "val": ["dog/9.png"], "test": test},
        "fingerprint": {"files": 2 + len(test), "sha256": "ab" * 32, "contents": {"cat/1.png": "00"}},
        "seeds": {"split": seed, "training": seed},
        "spec": {"backbone": "scratch", "preset": None, "head": {"pooling": "avg", "dense": [], "dropout": 0.25},
                 "params": {"blocks": [{"filters": 8, "convs": 1}]}, "augmentation": {"zoom": 0.0}},
        "train": {"epochs": 2, "learning_rate": lr, "seed": seed, "monitor": "val_loss", "optimizer": "adam"},
        "device": "CPU (2 cores)",
    }
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({
        "status": status, "epochs_run": 2, "train_seconds": 3.5, "test_accuracy": test_accuracy, "test_loss": 0.7,
    }))
    history = history or [(0.9, 0.5), (0.6, 0.75)]  # (val_loss, val_accuracy) per epoch
    with open(folder / "history.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "loss", "val_loss", "val_accuracy", "phase"])
        for i, (val_loss, val_acc) in enumerate(history, 1):
            w.writerow([i, 1.0 / i, val_loss, val_acc, "train"])
    with open(folder / "predictions.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "true", "predicted", "confidence", "correct", "p_cat", "p_dog"])
        for path, predicted in predictions.items():
            true = path.split("/")[0]
            w.writerow([path, true, predicted, "0.9", int(true == predicted), "0.9", "0.1"])
    return folder


@pytest.fixture
def runs_folder(tmp_path):
    root = tmp_path / "runs"
    write_run(root / "base", predictions={"cat/a.png": "cat", "cat/b.png": "cat", "dog/c.png": "dog",
                                          "dog/d.png": "dog"})
    write_run(root / "faster", lr=0.01, seed=3, test_accuracy=0.75,
              history=[(0.8, 0.6), (0.4, 0.9), (0.5, 0.95)],
              predictions={"cat/a.png": "dog", "cat/b.png": "cat", "dog/c.png": "cat", "dog/e.png": "dog"})
    # a cross-validation's folds are ordinary runs one level down
    write_run(root / "cv" / "fold-1", lr=0.1)
    write_run(root / "cv" / "fold-2", lr=0.1, status="cancelled")
    (root / "cv" / "cv.json").write_text("{}")
    broken = root / "broken"
    broken.mkdir()
    (broken / "config.json").write_text('{"spec": ')  # cut short
    bad_metrics = write_run(root / "bad-metrics")
    (bad_metrics / "metrics.json").write_text("not json")
    other = root / "notes"  # another tool's config.json is not a run
    other.mkdir()
    (other / "config.json").write_text('{"editor": "vim"}')
    return root


def test_find_runs_lists_every_run_with_its_numbers_and_flat_settings(runs_folder):
    found = {r.name: r for r in find_runs(runs_folder)}
    assert sorted(found) == ["bad-metrics", "base", "broken", "cv/fold-1", "cv/fold-2", "faster"]

    faster = found["faster"]
    assert faster.status == "completed" and faster.model == "scratch" and faster.epochs == 2
    # the best epoch is the one with the lowest validation loss (the weights the run keeps)
    assert faster.best_epoch == 2 and faster.val_loss == 0.4 and faster.val_accuracy == 0.9
    assert faster.test_accuracy == 0.75 and faster.train_seconds == 3.5
    assert faster.created == "2024-06-01T10:00:00+0000" and faster.path == str(runs_folder / "faster")
    s = faster.settings
    assert s["train.learning_rate"] == 0.01 and s["spec.head.dropout"] == 0.25
    assert s["spec.augmentation.zoom"] == 0.0 and s["spec.params.blocks[0].filters"] == 8
    assert s["seeds.training"] == 3 and s["fingerprint.sha256"] == "ab" * 32
    assert s["split.test_fraction"] == 0.2  # the split's settings are in, its file lists stay out
    assert not {"split.train", "split.val", "split.test"} & set(s)
    assert not any(k.startswith("fingerprint.contents") for k in s)
    assert found["cv/fold-2"].status == "cancelled"

    for name in ("broken", "bad-metrics"):
        assert found[name].status == "unreadable"
    assert "broken/config.json: unreadable" in found["broken"].reason
    assert "bad-metrics/metrics.json: unreadable" in found["bad-metrics"].reason
    assert json.loads(json.dumps(found["broken"].to_dict()))["status"] == "unreadable"


def test_find_runs_refuses_a_missing_folder(tmp_path):
    with pytest.raises(StudioError, match="no such folder"):
        find_runs(tmp_path / "nothing")


def test_diff_names_changed_settings_metrics_and_predictions(runs_folder):
    diff = diff_runs(runs_folder / "base", runs_folder / "faster")
    changed = {key: (a, b) for key, a, b in diff.settings}
    assert changed["train.learning_rate"] == (0.001, 0.01)
    assert changed["train.seed"] == (0, 3) and changed["seeds.training"] == (0, 3)
    assert changed["split.seed"] == (0, 3)
    assert changed["split.test"][0] == "4 files" and "1 not in A's, 1 of A's left out" in changed["split.test"][1]
    assert "spec.head.dropout" not in changed and "created" not in changed
    metrics = {key: (a, b) for key, a, b in diff.metrics}
    assert metrics["test_accuracy"] == (0.5, 0.75) and metrics["best_epoch"] == (2, 2)

    assert diff.changed_predictions == [
        {"path": "cat/a.png", "true": "cat", "a": "cat", "b": "dog"},
        {"path": "dog/c.png", "true": "dog", "a": "dog", "b": "cat"},
    ]
    assert diff.compared_predictions == 3
    assert diff.only_in_a == ["dog/d.png"] and diff.only_in_b == ["dog/e.png"]

    text = format_diff(diff)
    assert "train.learning_rate" in text and "0.0010  ->  0.0100" in text
    assert "prediction changed: 2 of 3" in text and "cat/a.png  (true cat): A cat, B dog" in text
    assert "only in A's predictions: 1" in text


def test_diff_of_two_runs_with_the_same_settings_says_so(tmp_path):
    preds = {"cat/a.png": "cat"}
    diff = diff_runs(write_run(tmp_path / "a", predictions=preds), write_run(tmp_path / "b", predictions=preds))
    assert diff.settings == [] and diff.changed_predictions == []
    assert "Settings: the same" in format_diff(diff)


def test_diff_refuses_a_folder_that_is_not_a_run(runs_folder):
    with pytest.raises(StudioError, match="not a run folder"):
        diff_runs(runs_folder / "base", runs_folder / "cv")
    with pytest.raises(StudioError, match="broken/config.json: unreadable"):
        diff_runs(runs_folder / "base", runs_folder / "broken")


def test_cli_runs_table_sort_filter_and_json(runs_folder, capsys):
    assert main(["runs", str(runs_folder)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["run", "model", "status", "epochs"]
    assert any(ln.startswith("faster ") and "0.7500" in ln for ln in lines)
    assert any(ln.startswith("broken: ") and "unreadable" in ln for ln in lines)

    main(["runs", str(runs_folder), "--sort=-test_accuracy"])
    assert capsys.readouterr().out.splitlines()[1].startswith("faster ")
    main(["runs", str(runs_folder), "--sort", "train.learning_rate", "--json"])
    rows = json.loads(capsys.readouterr().out)
    assert [r["settings"].get("train.learning_rate") for r in rows[:4]] == [0.001, 0.001, 0.01, 0.1]
    assert rows[-1]["status"] == "unreadable"  # no setting: last

    main(["runs", str(runs_folder), "--filter", "fold", "--json"])
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["cv/fold-1", "cv/fold-2"]
    main(["runs", str(runs_folder), "--filter", "train.learning_rate=0.01", "--json"])
    assert [r["name"] for r in json.loads(capsys.readouterr().out)] == ["faster"]
    assert main(["runs", str(runs_folder), "--sort", "no_such_key"]) == 1
    assert "no such column or setting" in capsys.readouterr().err


def test_cli_diff_text_and_json(runs_folder, capsys):
    assert main(["diff", str(runs_folder / "base"), str(runs_folder / "faster")]) == 0
    assert "train.learning_rate" in capsys.readouterr().out
    assert main(["diff", str(runs_folder / "base"), str(runs_folder / "faster"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert {"key": "train.learning_rate", "a": 0.001, "b": 0.01} in d["settings"]
    assert [p["path"] for p in d["changed_predictions"]] == ["cat/a.png", "dog/c.png"]
