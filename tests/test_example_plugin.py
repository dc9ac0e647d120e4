"""The example plugin distribution, ``plugins/cnnstudio-mobilenet``, installed with pip into a
fresh environment as a user would: the studio finds it, lists what it provides, trains with it,
its own tests pass there, and after ``pip uninstall`` it is gone."""

from __future__ import annotations

import importlib.util
import json
import subprocess
from pathlib import Path

import pytest
from tinydata import make_dataset
from venvs import make_venv, venv_env

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "plugins" / "cnnstudio-mobilenet"
PROVIDES = ["backbone:efficientnetb0", "backbone:mobilenetv2"]


class Venv:
    """A fresh venv borrowing the running environment's packages (see ``tests/venvs.py``)."""

    def __init__(self, root: Path):
        self.python = make_venv(root / "venv", studio="borrowed")
        self.env = venv_env(self.python)
        self.env.pop("CNNSTUDIO_DISABLE_PLUGINS", None)
        # Keep the studio's data and caches inside the test's folder.
        self.env["CNNSTUDIO_DATA_DIR"] = str(root / "studio-data")
        self.env["CNNSTUDIO_CACHE_DIR"] = str(root / "studio-cache")

    def run(self, *args, timeout: int = 300) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.python), *map(str, args)], cwd=REPO, env=self.env,
                                capture_output=True, text=True, timeout=timeout)
        assert result.returncode == 0, (
            f"{' '.join(map(str, args))} exited with {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
        return result

    def studio(self, *args):
        """``python -m cnnstudio ARGS --json``, parsed."""
        return json.loads(self.run("-m", "cnnstudio", *args, "--json").stdout)


def pip_install(venv: Venv, folder: Path) -> None:
    # Where hatchling (the plugin's build backend) is installed, build with it offline; else pip
    # fetches it from the package index into an isolated build environment.
    isolation = [] if importlib.util.find_spec("hatchling") is None else ["--no-build-isolation"]
    venv.run("-m", "pip", "install", "--quiet", "--no-deps", *isolation, folder)


def backbone_ids(models: dict) -> dict[str, str]:
    return {b["id"]: b["origin"] for b in models["backbones"]}


@pytest.mark.slow
def test_install_list_train_test_and_uninstall_the_example_plugin(tmp_path):
    venv = Venv(tmp_path)
    before = backbone_ids(venv.studio("models"))
    assert "mobilenetv2" not in before and before["vgg16"] == "builtins"

    pip_install(venv, PLUGIN)

    plugins = {p["name"]: p for p in venv.studio("plugins")}
    mobilenet = plugins["mobilenet"]
    assert (mobilenet["origin"], mobilenet["distribution"], mobilenet["version"], mobilenet["status"]) == (
        "package", "cnnstudio-mobilenet", "0.1.0", "ok")
    assert sorted(mobilenet["provides"]) == PROVIDES and mobilenet["errors"] == []
    assert plugins["builtins"]["status"] == "ok"

    models = venv.studio("models")
    assert {k: v for k, v in backbone_ids(models).items() if v == "mobilenet"} == {
        "mobilenetv2": "mobilenet", "efficientnetb0": "mobilenet"}
    mobilenetv2 = next(b for b in models["backbones"] if b["id"] == "mobilenetv2")
    assert mobilenetv2["pretrained"] and mobilenetv2["min_input_size"] == 32
    assert {p["name"]: p["kind"] for p in mobilenetv2["params"]} == {
        "weights": "weights", "alpha": "choice", "trainable": "bool"}

    data = make_dataset(tmp_path / "data", per_class=8, size=32)
    run = tmp_path / "run"
    # No validation or test split: this checks the plugin's backbone trains, not the model.
    result = venv.studio("train", data, "--model", "mobilenetv2", "--weights", "none", "--image-size", "32",
                         "--epochs", "1", "--batch-size", "8", "--val-split", "0", "--test-split", "0",
                         "--out", run)
    assert result["status"] == "completed" and result["epochs_run"] == 1
    assert (run / "model" / "model.keras").is_file()
    config = json.loads((run / "config.json").read_text(encoding="utf-8"))
    assert config["weights"]["label"] == "random initialisation (not pretrained)"

    tests = venv.run("-m", "pytest", PLUGIN / "tests", "-p", "no:xdist", "-p", "no:cacheprovider", "-q")
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    venv.run("-m", "pip", "uninstall", "--quiet", "--yes", "cnnstudio-mobilenet")
    after = backbone_ids(venv.studio("models"))
    assert "mobilenetv2" not in after and "efficientnetb0" not in after
    assert "mobilenet" not in {p["name"] for p in venv.studio("plugins")}
