"""Which plugins the user turned off: one small JSON file that the window and the command line share.

A plugin disabled in the Plugins dialog stays off after a restart and in ``cnnstudio train``
too. An unreadable file never stops the studio: every plugin is then enabled, with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.io.paths import config_dir

log = logging.getLogger(__name__)

SETTINGS_FILE = "plugins.json"


def settings_path() -> Path:
    return config_dir() / SETTINGS_FILE


def load_disabled() -> frozenset[str]:
    """The names of the plugins the user disabled (entry-point names)."""
    path = settings_path()
    if not path.exists():
        return frozenset()
    try:
        names = read_json(path).get("disabled", [])
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ValueError("'disabled' must be a list of plugin names")
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s: unreadable (%s); every plugin is enabled", path, exc)
        return frozenset()
    return frozenset(names)


def save_disabled(names: Iterable[str]) -> None:
    atomic_write_json(settings_path(), {"disabled": sorted(set(names))})


def set_enabled(name: str, enabled: bool) -> frozenset[str]:
    """Enable or disable one plugin; returns the new set of disabled names."""
    disabled = set(load_disabled())
    if enabled:
        disabled.discard(name)
    else:
        disabled.add(name)
    save_disabled(disabled)
    return frozenset(disabled)
