"""What a user installs: the wheel and the sdist carry the resources and desktop files, the wheel
installed into a fresh environment runs on its own files, and the desktop entry and AppStream
metadata pass the freedesktop validators that distributions and software centres run; the
one-folder app's spec collects every module an exporter's converter loads."""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import json
import pkgutil
import shutil
import subprocess
import sys
import tarfile
import xml.etree.ElementTree as ET
import zipfile
from pathlib import Path

import pytest
from venvs import make_venv, venv_env

import cnnstudio

REPO = Path(__file__).resolve().parents[1]
APP_ID = "io.github.cnnstudio.CNNStudio"
DESKTOP = REPO / "packaging" / f"{APP_ID}.desktop"
METAINFO = REPO / "packaging" / f"{APP_ID}.metainfo.xml"
ICONS = sorted(p.name for p in (REPO / "resources" / "icons").glob("*.svg"))
SHARE = {
    f"share/applications/{APP_ID}.desktop": DESKTOP,
    f"share/metainfo/{APP_ID}.metainfo.xml": METAINFO,
    f"share/icons/hicolor/scalable/apps/{APP_ID}.svg": REPO / "resources" / "icons" / "app.svg",
}


def hatchling_build(project: Path, out: Path, *targets: str) -> None:
    """Build with hatchling (a test dependency) directly: no isolated build env, so no network."""
    args = [arg for target in targets for arg in ("-t", target)]
    subprocess.run([sys.executable, "-m", "hatchling", "build", *args, "-d", str(out)],
                   cwd=project, check=True, capture_output=True, text=True)


def wheel_names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The wheel and the sdist of the repository as it is now."""
    out = tmp_path_factory.mktemp("dist")
    hatchling_build(REPO, out, "wheel", "sdist")
    return {"wheel": next(out.glob("*.whl")), "sdist": next(out.glob("*.tar.gz"))}


def assert_wheel_ships_app_files(wheel: Path) -> None:
    names = wheel_names(wheel)
    data = f"cnnstudio-{cnnstudio.__version__}.data/data/"
    expected = {"cnnstudio/resources/imagenet_classes.json", "cnnstudio/cli/__init__.py"}
    expected |= {f"cnnstudio/resources/icons/{icon}" for icon in ICONS}
    expected |= {data + share for share in SHARE}
    assert expected <= names, sorted(expected - names)
    # Nothing but the package and its metadata lands in site-packages (no top-level `tests`).
    assert {n.split("/")[0] for n in names} == {
        "cnnstudio", f"cnnstudio-{cnnstudio.__version__}.dist-info", f"cnnstudio-{cnnstudio.__version__}.data"
    }
    with zipfile.ZipFile(wheel) as zf:
        classes = json.loads(zf.read("cnnstudio/resources/imagenet_classes.json"))
        assert len(classes["classes"]) == 1000
        for share, source in SHARE.items():
            assert zf.read(data + share) == source.read_bytes(), share
        entry_points = zf.read(f"cnnstudio-{cnnstudio.__version__}.dist-info/entry_points.txt").decode()
    assert "cnnstudio = cnnstudio.cli:main" in entry_points


def test_wheel_ships_resources_icons_and_desktop_files(dists):
    assert_wheel_ships_app_files(dists["wheel"])


def test_sdist_ships_resources_packaging_plugins_and_docs(dists):
    root = f"cnnstudio-{cnnstudio.__version__}/"
    with tarfile.open(dists["sdist"]) as tf:
        names = set(tf.getnames())
    expected = {
        "pyproject.toml", "README.md", "resources/imagenet_classes.json", "resources/icons/app.svg",
        f"packaging/{APP_ID}.desktop", f"packaging/{APP_ID}.metainfo.xml",
        "packaging/cnnstudio.spec", "packaging/cnnstudio_launcher.py",
        "plugins/README.md", "docs/install.md", "tests/test_packaging.py",
    }
    assert {root + n for n in expected} <= names, sorted({root + n for n in expected} - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_wheel_built_from_the_sdist_is_complete(dists, tmp_path):
    """`pip install cnnstudio` from the sdist builds the wheel there: it must find everything."""
    safe = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}  # Python >= 3.10.12 / 3.11.4
    with tarfile.open(dists["sdist"]) as tf:
        tf.extractall(tmp_path / "src", **safe)
    hatchling_build(tmp_path / "src" / f"cnnstudio-{cnnstudio.__version__}", tmp_path / "out", "wheel")
    assert_wheel_ships_app_files(next((tmp_path / "out").glob("*.whl")))


@pytest.mark.slow
def test_installed_wheel_runs_from_its_own_files(dists, tmp_path):
    """The wheel in a fresh venv (``studio="none"``: the repository's editable install is not on
    its path). TensorFlow, Qt and the other dependencies are borrowed from the running
    environment through the venv's ``.pth`` file, hence ``--no-deps``."""
    python = make_venv(tmp_path / "venv", studio="none")
    env = venv_env(python)
    env["CNNSTUDIO_DATA_DIR"] = str(tmp_path / "data")
    env["CNNSTUDIO_CACHE_DIR"] = str(tmp_path / "cache")
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--force-reinstall",
                    str(dists["wheel"])], check=True, env=env, cwd=tmp_path)
    venv = (tmp_path / "venv").resolve()
    script = python.parent / "cnnstudio"

    def run(*args):
        return subprocess.run([str(a) for a in args], capture_output=True, text=True, env=env, cwd=tmp_path)

    version = run(script, "--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"cnnstudio {cnnstudio.__version__}"

    where = run(python, "-c", "import cnnstudio; from cnnstudio.core.io.paths import resources_dir; "
                              "print(cnnstudio.__file__); print(resources_dir())")
    assert where.returncode == 0, where.stderr
    package_file, resources = (Path(line).resolve() for line in where.stdout.split())
    assert package_file.is_relative_to(venv), package_file
    assert resources.is_relative_to(venv) and (resources / "imagenet_classes.json").is_file(), resources
    for share in SHARE:
        assert (venv / share).is_file(), share

    train = run(script, "train", "--sample", "--epochs", "1", "--image-size", "32", "--out", tmp_path / "R")
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "R" / "model" / "bundle.json").is_file()


def test_bundler_launcher_runs_the_command_line():
    """The PyInstaller spec's entry script is the same front end as the `cnnstudio` script."""
    result = subprocess.run([sys.executable, str(REPO / "packaging" / "cnnstudio_launcher.py"), "--version"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"cnnstudio {cnnstudio.__version__}"


def test_desktop_entry_and_metainfo_describe_the_same_app():
    entry = configparser.ConfigParser(interpolation=None)
    entry.optionxform = str  # desktop-entry keys are case-sensitive
    entry.read(DESKTOP, encoding="utf-8")
    desktop = entry["Desktop Entry"]
    assert desktop["Exec"].split()[0] == "cnnstudio"
    assert desktop["Icon"] == APP_ID

    component = ET.parse(METAINFO).getroot()
    assert component.findtext("id") == APP_ID
    assert component.findtext("name") == desktop["Name"]
    assert component.findtext("launchable[@type='desktop-id']") == DESKTOP.name
    assert component.findtext("provides/binary") == "cnnstudio"
    assert component.findtext("project_license") == "MIT"
    # Software centres show the newest release as the installed version.
    assert component.find("releases/release").get("version") == cnnstudio.__version__


def tool_output(tool: str, *args: str) -> subprocess.CompletedProcess:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs it, so CI never skips this)")
    return subprocess.run([tool, *args], capture_output=True, text=True)


def test_desktop_entry_passes_desktop_file_validate():
    result = tool_output("desktop-file-validate", str(DESKTOP))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "error:" not in output and "warning:" not in output, output


def test_metainfo_passes_appstreamcli_validate():
    result = tool_output("appstreamcli", "validate", "--no-net", str(METAINFO))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    lines = output.splitlines()
    assert not [line for line in lines if line.startswith(("E:", "W:"))], output


# ----------------------------------------------------------------------------- the one-folder app


def bundle_modules():
    """packaging/bundle_modules.py, the helper packaging/cnnstudio.spec takes its hiddenimports from."""
    spec = importlib.util.spec_from_file_location("bundle_modules", REPO / "packaging" / "bundle_modules.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def collect_submodules(package: str) -> list[str]:
    """PyInstaller's collect_submodules where it is installed, else the same walk with pkgutil."""
    if importlib.util.find_spec("PyInstaller") is not None:
        from PyInstaller.utils.hooks import collect_submodules as collect

        return collect(package)
    imported = importlib.import_module(package)
    found = [package]
    if hasattr(imported, "__path__"):
        found += [m.name for m in pkgutil.walk_packages(imported.__path__, package + ".", onerror=lambda _: None)]
    return found


def lazily_loaded_submodules(package: str) -> list[str]:
    """The submodules a PEP 562 package imports on attribute access: the names in its ``__all__``
    that are modules of the package (tf2onnx: convert, tfonnx, ...)."""
    imported = importlib.import_module(package)
    if not callable(vars(imported).get("__getattr__")):
        return []
    submodules = {m.name for m in pkgutil.iter_modules(imported.__path__)}
    return [f"{package}.{name}" for name in getattr(imported, "__all__", []) if name in submodules]


def listed_exporters():
    from cnnstudio.builtins.manager import PluginManager

    return PluginManager(autoload=False).load().exporters


def test_the_spec_takes_its_hidden_imports_from_the_helper():
    spec = (REPO / "packaging" / "cnnstudio.spec").read_text(encoding="utf-8")
    assert "from bundle_modules import hidden_imports" in spec
    assert "hiddenimports = hidden_imports(collect_submodules)" in spec
    assert "hiddenimports=hiddenimports" in spec


def test_every_exporter_the_app_lists_can_import_its_converter_modules():
    exporters = listed_exporters()
    assert {"keras", "savedmodel", "tflite", "onnx"} <= set(exporters)
    assert "tf2onnx.convert" in exporters["onnx"].modules
    if importlib.util.find_spec("tf2onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("the 'export' extra (tf2onnx, onnxruntime) is not installed, so ONNX export is not offered")
    for exporter in exporters.values():
        for module in exporter.modules:
            importlib.import_module(module)  # raises, naming it, when one is missing
        if exporter.prepare is not None:
            exporter.prepare()


def test_the_spec_collects_each_converter_module_and_what_its_package_loads_lazily():
    helper = bundle_modules()
    hidden = set(helper.hidden_imports(collect_submodules))
    declared = [m for e in listed_exporters().values() for m in e.modules]
    assert set(declared) <= hidden, sorted(set(declared) - hidden)
    assert {"cnnstudio.builtins.export", "cnnstudio.builtins.applications"} <= hidden
    if importlib.util.find_spec("tf2onnx") is None:
        pytest.skip("tf2onnx (the 'export' extra) is not installed: the app is then built without ONNX export")
    lazy = {m for module in declared for m in lazily_loaded_submodules(module.split(".")[0])}
    assert {"tf2onnx.convert", "tf2onnx.tfonnx", "tf2onnx.tf_loader"} <= lazy  # what tf2onnx 1.17 loads so
    assert lazy <= hidden, sorted(lazy - hidden)
    assert helper.lazy_packages(declared) == ["tf2onnx"]


def test_an_onnx_converter_left_out_of_a_build_is_one_line_naming_it(monkeypatch):
    """What a one-folder app built without tf2onnx's lazily loaded modules says on export."""
    from cnnstudio.builtins import export

    if importlib.util.find_spec("tf2onnx") is None:
        pytest.skip("tf2onnx (the 'export' extra) is not installed")
    monkeypatch.setitem(sys.modules, "tf2onnx.convert", None)  # importing it raises ModuleNotFoundError
    with pytest.raises(export.ExportError) as exc:
        export._onnx_modules()
    message = str(exc.value)
    assert "tf2onnx.convert" in message and "this build of CNN Studio lacks" in message and "\n" not in message
