"""Evaluation views and calibration: every number on a small example checked by hand, then
``cnnstudio evaluate`` end to end on a tiny trained run."""

import json
import shutil

import numpy as np
import pytest
from coretrain import train
from taskstates import Recording
from tinydata import make_dataset, mislabel_a_validation_image

from cnnstudio.cli import main
from cnnstudio.core.errors import BundleError
from cnnstudio.core.evaluation.calibration import (
    apply_temperature,
    calibration_report,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability,
)
from cnnstudio.core.evaluation.metrics import (
    binary_curves,
    classification_metrics,
    evaluation_report,
    normalized_confusion,
    pr_curve,
    roc_curve,
    top_k_accuracy,
)
from cnnstudio.core.model.bundle import Bundle, set_temperature

# ----------------------------------------------------------------------------- fixed examples

# Six images, three classes. Predicted (argmax): 0, 1, 0, 1, 2, 2.
Y3 = [0, 0, 0, 1, 1, 2]
P3 = [
    [0.7, 0.2, 0.1],  # right
    [0.2, 0.5, 0.3],  # wrong; the true class is third (rank 2)
    [0.6, 0.3, 0.1],  # right
    [0.1, 0.8, 0.1],  # right
    [0.1, 0.3, 0.6],  # wrong; the true class is second (rank 1)
    [0.3, 0.3, 0.4],  # right
]
NAMES3 = ["a", "b", "c"]


def test_confusion_matrix_and_its_normalisation():
    m = classification_metrics(Y3, P3, NAMES3)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    norm = normalized_confusion(m["confusion_matrix"])
    np.testing.assert_allclose(norm, [[2 / 3, 1 / 3, 0], [0, 1 / 2, 1 / 2], [0, 0, 1]])
    # A class with no samples is a row of zeros, not a division by zero.
    assert normalized_confusion([[3, 1], [0, 0]]) == [[0.75, 0.25], [0.0, 0.0]]


def test_per_class_table_and_averages():
    m = classification_metrics(Y3, P3, NAMES3)
    # precision = right / predicted, recall = right / actual
    expect = {"a": (2 / 2, 2 / 3, 3), "b": (1 / 2, 1 / 2, 2), "c": (1 / 2, 1 / 1, 1)}
    for name, (p, r, s) in expect.items():
        row = m["per_class"][name]
        assert row["precision"] == pytest.approx(p) and row["recall"] == pytest.approx(r)
        assert row["f1"] == pytest.approx(2 * p * r / (p + r)) and row["support"] == s
    assert m["macro_avg"]["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["weighted_avg"]["recall"] == pytest.approx((3 * 2 / 3 + 2 * 0.5 + 1 * 1) / 6)  # = accuracy
    assert m["test_accuracy"] == pytest.approx(4 / 6)


def test_top_k_accuracy():
    assert top_k_accuracy(Y3, P3) == pytest.approx({"1": 4 / 6, "2": 5 / 6, "3": 1.0})
    # k stops at five even with more classes; ties go to the lower index, as argmax.
    many = np.full((2, 7), 0.1)
    many[0, 3] = many[0, 5] = 0.2  # tie for first: class 3 wins
    many[1, 3] = 0.5
    assert list(top_k_accuracy([5, 3], many)) == ["1", "2", "3", "4", "5"]
    assert top_k_accuracy([5, 3], many)["1"] == 0.5 and top_k_accuracy([5, 3], many)["2"] == 1.0


# Two classes; the score is the probability of class 1 (the positive class). C and D tie at 0.6.
#        A    B    C    D    F    E
S2 = [0.9, 0.8, 0.6, 0.6, 0.4, 0.3]
Y2 = [1, 0, 1, 0, 1, 0]


def test_roc_curve_and_auc_with_a_tie():
    roc = roc_curve(Y2, S2)
    # One point per distinct threshold: the tie moves C and D together (a diagonal step).
    np.testing.assert_allclose(roc["fpr"], [0, 0, 1 / 3, 2 / 3, 2 / 3, 1])
    np.testing.assert_allclose(roc["tpr"], [0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    assert roc["thresholds"] == [None, 0.9, 0.8, 0.6, 0.4, 0.3]
    # Trapezoids: 1/9 + (1/3 + 2/3) / 2 * 1/3 + 1/3 = 11/18. Pairwise: A beats 3 negatives, C beats
    # E and ties D (1.5), F beats E: 5.5 of 9 pairs.
    assert roc["auc"] == pytest.approx(11 / 18)
    assert roc_curve([1, 1], [0.2, 0.3]) is None  # no negatives: undefined


def test_precision_recall_curve_and_average_precision():
    pr = pr_curve(Y2, S2)
    np.testing.assert_allclose(pr["recall"], [0, 1 / 3, 1 / 3, 2 / 3, 1, 1])
    np.testing.assert_allclose(pr["precision"], [1, 1, 1 / 2, 2 / 4, 3 / 5, 3 / 6])
    # AP = sum (R_i - R_i-1) P_i = 1/3 * 1 + 1/3 * 1/2 + 1/3 * 3/5 = 0.7
    assert pr["average_precision"] == pytest.approx(0.7)
    assert pr_curve([0, 0], [0.2, 0.3]) is None


def test_binary_curves_use_class_one_as_positive():
    probs = np.stack([1 - np.array(S2), S2], axis=1)
    b = binary_curves(Y2, probs, ["cat", "dog"])
    assert b["positive_class"] == "dog"
    assert b["roc_auc"] == pytest.approx(11 / 18) and b["average_precision"] == pytest.approx(0.7)
    assert binary_curves(Y3, P3, NAMES3) is None


# Confidences 0.95 (right), 0.85 (wrong), 0.92 (right), 0.55 (right), 0.45 (wrong).
YC = [0, 0, 1, 2, 1]
PC = [
    [0.95, 0.03, 0.02],
    [0.10, 0.85, 0.05],
    [0.05, 0.92, 0.03],
    [0.25, 0.20, 0.55],
    [0.45, 0.35, 0.20],
]


def test_reliability_bins_and_ece():
    bins = reliability(YC, PC)
    assert len(bins) == 10 and bins[0]["lower"] == 0 and bins[-1]["upper"] == 1
    counts = {i: b["count"] for i, b in enumerate(bins) if b["count"]}
    assert counts == {4: 1, 5: 1, 8: 1, 9: 2}
    assert bins[9]["confidence"] == pytest.approx(0.935) and bins[9]["accuracy"] == 1.0
    assert bins[8]["confidence"] == pytest.approx(0.85) and bins[8]["accuracy"] == 0.0
    assert bins[5]["accuracy"] == 1.0 and bins[4]["accuracy"] == 0.0
    assert bins[0]["confidence"] is None and bins[0]["accuracy"] is None
    # 2/5 * |1 - 0.935| + 1/5 * (0.85 + 0.45 + 0.45)
    assert expected_calibration_error(YC, PC) == pytest.approx(0.376)
    assert calibration_report(YC, PC)["ece"] == pytest.approx(0.376)
    # Two bins: (0, 0.5] has 0.45 (wrong), (0.5, 1] the other four (3 of 4 right, mean 0.8175).
    assert expected_calibration_error(YC, PC, bins=2) == pytest.approx(1 / 5 * 0.45 + 4 / 5 * abs(0.75 - 0.8175))
    assert expected_calibration_error([], np.zeros((0, 3))) is None


def test_evaluation_report_gathers_every_view():
    r = evaluation_report(Y3, P3, NAMES3)
    assert r["class_names"] == NAMES3 and r["binary"] is None
    assert r["top_k_accuracy"]["2"] == pytest.approx(5 / 6)
    assert len(r["confusion_matrix_normalized"]) == 3 and len(r["calibration"]["bins"]) == 10
    json.dumps(r)  # plain JSON data
    json.dumps(evaluation_report(Y2, np.stack([1 - np.array(S2), S2], axis=1), ["x", "y"]))


# ----------------------------------------------------------------------------- temperature


def _softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("t_true", [2.0, 0.6])
def test_temperature_scaling_recovers_a_known_temperature(t_true):
    rng = np.random.default_rng(0)
    z = rng.normal(0, 3, (6000, 4))  # the model's logits
    probs = _softmax(z)  # what the model says
    truth = _softmax(z / t_true)  # how often it is really right
    y = np.array([rng.choice(4, p=p) for p in truth])
    T = fit_temperature(y, probs)
    assert T == pytest.approx(t_true, rel=0.05)
    assert nll(y, probs, T) < nll(y, probs)
    calibrated = apply_temperature(probs, T)
    np.testing.assert_allclose(calibrated, truth, atol=0.05)
    np.testing.assert_array_equal(calibrated.argmax(1), probs.argmax(1))  # never changes the winner
    np.testing.assert_allclose(calibrated.sum(1), 1.0, atol=1e-9)
    assert expected_calibration_error(y, calibrated) < expected_calibration_error(y, probs)


def test_temperature_never_makes_validation_nll_worse():
    rng = np.random.default_rng(1)
    for trial in range(20):
        n, k = int(rng.integers(1, 40)), int(rng.integers(2, 6))
        probs = _softmax(rng.normal(0, rng.uniform(0.1, 5), (n, k)))
        y = rng.integers(0, k, n)
        T = fit_temperature(y, probs)
        assert T > 0 and nll(y, probs, T) <= nll(y, probs) + 1e-12, trial
    assert fit_temperature([], np.zeros((0, 3))) == 1.0


def test_apply_temperature_by_hand():
    p = np.array([[0.8, 0.2]])
    assert apply_temperature(p, 1.0) is p
    # softmax(log p / 2) = sqrt(p) normalised: sqrt(0.8) / (sqrt(0.8) + sqrt(0.2)) = 2/3
    np.testing.assert_allclose(apply_temperature(p, 2.0), [[2 / 3, 1 / 3]])
    # T = 0.5: p^2 normalised = 0.64 / 0.68
    np.testing.assert_allclose(apply_temperature(p, 0.5), [[0.64 / 0.68, 0.04 / 0.68]])
    with pytest.raises(ValueError):
        apply_temperature(p, 0.0)


# ----------------------------------------------------------------------------- bundle and CLI


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("evaluate")
    data = make_dataset(root / "data", classes=("red", "blue"), per_class=12)
    train(data, root / "run", epochs=2)
    return data, root / "run"


@pytest.fixture
def run(trained, tmp_path):
    """A private copy of the trained run (calibration writes into its bundle)."""
    return shutil.copytree(trained[1], tmp_path / "run")


def test_the_bundle_applies_a_stored_temperature(trained, run):
    data, _ = trained
    folder = run / "model"
    before = json.loads((folder / "bundle.json").read_text())
    assert "temperature" not in before and Bundle(folder).temperature == 1.0
    images = np.stack([np.full((16, 16, 3), c, np.uint8) for c in ((220, 40, 40), (40, 60, 220), (120, 50, 130))])
    raw = Bundle(folder).predict_arrays(images)

    assert set_temperature(folder, 2.5) == 2.5
    after = json.loads((folder / "bundle.json").read_text())
    assert after.pop("temperature") == 2.5 and after == before  # everything else kept
    b = Bundle(folder)
    assert b.temperature == 2.5
    np.testing.assert_allclose(b.predict_arrays(images), apply_temperature(raw, 2.5), atol=1e-6)
    np.testing.assert_allclose(b.predict_arrays(images, calibrated=False), raw, atol=1e-6)
    top = b.predict_paths([str(sorted((data / "red").iterdir())[0])], top_k=2)[0]
    assert sum(p for _, p in top.top) == pytest.approx(1.0, abs=1e-5)

    set_temperature(folder, None)
    assert json.loads((folder / "bundle.json").read_text()) == before
    with pytest.raises(BundleError, match="positive"):
        set_temperature(folder, -1)
    (folder / "bundle.json").write_text(json.dumps({**before, "temperature": "hot"}))
    with pytest.raises(BundleError, match="temperature"):
        Bundle(folder)


def test_evaluate_text_report(run, capsys):
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    for text in ("Accuracy", "Confusion matrix", "Normalised", "precision", "macro avg", "weighted avg",
                 "Top-k accuracy: top-1", "top-2", "ROC AUC", "positive class: red", "expected calibration error",
                 "0.90-1.00"):
        assert text in out, text
    assert "missing" not in out


def test_evaluate_json_matches_the_run_and_lists_missing_files(run, trained, tmp_path, capsys):
    data, _ = trained
    metrics = json.loads((run / "metrics.json").read_text())
    config = json.loads((run / "config.json").read_text())
    assert main(["evaluate", str(run), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["class_names"] == ["blue", "red"] and r["temperature"] == 1.0
    assert r["test_images"] == len(config["split"]["test"]) == metrics["test_images"]
    assert r["test_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert r["test_loss"] == pytest.approx(metrics["test_loss"], abs=1e-5)
    assert r["confusion_matrix"] == metrics["confusion_matrix"]
    for row in r["confusion_matrix_normalized"]:
        assert sum(row) == pytest.approx(1.0)
    assert r["top_k_accuracy"]["1"] == pytest.approx(r["test_accuracy"]) and r["top_k_accuracy"]["2"] == 1.0
    b = r["binary"]
    assert b["positive_class"] == "red" and 0 <= b["roc_auc"] <= 1 and 0 <= b["average_precision"] <= 1
    assert b["roc"]["fpr"][0] == 0 and b["roc"]["tpr"][-1] == 1
    assert sum(x["count"] for x in r["calibration"]["bins"]) == r["test_images"]
    assert r["missing_files"] == [] and "calibrate" not in r

    # The dataset moved, and one test file is gone: --data finds it, the file is listed, not fatal.
    moved = shutil.copytree(data, tmp_path / "moved")
    gone = config["split"]["test"][0]
    (moved / gone).unlink()
    assert main(["evaluate", str(run), "--data", str(moved), "--json"]) == 0
    r2 = json.loads(capsys.readouterr().out)
    assert r2["missing_files"] == [gone] and r2["test_images"] == r["test_images"] - 1
    assert r2["dataset_root"] == str(moved)
    assert main(["evaluate", str(run), "--data", str(moved)]) == 0
    assert f"1 of the {r['test_images']} recorded test file(s)" in capsys.readouterr().out


def test_evaluate_calibrate_stores_the_temperature(run, capsys, tmp_path):
    mislabel_a_validation_image(run, tmp_path / "data")  # one sure mistake: a temperature inside its range
    assert main(["evaluate", str(run), "--calibrate", "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    c = r["calibrate"]
    T = json.loads((run / "model" / "bundle.json").read_text())["temperature"]
    assert T == c["temperature"] == r["temperature"] and T > 0 and c["previous_temperature"] == 1.0
    assert c["val_nll_after"] <= c["val_nll_before"]
    assert c["test_ece_after"] == pytest.approx(r["calibration"]["ece"])
    assert c["test_ece_before"] is not None and c["val_images"] > 0
    assert main(["evaluate", str(run), "--calibrate"]) == 0  # text: before and after
    out = capsys.readouterr().out
    assert "fitted on" in out and "Test ECE" in out and "before (temperature 1)" in out
    assert main(["evaluate", str(run)]) == 0  # later evaluations use the stored temperature
    T = json.loads((run / "model" / "bundle.json").read_text())["temperature"]
    assert f"temperature {T:.4g}" in capsys.readouterr().out.splitlines()[0]

    assert main(["evaluate", str(run), "--uncalibrate", "--json"]) == 0  # and back to the model's own
    r = json.loads(capsys.readouterr().out)
    assert r["temperature"] == 1.0 and "temperature" not in json.loads((run / "model" / "bundle.json").read_text())
    assert r["calibration"]["ece"] == pytest.approx(c["test_ece_before"])
    with pytest.raises(SystemExit):
        main(["evaluate", str(run), "--calibrate", "--uncalibrate"])


@pytest.mark.parametrize("fitted, reason", [
    (0.05, "stopped at the edge of its range"),  # every later prediction would read close to 100 %
    (20.0, "stopped at the edge of its range"),
    (1.0, "no temperature lowers the validation NLL"),  # the fit found nothing better than T = 1
])
def test_evaluate_calibrate_refuses_a_temperature_at_the_edge_or_no_better(run, capsys, monkeypatch, fitted, reason):
    import cnnstudio.core.runs.evaluate as runs_evaluate

    set_temperature(run / "model", 1.7)  # an earlier fit: kept as it is
    before = (run / "model" / "bundle.json").read_text()
    monkeypatch.setattr(runs_evaluate, "fit_temperature", lambda y, probs: fitted)
    code = main(["evaluate", str(run), "--calibrate"])
    err = capsys.readouterr().err.strip()
    assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert reason in err and str(run / "model") in err and "unchanged" in err
    assert (run / "model" / "bundle.json").read_text() == before


def test_a_fit_that_makes_the_validation_nll_worse_is_refused():
    from cnnstudio.core.evaluation.calibration import refusal

    assert refusal(1.3, 0.40, 0.35, 10) is None
    assert "no temperature lowers the validation NLL below the model's own (0.4000" in refusal(1.3, 0.40, 0.45, 10)
    assert "0.05 stopped at the edge" in refusal(0.05, 0.40, 0.01, 10)


def test_evaluate_errors_are_one_line_and_exit_1(run, tmp_path, capsys):
    def error(*args):
        code = main(["evaluate", *map(str, args)])
        err = capsys.readouterr().err.strip()
        assert code == 1 and len(err.splitlines()) == 1 and "Traceback" not in err, err
        return err

    assert "no such run folder" in error(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "not a run folder" in error(tmp_path / "empty")
    assert "nowhere: no such folder" in error(run, "--data", tmp_path / "nowhere")
    config = json.loads((run / "config.json").read_text())
    config["dataset"]["root"] = str(tmp_path / "gone")
    (run / "config.json").write_text(json.dumps(config))
    assert "dataset folder is not there; pass --data DIR" in error(run)
    config = json.loads((run / "config.json").read_text())
    config["split"]["test"] = []
    (run / "config.json").write_text(json.dumps(config))
    assert "no test split" in error(run)
    shutil.rmtree(run / "model")
    assert "no model bundle" in error(run)
    assert "--bins" in error(run, "--bins", 0)


def test_evaluate_run_reports_the_scan_and_the_predictions_and_a_stop_raises_cancelled(run, tmp_path):
    from cnnstudio.core.errors import Cancelled
    from cnnstudio.core.runs.evaluate import calibrate_bundle, evaluate_run

    mislabel_a_validation_image(run, tmp_path / "data")  # a temperature the fit may store
    state = Recording()
    ev = evaluate_run(run, batch_size=2, state=state)
    n = len(ev.raw.y_true)
    assert state.of("scanning")[-1] == (24, 24)
    assert state.of("evaluating the test images")[-1] == (n, n) and len(state.of("evaluating the test images")) > 1
    calibrate_bundle(ev.bundle, ev.index, ev.val_paths, ev.raw, batch_size=2, state=state)
    v = len(ev.val_paths)
    assert state.of("evaluating the validation images")[-1] == (v, v)

    stopping = Recording(stop_after=1, stop_task="evaluating the test images")
    with pytest.raises(Cancelled, match="stopped while evaluating the test images"):
        evaluate_run(run, batch_size=2, state=stopping)
    assert len(stopping.of("evaluating the test images")) == 1


def test_evaluate_has_help():
    with pytest.raises(SystemExit) as exc:
        main(["evaluate", "--help"])
    assert exc.value.code == 0
