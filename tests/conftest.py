"""Fixtures that generate tiny images on disk (16-48 px), so no test needs data files or a network."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _write_image(
    path: Path, size=(24, 24), colour=(200, 30, 30), mode="RGB", fmt=None, **save
) -> Path:
    """Save a solid image of ``colour`` at ``path``; the format follows the suffix unless ``fmt``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, colour).save(path, format=fmt, **save)
    return path


def _noise_jpeg(path: Path, size=(32, 32), seed=0) -> Path:
    """A JPEG of random pixels: big enough that cutting it in half really truncates the data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path, format="JPEG", quality=90)
    return path


@pytest.fixture
def write_image():
    return _write_image


@pytest.fixture
def noise_jpeg():
    return _noise_jpeg


@pytest.fixture
def make_dataset(tmp_path):
    """``make_dataset({"cats": 12, "dogs": 12})`` writes that many small PNGs per class folder."""

    def make(counts: dict[str, int], root: Path | None = None, size=(16, 16)) -> Path:
        root = root or tmp_path / "data"
        root.mkdir(parents=True, exist_ok=True)
        for c, (name, n) in enumerate(counts.items()):
            for i in range(n):
                _write_image(root / name / f"img_{i:03d}.png", size, ((c * 60) % 256, i % 256, 90))
        return root

    return make


@pytest.fixture(autouse=True)
def _private_config(tmp_path, monkeypatch):
    """Private CNN Studio folders: no test reads or changes the user's plugin settings, or leaves
    runs, samples or cached features in the user's own folders."""
    monkeypatch.setenv("CNNSTUDIO_CONFIG_DIR", str(tmp_path / "studio-config"))
    monkeypatch.setenv("CNNSTUDIO_DATA_DIR", str(tmp_path / "studio-data"))
    monkeypatch.setenv("CNNSTUDIO_CACHE_DIR", str(tmp_path / "studio-cache"))


@pytest.fixture
def data_dir(tmp_path, monkeypatch) -> Path:
    """A private CNNSTUDIO_DATA_DIR, so tests never touch the user's own data folder."""
    path = tmp_path / "studio-data"
    monkeypatch.setenv("CNNSTUDIO_DATA_DIR", str(path))
    return path


@pytest.fixture
def install_plugin(tmp_path, monkeypatch):
    """Install a plugin the way pip would leave it: a module and a ``*.dist-info`` with entry points."""
    monkeypatch.syspath_prepend(str(tmp_path))
    modules = []

    def install(entry_name: str, source: str, distribution: str | None = None) -> str:
        module = f"cnnstudio_test_{entry_name.replace('-', '_')}"
        distribution = distribution or f"cnnstudio-test-{entry_name}"
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        # As a wheel names it: the distribution name normalised, '-' separating the version.
        info = tmp_path / f"{distribution.replace('-', '_')}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 0.1\n", encoding="utf-8"
        )
        (info / "entry_points.txt").write_text(
            f"[cnnstudio.plugins]\n{entry_name} = {module}\n", encoding="utf-8"
        )
        modules.append(module)
        return module

    yield install
    for module in modules:
        sys.modules.pop(module, None)
