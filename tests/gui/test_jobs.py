"""One job that trains at a time, what runs in the background, and quitting without cutting work short."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from helpers import make_session
from PySide6.QtWidgets import QMessageBox
from tinydata import make_dataset

from cnnstudio.core.errors import Cancelled
from cnnstudio.gui.panels.experiments import ExperimentsPanel
from cnnstudio.gui.panels.train import TrainPanel
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets import common as widgets

TIMEOUT = 180_000


def _blocking(gate: threading.Event, out: Path | None = None):
    def job():
        gate.wait(60)
        if out is not None:
            out.write_text("written")
        return out
    return job


def test_a_second_training_job_is_refused_while_one_runs_and_allowed_once_it_ended(qtbot, tmp_path, shown_errors):
    session = make_session(make_dataset(tmp_path / "data", per_class=8), epochs=50)
    train = TrainPanel(session)
    experiments = ExperimentsPanel(session)
    qtbot.addWidget(train)
    qtbot.addWidget(experiments)

    worker = train.start()
    assert worker is not None and session.job.startswith("Training ")
    try:
        assert experiments.search.start() is None
        assert experiments.cv.start() is None
        assert [title for title, _, _ in shown_errors] == ["Cannot start the search", "Cannot start cross-validation"]
        for _, message, _ in shown_errors:
            assert message == f"{session.job} is running; stop it or wait until it ends, then start again"
        assert experiments.search.worker is None and experiments.cv.worker is None
    finally:
        train.stop()
    qtbot.waitUntil(lambda: not session.job, timeout=TIMEOUT)
    assert train.wait(60_000)

    cv = experiments.cv.start()  # the slot is free again
    assert cv is not None and session.job == "Cross-validating\u2026"
    assert train.start() is None  # and now the Train page is the one refused
    assert shown_errors[-1][0] == "Cannot start training"
    experiments.stop()
    qtbot.waitUntil(lambda: not session.job, timeout=TIMEOUT)


def test_the_status_bar_shows_background_work_until_its_own_end(qtbot):
    session = make_session()
    first_gate, second_gate = threading.Event(), threading.Event()
    first = session.track(Worker(_blocking(first_gate)).describe("Scanning a..."), "Scanning a...")
    second = session.track(Worker(_blocking(second_gate)).describe("Writing the report of b..."),
                           "Writing the report of b...")
    first.start()
    second.start()
    assert session.activity() == "Writing the report of b..."
    with qtbot.waitSignal(second.done, timeout=10_000):
        second_gate.set()
    assert session.activity() == "Scanning a..."  # the other ending does not clear it
    with qtbot.waitSignal(first.done, timeout=10_000):
        first_gate.set()
    assert session.activity() == ""


def test_a_worker_stopped_on_request_says_aborted_not_failed(qtbot):
    def patient(state):
        while not state.should_stop():
            state.on_progress("waiting", 0, 0)
            threading.Event().wait(0.01)
        raise Cancelled("stopped")

    worker = Worker(patient)
    errored = []
    worker.errored.connect(lambda *args: errored.append(args))
    worker.start()
    with qtbot.waitSignals([worker.aborted, worker.done], timeout=10_000):
        worker.stop()
    assert errored == []


def test_plugin_changes_asked_for_during_a_job_apply_after_it(qtbot, window, monkeypatch):
    reloads = []
    discover = window.manager.discover
    monkeypatch.setattr(window.manager, "discover", lambda disabled=None: reloads.append(disabled)
                        or discover(disabled))
    gate = threading.Event()
    job = Worker(_blocking(gate))
    window.session.start_job(job, "Training run-1")
    job.start()
    note = window.reload_plugins({"example"})
    assert note == "the change applies once the running job (Training run-1) has ended" and reloads == []
    with qtbot.waitSignal(window.session.registryChanged, timeout=10_000):
        gate.set()
    assert reloads == [{"example"}]
    applied = []
    with qtbot.waitSignal(window.pluginsLoaded, timeout=10_000):
        assert window.reload_plugins(set(), then=lambda: applied.append(True)) == ""  # no job: now
    assert reloads[-1] == set() and applied == [True]


def test_quitting_waits_for_a_report_being_written(qtbot, window, questions, tmp_path):
    gate = threading.Event()
    out = tmp_path / "report.html"
    worker = Worker(_blocking(gate, out)).describe("Writing the report of run-1...", writes=True)
    window.session.track(worker, worker.what)
    worker.start()
    threading.Timer(0.5, gate.set).start()
    assert window.close()
    assert "Still writing" in questions
    assert out.read_text() == "written"  # finished before the window let go


def test_quitting_can_be_called_off_while_an_export_runs(qtbot, window, monkeypatch, tmp_path):
    gate = threading.Event()
    out = tmp_path / "model.onnx"
    worker = Worker(_blocking(gate, out)).describe("Exporting run-1 as ONNX...", writes=True)
    worker.start()
    asked = []
    monkeypatch.setattr(widgets, "ask", lambda parent, title, text, *a: asked.append(text)
                        or QMessageBox.StandardButton.Cancel)
    try:
        assert not window.close()
        assert window.isVisible() and worker.is_running()
        assert asked == ["Exporting run-1 as ONNX is not finished. Wait for it and then quit?"]
    finally:
        gate.set()
    assert worker.wait(10)
    assert out.read_text() == "written"


@pytest.fixture(autouse=True)
def _no_leftover_jobs(wait_for_workers):
    yield
    wait_for_workers()
