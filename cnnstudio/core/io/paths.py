"""Where the studio keeps its own files (sample data, caches), overridable for tests and servers."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import platformdirs


def data_dir() -> Path:
    """The user's data folder for CNN Studio (``CNNSTUDIO_DATA_DIR`` overrides it)."""
    override = os.environ.get("CNNSTUDIO_DATA_DIR")
    return Path(override) if override else Path(platformdirs.user_data_dir("cnnstudio", appauthor=False))


def config_dir() -> Path:
    """The user's settings folder for CNN Studio (``CNNSTUDIO_CONFIG_DIR`` overrides it)."""
    override = os.environ.get("CNNSTUDIO_CONFIG_DIR")
    return Path(override) if override else Path(platformdirs.user_config_dir("cnnstudio", appauthor=False))


def cache_dir() -> Path:
    """The user's cache folder for CNN Studio (``CNNSTUDIO_CACHE_DIR`` overrides it)."""
    override = os.environ.get("CNNSTUDIO_CACHE_DIR")
    return Path(override) if override else Path(platformdirs.user_cache_dir("cnnstudio", appauthor=False))


@functools.cache
def resources_dir() -> Path:
    """``resources/``: inside the package in a wheel, beside it in a source checkout."""
    package = Path(__file__).resolve().parents[2]  # cnnstudio/ (this file is cnnstudio/core/io/paths.py)
    for candidate in (package / "resources", package.parent / "resources"):
        if candidate.is_dir():
            return candidate
    return package / "resources"
