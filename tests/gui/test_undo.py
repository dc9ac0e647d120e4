"""Edit > Undo and Redo: the split, model and training settings go back step by step; on the
Evaluate page, Undo takes back the last image move instead."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses

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


def test_edit_menu_undoes_the_model_panel_and_a_move_on_the_evaluate_page(qtbot, window, tmp_path, monkeypatch):
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
