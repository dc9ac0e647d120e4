import csv
import json
import shutil

import numpy as np
import pytest
from coretrain import train
from PIL import Image
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.cli import main
from cnnstudio.core.data.dataset import Split, scan_dataset
from cnnstudio.core.data.fingerprint import dataset_fingerprint, fingerprint_changes
from cnnstudio.core.errors import StudioError
from cnnstudio.core.experiments.reproduce import rerun
from cnnstudio.core.runs.compare import diff_runs


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("reproduce") / "data", per_class=10, size=16)


@pytest.fixture(scope="module")
def original(data, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "original"
    train(data, run, epochs=2)
    return run


def config_of(run):
    return json.loads((run / "config.json").read_text())


def predicted(run):
    with open(run / "predictions.csv", newline="") as f:
        return {row["path"]: row["predicted"] for row in csv.DictReader(f)}


def repaint(path):
    """Change a file's pixels, keeping it a valid image of the same name and size."""
    pixels = np.asarray(Image.open(path).convert("RGB")).copy()
    pixels[0, 0] = 255 - pixels[0, 0]
    Image.fromarray(pixels).save(path)


def test_config_records_the_fingerprint_of_the_split_files_and_the_seeds(data, original):
    config = config_of(original)
    assert config["seeds"] == {"split": 0, "training": 1}
    fp = config["fingerprint"]
    used = config["split"]["train"] + config["split"]["val"] + config["split"]["test"]
    assert fp["files"] == len(used) == 30 and sorted(fp["contents"]) == sorted(used)
    assert len(fp["sha256"]) == 64
    index = scan_dataset(data)
    assert dataset_fingerprint(index, Split.from_dict(config["split"], index))["sha256"] == fp["sha256"]


def test_the_fingerprint_changes_with_a_file_and_names_it(data, original, tmp_path):
    copy = shutil.copytree(data, tmp_path / "data")
    recorded = config_of(original)["fingerprint"]
    assert fingerprint_changes(recorded, scan_dataset(copy)) == []
    victim = config_of(original)["split"]["train"][0]
    repaint(copy / victim)
    index = scan_dataset(copy)
    assert fingerprint_changes(recorded, index) == [(victim, "content changed")]
    split = Split.from_dict(config_of(original)["split"], index)
    assert dataset_fingerprint(index, split)["sha256"] != recorded["sha256"]


def test_rerun_gives_the_same_losses_and_test_predictions(original, tmp_path):
    again = tmp_path / "again"
    result = rerun(original, again, load_registry())
    assert result.reason == "completed"
    first = json.loads((original / "checkpoints" / "state.json").read_text())["history"]
    assert [r["epoch"] for r in result.history] == [r["epoch"] for r in first] == [1, 2]
    for a, b in zip(first, result.history):
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            assert b[key] == pytest.approx(a[key], abs=1e-5), key
    assert predicted(again) == predicted(original)

    config = config_of(again)
    assert config["reproduces"] == str(original.resolve())
    assert config["fingerprint"]["sha256"] == config_of(original)["fingerprint"]["sha256"]
    diff = diff_runs(original, again)
    assert [key for key, _, _ in diff.settings] == ["reproduces"] and diff.changed_predictions == []


def test_rerun_refuses_changed_or_missing_files_naming_them(data, original, tmp_path):
    copy = shutil.copytree(data, tmp_path / "data")
    split = config_of(original)["split"]
    changed, gone = split["train"][0], split["test"][0]
    repaint(copy / changed)
    (copy / gone).unlink()
    with pytest.raises(StudioError) as exc:
        rerun(original, tmp_path / "again", load_registry(), data_dir=copy)
    message = str(exc.value)
    assert "2 of the run's 30 files differ" in message
    assert f"{changed} (content changed)" in message and f"{gone} (missing" in message
    assert not (tmp_path / "again").exists()


def test_cli_rerun_on_a_moved_folder_with_a_class_added_shows_both_test_accuracies(data, original, tmp_path, capsys):
    copy = shutil.copytree(data, tmp_path / "moved")
    make_dataset(copy, classes=("yellow",), per_class=3, size=16)  # not one of the run's classes: left out
    assert main(["rerun", str(original), "--out", str(tmp_path / "again"), "--data", str(copy)]) == 0
    out = capsys.readouterr().out
    header, *rows = out.splitlines()
    assert header.split() == ["original", "rerun"]
    accuracy = next(r for r in rows if r.startswith("test_accuracy")).split()
    assert accuracy[1] == accuracy[2]  # the same number twice
    assert "Largest difference of the training loss over 2 epoch(s): 0" in out
    assert "Test predictions that changed: 0 of 6" in out
    assert config_of(tmp_path / "again")["dataset"]["class_names"] == ["blue", "green", "red"]
    assert main(["rerun", str(original), "--out", str(tmp_path / "again")]) == 1
    assert "already holds a run" in capsys.readouterr().err


def test_a_stop_during_the_reruns_scan_raises_cancelled_and_trains_nothing(original, tmp_path):
    from coretrain import RecordingState

    from cnnstudio.core.errors import Cancelled

    class StopAtOnce(RecordingState):
        def should_stop(self):
            return True  # asked first by the scan, between its batches of files

    state = StopAtOnce()
    with pytest.raises(Cancelled, match="stopped while scanning the dataset"):
        rerun(original, tmp_path / "again", load_registry(), state=state)
    assert not (tmp_path / "again").exists() and state.events == []  # no training began
