import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv
import json
import shutil

import pytest
from helpers import make_session, trained_run
from PySide6.QtCore import Qt

from cnnstudio.gui.evaluate_panel import EvaluatePanel


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
