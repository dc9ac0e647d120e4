"""The plugins folder: a plugin wheel installed without pip (the one-folder app's only way), found
by the studio like a pip-installed one, refused with one line when it cannot run here, removed
again by uninstall."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from wheels import TINY, make_wheel

from cnnstudio.builtins.manager import PluginManager
from cnnstudio.plugins.folder import install_wheel, plugins_dir

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_PLUGIN = REPO / "plugins" / "cnnstudio-mobilenet"


def studio(*args, env=None) -> subprocess.CompletedProcess:
    """``python -m cnnstudio ARGS`` in a fresh process, with this test's data folder."""
    return subprocess.run([sys.executable, "-m", "cnnstudio", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, env={**os.environ, **(env or {})}, timeout=300)


def export_extra() -> bool:
    """Whether the "export" extra (tf2onnx, onnxruntime) is installed, so ONNX export can run."""
    return all(importlib.util.find_spec(m) is not None for m in ("tf2onnx", "onnxruntime"))


def loaded(manager: PluginManager) -> dict:
    return {p.name: p for p in manager.plugins}


@pytest.fixture(autouse=True)
def _own_import_path(monkeypatch):
    """The plugin folders a test's manager puts on sys.path are gone after it."""
    monkeypatch.setattr(sys, "path", list(sys.path))


@pytest.fixture(scope="module")
def example_wheel(tmp_path_factory) -> Path:
    """The example plugin's wheel, built offline by its own build backend (hatchling)."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
                   cwd=EXAMPLE_PLUGIN, check=True, capture_output=True, text=True)
    return next(out.glob("*.whl"))


def test_the_example_plugin_wheel_installs_without_pip_and_its_backbones_are_found(example_wheel, tmp_path):
    env = {"CNNSTUDIO_DATA_DIR": str(tmp_path / "data"), "CNNSTUDIO_CONFIG_DIR": str(tmp_path / "config")}
    # As in the one-folder app: importing pip fails.
    (tmp_path / "nopip" / "pip").mkdir(parents=True)
    (tmp_path / "nopip" / "pip" / "__init__.py").write_text("raise ImportError('no pip in this app')\n")
    path = os.pathsep.join([str(tmp_path / "nopip"), *filter(None, [os.environ.get("PYTHONPATH")])])
    env_without_pip = {**env, "PYTHONPATH": path}
    no_pip = subprocess.run([sys.executable, "-c", "import pip"], capture_output=True, text=True,
                            env={**os.environ, **env_without_pip})
    assert "no pip in this app" in no_pip.stderr
    installed = studio("plugins", "install", example_wheel, "--json", env=env_without_pip)
    assert installed.returncode == 0, installed.stderr
    report = json.loads(installed.stdout)
    assert (report["name"], report["version"], report["plugins"]) == ("cnnstudio-mobilenet", "0.1.0", ["mobilenet"])
    folder = tmp_path / "data" / "plugins" / "cnnstudio-mobilenet"
    assert Path(report["folder"]) == folder
    assert (folder / "cnnstudio_mobilenet" / "plugin.py").is_file()
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".")]  # no temporary folder left

    models = studio("models", "--json", env=env)
    assert models.returncode == 0, models.stderr
    backbones = {b["id"]: b["origin"] for b in json.loads(models.stdout)["backbones"]}
    assert backbones["mobilenetv2"] == backbones["efficientnetb0"] == "mobilenet"
    assert backbones["vgg16"] == "builtins"
    plugins = {p["name"]: p for p in json.loads(studio("plugins", "--json", env=env).stdout)}
    mobilenet = plugins["mobilenet"]
    assert (mobilenet["origin"], mobilenet["distribution"], mobilenet["status"]) == (
        "folder", "cnnstudio-mobilenet", "ok")
    assert Path(mobilenet["folder"]) == folder

    removed = studio("plugins", "uninstall", "cnnstudio-mobilenet", env=env)
    assert removed.returncode == 0, removed.stderr
    assert not folder.exists()
    after = {b["id"] for b in json.loads(studio("models", "--json", env=env).stdout)["backbones"]}
    assert "mobilenetv2" not in after and "vgg16" in after


def test_a_wheel_with_compiled_code_is_refused_naming_the_file_and_its_tag(tmp_path):
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-fast", tag="cp311-cp311-linux_x86_64", purelib=False)
    result = studio("plugins", "install", wheel)
    assert result.returncode == 1
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1 and "Traceback" not in message
    assert str(wheel) in message
    assert "needs compiled code the app lacks: tag cp311-cp311-linux_x86_64" in message
    assert not plugins_dir().exists() or not list(plugins_dir().iterdir())


def test_a_wheel_that_says_it_is_not_purelib_is_refused(tmp_path):
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-odd", purelib=False)
    with pytest.raises(Exception, match="needs compiled code the app lacks: its WHEEL file says Root-Is-Purelib"):
        install_wheel(wheel)


@pytest.mark.parametrize("member", ["../outside.py", "/absolute-cnnstudio-test.py", "pkg/../../outside.py"])
def test_a_wheel_with_a_file_outside_its_folder_is_refused_and_nothing_is_written(tmp_path, member):
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-slip", extra={member: "print('escaped')\n"})
    result = studio("plugins", "install", wheel)
    assert result.returncode == 1
    assert f"{wheel}: holds a file that would land outside the plugins folder ({member!r})" in result.stderr
    assert not (tmp_path / "outside.py").exists() and not (tmp_path / "studio-data" / "outside.py").exists()
    assert not Path("/absolute-cnnstudio-test.py").exists()
    assert not plugins_dir().exists() or not list(plugins_dir().iterdir())


def test_a_wheel_needing_a_package_the_app_lacks_is_refused_naming_it(tmp_path):
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-needy",
                       requires=("cnnstudio", "numpy>=1.20", "cnnstudio-no-such-dependency>=2",
                                 "only-for-docs; extra == 'docs'"))
    result = studio("plugins", "install", wheel)
    assert result.returncode == 1
    assert (f"{wheel}: needs cnnstudio-no-such-dependency, which this app does not include; not installed"
            in result.stderr)
    # Requirements the app has, and an extra's, are no reason to refuse.
    ok = make_wheel(tmp_path / "dist", "cnnstudio-content", requires=("cnnstudio", "numpy>=1.20",
                                                                      "only-for-docs; extra == 'docs'"))
    assert install_wheel(ok).plugins == ["content"]


def test_a_wheel_without_a_plugin_entry_point_or_not_a_zip_is_refused(tmp_path):
    wheel = make_wheel(tmp_path / "dist", "cnnstudio-nothing")
    with zipfile.ZipFile(wheel) as zf:
        members = {n: zf.read(n) for n in zf.namelist() if not n.endswith("entry_points.txt")}
    with zipfile.ZipFile(wheel, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    with pytest.raises(Exception, match="not a CNN Studio plugin"):
        install_wheel(wheel)
    broken = tmp_path / "broken-0.1-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(Exception, match="not a readable wheel"):
        install_wheel(broken)


def test_reinstalling_replaces_the_version_and_the_plugin_is_found_in_process(tmp_path):
    first = install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-tinyfolder", "0.1"))
    assert first.replaced is None and first.folder == plugins_dir() / "cnnstudio-tinyfolder"
    second = install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-tinyfolder", "0.2"))
    assert second.replaced == "0.1" and "replacing version 0.1" in second.summary()
    assert sorted(p.name for p in plugins_dir().iterdir()) == ["cnnstudio-tinyfolder"]
    try:
        manager = PluginManager()
        manager.load()
        info = loaded(manager)["tinyfolder"]
        assert (info.origin, info.version, info.status) == ("folder", "0.2", "ok")
        assert "backbone:cnnstudiotinyfolder" in info.provides
        assert "cnnstudiotinyfolder" in manager.registry.backbones
        # Its folder is on sys.path now; a reload still finds it once, in the plugins folder.
        manager.reload()
        assert [(p.origin, p.status) for p in manager.plugins if p.name == "tinyfolder"] == [("folder", "ok")]
    finally:
        for module in ("cnnstudio_tinyfolder.plugin", "cnnstudio_tinyfolder"):
            sys.modules.pop(module, None)


def test_a_crashing_plugin_in_the_folder_is_listed_and_the_others_load(tmp_path):
    install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-crashy", module_source="raise SystemExit(3)\n"))
    install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-hooky", module_source="""
        from cnnstudio.plugins import hookimpl

        @hookimpl
        def cnnstudio_register_backbones(registry):
            raise RuntimeError("boom in the folder's hook")
    """))
    install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-fine"))
    try:
        manager = PluginManager()
        manager.load()
        plugins = loaded(manager)
        assert plugins["crashy"].status == "error" and "SystemExit" in plugins["crashy"].errors[0].cause
        assert plugins["hooky"].status == "error" and "boom in the folder's hook" in plugins["hooky"].errors[0].cause
        assert plugins["fine"].status == "ok" and "cnnstudiofine" in manager.registry.backbones
        assert plugins["builtins"].status == "ok" and "vgg16" in manager.registry.backbones
    finally:
        for name in ("crashy", "hooky", "fine"):
            for module in (f"cnnstudio_{name}.plugin", f"cnnstudio_{name}"):
                sys.modules.pop(module, None)


def test_a_plugin_installed_with_pip_and_in_the_folder_loads_the_pip_copy_and_says_so(tmp_path, install_plugin):
    install_plugin("twice", TINY.format(id="frompip"), distribution="cnnstudio-twice")
    installed = install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-twice", "0.9",
                                         module_source=TINY.format(id="fromfolder")))
    assert any("also installed with pip, and that copy is the one loaded" in n for n in installed.notes)
    try:
        manager = PluginManager()
        manager.load()
        twice = [p for p in manager.plugins if p.name == "twice"]
        assert [(p.origin, p.status) for p in twice] == [("package", "ok"), ("folder", "error")]
        assert "frompip" in manager.registry.backbones and "fromfolder" not in manager.registry.backbones
        cause = twice[1].errors[0].cause
        assert "not loaded from the plugins folder" in cause and "installed with pip is loaded instead" in cause
    finally:
        for module in ("cnnstudio_twice.plugin", "cnnstudio_twice"):
            sys.modules.pop(module, None)


def test_uninstalling_what_is_not_in_the_folder_says_what_is(tmp_path):
    install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-kept"))
    result = studio("plugins", "uninstall", "cnnstudio-gone")
    assert result.returncode == 1
    assert "no plugin 'cnnstudio-gone' in the plugins folder (installed there: cnnstudio-kept)" in result.stderr
    assert (plugins_dir() / "cnnstudio-kept").is_dir()


def test_an_exporter_whose_converter_module_is_missing_is_listed_as_unavailable(tmp_path):
    """As tf2onnx in a build that left out the submodules it loads lazily: the package is there,
    its converter module is not."""
    lazy = tmp_path / "lib" / "cnnstudio_lazyconv"
    lazy.mkdir(parents=True)
    (lazy / "__init__.py").write_text(
        "import importlib\n__all__ = ['convert']\n"
        "def __getattr__(name):\n    return importlib.import_module(f'{__name__}.{name}')\n", encoding="utf-8")
    install_wheel(make_wheel(tmp_path / "dist", "cnnstudio-fmt", module_source="""
        from cnnstudio.plugins import ExporterProvider, hookimpl

        @hookimpl
        def cnnstudio_register_exporters(registry):
            registry.add_exporter(ExporterProvider("fmt", "Fmt", write=print, load=print, suffix=".fmt",
                                                   modules=("json.decoder", "cnnstudio_lazyconv.convert")))
    """))
    path = os.pathsep.join([str(tmp_path / "lib"), *filter(None, [os.environ.get("PYTHONPATH")])])
    result = studio("plugins", env={"PYTHONPATH": path})
    assert result.returncode == 0, result.stderr
    assert "fmt 0.1 [folder] ok" in result.stdout
    assert "unavailable: exporter fmt: needs cnnstudio_lazyconv.convert, which is not installed" in result.stdout
    # The built-in ONNX exporter is listed as unavailable exactly when the "export" extra is missing.
    assert ("exporter onnx" not in result.stdout) == export_extra()


def test_looking_for_the_exporters_converters_imports_neither_them_nor_tensorflow():
    """`cnnstudio plugins` stays quick: a converter module is looked for, never imported."""
    code = ("import sys; from cnnstudio.builtins.manager import PluginManager; m = PluginManager(); m.load(); "
            "print(sorted(n for n in ('tensorflow', 'tf2onnx', 'tf2onnx.convert', 'onnxruntime') if n in sys.modules)); "
            "print(next(p for p in m.plugins if p.name == 'builtins').unavailable)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr
    imported, unavailable = result.stdout.splitlines()
    assert imported == "[]"
    assert (unavailable == "[]") == export_extra(), unavailable
