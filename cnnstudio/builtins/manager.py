"""The studio's plugin manager: the built-in plugin first, then every installed one.

:class:`PluginManager` is :class:`~cnnstudio.plugins.manager.PluginHost` given
:mod:`cnnstudio.builtins`; :func:`default_manager` is the one the command line and the window
share in a process. A plugin's own tests use :class:`PluginManager` to find it as the window does.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import cnnstudio.builtins as builtin_plugin
from cnnstudio.plugins import Registry
from cnnstudio.plugins.manager import PluginHost
from cnnstudio.plugins.settings import load_disabled


class PluginManager(PluginHost):
    """Loads the built-ins (:mod:`cnnstudio.builtins`) and the installed plugins into one :class:`Registry`.

    ``disabled`` names entry points not to import (the user's settings); ``autoload`` False (or
    the ``CNNSTUDIO_DISABLE_PLUGINS`` environment variable when it is None) loads the built-ins
    only, as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.
    """

    def __init__(self, disabled: Iterable[str] = (), autoload: bool | None = None):
        super().__init__(builtin_plugin, disabled, autoload)


_default: PluginManager | None = None
_default_lock = threading.Lock()


def default_manager(disabled: Iterable[str] | None = None, *, wait: bool = True) -> PluginManager:
    """The process-wide manager the CLI and the window share, loaded on first use.

    ``disabled`` None keeps the current one (or loads one with the plugins the user disabled,
    :mod:`cnnstudio.plugins.settings`); a different set of disabled names loads a new one.
    ``wait`` False (the window's start) returns at once: a manager loaded for the first time
    then holds the built-ins only (``complete`` False), and the caller discovers the installed
    plugins (:meth:`~cnnstudio.plugins.manager.PluginHost.discover`, in the background) and
    adopts them.
    """
    global _default
    with _default_lock:
        if _default is None or (disabled is not None and frozenset(disabled) != _default.disabled):
            manager = PluginManager(load_disabled() if disabled is None else disabled)
            if wait:
                manager.load()
            else:
                manager.load_builtins()
            _default = manager
        elif wait and not _default.complete:
            _default.load()
        return _default


def load_registry(disabled: Iterable[str] | None = None) -> Registry:
    """The registry of :func:`default_manager`."""
    return default_manager(disabled).registry
