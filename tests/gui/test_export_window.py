"""File > Export Model: the bundle folder, or any registered format, written and verified."""

from __future__ import annotations

import pytest
from faultdisk import read_only
from helpers import trained_run
from PySide6.QtWidgets import QFileDialog, QInputDialog, QMessageBox

from cnnstudio.gui.main_window import MainWindow


@pytest.fixture
def window_with_run(qtbot, tmp_path_factory):
    _, run = trained_run(tmp_path_factory)
    window = MainWindow()
    qtbot.addWidget(window)
    window.session.current_run = str(run)
    return window, run


def test_every_registered_format_is_offered(window_with_run):
    window, _ = window_with_run
    labels = [label for label, _ in window.export_formats()]
    assert labels[0] == MainWindow.BUNDLE_FORMAT
    assert {"TFLite (int8) (tflite-int8)", "ONNX (onnx)", "Keras model file (keras)"} <= set(labels)


def test_a_format_is_written_verified_and_reported(qtbot, window_with_run, tmp_path, monkeypatch, shown_errors):
    window, run = window_with_run
    target = tmp_path / "classifier.tflite"
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: ("TFLite (float32) (tflite)", True))
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    shown = []
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text: shown.append((title, text)))

    worker = window.export_model()
    assert worker is not None
    qtbot.waitUntil(lambda: bool(shown or shown_errors), timeout=120_000)
    assert not shown_errors
    (title, text), = shown
    assert title == "Model exported" and target.is_file()
    assert f"tflite: {target}" in text and "top-1 agreement 100.0%" in text
    assert window.last_export.test_images > 0


def test_the_bundle_folder_is_still_one_choice(qtbot, window_with_run, tmp_path, monkeypatch):
    window, run = window_with_run
    monkeypatch.setattr(QInputDialog, "getItem", lambda *a, **k: (MainWindow.BUNDLE_FORMAT, True))
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(tmp_path))
    window.export_model()
    qtbot.waitUntil(lambda: (tmp_path / f"{run.name}-model" / "bundle.json").exists(), timeout=30_000)


@pytest.mark.parametrize("name, chosen, written", [
    ("report.pdf", "", "report.pdf"),
    ("report", "Web page, one file (*.html)", "report.html"),  # the suffix follows the chosen filter
])
def test_the_run_report_is_exported_as_pdf_or_web_page(qtbot, window_with_run, tmp_path, monkeypatch, shown_errors,
                                                         name, chosen, written):
    window, run = window_with_run
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / name), chosen))
    assert window.export_report() is not None
    assert "Writing the report" in window.session.activity()
    qtbot.waitUntil(lambda: window.last_report is not None or bool(shown_errors), timeout=120_000)
    assert not shown_errors and window.last_report == tmp_path / written
    data = (tmp_path / written).read_bytes()
    if written.endswith(".pdf"):
        assert data.startswith(b"%PDF") and len(data) > 10_000
    else:
        assert f"Run report: {run.name}".encode() in data and b'id="calibration"' in data
    assert str(tmp_path / written) in window.statusBar().currentMessage()
    qtbot.waitUntil(lambda: window.session.activity() == "", timeout=5000)


def test_no_report_without_a_run(qtbot, shown_errors):
    window = MainWindow()
    qtbot.addWidget(window)
    assert window.export_report() is None
    assert shown_errors and shown_errors[0][0] == "No report to export"


def test_a_report_that_cannot_be_written_is_a_one_line_error_and_the_old_one_stays(
        qtbot, window_with_run, tmp_path, monkeypatch, shown_errors):
    window, run = window_with_run
    folder = tmp_path / "reports"
    folder.mkdir()
    target = folder / "report.pdf"
    target.write_bytes(b"%PDF-1.4 the previous report %%EOF")
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(target), ""))
    with read_only(folder) as reason:
        assert window.export_report() is not None
        qtbot.waitUntil(lambda: bool(shown_errors), timeout=120_000)
        assert shown_errors == [("The report could not be written", f"{target}: {reason}", "")]
        assert target.read_bytes() == b"%PDF-1.4 the previous report %%EOF"
        qtbot.waitUntil(lambda: window.session.activity() == "", timeout=5000)
