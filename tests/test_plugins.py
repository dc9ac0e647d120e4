"""Plugin discovery through real entry points, isolation of broken plugins, the registry's checks."""

from __future__ import annotations

import importlib.metadata
import json
import signal
import subprocess
import sys
import textwrap

import pytest

from cnnstudio.builtins import manager
from cnnstudio.builtins.manager import PluginManager, default_manager, load_registry
from cnnstudio.core.errors import StudioError
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.plugins import (
    API_VERSION,
    BackboneProvider,
    BlockProvider,
    BuildError,
    Param,
    Preset,
    Registry,
)

BUILTIN_BACKBONES = {"scratch", "vgg16", "vgg19", "resnet50"}

TINY_PLUGIN = """
from cnnstudio.plugins import BackboneProvider, Param, hookimpl

def build_tiny(params, input_size, registry):
    from cnnstudio.core.tf import keras
    keras = keras()
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(params["filters"], 3, padding="same", activation="relu")(inputs)
    return keras.Model(inputs, x, name="backbone")

@hookimpl
def cnnstudio_register_backbones(registry):
    registry.add_backbone(BackboneProvider(
        id="tiny", display_name="Tiny", build=build_tiny,
        params=(Param("filters", "int", 4, minimum=1),),
        default_input_size=16, min_input_size=8,
    ))
"""


def errors_by_plugin(manager_: PluginManager) -> dict[str, str]:
    """Each failing plugin's causes, joined."""
    causes: dict[str, list[str]] = {}
    for error in manager_.errors:
        causes.setdefault(error.plugin, []).append(error.cause)
    return {plugin: " | ".join(found) for plugin, found in causes.items()}


def info(manager_: PluginManager, name: str):
    return next(p for p in manager_.plugins if p.name == name)


def test_builtins_are_registered_as_a_plugin():
    manager_ = PluginManager(autoload=False)
    registry = manager_.load()
    assert BUILTIN_BACKBONES <= set(registry.backbones)
    assert "conv" in registry.blocks
    assert {f"seed-model-{i}" for i in range(1, 7)} | {"keras-small-convnet"} <= set(registry.presets)
    assert registry.origin("backbone", "vgg16") == "builtins"
    assert registry.origin("preset", "seed-model-6") == "builtins"
    builtins = info(manager_, "builtins")
    assert (builtins.origin, builtins.status, builtins.distribution) == ("built-in", "ok", "cnnstudio")
    assert "backbone:resnet50" in builtins.provides and "block:conv" in builtins.provides
    assert manager_.errors == []
    assert manager_.load() is registry  # loading twice changes nothing


def test_third_party_backbone_through_a_real_entry_point(install_plugin):
    install_plugin("tiny", TINY_PLUGIN, distribution="cnnstudio-tiny")
    found = {ep.name: ep for ep in importlib.metadata.entry_points(group="cnnstudio.plugins")}
    assert found["tiny"].dist.name == "cnnstudio-tiny"

    manager_ = PluginManager()
    registry = manager_.load()
    assert manager_.errors == []
    assert registry.origin("backbone", "tiny") == "tiny"
    tiny = info(manager_, "tiny")
    assert (tiny.origin, tiny.distribution, tiny.version, tiny.status) == ("package", "cnnstudio-tiny", "0.1", "ok")
    assert tiny.provides == ["backbone:tiny"]

    from cnnstudio.core.model.models import build_model

    model = build_model(ModelSpec("tiny", params={"filters": 3}, input_size=8), 3, registry)
    assert model.get_layer("backbone").output.shape[-1] == 3
    assert model.output.shape[-1] == 3


def test_broken_plugins_are_reported_by_name_and_the_rest_still_loads(install_plugin):
    install_plugin("no-import", "import cnnstudio_no_such_module_anywhere\n")
    install_plugin("raises", """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            raise RuntimeError("boom in the hook")
    """)
    install_plugin("invalid", """
        from cnnstudio.plugins import BackboneProvider, BlockProvider, ExporterProvider, hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="Bad Id", display_name="Bad", build=print))
            registry.add_backbone(BackboneProvider(id="vgg16", display_name="Again", build=print))
            registry.add_backbone(BackboneProvider(id="fine", display_name="Fine", build=print))

        @hookimpl
        def cnnstudio_register_blocks(registry):
            registry.add_block(BlockProvider(id="noapply", display_name="No apply", apply=None))

        @hookimpl
        def cnnstudio_register_exporters(registry):
            registry.add_exporter(ExporterProvider(id="nosuffix", display_name="No suffix", write=print, load=print))
            registry.add_exporter(ExporterProvider(id="onnx", display_name="Again", write=print, load=print,
                                                   suffix=".onnx"))
    """)
    install_plugin("future", """
        from cnnstudio.plugins import BackboneProvider, hookimpl

        CNNSTUDIO_API_VERSION = 99

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="future", display_name="Future", build=print))
    """)
    install_plugin("typo", """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbone(registry):
            pass
    """)
    install_plugin("tiny", TINY_PLUGIN)

    manager_ = PluginManager()
    registry = manager_.load()
    errors = errors_by_plugin(manager_)

    assert "failed to import" in errors["no-import"]
    assert "cnnstudio_no_such_module_anywhere" in errors["no-import"]
    assert "cnnstudio_register_backbones raised RuntimeError: boom in the hook" in errors["raises"]
    assert "'Bad Id' is invalid" in errors["invalid"]
    assert "'vgg16' is already registered by plugin 'builtins'" in errors["invalid"]
    assert "block 'noapply': apply is not callable" in errors["invalid"]
    assert "exporter 'nosuffix': a file format needs a suffix" in errors["invalid"]
    assert "exporter 'onnx' is already registered by plugin 'builtins'" in errors["invalid"]
    assert f"needs plugin API version 99, but this CNN Studio provides version {API_VERSION}" in errors["future"]
    assert "unknown hook 'cnnstudio_register_backbone'" in errors["typo"]
    for name in ("no-import", "raises", "invalid", "future", "typo"):
        assert info(manager_, name).status == "error"
        assert all(e.distribution == f"cnnstudio-test-{name}" for e in info(manager_, name).errors)
    assert "RuntimeError: boom in the hook" in next(e for e in manager_.errors if e.plugin == "raises").traceback

    # The invalid plugin's valid provider still registered; the refused ones did not.
    assert registry.origin("backbone", "fine") == "invalid"
    assert registry.origin("backbone", "vgg16") == "builtins"
    assert "future" not in registry.backbones and "noapply" not in registry.blocks
    # The built-ins and the good plugin are unaffected.
    assert BUILTIN_BACKBONES | {"tiny"} <= set(registry.backbones)
    assert info(manager_, "builtins").status == "ok" and info(manager_, "tiny").status == "ok"
    assert "seed-model-6" in registry.presets


def test_a_disabled_plugin_is_not_imported(install_plugin):
    module = install_plugin("tiny", TINY_PLUGIN)
    manager_ = PluginManager(disabled=["tiny"])
    registry = manager_.load()
    assert info(manager_, "tiny").status == "disabled"
    assert "tiny" not in registry.backbones
    assert module not in sys.modules
    assert manager_.errors == []


def test_disabling_is_remembered_for_the_next_start(install_plugin, monkeypatch, capsys):
    from cnnstudio.cli import main

    install_plugin("tiny", TINY_PLUGIN)
    monkeypatch.setattr(manager, "_default", None)
    assert main(["plugins", "--disable", "tiny", "--json"]) == 0
    listed = {p["name"]: p["status"] for p in json.loads(capsys.readouterr().out)}
    assert listed["tiny"] == "disabled"

    monkeypatch.setattr(manager, "_default", None)  # a new process
    assert "tiny" not in load_registry().backbones
    assert info(default_manager(), "tiny").status == "disabled"

    monkeypatch.setattr(manager, "_default", None)
    assert main(["plugins", "--enable", "tiny"]) == 0
    monkeypatch.setattr(manager, "_default", None)
    assert "tiny" in load_registry().backbones


def test_reload_finds_a_plugin_installed_since_start_into_the_same_registry(install_plugin):
    manager_ = PluginManager()
    registry = manager_.load()
    assert "tiny" not in registry.backbones
    install_plugin("tiny", TINY_PLUGIN)
    assert manager_.reload() is registry
    assert "tiny" in registry.backbones and info(manager_, "tiny").status == "ok"
    assert [p.name for p in manager_.plugins].count("builtins") == 1

    assert manager_.reload(disabled=["tiny"]) is registry
    assert "tiny" not in registry.backbones and info(manager_, "tiny").status == "disabled"
    assert BUILTIN_BACKBONES <= set(registry.backbones) and "onnx" in registry.exporters


def test_an_unreadable_settings_file_enables_every_plugin(install_plugin, monkeypatch, tmp_path):
    from cnnstudio.plugins.settings import settings_path

    install_plugin("tiny", TINY_PLUGIN)
    settings_path().parent.mkdir(parents=True, exist_ok=True)
    settings_path().write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(manager, "_default", None)
    assert "tiny" in load_registry().backbones


def test_environment_variable_turns_discovery_off(install_plugin, monkeypatch):
    install_plugin("tiny", TINY_PLUGIN)
    monkeypatch.setenv("CNNSTUDIO_DISABLE_PLUGINS", "1")
    manager_ = PluginManager()
    registry = manager_.load()
    assert [p.name for p in manager_.plugins] == ["builtins"]
    assert "tiny" not in registry.backbones and BUILTIN_BACKBONES <= set(registry.backbones)
    assert "tiny" in PluginManager(autoload=True).load().backbones


def test_a_failing_build_names_the_plugin(install_plugin):
    install_plugin("exploding", """
        from cnnstudio.plugins import BackboneProvider, BlockProvider, hookimpl

        def build(params, input_size, registry):
            raise RuntimeError("kaput")

        def apply(x, params, name):
            raise ValueError("bad block")

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(
                id="explodes", display_name="Explodes", build=build, default_input_size=32))

        @hookimpl
        def cnnstudio_register_blocks(registry):
            registry.add_block(BlockProvider(id="breaks", display_name="Breaks", apply=apply))
    """)
    registry = PluginManager().load()
    from cnnstudio.core.model.models import build_model

    with pytest.raises(BuildError) as caught:
        build_model(ModelSpec("explodes"), 2, registry)
    assert str(caught.value) == "backbone 'explodes' from plugin 'exploding' failed to build: RuntimeError: kaput"
    assert isinstance(caught.value, StudioError)

    spec = ModelSpec("scratch", params={"blocks": [{"type": "breaks"}]}, input_size=8)
    with pytest.raises(BuildError, match="block 'breaks' from plugin 'exploding' failed to build: ValueError: bad block"):
        build_model(spec, 2, registry)


def test_default_manager_is_shared_until_the_disabled_set_changes(monkeypatch):
    monkeypatch.setattr(manager, "_default", None)
    first = default_manager()
    assert default_manager() is first
    assert load_registry() is first.registry
    other = default_manager(disabled=["something"])
    assert other is not first and other.disabled == {"something"}
    assert default_manager() is other


def test_importing_the_plugin_system_imports_no_qt_and_no_tensorflow():
    code = textwrap.dedent("""
        import sys
        import cnnstudio.plugins, cnnstudio.builtins.manager, cnnstudio.core.model.spec, cnnstudio.plugins.providers
        from cnnstudio.core.model.spec import resolve_spec
        registry = cnnstudio.builtins.manager.PluginManager().load()
        resolve_spec(registry, "seed-model-6")
        heavy = [m for m in ("PySide6", "pyqtgraph", "tensorflow", "keras") if m in sys.modules]
        print(",".join(heavy))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


# The registry's own checks, as a plugin author meets them.

def _build(params, input_size, registry):  # never called
    raise AssertionError


@pytest.mark.parametrize(
    ("provider", "message"),
    [
        (BackboneProvider("UPPER", "x", _build), "backbone id 'UPPER' is invalid"),
        (BackboneProvider("ok", "", _build), "has no display name"),
        (BackboneProvider("ok", "x", "not callable"), "build is not callable"),
        (BackboneProvider("ok", "x", _build, params=[Param("a", "int", 1)]), "params must be a tuple"),
        (BackboneProvider("ok", "x", _build, params=(Param("a", "colour", 1),)), "unknown kind 'colour'"),
        (BackboneProvider("ok", "x", _build, params=(Param("a", "int", 1), Param("a", "int", 2))), "defined twice"),
        (BackboneProvider("ok", "x", _build, params=(Param("a", "choice", "x"),)), "needs a tuple of choices"),
        (BackboneProvider("ok", "x", _build, params=(Param("a", "int", 0, minimum=1),)), "default of parameter a: 0 is below"),
        (BackboneProvider("ok", "x", _build, min_input_size=64, default_input_size=32), "below min_input_size"),
        (BackboneProvider("ok", "x", _build, preprocessing="os.system"), "preprocessing must be 'rescale'"),
        (BackboneProvider("ok", "x", _build, pretrained=True), "needs a 'weights' parameter"),
        (BlockProvider("ok", "x", print), "expected a BackboneProvider, got BlockProvider"),
    ],
)
def test_registry_refuses_malformed_backbones(provider, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        Registry().add_backbone(provider)


def test_registry_checks_presets_against_what_is_registered():
    registry = PluginManager(autoload=False).load()
    with pytest.raises(ValueError, match="preset 'p': unknown backbone 'nope'"):
        registry.add_preset(Preset("p", "P", {"backbone": "nope"}))
    with pytest.raises(ValueError, match="preset 'q': input size 16 is smaller"):
        registry.add_preset(Preset("q", "Q", {"backbone": "vgg16", "input_size": 16}))
    registry.add_preset(Preset("r", "R", {"backbone": "vgg16", "input_size": 48}))
    with pytest.raises(KeyError):
        registry.origin("preset", "missing")


def test_cli_reports_each_kind_of_broken_plugin_by_name_while_the_builtins_work(
    install_plugin, monkeypatch, capsys, tmp_path
):
    from brokenplugins import BROKEN
    from tinydata import make_dataset

    from cnnstudio.cli import main

    for name, source in BROKEN.items():
        install_plugin(name, source)
    monkeypatch.setattr(manager, "_default", None)
    assert main(["plugins", "--json"]) == 0
    listed = {p["name"]: p for p in json.loads(capsys.readouterr().out)}
    assert listed["builtins"]["status"] == "ok"
    assert "failed to import" in listed["no-import"]["errors"][0]["cause"]
    assert "RuntimeError: boom in the hook" in listed["raises"]["errors"][0]["cause"]
    assert "Traceback" in listed["raises"]["errors"][0]["traceback"]
    assert "'Bad Id' is invalid" in listed["invalid"]["errors"][0]["cause"]
    assert {listed[n]["status"] for n in ("no-import", "raises", "invalid")} == {"error"}
    assert listed["fails-to-build"]["status"] == "ok" and listed["fails-to-build"]["provides"] == ["backbone:fragile"]

    assert main(["models", "--json"]) == 0
    assert BUILTIN_BACKBONES | {"fragile"} <= {b["id"] for b in json.loads(capsys.readouterr().out)["backbones"]}
    data = make_dataset(tmp_path / "data", per_class=6)
    assert main(["train", str(data), "--model", "fragile", "--epochs", "1", "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert "backbone 'fragile' from plugin 'fails-to-build' failed to build" in err
    assert "this backbone cannot be built" in err


def test_cli_listing_says_each_plugin_error_once(install_plugin, tmp_path):
    """In a process of its own, where the manager's log warnings reach standard error."""
    import os

    install_plugin("raises", """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            raise RuntimeError("boom in the hook")
    """)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "cnnstudio", "plugins"], capture_output=True, text=True,
                         env=env, check=True)
    assert (out.stdout + out.stderr).count("boom in the hook") == 1
    assert "raises 0.1 [package] error" in out.stdout


# Plugins that try to stop or stall the host.

def test_keyboardinterrupt_and_systemexit_from_a_plugin_are_reported_and_the_rest_loads(install_plugin):
    install_plugin("interrupts", "raise KeyboardInterrupt\n")
    install_plugin("exits", "import sys\nsys.exit(3)\n")
    install_plugin("hook-interrupts", """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            raise KeyboardInterrupt
    """)
    install_plugin("hook-exits", """
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_blocks(registry):
            raise SystemExit("bye")
    """)
    install_plugin("tiny", TINY_PLUGIN)

    manager_ = PluginManager()
    registry = manager_.load()
    errors = errors_by_plugin(manager_)
    assert errors["interrupts"] == "failed to import cnnstudio_test_interrupts: KeyboardInterrupt"
    assert errors["exits"] == "failed to import cnnstudio_test_exits: SystemExit: 3"
    assert errors["hook-interrupts"] == "cnnstudio_register_backbones raised KeyboardInterrupt"
    assert errors["hook-exits"] == "cnnstudio_register_blocks raised SystemExit: bye"
    for name in ("interrupts", "exits", "hook-interrupts", "hook-exits"):
        assert info(manager_, name).status == "error"
    assert BUILTIN_BACKBONES | {"tiny"} <= set(registry.backbones) and "conv" in registry.blocks


def test_a_backbone_or_block_that_raises_keyboardinterrupt_or_exits_is_named_and_the_command_goes_on(
        install_plugin, tmp_path, capsys, monkeypatch):
    """Raised while a model is built, on the command's own thread: named like any plugin error,
    never "interrupted" and never the end of the process."""
    from tinydata import make_dataset

    from cnnstudio.cli import main
    from cnnstudio.core.model.models import build_model

    install_plugin("quits", """
        import sys
        from cnnstudio.plugins import BackboneProvider, BlockProvider, hookimpl

        def build(params, input_size, registry):
            raise KeyboardInterrupt

        def apply(x, params, name):
            sys.exit(4)

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="quitter", display_name="Quitter", build=build,
                                                   default_input_size=16, min_input_size=8))

        @hookimpl
        def cnnstudio_register_blocks(registry):
            registry.add_block(BlockProvider(id="exits", display_name="Exits", apply=apply))
    """)
    monkeypatch.setattr(manager, "_default", None)
    data = make_dataset(tmp_path / "data", per_class=6)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal gives it
    try:
        code = main(["train", str(data), "--model", "quitter", "--epochs", "1", "--out", str(tmp_path / "r")])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert code == 1, err
    assert "backbone 'quitter' from plugin 'quits' failed to build: KeyboardInterrupt" in err
    assert "cnnstudio train: interrupted" not in err and err.count("error:") == 1 and "Traceback" not in err

    spec = ModelSpec("scratch", params={"blocks": [{"type": "exits"}]}, input_size=8)
    with pytest.raises(BuildError) as caught:
        build_model(spec, 2, manager.default_manager().registry)
    assert str(caught.value) == "block 'exits' from plugin 'quits' failed to build: SystemExit: 4"


def test_the_users_ctrl_c_while_a_backbone_builds_still_stops(install_plugin, monkeypatch):
    from cnnstudio.core.model.models import build_model

    install_plugin("pressed-build", """
        import os, signal, time
        from cnnstudio.plugins import BackboneProvider, hookimpl

        def build(params, input_size, registry):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5)  # the signal's handler interrupts this at once

        @hookimpl
        def cnnstudio_register_backbones(registry):
            registry.add_backbone(BackboneProvider(id="pressed", display_name="Pressed", build=build,
                                                   default_input_size=16, min_input_size=8))
    """)
    registry = PluginManager().load()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            build_model(ModelSpec("pressed"), 2, registry)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # the handler is put back
    finally:
        signal.signal(signal.SIGINT, previous)


def test_the_users_ctrl_c_during_a_plugin_import_still_stops(install_plugin):
    """Only a KeyboardInterrupt the plugin raises itself is recorded: a real SIGINT goes on."""
    install_plugin("pressed", """
        import os, signal, time
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(5)  # the signal's handler interrupts this at once
    """)
    # Python's own Ctrl-C handler, as a terminal gives it (a job started in the background has
    # SIGINT ignored, and then no Ctrl-C reaches it at all).
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            PluginManager().load()
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_slow_plugin_is_named_with_its_time(install_plugin, monkeypatch):
    from cnnstudio.plugins import manager as host

    monkeypatch.setattr(host, "SLOW_PLUGIN_SECONDS", 0.1)
    install_plugin("slowpkg", "import time\ntime.sleep(0.3)\n" + TINY_PLUGIN)
    install_plugin("slowhook", """
        import time
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_blocks(registry):
            time.sleep(0.3)
    """)
    install_plugin("fast", "")
    manager_ = PluginManager()
    registry = manager_.load()
    assert manager_.errors == []
    assert len(manager_.warnings) == 2
    hook, slow = manager_.warnings  # in the order of the plugins, sorted by name
    assert slow.startswith("plugin 'slowpkg' (cnnstudio-test-slowpkg) took ") and " s to load" in slow
    assert float(slow.split(" took ")[1].split(" s ")[0]) >= 0.3
    assert "cnnstudio plugins --disable slowpkg" in slow
    assert hook.startswith("plugin 'slowhook' (cnnstudio-test-slowhook) took ")
    assert info(manager_, "slowpkg").warnings == [slow] and info(manager_, "fast").warnings == []
    assert info(manager_, "slowpkg").status == "ok" and "tiny" in registry.backbones


def test_discovery_on_another_thread_leaves_the_registry_in_use_until_adopted(install_plugin, monkeypatch):
    import threading

    install_plugin("tiny", TINY_PLUGIN)
    monkeypatch.setattr(manager, "_default", None)
    manager_ = default_manager(wait=False)
    registry = manager_.registry
    assert not manager_.complete and [p.name for p in manager_.plugins] == ["builtins"]
    assert BUILTIN_BACKBONES <= set(registry.backbones) and "tiny" not in registry.backbones

    found = []
    thread = threading.Thread(target=lambda: found.append(manager_.discover()))
    thread.start()
    thread.join(60)
    assert "tiny" not in registry.backbones and not manager_.complete  # nothing changed yet
    assert manager_.adopt(found[0]) is registry
    assert manager_.complete and "tiny" in registry.backbones and info(manager_, "tiny").status == "ok"
    assert default_manager() is manager_


def test_a_command_waits_for_a_manager_started_with_the_builtins_only(install_plugin, monkeypatch):
    install_plugin("tiny", TINY_PLUGIN)
    monkeypatch.setattr(manager, "_default", None)
    started = default_manager(wait=False)
    assert "tiny" not in started.registry.backbones
    assert "tiny" in load_registry().backbones and started.complete


def test_cli_names_a_slow_or_interrupting_plugin_in_one_line_each_and_goes_on(install_plugin, tmp_path):
    """In a process of its own (the threshold lowered there), where warnings reach standard error."""
    import os

    install_plugin("slowpkg", "import time\ntime.sleep(0.5)\n")
    install_plugin("interrupts", "raise KeyboardInterrupt\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    code = ("import sys; import cnnstudio.plugins.manager as m; m.SLOW_PLUGIN_SECONDS = 0.2\n"
            "from cnnstudio.cli import main; sys.exit(main(['models']))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    lines = out.stderr.splitlines()
    slow = [line for line in lines if "slowpkg" in line]
    assert len(slow) == 1 and slow[0].startswith("plugin 'slowpkg' (cnnstudio-test-slowpkg) took ")
    assert " s to load" in slow[0]
    interrupted = [line for line in lines if "interrupts" in line]
    assert interrupted == ["plugin 'interrupts' (cnnstudio-test-interrupts): failed to import "
                           "cnnstudio_test_interrupts: KeyboardInterrupt"]
    assert "Traceback" not in out.stderr and "interrupted" not in out.stderr
    assert "vgg16" in out.stdout
