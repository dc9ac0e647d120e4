"""Edit > Undo and Redo: one history for the window, whatever the page: the split, model and
training settings and the images moved to another class folder go back step by step, in the
order they were made; quick edits of one setting are one step; the saved state is unmodified."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses

import pytest
from helpers import make_session
from PySide6.QtGui import QKeySequence

from cnnstudio.gui import session as session_module


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def test_settings_changes_undo_and_redo_one_step_each(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(session_module.time, "monotonic", clock)
    s = make_session()
    first_spec, first_config = s.spec, s.train_config

    clock.now += 5
    s.set_spec(dataclasses.replace(s.spec, head=dataclasses.replace(s.spec.head, dropout=0.3)))
    assert s.undo_text() == "Model Change" and s.redo_text() == ""
    clock.now += 5
    s.set_train_config(dataclasses.replace(s.train_config, epochs=7))
    clock.now += 0.3  # typing "12" is one change, not two
    s.set_train_config(dataclasses.replace(s.train_config, epochs=12))
    clock.now += 5
    s.set_train_config(dataclasses.replace(s.train_config, epochs=12))  # the same again: no step

    assert s.undo() and s.train_config == first_config and s.spec.head.dropout == 0.3
    assert s.undo_text() == "Model Change" and s.redo_text() == "Training Settings Change"
    assert s.undo() and s.spec == first_spec
    assert s.redo() and s.spec.head.dropout == 0.3 and s.train_config == first_config
    assert s.redo() and s.train_config.epochs == 12 and s.redo_text() == ""
    assert not s.redo()

    assert s.undo() and s.train_config == first_config
    clock.now += 5
    s.set_split(0.1, 0.1, 3)  # a new change: nothing left to redo
    assert s.redo_text() == "" and s.undo_text() == "Split Change"
    assert s.undo() and (s.val_fraction, s.test_fraction, s.seed) == (0.2, 0.2, 0)

    s.reset()  # File > New: nothing to undo into
    assert s.undo_text() == "" and not s.undo()


def test_edit_menu_undoes_the_model_panel_and_a_move_from_the_evaluate_page(qtbot, window, tmp_path, monkeypatch):
    from test_evaluate_panel import three_class_run

    from cnnstudio.gui.panels import evaluate as evaluate_panel

    assert window.undo_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Undo)
    assert not window.undo_action.isEnabled() and window.undo_action.text() == "Undo"
    model = window.show_page("model")
    before = window.session.spec.head.dropout
    model.head_editors["dropout"].spin.setValue(0.25)  # as the user types it
    assert window.session.spec.head.dropout == 0.25
    assert window.undo_action.isEnabled() and window.undo_action.text() == "Undo Model Change"
    window.undo_action.trigger()
    assert window.session.spec.head.dropout == before
    assert model.head_editors["dropout"].value() == before  # the form shows it
    assert window.redo_action.text() == "Redo Model Change"
    window.redo_action.trigger()
    assert window.session.spec.head.dropout == 0.25 and model.head_editors["dropout"].value() == 0.25

    data, run_dir = three_class_run(tmp_path)
    window.session.add_run(run_dir)
    panel = window.show_page("evaluate")
    panel.wrong_list.setCurrentRow(0)
    monkeypatch.setattr(evaluate_panel, "choose_class", lambda parent, names, current: "c")
    panel.move_button.click()
    assert (data / "c" / "img_009.png").is_file()
    assert window.undo_action.text() == "Undo Move of img_009.png"
    window.undo_action.trigger()
    assert (data / "a" / "img_009.png").is_file() and not window.session.moves
    assert window.session.spec.head.dropout == 0.25  # the settings were left alone
    window.show_page("model")
    assert window.undo_action.text() == "Undo Model Change"


TIMEOUT = 60_000


@pytest.fixture
def clock(monkeypatch):
    clock = Clock()
    monkeypatch.setattr(session_module.time, "monotonic", clock)
    return clock


@pytest.fixture
def moved_to_c(window, tmp_path, monkeypatch):
    """A run whose first misclassified image, a/img_009.png, can be moved to class c on the
    Evaluate page: returns (dataset folder, a function that moves it as the user does)."""
    from test_evaluate_panel import three_class_run

    from cnnstudio.gui.panels import evaluate as evaluate_panel

    data, run_dir = three_class_run(tmp_path)
    window.session.add_run(run_dir)
    monkeypatch.setattr(evaluate_panel, "choose_class", lambda parent, names, current: "c")

    def move():
        panel = window.show_page("evaluate")
        panel.wrong_list.setCurrentRow(0)
        panel.move_button.click()
        assert (data / "c" / "img_009.png").is_file() and not (data / "a" / "img_009.png").exists()

    return data, move


def test_one_history_takes_back_settings_and_moves_in_the_order_they_were_made(window, clock, moved_to_c):
    data, move = moved_to_c
    model = window.show_page("model")
    model.head_editors["dropout"].spin.setValue(0.25)
    clock.now += 5
    move()
    clock.now += 5
    window.show_page("train").epochs.setValue(7)
    window.show_page("start")  # the page does not matter

    texts = []
    for _ in range(3):
        texts.append(window.undo_action.text())
        window.undo_action.trigger()
        if len(texts) == 1:
            assert window.session.train_config.epochs != 7 and (data / "c" / "img_009.png").is_file()
        if len(texts) == 2:  # the file is back on disk; the model change is still there
            assert (data / "a" / "img_009.png").is_file() and not (data / "c" / "img_009.png").exists()
            assert window.session.moves == [] and window.session.spec.head.dropout == 0.25
    assert texts == ["Undo Training Settings Change", "Undo Move of img_009.png", "Undo Model Change"]
    assert window.session.spec.head.dropout != 0.25
    assert not window.undo_action.isEnabled() and window.undo_action.text() == "Undo"

    window.redo_action.trigger()
    assert window.redo_action.text() == "Redo Move of img_009.png"
    window.redo_action.trigger()  # the file goes into class c again
    assert (data / "c" / "img_009.png").is_file() and not (data / "a" / "img_009.png").exists()
    assert [m.target for m in window.session.moves] == ["c/img_009.png"]
    assert "moved to c" in window.panel("evaluate").wrong_list.item(0).text()
    assert window.redo_action.text() == "Redo Training Settings Change"


def test_quick_edits_of_a_setting_are_one_step_and_slow_ones_are_not(window, clock):
    model = window.show_page("model")
    spin = model.head_editors["dropout"].spin
    before = window.session.spec.head.dropout
    stack = window.session.undo_stack
    steps = stack.count()
    for value in (0.2, 0.25, 0.3):  # typed or dragged: a few tenths of a second apart
        spin.setValue(value)
        clock.now += 0.3
    assert stack.count() == steps + 1
    clock.now += 5
    spin.setValue(0.4)  # later: a step of its own
    assert stack.count() == steps + 2
    window.undo_action.trigger()
    assert window.session.spec.head.dropout == 0.3 and spin.value() == 0.3
    window.undo_action.trigger()
    assert window.session.spec.head.dropout == before and spin.value() == before
    clock.now += 5
    spin.setValue(0.5)
    for action in (window.undo_action, window.redo_action):
        clock.now += 0.2
        action.trigger()
    clock.now += 0.2
    spin.setValue(0.55)  # quick, but after an Undo and Redo: its own step, not merged into the redone one
    window.undo_action.trigger()
    assert window.session.spec.head.dropout == 0.5
    window.undo_action.trigger()
    assert window.session.spec.head.dropout == before

    clock.now += 5
    epochs = window.show_page("train").epochs
    first = epochs.value()
    epochs.setValue(first + 1)
    clock.now += 0.3
    epochs.setValue(first)  # changed back at once: no step that does nothing
    assert stack.count() == steps and window.undo_action.text() == "Undo"
    assert window.redo_action.text() == "Redo"  # the new edit left nothing to redo


def test_an_undo_the_file_system_refuses_is_said_and_can_be_tried_again(window, moved_to_c, shown_errors):
    data, move = moved_to_c
    move()
    (data / "a" / "img_009.png").write_bytes(b"another image took the name")
    window.undo_action.trigger()
    assert len(shown_errors) == 1
    title, message, _ = shown_errors[0]
    assert "img_009.png" in message and "\n" not in message and "Traceback" not in message
    assert (data / "c" / "img_009.png").is_file() and len(window.session.moves) == 1
    assert window.undo_action.text() == "Undo Move of img_009.png"  # the history is as it was

    (data / "a" / "img_009.png").unlink()
    window.undo_action.trigger()
    assert (data / "a" / "img_009.png").is_file() and window.session.moves == []
    assert len(shown_errors) == 1


def test_a_move_the_file_system_fails_on_the_way_leaves_the_history(window, moved_to_c, shown_errors,
                                                                     monkeypatch):
    data, move = moved_to_c
    window.show_page("train").epochs.setValue(9)
    move()

    def refuse(_move):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(session_module.relabel, "undo", refuse)
    window.undo_action.trigger()
    assert len(shown_errors) == 1 and "Permission denied" in shown_errors[0][1]
    assert (data / "c" / "img_009.png").is_file() and len(window.session.moves) == 1  # as on disk
    assert window.undo_action.text() == "Undo Training Settings Change" and window.redo_action.text() == "Redo"
    window.undo_action.trigger()
    assert window.session.train_config.epochs != 9


def test_undoing_back_to_the_saved_state_clears_the_modified_mark(window, clock, tmp_path, moved_to_c):
    from cnnstudio.core.project import PROJECT_SUFFIX

    data, move = moved_to_c
    assert window._save_to(tmp_path / f"p{PROJECT_SUFFIX}")
    assert not window.isWindowModified() and not window.session.modified
    window.show_page("model").head_editors["dropout"].spin.setValue(0.25)
    clock.now += 5
    move()
    assert window.isWindowModified()
    window.undo_action.trigger()
    assert window.isWindowModified()
    window.undo_action.trigger()
    assert not window.isWindowModified() and not window.session.modified
    window.redo_action.trigger()
    assert window.isWindowModified()
    window.undo_action.trigger()
    assert not window.isWindowModified()

    window.session.add_run(tmp_path / "another-run")  # work that Undo does not take back
    assert window.isWindowModified()
    assert window._save_to(tmp_path / f"p{PROJECT_SUFFIX}")
    assert not window.isWindowModified()


def test_a_reopened_project_can_undo_its_moves_and_reads_as_modified_then(qtbot, window, moved_to_c, tmp_path):
    from cnnstudio.core.project import PROJECT_SUFFIX
    from cnnstudio.gui.main_window import MainWindow

    data, move = moved_to_c
    move()
    path = tmp_path / f"moved{PROJECT_SUFFIX}"
    assert window._save_to(path)
    again = MainWindow()
    qtbot.addWidget(again)
    assert again.open_project(path)
    assert not again.session.modified and again.undo_action.text() == "Undo Move of img_009.png"
    again.undo_action.trigger()
    assert (data / "a" / "img_009.png").is_file() and again.session.moves == []
    assert again.session.modified and again.isWindowModified()
    again.session.mark_saved()


@pytest.fixture
def small_sample(monkeypatch):
    from cnnstudio.core.data import sample

    real = sample.generate_sample
    monkeypatch.setattr(sample, "generate_sample", lambda out, **kw: real(out, **{**kw, "per_class": 3}))


def test_opening_the_sample_and_quitting_at_once_asks_nothing(qtbot, window, questions, small_sample):
    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_sample()  # as `cnnstudio --sample` starts
    assert window.session.index is not None and not window.isWindowModified()
    assert window.close()
    assert "Unsaved changes" not in questions


def test_quitting_after_a_change_asks_to_save_it(qtbot, window, questions, small_sample):
    with qtbot.waitSignal(window.data_panel.scanFinished, timeout=TIMEOUT):
        window.open_sample()
    window.data_panel.seed_spin.setValue(7)
    assert window.isWindowModified()
    assert window.close()  # the conftest answers Discard
    assert "Unsaved changes" in questions
