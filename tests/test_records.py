"""The one reader of a run's records: what the writers wrote reads back the same, and a damaged
record is refused in one line naming the file and what is wrong (never read as 0, never skipped)."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from cnnstudio.cli import main
from cnnstudio.core.errors import RecordError
from cnnstudio.core.evaluation.metrics import EvalResult, classification_metrics
from cnnstudio.core.io.atomic import atomic_write_json
from cnnstudio.core.runs import records
from cnnstudio.core.runs.folder import RunPaths, write_history, write_predictions
from cnnstudio.core.runs.restore import read_record

CLASSES = ["cat", "dog", "owl"]
PATHS = ["cat/a.png", "cat/b.png", "dog/c.png", "owl/d.png"]
Y_TRUE = np.array([0, 0, 1, 2])
PROBS = np.array([[0.8, 0.15, 0.05], [0.3, 0.6, 0.1], [0.1, 0.85, 0.05], [0.25, 0.25, 0.5]])
HISTORY = [
    {"epoch": 1, "loss": 1.2, "accuracy": 0.4, "val_loss": 1.1, "val_accuracy": 0.5, "seconds": 2.5, "phase": "train"},
    {"epoch": 2, "loss": 0.7, "accuracy": 0.75, "val_loss": 0.9, "val_accuracy": 0.625, "seconds": 2.25,
     "phase": "finetune"},
]
SKIPPED = [{"path": "owl/broken.png", "reason": "truncated or corrupt"}]


def write_run(folder):
    """A finished run's records, written by the run folder's own writers (no model needed)."""
    p = RunPaths(folder)
    atomic_write_json(p.config, {
        "format": 1, "dataset": {"root": str(folder / "data"), "class_names": CLASSES, "counts": [2, 1, 1]},
        "split": {"seed": 0, "train": ["cat/x.png"], "val": ["dog/y.png"], "test": PATHS},
        "spec": {"backbone": "scratch"}, "train": {"epochs": 2, "monitor": "val_loss"},
    })
    write_history(p, HISTORY)
    write_predictions(p, EvalResult(CLASSES, PATHS, Y_TRUE, PROBS, []))
    metrics = classification_metrics(Y_TRUE, PROBS, CLASSES)
    atomic_write_json(p.metrics, {"status": "completed", "epochs_run": 2, "train_seconds": 4.75,
                                  "class_names": CLASSES, "best_epoch": 2, **metrics})
    atomic_write_json(p.problems, {"skipped_during_training": SKIPPED})
    return folder


@pytest.fixture
def run(tmp_path):
    return write_run(tmp_path / "run")


def test_a_well_formed_run_reads_back_what_was_written(run):
    r = records.RunRecords(run)
    assert r.config["split"]["test"] == PATHS and r.class_names == CLASSES
    assert r.metrics["status"] == "completed" and r.metrics["test_images"] == 4
    assert r.metrics["confusion_matrix"] == classification_metrics(Y_TRUE, PROBS, CLASSES)["confusion_matrix"]
    assert r.history == HISTORY  # epochs as whole numbers, the phase as text
    assert r.problems == SKIPPED

    p = r.predictions
    assert [x.path for x in p.rows] == PATHS and p.y_true().tolist() == Y_TRUE.tolist()
    assert p.probs.shape == (4, 3) and np.allclose(p.probs, PROBS, atol=1e-6)
    assert [x.predicted for x in p.rows] == ["cat", "dog", "dog", "owl"]
    assert [x.correct for x in p.rows] == [True, False, True, True]
    assert [x.confidence for x in p.rows] == pytest.approx([0.8, 0.6, 0.85, 0.5])
    assert p.rows[1].loss == pytest.approx(-math.log(0.3))  # the true class's probability


def test_optional_records_of_an_unfinished_run_read_as_nothing(tmp_path):
    folder = tmp_path / "unfinished"
    folder.mkdir()
    with pytest.raises(RecordError, match="unfinished: not a run folder"):
        records.read_config(folder)
    assert records.read_metrics(folder) is None and records.read_history(folder) == []
    assert records.read_predictions(folder, CLASSES) is None and records.read_problems(folder) == []


def test_a_diverged_training_keeps_its_nan_losses(run):
    """NaN that records what happened (a loss that diverged) is read as NaN, not refused."""
    p = RunPaths(run)
    write_history(p, [{"epoch": 1, "loss": float("nan"), "val_loss": float("nan"), "val_accuracy": 0.25}])
    metrics = json.loads(p.metrics.read_text())
    atomic_write_json(p.metrics, {**metrics, "test_loss": float("nan")})
    assert math.isnan(records.read_history(run)[0]["loss"])
    assert math.isnan(records.read_metrics(run)["test_loss"])


def _rewrite_csv(path, old, new):
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} is not in {path}: the damage would not be made"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


DAMAGE = {
    # record: [(how the file is damaged, what the one line says)]
    "config": [
        (lambda p: p.write_text('{"spec": '), "unreadable (not JSON: Expecting value at line 1"),
        (lambda p: p.write_text("[1, 2]"), "not a JSON object (it holds a list)"),
        (lambda p: _edit_json(p, lambda d: d.update(train="fast")), "'train' is not an object"),
        (lambda p: _edit_json(p, lambda d: d["dataset"].update(class_names="cat")),
         "dataset.class_names is not a list of class names"),
        (lambda p: _edit_json(p, lambda d: d["split"].update(test=[1, 2])), "split.test is not a list of file paths"),
    ],
    "metrics": [
        (lambda p: p.write_text("not json"), "unreadable (not JSON"),
        (lambda p: _edit_json(p, lambda d: d.update(test_accuracy="0.75")),
         "test_accuracy is '0.75', not a number from 0 to 1"),
        (lambda p: p.write_text(p.read_text().replace('"test_accuracy": 0.75', '"test_accuracy": NaN')),
         "test_accuracy is nan, not a number from 0 to 1"),
        (lambda p: _edit_json(p, lambda d: d.update(epochs_run=-1)), "epochs_run is -1, not a count"),
        (lambda p: _edit_json(p, lambda d: d["confusion_matrix"].pop()),
         "confusion_matrix is not 3 rows of 3 counts"),
        (lambda p: _edit_json(p, lambda d: d.update(class_names=["cat", "cat", "owl"])),
         "class_names names class 'cat' twice"),
    ],
    "history": [
        (lambda p: _rewrite_csv(p, "epoch,", "round,"), "the header has no 'epoch' column"),
        (lambda p: _rewrite_csv(p, "\n2,0.7,", "\n2,low,"), "row 3: loss is 'low', not a number"),
        (lambda p: _rewrite_csv(p, "\n2,", "\nnan,"), "row 3: epoch is 'nan', not an epoch number"),
        (lambda p: _rewrite_csv(p, ",train\n", "\n"), "row 2: 6 fields, the header has 7"),
        (lambda p: p.write_bytes(b"epoch,loss\n1,\xff\n"), "unreadable (not UTF-8 text"),
    ],
    "predictions": [
        (lambda p: _rewrite_csv(p, "cat/b.png,cat,dog,0.600000", "cat/b.png,cat,dog,high"),
         "row 3: confidence is 'high', not a number"),
        (lambda p: _rewrite_csv(p, "cat/b.png,cat,dog,0.600000", "cat/b.png,cat,dog,nan"),
         "row 3: confidence is nan: the model's outputs are not numbers (its training diverged; "
         "train it again with a lower learning rate)"),
        (lambda p: _rewrite_csv(p, "cat/b.png,cat,dog,0.600000", "cat/b.png,cat,dog,1.5"),
         "row 3: confidence is 1.5, not a number from 0 to 1"),
        (lambda p: _rewrite_csv(p, "dog/c.png,dog,dog", "dog/c.png,dog,bird"),
         "row 4: predicted class 'bird' is not one of the run's classes (cat, dog, owl)"),
        (lambda p: _rewrite_csv(p, "confidence", "certainty"), "the header has no 'confidence' column"),
        (lambda p: _rewrite_csv(p, "p_owl", "p_bird"), "column 'p_bird' is for a class the run does not have"),
        (lambda p: _rewrite_csv(p, "dog/c.png", "cat/a.png"), "row 4: cat/a.png is listed twice (also row 2)"),
        (lambda p: _rewrite_csv(p, "dog/c.png", "../../secret/c.png"),
         "row 4: '../../secret/c.png' is not a path inside the dataset folder"),
        (lambda p: _rewrite_csv(p, "dog/c.png", "/etc/c.png"), "row 4: '/etc/c.png' is not a path inside the dataset folder"),
        (lambda p: _rewrite_csv(p, "0.850000,0.050000\n", "0.850000,\n"), "row 4: p_owl is '', not a number"),
        (lambda p: _rewrite_csv(p, ",0.050000\n", "\n"), "row 2: 7 fields, the header has 8"),
    ],
    "problems": [
        (lambda p: p.write_text('"skipped"'), "not a JSON object (it holds a str)"),
        (lambda p: p.write_text('{"skipped_during_training": [{"path": "owl/x.png"}]}'),
         "skipped file 1 has no path and reason"),
    ],
}
CASES = [(kind, i) for kind, cases in DAMAGE.items() for i in range(len(cases))]


@pytest.mark.parametrize(("kind", "case"), CASES, ids=[f"{k}-{i}" for k, i in CASES])
def test_a_damaged_record_is_refused_in_one_line_naming_the_file(run, kind, case):
    damage, said = DAMAGE[kind][case]
    path = getattr(RunPaths(run), kind)
    damage(path)
    with pytest.raises(RecordError) as exc:
        getattr(records.RunRecords(run), kind)
    message = str(exc.value)
    assert message.startswith(f"{path}: ") and said in message, message
    assert "\n" not in message


def test_the_restore_record_is_checked_on_top_of_the_config(run):
    assert read_record(run)["dataset"]["class_names"] == CLASSES
    _edit_json(RunPaths(run).config, lambda d: d.pop("spec"))
    with pytest.raises(RecordError, match=r"config.json: unreadable run record \(no 'spec' section\)"):
        read_record(run)


def test_open_finished_run_names_the_damaged_config_in_the_callers_error(run):
    from cnnstudio.core.errors import BundleError

    RunPaths(run).config.write_text("{")
    with pytest.raises(BundleError, match=r"config.json: unreadable \(not JSON"):
        records.open_finished_run(run, BundleError)


def test_is_run_tells_a_run_from_another_tools_config_and_a_damaged_run(tmp_path, run):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "config.json").write_text('["not", "a", "run"]')
    assert records.is_run(run) is True and records.is_run(other) is False
    assert records.is_run(tmp_path / "empty") is False
    _edit_json(RunPaths(run).config, lambda d: d.update(split="all"))
    assert records.is_run(run) is None


def test_cli_diff_and_report_on_a_corrupted_predictions_file_say_so_in_one_line(tmp_path, capsys):
    a, b = write_run(tmp_path / "a"), write_run(tmp_path / "b")
    assert main(["diff", str(a), str(b)]) == 0  # the records are fine: the failure below is the damage
    capsys.readouterr()
    predictions = RunPaths(b).predictions
    _rewrite_csv(predictions, "owl/d.png,owl,owl,0.500000", "owl/d.png,owl,owl,lots")
    assert main(["diff", str(a), str(b)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == f"cnnstudio diff: error: {predictions}: row 5: confidence is 'lots', not a number"

    # the report, in a process of its own as a user runs it
    out = subprocess.run([sys.executable, "-m", "cnnstudio", "report", str(b)], capture_output=True, text=True)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"cnnstudio report: error: {predictions}: row 5: confidence is 'lots', not a number"]
    assert not (b / "report.html").exists()


def test_cli_report_of_a_well_formed_run_without_a_model(run, capsys):
    """The report reads the records through the same reader (the model only adds parameter counts)."""
    assert main(["report", str(run)]) == 0
    html = (run / "report.html").read_text(encoding="utf-8")
    assert "cat/b.png" in html and "owl/broken.png" in html  # the mistake, and the skipped file
    assert "Expected calibration error" in html
