import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import json
import shutil
from pathlib import Path

import pytest
from helpers import make_session, trained_run
from PySide6.QtCore import Qt
from tinydata import mislabel_a_validation_image

from cnnstudio.gui.panels.evaluate import EvaluatePanel


@pytest.fixture
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture
def panel(qtbot, run, data_dir):
    data, _ = run
    panel = EvaluatePanel(make_session(data))
    qtbot.addWidget(panel)
    panel.resize(1100, 800)
    return panel


def expected_cell(run_dir, true, predicted):
    with open(run_dir / "predictions.csv", newline="") as f:
        return sorted(r["path"] for r in csv.DictReader(f) if r["true"] == true and r["predicted"] == predicted)


def test_shows_the_metrics_matrix_and_table_of_the_current_run(panel, run):
    _, run_dir = run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    panel.session.add_run(run_dir, {"test_accuracy": metrics["test_accuracy"]})

    assert panel.run_combo.currentData() == str(run_dir)
    cm = metrics["confusion_matrix"]
    k = len(metrics["class_names"])
    assert panel.matrix_plot.matrix.tolist() == cm
    assert [t.toPlainText() for t in panel.matrix_plot._texts] == [str(n) for row in cm for n in row]
    assert panel.matrix_plot.image.image.shape == (k, k)
    assert panel.stats["accuracy"].value.text() == f"{metrics['test_accuracy']:.2%}"
    assert panel.stats["images"].value.text() == str(metrics["test_images"]) == str(sum(map(sum, cm)))
    assert panel.table.rowCount() == k + 2
    for r, name in enumerate(metrics["class_names"]):
        assert panel.table.item(r, 0).text() == name
        assert panel.table.item(r, 4).text() == str(sum(cm[r]))
        assert panel.table.item(r, 3).text() == f"{metrics['per_class'][name]['f1']:.3f}"
    assert panel.table.item(k, 0).text() == "macro avg"
    assert panel.table.item(k + 1, 2).text() == f"{metrics['weighted_avg']['recall']:.3f}"


def test_clicking_a_cell_lists_its_images(qtbot, panel, run):
    _, run_dir = run
    panel.session.add_run(run_dir)
    panel.show()
    qtbot.waitExposed(panel)
    names = panel.report.class_names
    cm = panel.matrix_plot.matrix
    row = int(cm.diagonal().argmax())

    qtbot.mouseClick(panel.matrix_plot.viewport(), Qt.MouseButton.LeftButton,
                     pos=panel.matrix_plot.cell_center(row, row))
    assert panel.matrix_plot.selected == (row, row)
    expected = expected_cell(run_dir, names[row], names[row])
    assert len(expected) == cm[row, row] > 0
    assert sorted(panel.cell_paths()) == expected
    qtbot.waitUntil(lambda: panel.thumbnails_shown == panel.cell_list.count())
    assert "(missing)" not in panel.cell_list.item(0).text()
    assert panel.cell_list.iconSize().width() >= 128 and panel.wrong_list.iconSize().width() >= 96  # big enough to see

    for r in range(len(names)):  # every cell, empty ones included, lists exactly its images
        for c in range(len(names)):
            panel.show_cell(r, c)
            assert sorted(panel.cell_paths()) == expected_cell(run_dir, names[r], names[c])
            assert f": {cm[r, c]} image(s)" in panel.cell_label.text()


def test_the_run_selector_and_the_session_follow_each_other(panel, run, tmp_path):
    _, run_dir = run
    other = tmp_path / "other-run"
    shutil.copytree(run_dir, other)
    unfinished = tmp_path / "unfinished-run"
    unfinished.mkdir()
    session = panel.session
    session.add_run(run_dir)
    session.add_run(other)
    session.add_run(unfinished)
    assert panel.report is None and "no results" in panel.message.text()

    panel.run_combo.setCurrentIndex(panel.run_combo.findData(str(other)))
    assert session.current_run == str(other)
    assert panel.report.run_dir == other

    session.select_run(str(run_dir))
    assert panel.run_combo.currentData() == str(run_dir)
    assert panel.report.run_dir == run_dir

    session.select_run("")
    assert panel.report is None and panel.table.rowCount() == 0


# -- the evaluation views and the misclassified browser ---------------------------------------


def fake_run(tmp_path, classes, y_true, probs, name="run"):
    """A run folder with what the panel reads (no model): metrics, predictions, the dataset root."""
    import numpy as np
    from PIL import Image

    from cnnstudio.core.evaluation.metrics import EvalResult, classification_metrics
    from cnnstudio.core.runs.folder import RunPaths, write_predictions

    data = tmp_path / f"{name}-data"
    paths = []
    for i, t in enumerate(y_true):
        rel = f"{classes[t]}/img_{i:03d}.png"
        (data / classes[t]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((12, 12, 3), 40 * (t + 1), np.uint8)).save(data / rel)
        paths.append(rel)
    for c in classes:
        (data / c).mkdir(parents=True, exist_ok=True)
    run = tmp_path / name
    run.mkdir()
    probs = np.asarray(probs, float)
    metrics = classification_metrics(y_true, probs, classes)
    metrics.update(class_names=list(classes), status="completed", epochs_run=1)
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "config.json").write_text(json.dumps({"dataset": {"root": str(data)}}))
    write_predictions(RunPaths(run), EvalResult(list(classes), paths, np.asarray(y_true), probs, []))
    return data, run


def three_class_run(tmp_path):
    y = [0, 0, 0, 1, 1, 1, 2, 2, 2, 0]
    probs = [[.9, .05, .05], [.2, .7, .1], [.6, .3, .1], [.1, .8, .1], [.3, .3, .4], [.05, .9, .05],
             [.1, .1, .8], [.55, .05, .4], [.2, .2, .6], [.1, .1, .8]]
    return fake_run(tmp_path, ["a", "b", "c"], y, probs)


def test_normalised_toggle_shows_each_rows_share(panel, run):
    _, run_dir = run
    panel.session.add_run(run_dir)
    cm = json.loads((run_dir / "metrics.json").read_text())["confusion_matrix"]
    counts = [str(n) for row in cm for n in row]
    assert panel.matrix_plot.cell_texts() == counts
    panel.normalized_check.setChecked(True)
    shares = [f"{n / sum(row):.2f}" if sum(row) else "0.00" for row in cm for n in row]
    assert panel.matrix_plot.cell_texts() == shares
    for r in range(len(cm)):  # each true class's row sums to 1
        assert abs(sum(float(t) for t in shares[r * len(cm):(r + 1) * len(cm)]) - 1) < 0.02
    panel.normalized_check.setChecked(False)
    assert panel.matrix_plot.cell_texts() == counts
    assert panel.matrix_plot.image.image.shape == (len(cm), len(cm))


def test_misclassified_sorted_by_confidence_with_topk_and_calibration(qtbot, tmp_path):
    from helpers import make_session

    from cnnstudio.core.evaluation.calibration import expected_calibration_error
    from cnnstudio.core.evaluation.metrics import top_k_accuracy

    _, run_dir = three_class_run(tmp_path)
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    with open(run_dir / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    wrong = [r for r in rows if r["true"] != r["predicted"]]
    assert len(wrong) == 4 and panel.wrong_list.count() == len(wrong)
    assert sorted(panel.misclassified_paths()) == sorted(r["path"] for r in wrong)
    conf = [r.confidence for r in panel.wrong_rows]
    assert conf == sorted(conf, reverse=True)
    assert panel.misclassified_paths()[0] == "a/img_009.png"  # 0.8 sure of c

    panel.wrong_sort.setCurrentIndex(panel.wrong_sort.findData("loss"))
    losses = [r.loss for r in panel.wrong_rows]
    assert losses == sorted(losses, reverse=True) and panel.wrong_list.count() == 4

    import numpy as np
    y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    probs = np.array([[float(r[f"p_{c}"]) for c in "abc"] for r in rows])
    topk = top_k_accuracy(y, probs)
    assert f"top-2 {topk['2']:.1%}" in panel.topk_label.text()
    ece = expected_calibration_error(y, probs)
    assert f"{ece:.4f}" in panel.calibration_label.text()
    assert f"{ece:.3f}" in panel.reliability_plot.getPlotItem().titleLabel.text
    assert sum(b["count"] for b in panel.reliability_plot.bins) == 10
    assert not panel.tabs.isTabEnabled(panel.curves_tab)  # three classes: no ROC / PR


def test_two_classes_show_roc_and_pr(qtbot, tmp_path):
    from helpers import make_session

    from cnnstudio.core.evaluation.metrics import binary_curves

    y = [0, 0, 0, 1, 1, 1]
    probs = [[.9, .1], [.6, .4], [.3, .7], [.2, .8], [.55, .45], [.1, .9]]
    _, run_dir = fake_run(tmp_path, ["neg", "pos"], y, probs)
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    curves = binary_curves(y, probs, ["neg", "pos"])
    assert panel.tabs.isTabEnabled(panel.curves_tab)
    assert f"AUC {curves['roc_auc']:.3f}" in panel.roc_plot.getPlotItem().titleLabel.text
    assert f"AP {curves['average_precision']:.3f}" in panel.pr_plot.getPlotItem().titleLabel.text
    assert list(panel.roc_plot.curve.getData()[0]) == curves["roc"]["fpr"]
    assert list(panel.pr_plot.curve.getData()[1]) == curves["pr"]["precision"]
    assert panel.topk_label.text() == ""


def test_move_to_class_and_undo(qtbot, tmp_path, monkeypatch):
    from helpers import make_session

    from cnnstudio.gui.panels import evaluate as evaluate_panel
    from cnnstudio.gui.widgets import common as widgets

    data, run_dir = three_class_run(tmp_path)
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    before = sorted(p.relative_to(data) for p in data.rglob("*"))
    panel.wrong_list.setCurrentRow(0)
    assert panel.selected_row().path == "a/img_009.png"
    assert not panel.undo_button.isEnabled()

    shown = []
    monkeypatch.setattr(widgets, "show_in_folder", shown.append)
    panel.show_button.click()
    assert shown == [data / "a" / "img_009.png"]

    asked = []
    monkeypatch.setattr(evaluate_panel, "choose_class",
                        lambda parent, names, current: asked.append((names, current)) or "c")
    edited = []
    panel.session.datasetEdited.connect(lambda root, _what: edited.append(root))
    panel.move_button.click()
    assert asked == [(["a", "b", "c"], "a")]
    assert not (data / "a" / "img_009.png").exists() and (data / "c" / "img_009.png").is_file()
    item = panel.wrong_list.item(0)
    assert "moved to c" in item.text() and item.font().italic()
    assert not panel.move_button.isEnabled() and panel.undo_button.isEnabled()
    assert "rescan" in panel.move_hint.text() and edited == [str(data)]
    shown.clear()
    panel.show_button.click()
    assert shown == [data / "c" / "img_009.png"]

    panel.undo_button.click()
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert "moved" not in panel.wrong_list.item(0).text() and not panel.wrong_list.item(0).font().italic()
    assert not panel.undo_button.isEnabled() and panel.move_button.isEnabled()

    panel.move_button.click()
    assert (data / "c" / "img_009.png").is_file()
    panel.undo_move()
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before

    # The journal is saved with the project: after a restart the move can still be undone.
    panel.move_button.click()
    assert panel.session.modified
    project = tmp_path / "p.cnnstudio.json"
    panel.session.save_project(project)
    later = EvaluatePanel(make_session())
    qtbot.addWidget(later)
    later.session.load_project(project)
    assert later.report is not None and "moved to c" in later.wrong_list.item(0).text()
    assert later.undo_button.isEnabled() and later.undo_button.text() == "Undo Move of img_009.png"
    later.undo_button.click()
    assert sorted(p.relative_to(data) for p in data.rglob("*")) == before
    assert later.session.moves == [] and not later.undo_button.isEnabled()


def test_misclassified_preview_and_gradcam(qtbot, panel, run, tmp_path):
    _, run_dir = run
    copy = tmp_path / "run-copy"
    shutil.copytree(run_dir, copy)
    with open(copy / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    names = json.loads((copy / "metrics.json").read_text())["class_names"]
    if all(r["true"] == r["predicted"] for r in rows):  # a tiny run gets everything right: make one wrong
        rows[0]["predicted"] = next(n for n in names if n != rows[0]["true"])
    with open(copy / "predictions.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    panel.load_run(str(copy))
    wrong = [r for r in rows if r["true"] != r["predicted"]]
    assert panel.wrong_list.count() == len(wrong) > 0
    panel.wrong_list.setCurrentRow(0)
    qtbot.waitUntil(lambda: panel.preview.pixmap() is not None and not panel.preview.pixmap().isNull())
    panel.gradcam_check.setChecked(True)
    qtbot.waitUntil(lambda: panel.gradcam_shown is not None, timeout=60_000)
    assert panel.gradcam_shown.endswith(Path(panel.selected_row().path).name)
    assert not panel.preview.pixmap().isNull()


def test_fit_temperature_stores_it_in_the_bundle_and_remove_takes_it_back(qtbot, tmp_path, run, shown_errors):
    from helpers import make_session

    from cnnstudio.core.evaluation.calibration import apply_temperature, calibration_report
    from cnnstudio.core.model.bundle import Bundle

    _, shared = run
    run_dir = shutil.copytree(shared, tmp_path / "run")  # the fit writes into the bundle
    mislabel_a_validation_image(run_dir, tmp_path / "data")  # one sure mistake: a temperature inside its range
    meta = run_dir / "model" / "bundle.json"
    loaded = Bundle(run_dir / "model")  # as the Predict panel holds it
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    panel.tabs.setCurrentIndex(panel.calibration_tab)
    assert panel.fit_button.isEnabled() and not panel.remove_temperature_button.isEnabled()
    assert "Fit Temperature" in panel.calibration_label.text()
    y, probs = panel.report.y_true(), panel.report.probs
    own = calibration_report(y, probs)["ece"]

    worker = panel.fit_temperature()
    assert worker is not None and not panel.fit_button.isEnabled() and panel.fit_button.text() == "Fitting\u2026"
    qtbot.waitUntil(lambda: panel.calibration_worker is None, timeout=60_000)
    assert shown_errors == [] and panel.calibration_error.isHidden()
    T = json.loads(meta.read_text())["temperature"]
    assert T != 1.0 and panel.report.temperature == T
    c = panel.last_calibration
    assert c["val_images"] == panel.report.val_files > 0 and c["val_nll_after"] <= c["val_nll_before"]
    scaled = calibration_report(y, apply_temperature(probs, T))["ece"]
    text = panel.calibration_label.text()
    assert f"temperature {T:.4f}" in text and f"{scaled:.4f}" in text and f"{own:.4f} without it" in text
    assert f"{scaled:.3f}" in panel.reliability_plot.getPlotItem().titleLabel.text
    assert loaded.refresh_temperature() and loaded.temperature == T  # a loaded bundle sees the new one
    assert panel.remove_temperature_button.isEnabled()

    panel.load_run(str(run_dir))  # shown again later: still says what the bundle applies
    assert f"temperature {T:.4f}" in panel.calibration_label.text()
    qtbot.mouseClick(panel.remove_temperature_button, Qt.MouseButton.LeftButton)
    assert "temperature" not in json.loads(meta.read_text())
    assert panel.report.temperature == 1.0 and not panel.remove_temperature_button.isEnabled()
    assert f"{own:.3f}" in panel.reliability_plot.getPlotItem().titleLabel.text
    assert loaded.refresh_temperature() and loaded.temperature == 1.0


def test_fit_temperature_says_in_place_when_the_dataset_is_gone(qtbot, tmp_path, run, shown_errors):
    from helpers import make_session

    _, shared = run
    run_dir = shutil.copytree(shared, tmp_path / "run")
    config = json.loads((run_dir / "config.json").read_text())
    config["dataset"]["root"] = str(tmp_path / "moved-away")
    (run_dir / "config.json").write_text(json.dumps(config))
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    panel.fit_temperature()
    qtbot.waitUntil(lambda: panel.calibration_worker is None, timeout=60_000)
    assert shown_errors == []
    assert not panel.calibration_error.isHidden()
    assert "moved-away: the run's dataset folder is not there" in panel.calibration_error.text()
    assert "temperature" not in json.loads((run_dir / "model" / "bundle.json").read_text())
    assert panel.fit_button.isEnabled()  # it can be tried again


def test_fit_temperature_at_the_edge_of_its_range_is_refused_and_nothing_stored(qtbot, tmp_path, run, shown_errors,
                                                                                monkeypatch):
    import cnnstudio.core.runs.evaluate as runs_evaluate
    from helpers import make_session

    _, shared = run
    run_dir = shutil.copytree(shared, tmp_path / "run")
    before = (run_dir / "model" / "bundle.json").read_text()
    monkeypatch.setattr(runs_evaluate, "fit_temperature", lambda y, probs: 0.05)  # T_MIN: ~100 % everywhere
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    panel.tabs.setCurrentIndex(panel.calibration_tab)
    panel.fit_temperature()
    qtbot.waitUntil(lambda: panel.calibration_worker is None, timeout=60_000)
    assert shown_errors == [] and not panel.calibration_error.isHidden()
    message = panel.calibration_error.text()
    assert "stopped at the edge of its range" in message and "unchanged" in message and "\n" not in message
    assert (run_dir / "model" / "bundle.json").read_text() == before
    assert panel.report.temperature == 1.0 and panel.last_calibration is None
    assert not panel.remove_temperature_button.isEnabled() and panel.fit_button.isEnabled()


def test_a_run_without_a_bundle_cannot_be_calibrated(qtbot, tmp_path):
    from helpers import make_session

    _, run_dir = three_class_run(tmp_path)
    panel = EvaluatePanel(make_session())
    qtbot.addWidget(panel)
    panel.session.add_run(run_dir)
    assert panel.report is not None and panel.report.probs is not None
    assert not panel.fit_button.isEnabled() and not panel.remove_temperature_button.isEnabled()
    assert "Fit Temperature" not in panel.calibration_label.text()
