"""The main window as a user drives it: drops, projects, errors, closing; and the app's start."""

import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import drop_paths
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QMessageBox

from cnnstudio.core.errors import StudioError
from cnnstudio.core.project import PROJECT_SUFFIX
from cnnstudio.gui.dialogs import errors
from cnnstudio.gui.qthreading import Worker
from cnnstudio.gui.widgets import common as widgets

TIMEOUT = 60_000


def drop(widget, path) -> bool:
    return drop_paths(widget, [path])


def test_without_a_display_the_app_prints_a_hint_and_exits_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env["CNNSTUDIO_DATA_DIR"] = str(tmp_path)
    result = subprocess.run([sys.executable, "-m", "cnnstudio"], env=env, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2
    assert "no display found" in result.stderr and "QT_QPA_PLATFORM=offscreen" in result.stderr
    assert "Traceback" not in result.stderr and "abort" not in result.stderr.lower()


# The app as 'cnnstudio --sample' starts it, closed once the sample is scanned and TensorFlow loaded.
QUIT_WHEN_READY = """
import sys
from PySide6.QtCore import QTimer
from cnnstudio.gui import main_window

restore = main_window.MainWindow.restore_settings

def restore_then_quit_when_ready(self):
    restore(self)
    timer = QTimer(self)
    timer.timeout.connect(lambda: self.tf_info and self.session.index is not None and self.close())
    timer.start(100)

main_window.MainWindow.restore_settings = restore_then_quit_when_ready
from cnnstudio.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("verbose", [False, True])
def test_the_app_quits_without_qt_warnings_and_tensorflows_log_only_when_verbose(tmp_path, verbose):
    import re

    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    env.update(QT_QPA_PLATFORM="offscreen", CNNSTUDIO_DATA_DIR=str(tmp_path / "data"),
               XDG_CONFIG_HOME=str(tmp_path / "config"))
    done = subprocess.run([sys.executable, "-c", QUIT_WHEN_READY, "--sample", *(["--verbose"] if verbose else [])],
                          env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for warning in ("QBasicTimer", "QObject::", "QThread", "Traceback"):
        assert warning not in done.stderr, done.stderr
    native = re.search(r"^[IWEF]\d{4} |cuInit|oneDNN", done.stderr, re.MULTILINE)
    assert bool(native) == verbose, done.stderr


def test_window_starts_on_the_start_page_with_the_workflow_in_the_sidebar(window):
    assert window.windowTitle() == "Untitled[*]"  # the platform adds " — CNN Studio" (the display name)
    assert window.current_page() == "start"
    titles = [window.sidebar.item(i).text() for i in range(window.sidebar.count())]
    assert titles == ["Start", "Data", "Model", "Train", "Evaluate", "Predict", "Experiments"]
    assert [a.shortcut().toString() for a in window.page_actions[1:]] == [f"Ctrl+{i}" for i in range(1, 7)]
    window.page_actions[2].trigger()  # Ctrl+2
    assert window.current_page() == "model"
    window.sidebar.setCurrentRow(1)
    assert window.current_page() == "data"
    assert "tensorflow" in window.about_text().lower() and "Python" in window.about_text()


def test_the_start_page_counts_the_images_the_sample_has(qtbot, tmp_path):
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.sample import CLASSES, generate_sample
    from cnnstudio.gui.panels.start import StartPage

    generate_sample(tmp_path / "sample")  # what Try the sample dataset opens
    images = len(scan_dataset(tmp_path / "sample").items)
    page = StartPage()
    qtbot.addWidget(page)
    assert page.sample_button.toolTip().startswith(f"{images:,} drawn shapes in {len(CLASSES)} classes")


def test_ctrl_enter_starts_training_from_any_page_and_esc_stops_it_once_confirmed(qtbot, window, tiny_dataset,
                                                                                 monkeypatch):
    import dataclasses

    from PySide6.QtCore import Qt

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    ctrl_enter = (Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    qtbot.keyClick(window, *ctrl_enter)  # no dataset yet: nothing starts
    assert not window.is_training() and window.current_page() == "start"
    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    s = window.session
    s.set_train_config(dataclasses.replace(s.train_config, epochs=200, batch_size=2, patience=0))
    train = window.panel("train")
    assert "(Ctrl+Enter)" in train.start_button.toolTip() and "(Esc)" in train.stop_button.toolTip()
    window.show_page("model")
    qtbot.waitUntil(window.train_action.isEnabled)
    qtbot.keyClick(window, *ctrl_enter)
    assert train.is_training() and window.current_page() == "train"
    qtbot.waitUntil(window.stop_action.isEnabled)

    asked = []

    def answer(parent, title, text, buttons, default):
        asked.append(title)
        return QMessageBox.StandardButton.No if len(asked) == 1 else QMessageBox.StandardButton.Yes

    monkeypatch.setattr(widgets, "ask", answer)
    with qtbot.waitSignal(train.trainingFinished, timeout=180_000):
        qtbot.keyClick(window, Qt.Key.Key_Escape)  # asked, answered No: still training
        assert asked == ["Stop training"] and train.is_training()
        qtbot.keyClick(window, Qt.Key.Key_Escape)  # Yes: stops after the batch
        assert asked == ["Stop training"] * 2
    qtbot.waitUntil(lambda: not window.stop_action.isEnabled())  # Esc is the dialogs' and widgets' again
    qtbot.keyClick(window, Qt.Key.Key_Escape)
    assert len(asked) == 2


def test_the_status_bar_shows_the_trainings_epoch_and_eta_on_every_page_and_leads_to_it(qtbot, window, tiny_dataset):
    import dataclasses

    from PySide6.QtCore import Qt

    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    s = window.session
    s.set_train_config(dataclasses.replace(s.train_config, epochs=3, batch_size=4, patience=0))
    assert not window.job_bar.isVisible()
    train = window.panel("train")
    window.show_page("train")
    with qtbot.waitSignal(train.trainingFinished, timeout=180_000):
        train.start()
        window.show_page("data")  # elsewhere, the status bar still says where the training is
        qtbot.waitUntil(lambda: "epoch " in window.job_label.text(), timeout=120_000)
        text = window.job_label.text()
        assert text.startswith("Training ") and "/3" in text and "ETA" in text
        assert window.job_bar.isVisible() and window.job_bar.maximum() > 0
        qtbot.mouseClick(window.job_label, Qt.MouseButton.LeftButton)  # the line leads to its page
        assert window.current_page() == "train"
    qtbot.waitUntil(lambda: not window.job_bar.isVisible())  # gone with the job
    assert "epoch" not in window.job_label.text()


def test_on_a_1024_by_640_screen_the_window_fits_and_pages_show_whole(qtbot, window, tiny_dataset):
    from PySide6.QtWidgets import QApplication, QScrollArea

    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    window.resize(window.minimumSize())  # what a 1024 x 640 screen leaves it
    for key in ("start", "data", "model", "train", "evaluate", "predict", "experiments"):
        window.show_page(key)
    QApplication.processEvents()
    hint = window.minimumSizeHint()
    assert hint.width() <= 1024 and hint.height() <= 640  # no page pushes the window past the screen
    for key in ("data", "model", "train", "evaluate", "predict", "experiments"):  # every page whole, no scrolling
        window.show_page(key)
        QApplication.processEvents()
        page = window.panel(key)
        area = page.parentWidget()
        while not isinstance(area, QScrollArea):
            area = area.parentWidget()
        assert page.minimumSizeHint().width() <= area.viewport().width(), key
        assert page.minimumSizeHint().height() <= area.viewport().height(), key
        assert area.verticalScrollBar().maximum() == 0, key
    table = window.panel("model").block_editor.table  # every row of the block table whole
    rows = sum(table.rowHeight(r) for r in range(table.rowCount()))
    assert table.rowCount() >= 2 and table.viewport().height() >= rows


def test_the_train_evaluate_and_predict_panels_are_hosted(window):
    from cnnstudio.gui.panels.evaluate import EvaluatePanel
    from cnnstudio.gui.panels.predict import PredictPanel
    from cnnstudio.gui.panels.train import TrainPanel

    for key, cls in (("train", TrainPanel), ("evaluate", EvaluatePanel), ("predict", PredictPanel)):
        assert isinstance(window.show_page(key), cls)
        assert window.current_page() == key
    assert not window.is_training()


def test_dropping_a_folder_on_the_window_loads_it_as_the_dataset(qtbot, window, tiny_dataset):
    panel = window.data_panel
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        assert drop(window, tiny_dataset)
    assert window.current_page() == "data"
    assert window.session.dataset_root == tiny_dataset
    assert panel.class_rows() == [("blue", 4), ("green", 5), ("red", 6)]
    assert any(level == "error" and file == "red/broken.png" for level, file, _ in panel.problem_rows())
    assert window.isWindowModified()


def test_a_dropped_file_that_is_not_a_folder_or_project_is_refused(window, tmp_path):
    other = tmp_path / "notes.txt"
    other.write_text("hello")
    assert not drop(window, other)


def test_save_and_reopen_a_project_restores_dataset_split_and_spec(qtbot, window, tiny_dataset, tmp_path,
                                                                   wait_for_workers):
    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    window.data_panel.val_spin.setValue(25)
    window.data_panel.seed_spin.setValue(7)
    model = window.show_page("model")
    model.select_model("seed-model-1")
    model.head_editors["dropout"].spin.setValue(0.3)
    spec = window.session.spec
    assert spec.preset == "seed-model-1" and spec.head.dropout == 0.3

    path = tmp_path / f"mine{PROJECT_SUFFIX}"
    assert window._save_to(path)
    assert not window.isWindowModified()
    assert window.recent_projects()[0] == str(path)
    wait_for_workers()

    from cnnstudio.gui.main_window import MainWindow

    again = MainWindow()
    qtbot.addWidget(again)
    assert again.start_page.recent.count() == 1
    with qtbot.waitSignal(again.data_panel.scanFinished, timeout=TIMEOUT):
        assert again.open_project(path)
    s = again.session
    assert (s.dataset_root, s.val_fraction, s.test_fraction, s.seed) == (tiny_dataset, 0.25, 0.15, 7)
    assert s.spec == spec
    assert again.data_panel.class_rows() == [("blue", 4), ("green", 5), ("red", 6)]
    assert again.data_panel.val_spin.value() == 25
    assert again.model_panel.head_editors["dropout"].value() == 0.3
    assert not s.modified  # restoring the project's own dataset is no change
    assert again.windowTitle() == "mine[*]"
    wait_for_workers()


def test_the_title_is_the_project_with_a_star_while_modified_and_save_suggests_the_dataset_name(
        qtbot, window, tiny_dataset, tmp_path, monkeypatch):
    from PySide6.QtWidgets import QFileDialog

    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    assert window.windowHandle().title() == "Untitled*"  # no "CNN Studio - ": Qt adds the app's name
    suggested = []

    def save_dialog(parent, caption, start, filters):
        suggested.append(Path(start))
        return str(tmp_path / f"faces2{PROJECT_SUFFIX}"), filters

    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(save_dialog))
    assert window.save()
    assert suggested[0].name == f"{tiny_dataset.name}{PROJECT_SUFFIX}"
    assert window.windowTitle() == "faces2[*]" and window.windowHandle().title() == "faces2"
    window.data_panel.seed_spin.setValue(window.data_panel.seed_spin.value() + 1)
    assert window.windowHandle().title() == "faces2*"


def test_a_broken_project_file_is_a_message_not_a_crash(window, shown_errors, tmp_path):
    bad = tmp_path / f"bad{PROJECT_SUFFIX}"
    bad.write_text("{not json")
    assert not window.open_project(bad)
    assert shown_errors and "bad" in shown_errors[0][1]


def test_an_exception_in_a_worker_shows_a_message_and_the_window_keeps_working(
    qtbot, window, shown_errors, tiny_dataset, monkeypatch
):
    import cnnstudio.core.data.dataset as dataset

    real_scan = dataset.scan_dataset

    def exploding_scan(root, state=None):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(dataset, "scan_dataset", exploding_scan)
    panel = window.data_panel
    with qtbot.waitSignal(panel.scanFailed, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    title, message, details = shown_errors[0]
    assert message == "Unexpected error: RuntimeError: disk on fire"
    assert "Traceback" in details and "exploding_scan" in details
    assert panel.open_button.isEnabled() and not panel.progress.isVisible()

    monkeypatch.setattr(dataset, "scan_dataset", real_scan)
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(tiny_dataset)
    assert len(panel.class_rows()) == 3
    assert len(shown_errors) == 1


def test_a_missing_folder_is_reported_in_place(qtbot, window, shown_errors, tmp_path):
    panel = window.data_panel
    with qtbot.waitSignal(panel.scanFailed, timeout=TIMEOUT) as blocker:
        window.open_dataset(tmp_path / "nowhere")
    assert "no such folder" in blocker.args[0]
    assert not panel.error.isHidden() and "no such folder" in panel.error.text()
    assert shown_errors == []  # a user's mistake is said in place; only bugs get a dialog


def test_function_worker_reports_results_progress_and_errors(qtbot):
    def counting(n, state=None):
        for i in range(n):
            state.on_progress("counting", i + 1, n)
        return n * 2

    worker = Worker(counting, 5000)
    seen = []
    worker.progress.connect(lambda task, done, total: seen.append((done, total)))
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT) as blocker:
        worker.start()
    assert blocker.args == [10000]
    assert seen[-1] == (5000, 5000) and len(seen) < 50  # throttled

    def refusing():
        raise StudioError("the folder has no classes")

    worker = Worker(refusing)
    with qtbot.waitSignal(worker.errored, timeout=TIMEOUT) as blocker:
        worker.start()
    assert blocker.args == ["the folder has no classes", ""]


@pytest.mark.qt_no_exception_capture
def test_uncaught_exceptions_in_slots_and_threads_become_dialogs(qtbot, shown_errors, monkeypatch):
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    errors.install_excepthook()
    try:
        raise ValueError("bad slot")
    except ValueError:
        sys.excepthook(*sys.exc_info())
    thread = threading.Thread(target=lambda: 1 / 0)
    thread.start()
    thread.join()
    qtbot.waitUntil(lambda: len(shown_errors) == 2, timeout=5000)
    messages = [m for _, m, _ in shown_errors]
    assert messages == ["Unexpected error: ValueError: bad slot", "Unexpected error: ZeroDivisionError: division by zero"]
    assert all("Traceback" in d for _, _, d in shown_errors)


def test_closing_while_training_asks_first(window, questions):
    class Training:
        stopped = False

        def is_training(self):
            return True

        def stop(self):
            self.stopped = True

    fake = Training()
    window._panels["train"] = fake
    original = widgets.ask
    widgets.ask = lambda *a: QMessageBox.StandardButton.No
    try:
        assert not window.close()
        assert window.isVisible() and not fake.stopped
    finally:
        widgets.ask = original
    assert window.close()
    assert fake.stopped and "Training is running" in questions
    del window._panels["train"]


def test_window_geometry_and_last_project_are_remembered(qtbot, window, tmp_path):
    window.resize(960, 700)  # the offscreen screen is small; restoreGeometry keeps a window on it
    path = tmp_path / f"p{PROJECT_SUFFIX}"
    assert window._save_to(path)
    assert window.close()
    settings = QSettings()
    assert settings.value("project/last") == str(path)
    assert settings.value("window/geometry") is not None

    from cnnstudio.gui.main_window import MainWindow

    again = MainWindow()
    qtbot.addWidget(again)
    again.restore_settings()
    assert (again.width(), again.height()) == (960, 700)
    again.reopen_last_project()
    assert again.session.project_path == path


def test_an_image_moved_to_another_class_in_evaluate_rescans_the_dataset(qtbot, window, tiny_dataset):
    panel = window.data_panel
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        panel.load_folder(tiny_dataset)
    (tiny_dataset / "red" / "red_00.png").rename(tiny_dataset / "green" / "red_00.png")  # as "Move to class" does
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        window.session.datasetEdited.emit(str(tiny_dataset), "Moved red/red_00.png to green/red_00.png.")
    assert ("green", 6) in panel.class_rows() and ("red", 5) in panel.class_rows()


def test_ctrl_enter_on_a_dataset_without_class_folders_does_nothing_and_start_says_why(
        qtbot, window, shown_errors, tmp_path):
    from PIL import Image
    from PySide6.QtCore import Qt

    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(loose / f"photo_{i}.png")
    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_dataset(loose)
    reason = "No class sub-folders: put each class's images in its own folder"
    assert window.data_panel.error.text() == reason and not window.data_panel.error.isHidden()
    train = window.panel("train")
    assert not train.start_button.isEnabled() and reason in train.start_button.toolTip()
    qtbot.waitUntil(lambda: not window.train_action.isEnabled())

    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    qtbot.keyClick(window, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    window.start_training()  # the action's slot itself refuses too
    assert not train.is_training() and window.current_page() == "data" and shown_errors == []
    runs = window.session.runs_folder()
    assert not runs.exists() or not any(runs.iterdir())
