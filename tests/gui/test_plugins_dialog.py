"""Help > Plugins: broken plugins listed by name, enable/disable remembered, install and uninstall with pip
or, for a wheel, into the plugins folder."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from brokenplugins import BROKEN
from helpers import make_session
from PySide6.QtWidgets import QMessageBox
from tinydata import make_dataset
from venvs import make_venv

from cnnstudio.builtins import manager
from cnnstudio.builtins.manager import PluginManager
from cnnstudio.gui.main_window import MainWindow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_PLUGIN = REPO / "plugins" / "cnnstudio-mobilenet"

TINY = """
from cnnstudio.plugins import BackboneProvider, Param, hookimpl

def build(params, input_size, registry):
    from cnnstudio.core.tf import keras
    keras = keras()
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, x, name="backbone")

@hookimpl
def cnnstudio_register_backbones(registry):
    registry.add_backbone(BackboneProvider(id="tiny", display_name="Tiny plugin net", build=build,
                                           default_input_size=16, min_input_size=8))
"""

def _window(qtbot, plugin_manager=None):
    if plugin_manager is None:
        plugin_manager = PluginManager()
        plugin_manager.load()
    window = MainWindow(plugin_manager)
    qtbot.addWidget(window)
    return window


def _chooser_ids(window) -> set[str]:
    chooser = window.panel("model").chooser
    return {chooser.itemData(i) for i in range(chooser.count())} - {None}


def test_each_kind_of_broken_plugin_is_listed_by_name_and_the_builtins_work(qtbot, install_plugin):
    for name, source in BROKEN.items():
        install_plugin(name, source)
    plugin_manager = PluginManager()
    plugin_manager.load()
    window = _window(qtbot, plugin_manager)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)

    for name in ("no-import", "raises", "invalid"):
        item = dialog.item_for(name)
        assert item is not None and item.text(3) == "Error", name
        assert item.text(2) == f"package cnnstudio-test-{name}"
    builtins = dialog.item_for("builtins")
    assert builtins.text(3) == "OK" and builtins.text(2) == "built-in" and "backbones" in builtins.text(4)
    # The plugin whose build raises registers fine: its failure shows when a model is built.
    assert dialog.item_for("fails-to-build").text(3) == "OK"

    dialog.tree.setCurrentItem(dialog.item_for("raises"))
    details = dialog.details.toPlainText()
    assert "cnnstudio_register_backbones raised RuntimeError: boom in the hook" in details
    assert "Traceback (most recent call last)" in details  # the traceback, on demand
    dialog.tree.setCurrentItem(dialog.item_for("no-import"))
    assert "cnnstudio_no_such_module_anywhere" in dialog.details.toPlainText()
    assert "3 with errors" in dialog.status.text()
    assert {"backbone:vgg16", "backbone:scratch", "backbone:fragile"} <= _chooser_ids(window)


def test_training_a_plugin_backbone_whose_build_fails_shows_the_error_and_the_window_goes_on(
    qtbot, install_plugin, tmp_path, shown_errors
):
    from cnnstudio.core.model.spec import ModelSpec

    install_plugin("fails-to-build", BROKEN["fails-to-build"])
    plugin_manager = PluginManager()
    plugin_manager.load()
    session = make_session(make_dataset(tmp_path / "data", per_class=6))
    window = _window(qtbot, plugin_manager)
    window.session.set_dataset(session.dataset_root, session.index)
    window.session.set_train_config(session.train_config)
    window.session.set_spec(ModelSpec(backbone="fragile", input_size=16, head=session.spec.head))
    train = window.panel("train")
    worker = train.start()
    assert worker is not None
    qtbot.waitUntil(lambda: not train.is_training(), timeout=60_000)

    (title, message, _details), = shown_errors
    assert title == "Training failed"
    assert "fragile" in message and "fails-to-build" in message and "this backbone cannot be built" in message
    # The window is still usable: another model trains.
    window.session.set_spec(session.spec)
    assert train.start() is not None
    qtbot.waitUntil(lambda: not train.is_training(), timeout=120_000)
    assert len(shown_errors) == 1


def test_disabling_a_plugin_is_remembered_and_refreshes_the_model_panel(qtbot, install_plugin, monkeypatch):
    install_plugin("tiny", TINY)
    monkeypatch.setattr(manager, "_default", None)
    window = MainWindow()  # the process-wide manager, as the application starts
    qtbot.addWidget(window)
    qtbot.waitUntil(lambda: not window.plugins_loading(), timeout=60_000)
    assert "backbone:tiny" in _chooser_ids(window)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    dialog.tree.setCurrentItem(dialog.item_for("tiny"))
    assert dialog.toggle_button.text() == "Disable"
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        dialog.toggle_button.click()  # imported again in a worker

    assert dialog.item_for("tiny").text(3) == "Disabled" and dialog.toggle_button.text() == "Enable"
    assert "backbone:tiny" not in _chooser_ids(window)
    assert "remembered" in dialog.status.text()

    monkeypatch.setattr(manager, "_default", None)  # a restart
    restarted = MainWindow()
    qtbot.addWidget(restarted)
    qtbot.waitUntil(lambda: not restarted.plugins_loading(), timeout=60_000)
    assert "backbone:tiny" not in _chooser_ids(restarted)
    again = restarted.plugins_dialog()
    qtbot.addWidget(again)
    again.tree.setCurrentItem(again.item_for("tiny"))
    with qtbot.waitSignal(restarted.pluginsLoaded, timeout=60_000):
        again.toggle_button.click()
    assert "backbone:tiny" in _chooser_ids(restarted)


def test_a_model_whose_plugin_is_disabled_stays_and_says_why(qtbot, install_plugin):
    from cnnstudio.core.model.spec import resolve_spec

    install_plugin("tiny", TINY)
    window = _window(qtbot)
    window.session.set_spec(resolve_spec(window.session.registry, "tiny"))
    model = window.panel("model")
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        assert window.reload_plugins(disabled=["tiny"]) == ""
    assert window.session.spec.backbone == "tiny"  # nothing the user set is lost
    assert "'tiny' is not available" in model.error.text() and not model.error.isHidden()
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        window.reload_plugins(disabled=[])
    assert model.error.isHidden()


def test_install_refuses_what_is_not_a_package_naming_it(qtbot, tmp_path, shown_errors):
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    (tmp_path / "empty").mkdir()
    (tmp_path / "notes.txt").write_text("x")
    assert not dialog.install(tmp_path / "empty")
    assert not dialog.install(tmp_path / "notes.txt")
    assert not dialog.install(tmp_path / "missing.whl")
    messages = [m for _, m, _ in shown_errors]
    assert "empty: not a Python project folder" in messages[0]
    assert "notes.txt: not a Python package" in messages[1]
    assert "missing.whl: no such file or folder" in messages[2]


@pytest.mark.slow
def test_install_from_folder_and_uninstall_the_example_plugin(qtbot, tmp_path, monkeypatch, questions):
    """The dialog's pip runs for a fresh interpreter whose site-packages this process can see, so the
    example plugin is installed for real without touching the environment the tests run in."""
    python = make_venv(tmp_path / "venv")
    site_packages = next((tmp_path / "venv" / "lib").glob("python*/site-packages"))
    monkeypatch.syspath_prepend(str(site_packages))
    for name in [m for m in sys.modules if m.startswith("cnnstudio_mobilenet")]:
        monkeypatch.delitem(sys.modules, name)  # given back at the end; the test's own import goes
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    dialog.python = str(python)
    assert "backbone:mobilenetv2" not in _chooser_ids(window)

    with qtbot.waitSignal(dialog.pipFinished, timeout=300_000) as finished:
        assert dialog.install(EXAMPLE_PLUGIN)
    assert finished.args == [0], dialog.log.toPlainText()[-2000:]
    log = dialog.log.toPlainText()
    assert "-m pip install" in log and "Successfully installed cnnstudio-mobilenet" in log
    assert "new plugin mobilenet" in dialog.status.text()
    item = dialog.item_for("mobilenet")
    assert item.text(3) == "OK" and item.text(2) == "package cnnstudio-mobilenet" and item.text(1) == "0.1.0"
    assert {"backbone:mobilenetv2", "backbone:efficientnetb0"} <= _chooser_ids(window)

    dialog.tree.setCurrentItem(item)
    with qtbot.waitSignal(dialog.pipFinished, timeout=120_000) as finished:
        assert dialog.uninstall_selected()
    assert finished.args == [0], dialog.log.toPlainText()[-2000:]
    assert "Uninstall plugin" in questions
    assert dialog.item_for("mobilenet") is None
    assert "backbone:mobilenetv2" not in _chooser_ids(window)
    for name in [m for m in sys.modules if m.startswith("cnnstudio_mobilenet")]:
        del sys.modules[name]


def test_the_dialog_asks_before_uninstalling(qtbot, install_plugin, monkeypatch):
    from cnnstudio.gui.widgets import common as widgets

    install_plugin("tiny", TINY)
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    dialog.tree.setCurrentItem(dialog.item_for("tiny"))
    monkeypatch.setattr(widgets, "ask", lambda *a, **k: QMessageBox.StandardButton.No)
    assert not dialog.uninstall_selected() and dialog.process is None
    dialog.tree.setCurrentItem(dialog.item_for("builtins"))
    assert not dialog.uninstall_button.isEnabled() and not dialog.toggle_button.isEnabled()


SLOW_IMPORT = """
import time
time.sleep(1.5)
""" + TINY.replace('id="tiny"', 'id="slowbone"')


def test_a_plugin_whose_import_hangs_does_not_freeze_the_window(qtbot, install_plugin, monkeypatch, tmp_path):
    """The start-up search for plugins runs in a worker: the event loop goes on, the built-ins work,
    a project opened meanwhile waits for it, and the slow plugin is named with its time."""
    from PySide6.QtCore import QTimer

    from cnnstudio.core.model.spec import resolve_spec
    from cnnstudio.plugins import manager as host

    monkeypatch.setattr(host, "SLOW_PLUGIN_SECONDS", 0.5)
    install_plugin("slowpkg", SLOW_IMPORT)
    monkeypatch.setattr(manager, "_default", None)  # a fresh start
    window = MainWindow()
    qtbot.addWidget(window)
    window.show()
    assert window.plugins_loading()
    assert "Loading plugins" in window.job_label.text()
    assert {"backbone:vgg16", "backbone:scratch"} <= _chooser_ids(window)  # the built-ins at once
    assert "backbone:slowbone" not in _chooser_ids(window)

    # A project whose model is the slow plugin's, opened while it loads, opens once it is there.
    from cnnstudio.gui.session import Session
    from cnnstudio.plugins import BackboneProvider

    registry = PluginManager(autoload=False).load()  # the plugin's module is not imported here
    registry.add_backbone(BackboneProvider(id="slowbone", display_name="Slow", build=print,
                                           default_input_size=16, min_input_size=8))
    saved = Session(registry)
    saved.set_spec(resolve_spec(registry, "slowbone"))
    project = tmp_path / "slow.cnnstudio.json"
    saved.save_project(project)
    assert window.open_project(project)
    assert window.session.project_path is None

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(window.plugins_loading()))
    timer.start(20)
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        pass
    timer.stop()
    # The GUI thread handled its timer many times while the plugin's import slept.
    assert ticks.count(True) >= 10
    assert "backbone:slowbone" in _chooser_ids(window)
    assert window.session.project_path == project and window.session.spec.backbone == "slowbone"
    message = window.statusBar().currentMessage()
    assert "plugin 'slowpkg' (cnnstudio-test-slowpkg) took " in message and " s to load" in message
    assert "Loading plugins" not in window.job_label.text()
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    assert dialog.item_for("slowpkg").text(3) == "OK"
    assert "took" in dialog.item_for("slowpkg").child(1).text(0)


SLOW_REGISTRATION = TINY.replace("def cnnstudio_register_backbones(registry):\n",
                                 "def cnnstudio_register_backbones(registry):\n    import time\n    time.sleep(1.5)\n"
                                 ).replace('id="tiny"', 'id="slowreg"')


def test_enabling_a_plugin_whose_registration_is_slow_does_not_freeze_the_window(qtbot, install_plugin):
    """A reload (enable, disable, install, uninstall) registers the plugins in a worker as start-up
    does: the dialog and the window go on while a plugin's hook sleeps."""
    from PySide6.QtCore import QTimer

    assert "time.sleep(1.5)" in SLOW_REGISTRATION
    install_plugin("slowreg", SLOW_REGISTRATION)
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    dialog.tree.setCurrentItem(dialog.item_for("slowreg"))
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        dialog.toggle_button.click()  # disable: quick, the hook is not called
    assert "backbone:slowreg" not in _chooser_ids(window)

    ticks = []
    timer = QTimer()
    timer.timeout.connect(lambda: ticks.append(window.plugins_loading()))
    timer.start(20)
    dialog.tree.setCurrentItem(dialog.item_for("slowreg"))
    dialog.toggle_button.click()  # enable: the hook sleeps
    assert window.plugins_loading() and "reloading the plugins" in dialog.status.text()
    assert not dialog.busy.isHidden()
    assert "Reloading plugins" in window.job_label.text()
    assert {"backbone:vgg16", "backbone:scratch"} <= _chooser_ids(window)  # usable meanwhile
    with qtbot.waitSignal(window.pluginsLoaded, timeout=60_000):
        pass
    timer.stop()
    assert ticks.count(True) >= 10  # the GUI thread handled its timer while the hook slept
    assert "backbone:slowreg" in _chooser_ids(window)
    assert dialog.status.text().endswith("slowreg enabled; remembered across restarts") and dialog.busy.isHidden()
    assert dialog.item_for("slowreg").text(3) == "OK"


def _no_pip(monkeypatch):
    """As in the one-folder app, which has no pip: sys.frozen is set."""
    monkeypatch.setattr(sys, "frozen", True, raising=False)


def _choose(monkeypatch, path) -> list[str]:
    """The file dialog answers ``path``; returns the filters it was opened with."""
    from cnnstudio.gui.dialogs import plugins as dialog_module

    offered = []

    def answer(parent, title, folder, filters):
        offered.append(filters)
        return str(path), filters

    monkeypatch.setattr(dialog_module.QFileDialog, "getOpenFileName", answer)
    return offered


def test_install_from_file_unpacks_a_wheel_into_the_plugins_folder_without_pip(qtbot, tmp_path, monkeypatch,
                                                                                questions, shown_errors):
    from wheels import make_wheel

    from cnnstudio.plugins.folder import plugins_dir

    monkeypatch.setattr(sys, "path", list(sys.path))  # the plugin's folder goes on it
    _no_pip(monkeypatch)
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-wheeltiny", "0.3",
                       module_source=TINY.replace('id="tiny"', 'id="wheeltiny"'))
    offered = _choose(monkeypatch, wheel)
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    assert dialog.install_file_button.isEnabled() and not dialog.install_folder_button.isEnabled()
    assert "backbone:wheeltiny" not in _chooser_ids(window)

    try:
        with qtbot.waitSignal(dialog.reloaded, timeout=60_000):
            dialog.install_file_button.click()
        assert offered == ["Plugin wheels (*.whl)"]
        assert shown_errors == []
        item = dialog.item_for("wheeltiny")
        assert (item.text(1), item.text(2), item.text(3)) == ("0.3", "plugins folder cnnstudio-wheeltiny", "OK")
        assert "Installed cnnstudio-wheeltiny 0.3 into the plugins folder: new plugin wheeltiny" in dialog.status.text()
        assert (plugins_dir() / "cnnstudio-wheeltiny" / "cnnstudio_wheeltiny" / "plugin.py").is_file()
        assert "backbone:wheeltiny" in _chooser_ids(window)

        dialog.tree.setCurrentItem(item)
        assert dialog.uninstall_button.isEnabled()  # no pip needed for the plugins folder
        with qtbot.waitSignal(dialog.reloaded, timeout=60_000):
            assert dialog.uninstall_selected()
        assert "Uninstall plugin" in questions
        assert dialog.item_for("wheeltiny") is None and "backbone:wheeltiny" not in _chooser_ids(window)
        assert not (plugins_dir() / "cnnstudio-wheeltiny").exists()
        assert "Removed cnnstudio-wheeltiny from the plugins folder" in dialog.status.text()
    finally:
        for module in ("cnnstudio_wheeltiny.plugin", "cnnstudio_wheeltiny"):
            sys.modules.pop(module, None)


def test_install_from_file_refuses_a_compiled_wheel_and_an_sdist_without_pip(qtbot, tmp_path, monkeypatch,
                                                                             shown_errors):
    from wheels import make_wheel

    _no_pip(monkeypatch)
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-native", tag="cp311-cp311-win_amd64", purelib=False)
    _choose(monkeypatch, wheel)
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    dialog.install_file_button.click()
    sdist = tmp_path / "cnnstudio-native-0.1.tar.gz"
    sdist.write_bytes(b"")
    assert not dialog.install(sdist)
    (title, message, details), (_, sdist_message, _) = shown_errors
    assert title == "Not installed" and "\n" not in message and details == ""
    assert message == f"{wheel}: needs compiled code the app lacks: tag cp311-cp311-win_amd64"
    assert "needs pip, which this build of CNN Studio lacks; install the plugin's wheel (.whl) instead" in sdist_message
    assert dialog.item_for("native") is None and "not installed" in dialog.status.text()


def test_a_compiled_wheel_in_a_python_installation_is_offered_to_pip(qtbot, tmp_path, monkeypatch, questions):
    from wheels import make_wheel

    wheel = make_wheel(tmp_path / "dist", "cnnstudio-native", tag="cp311-cp311-linux_x86_64", purelib=False)
    window = _window(qtbot)
    dialog = window.plugins_dialog()
    qtbot.addWidget(dialog)
    monkeypatch.setattr("cnnstudio.gui.dialogs.plugins.pip_available", lambda python: True)
    started = []
    monkeypatch.setattr(dialog, "_run_pip", lambda action, args, title: started.append(args) or True)
    assert dialog.install(wheel)
    assert questions == ["Install with pip?"]
    assert started == [["install", str(wheel)]]
