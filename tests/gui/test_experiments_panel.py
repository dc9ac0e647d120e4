"""The Experiments page: a search with a live table and Apply Best, cross-validation, the run comparison."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from coretrain import train
from helpers import make_session
from tinydata import make_dataset

from cnnstudio.gui.panels.experiments import ExperimentsPanel


@pytest.fixture
def data(tmp_path) -> Path:
    return make_dataset(tmp_path / "data", per_class=8)


def _panel(qtbot, session):
    panel = ExperimentsPanel(session)
    qtbot.addWidget(panel)
    return panel


def _wait(qtbot, tab, timeout=180_000):
    qtbot.waitUntil(lambda: not tab.is_running() and tab.worker is not None, timeout=timeout)
    qtbot.wait(50)  # the queued finished signal


def _column(table, header: str) -> int:
    return next(c for c in range(table.columnCount()) if table.horizontalHeaderItem(c).text() == header)


def test_a_search_fills_the_table_and_applies_the_best_configuration_with_undo(qtbot, data, tmp_path):
    session = make_session(data, epochs=1)
    panel = _panel(qtbot, session)
    tab = panel.search
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train.learning_rate": {"choices": [0.05, 0.01, 0.001]},
                                 "augmentation.zoom": {"low": 0.0, "high": 0.2, "step": 0.1}}))
    tab.space_file = space
    tab.space_choice.setCurrentIndex(tab.space_choice.findData("file"))
    tab._refresh_space()
    assert [tab.space_table.item(r, 0).text() for r in range(tab.space_table.rowCount())] == [
        "learning_rate in {0.05, 0.01, 0.001}", "zoom 0..0.2 step 0.1"]
    tab.trials.setValue(3)
    tab.prune.setChecked(False)
    before_spec, before_config = session.spec, session.train_config
    said = []  # what the status bar is told, on whichever page the user is
    session.jobProgress.connect(lambda text, done, total: said.append((text, done, total)))

    assert tab.start() is not None
    assert tab.stop_button.isEnabled() and not tab.start_button.isEnabled()
    _wait(qtbot, tab)
    assert ("Search: trial 1/3", 0, 3) in said  # no ETA before a trial has finished
    last = [text for text, done, total in said if text.startswith("Search: trial 3/3 \u00b7 epoch 1/1")]
    assert last and all(" \u00b7 ETA " in text for text in last)  # at the pace of the two done
    assert session.job_page == ""  # the slot is free again

    assert tab.table.rowCount() == 3
    status = _column(tab.table, "Status")
    assert [tab.table.item(r, status).text() for r in range(3)] == ["complete"] * 3
    lr = _column(tab.table, "learning_rate")
    assert all(float(tab.table.item(r, lr).text()) in (0.05, 0.01, 0.001) for r in range(3))
    best = tab.best()
    assert best is not None and tab.best_label.text().startswith(f"Best: trial {best.number + 1}")
    assert len(tab.scatter.data) == 3
    assert "Search finished: 3 trials" in tab.progress_label.text()

    assert tab.apply_button.isEnabled() and tab.apply_best()
    assert session.train_config.learning_rate == best.params["train.learning_rate"]
    assert session.spec.augmentation.zoom == pytest.approx(best.params["augmentation.zoom"])
    assert session.undo_text() == "Apply Best"  # one step of Edit > Undo too
    tab.undo_apply()
    assert session.spec.to_dict() == before_spec.to_dict()
    assert session.train_config == before_config
    assert session.redo_text() == "Apply Best"  # the button took back the same step, not a new one


def test_a_stopped_search_resumes_from_its_folder(qtbot, data, tmp_path):
    session = make_session(data, epochs=2)
    tab = _panel(qtbot, session).search
    headers = [tab.table.horizontalHeaderItem(c).text() for c in range(tab.table.columnCount())]
    assert headers[:2] == ["Trial", "Status"]  # named before any trial, not "1 2 3"
    tab.space_choice.setCurrentIndex(tab.space_choice.findData("default"))
    tab._refresh_space()
    tab.trials.setValue(2)
    tab.prune.setChecked(False)
    worker = tab.start()
    worker.epoch_end.connect(lambda _event: tab.stop())  # stop during the first trial
    _wait(qtbot, tab)
    assert "Search stopped" in tab.progress_label.text()
    status = _column(tab.table, "Status")
    assert tab.table.item(0, status).text() == "stopped"  # not "running" once nothing runs it
    folder = tab.out_dir

    resumed = _panel(qtbot, session).search
    resumed.trials.setValue(2)
    assert resumed.resume(folder) is not None
    # The table shows the space the search was started with, which wins over this tab's choice.
    shown = [resumed.space_table.item(r, 0).text() for r in range(resumed.space_table.rowCount())]
    assert shown == [d.describe() for d in tab.space.dimensions]
    _wait(qtbot, resumed)
    trials = json.loads((folder / "trials.json").read_text())["trials"]
    assert [t["status"] for t in trials] == ["complete", "complete"]
    assert resumed.table.rowCount() == 2


def test_cross_validation_shows_each_fold_and_mean_plus_minus_std(qtbot, data):
    session = make_session(data, epochs=2)
    tab = _panel(qtbot, session).cv
    tab.folds.setValue(2)
    said = []
    session.jobProgress.connect(lambda text, done, total: said.append((text, done, total)))
    assert tab.start() is not None
    assert session.job_page == "experiments"
    _wait(qtbot, tab)
    assert [t for t in said if t[0].startswith("Cross-validation")] == [
        ("Cross-validation: fold 1/2", 0, 2), ("Cross-validation: fold 2/2", 1, 2)]
    assert [tab.table.item(r, 1).text() for r in range(2)] != ["waiting", "waiting"]
    assert all(tab.table.item(r, 2).text() for r in range(2))  # val_accuracy per fold
    assert "mean ± std over 2 folds" in tab.summary.text() and "val_accuracy" in tab.summary.text()
    assert set(tab.curves) == {1, 2} and all(len(tab.points[f]) == 2 for f in (1, 2))

    reopened = _panel(qtbot, session).cv
    assert reopened.show_results(tab.out_dir)
    assert reopened.summary.text() == tab.summary.text()


def test_the_comparison_lists_filters_overlays_and_diffs_runs(qtbot, data):
    session = make_session(data)
    runs = Path(session.runs_folder())
    train(data, runs / "fast-lr", epochs=2, learning_rate=0.05)
    train(data, runs / "slow-lr", epochs=2, learning_rate=0.001)
    (runs / "broken").mkdir()
    (runs / "broken" / "config.json").write_text("{not json")
    tab = _panel(qtbot, session).compare
    tab.refresh()

    assert tab.proxy.rowCount() == 3 and "3 runs in" in tab.folder_label.text()
    tab.filter.setText("lr")
    assert tab.proxy.rowCount() == 2
    tab.filter.setText("")
    tab.view.sortByColumn(0, tab.view.horizontalHeader().sortIndicatorOrder())
    tab.select_runs([str(runs / "fast-lr"), str(runs / "slow-lr")])
    assert len(tab.plot.getPlotItem().listDataItems()) == 2 and tab.diff_button.isEnabled()

    diff = tab.show_diff()
    keys = [k for k, _, _ in diff.settings]
    assert "train.learning_rate" in keys
    first = tab.diff_tree.topLevelItem(0)
    assert first.text(0).startswith("Changed settings")
    assert any(first.child(i).text(0) == "train.learning_rate" for i in range(first.childCount()))
    predictions = tab.diff_tree.topLevelItem(2)
    assert predictions.text(0).startswith("Test images whose prediction changed")
    assert predictions.childCount() == len(diff.changed_predictions)


def test_run_again_reproduces_a_run_and_shows_the_diff(qtbot, data):
    session = make_session(data)
    runs = Path(session.runs_folder())
    train(data, runs / "original", epochs=2)
    tab = _panel(qtbot, session).compare
    tab.refresh()
    tab.select_runs([str(runs / "original")])
    assert tab.rerun_button.isEnabled()
    worker = tab.run_again()
    assert worker is not None
    qtbot.waitUntil(lambda: not worker.is_running(), timeout=120_000)
    qtbot.waitUntil(lambda: getattr(tab, "diff", None) is not None, timeout=10_000)
    assert (runs / "original-rerun" / "model").is_dir()
    assert tab.diff.run_b.endswith("original-rerun")
    assert not [k for k, _, _ in tab.diff.settings if k.startswith(("train.", "spec."))]
    assert set(tab.selected_runs()) == {str(runs / "original"), str(runs / "original-rerun")}


def test_the_search_tab_shows_the_trials_another_process_runs_as_they_run(qtbot, data, tmp_path):
    """A search run by 'cnnstudio tune --storage' elsewhere appears in the tab, trial by trial, with
    its state and value, while it runs: nothing is reopened."""
    import subprocess
    import sys

    tab = _panel(qtbot, make_session(data, epochs=1)).search
    tab.poll_ms = 100
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train.learning_rate": {"choices": [0.05, 0.01]}}))
    proc = subprocess.Popen([sys.executable, "-m", "cnnstudio", "tune", str(data), "--out", str(tmp_path / "s"),
                             "--storage", url, "--trials", "2", "--space", str(space), "--epochs", "3",
                             "--image-size", "16", "--model", "scratch", "--no-prune"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert tab.watch(url, "cnnstudio") and tab.is_watching()

        def statuses():
            if tab.table.columnCount() < 2 or tab.table.horizontalHeaderItem(1) is None:
                return []
            column = _column(tab.table, "Status")
            return [tab.table.item(r, column).text() for r in range(tab.table.rowCount())]

        qtbot.waitUntil(lambda: "running" in statuses(), timeout=120_000)  # seen while it runs
        qtbot.waitUntil(lambda: statuses() == ["complete", "complete"], timeout=180_000)
    finally:
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    value, lr = _column(tab.table, "val_accuracy"), _column(tab.table, "learning_rate")
    for row in range(2):
        assert 0.0 <= float(tab.table.item(row, value).text()) <= 1.0
        assert float(tab.table.item(row, lr).text()) in (0.05, 0.01)
    assert tab.best_label.text().startswith("Best: trial ")
    assert "2 trials, 0 running" in tab.watch_label.text()
    tab.stop_watching()
    assert not tab.is_watching() and not tab.watch_button.isChecked()
