"""Find, load and register plugins so that one broken plugin never stops the studio.

Stock pluggy does not isolate plugins: ``load_setuptools_entrypoints`` stops at the first
failing import and a raising hook implementation raises through ``pm.hook.x()``. So entry
points are loaded one at a time and each registration hook is called one implementation at a
time, each in try/except, recording a :class:`PluginError` (napari-plugin-engine's
``discover(ignore_errors=True)``, glue's ``load_plugins``). The built-in plugin goes through the
same path, but its failure is a bug and raises.

Plugin code can neither stop nor silently stall the host: ``KeyboardInterrupt`` and
``SystemExit`` raised by a plugin's import or hook are recorded like any other failure (a
Ctrl-C the user presses meanwhile still stops the command), and a plugin whose import and
registration take longer than :data:`SLOW_PLUGIN_SECONDS` is named in a warning with its time.
:meth:`PluginHost.discover` loads into a host of its own, so the window can look for the
installed plugins off its thread and :meth:`PluginHost.adopt` the result when it is ready.

:class:`PluginHost` knows no plugin of its own: it is given the built-in one. The studio's
manager, with :mod:`cnnstudio.builtins` and one instance shared per process, is
:mod:`cnnstudio.builtins.manager`.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import inspect
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field

import pluggy

import cnnstudio
import cnnstudio.plugins.folder as plugin_folder
import cnnstudio.plugins.hookspecs as hookspecs
from cnnstudio.core.plugincode import PLUGIN_FAILURES
from cnnstudio.core.plugincode import describe as _describe
from cnnstudio.core.plugincode import reraise_if_pressed as _reraise_if_pressed
from cnnstudio.core.plugincode import users_ctrl_c as _users_ctrl_c
from cnnstudio.plugins.hookspecs import API_VERSION, PROJECT
from cnnstudio.plugins.providers import Registry

ENTRY_POINT_GROUP = plugin_folder.ENTRY_POINT_GROUP
DISABLE_ENV = "CNNSTUDIO_DISABLE_PLUGINS"
BUILTINS = "builtins"

# In this order: presets are checked against every backbone and block.
REGISTRATION_HOOKS = (
    "cnnstudio_register_backbones",
    "cnnstudio_register_blocks",
    "cnnstudio_register_exporters",
    "cnnstudio_register_presets",
)

# A plugin whose import and registration hooks together take longer (seconds) is named in a warning.
SLOW_PLUGIN_SECONDS = 5.0


log = logging.getLogger(__name__)


@dataclass
class PluginError:
    """Why a plugin (or part of it) did not load; shown in the Plugins dialog and ``cnnstudio plugins``."""

    plugin: str
    distribution: str | None
    cause: str
    traceback: str = ""

    def __str__(self) -> str:
        source = f" ({self.distribution})" if self.distribution else ""
        return f"plugin {self.plugin!r}{source}: {self.cause}"


@dataclass
class PluginInfo:
    """One plugin as the user sees it: where it comes from, whether it loaded, what it provides."""

    name: str
    origin: str  # "built-in" | "package" (installed with pip) | "folder" (the plugins folder)
    distribution: str | None
    version: str | None
    status: str = "ok"  # "ok" | "disabled" | "error"
    provides: list[str] = field(default_factory=list)  # e.g. "backbone:vgg16"
    errors: list[PluginError] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # e.g. that it took seconds to load
    load_seconds: float = 0.0  # its import and registration hooks
    folder: str | None = None  # where a plugin from the plugins folder lives
    unavailable: list[str] = field(default_factory=list)  # e.g. an exporter whose converter is missing


class PluginHost:
    """Loads the built-in plugin and the installed plugins into one :class:`Registry`.

    ``builtin`` is the studio's own plugin (a module of hook implementations), registered first
    under the name ``builtins``. ``disabled`` names entry points not to import (the user's
    settings); ``autoload`` False (or the ``CNNSTUDIO_DISABLE_PLUGINS`` environment variable
    when it is None) loads the built-in plugin only, as pytest's ``PYTEST_DISABLE_PLUGIN_AUTOLOAD``.

    Installed plugins are those installed with pip (entry points in the environment) and those
    unpacked in the plugins folder (:mod:`cnnstudio.plugins.folder`; ``folder`` None is the
    user's). A plugin in both places is loaded once: the pip-installed copy wins, since its
    modules come first on the import path; the folder's copy is listed with an error saying so.
    """

    def __init__(self, builtin, disabled: Iterable[str] = (), autoload: bool | None = None, folder=None):
        self.builtin = builtin
        self.folder = folder
        self.disabled = frozenset(disabled)
        self.autoload = not os.environ.get(DISABLE_ENV) if autoload is None else autoload
        self.plugins: list[PluginInfo] = []
        self.errors: list[PluginError] = []
        self.warnings: list[str] = []
        self.registry = Registry()
        # True once the installed plugins were looked for (load, reload, adopt); False while
        # only the built-ins are registered (load_builtins).
        self.complete = False
        self._reset()

    def _reset(self) -> None:
        self.plugins = []
        self.errors = []
        self.warnings = []
        self._pm = pluggy.PluginManager(PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._infos: dict[str, PluginInfo] = {}
        self._loaded = False

    def reload(self, disabled: Iterable[str] | None = None) -> Registry:
        """Find and register the plugins again; the same :class:`Registry` object takes the result.

        After ``pip install`` or ``uninstall`` in this interpreter, or a change of the disabled
        set: whoever holds the registry (the window's panels) sees the new providers without a
        restart. A module that was imported stays imported; an uninstalled plugin is simply no
        longer registered.
        """
        return self.adopt(self.discover(disabled))

    def discover(self, disabled: Iterable[str] | None = None) -> PluginHost:
        """Find and register the built-ins and the installed plugins into a new host, leaving
        this one as it is, so it may run on another thread while this host's registry is in use
        (the window's start-up); :meth:`adopt` takes the result."""
        importlib.invalidate_caches()  # packages installed since start-up are on disk, not in the finders' caches
        found = PluginHost(self.builtin, self.disabled if disabled is None else disabled, self.autoload, self.folder)
        found.load()
        return found

    def adopt(self, found: PluginHost) -> Registry:
        """Take what :meth:`discover` found: its plugins, errors and warnings, and its providers
        into this host's :class:`Registry` (the same object, never empty, see
        :meth:`Registry.replace_with`)."""
        self.disabled = found.disabled
        self.plugins, self.errors, self.warnings = found.plugins, found.errors, found.warnings
        self._pm, self._infos = found._pm, found._infos
        self._loaded = self.complete = True
        self.registry.replace_with(found.registry)
        return self.registry

    def load_builtins(self) -> Registry:
        """Register the built-in plugin only, at once; :attr:`complete` stays False until
        :meth:`adopt` takes what :meth:`discover` found (the window discovers in the background)."""
        if not self._loaded:
            self._load(autoload=False)
        return self.registry

    def load(self) -> Registry:
        """Register the built-ins, then every enabled plugin; errors end up in :attr:`errors`."""
        if self.complete:
            return self.registry
        if self._loaded:  # the built-ins only, so far
            return self.adopt(self.discover())
        self._load(self.autoload)
        self.complete = True
        return self.registry

    def _load(self, autoload: bool) -> None:
        self._loaded = True
        builtins = PluginInfo(BUILTINS, "built-in", "cnnstudio", cnnstudio.__version__)
        self._add_plugin(builtins)
        self._register(self.builtin, builtins)
        if autoload:
            for entry_point in sorted(
                importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name
            ):
                if not plugin_folder.from_a_plugin_folder(getattr(entry_point, "dist", None)):
                    self._load_entry_point(entry_point)
            folder = plugin_folder.plugins_dir() if self.folder is None else self.folder
            for entry_point, where in sorted(plugin_folder.entry_points(folder), key=lambda found: found[0].name):
                self._load_entry_point(entry_point, where)

        for hook_name in REGISTRATION_HOOKS:
            for impl in getattr(self._pm.hook, hook_name).get_hookimpls():
                self._call(hook_name, impl)

        for info in self.plugins:
            info.provides = self.registry.provided_by(info.name)
            info.unavailable = self._unavailable(info)
            if info.origin != "built-in" and info.load_seconds > SLOW_PLUGIN_SECONDS:
                self._warn(info, f"took {info.load_seconds:.1f} s to load "
                                 f"(cnnstudio plugins --disable {info.name} turns it off)")

    def _unavailable(self, info: PluginInfo) -> list[str]:
        """The exporters ``info`` provides whose converter modules cannot be found here."""
        lines = []
        for exporter in self.registry.exporters.values():
            if self.registry.origin("exporter", exporter.id) != info.name:
                continue
            missing = [m for m in getattr(exporter, "modules", ()) if not plugin_folder.module_available(m)]
            if missing:
                lines.append(f"exporter {exporter.id}: needs {', '.join(missing)}, which is not installed")
        return lines

    def _add_plugin(self, info: PluginInfo) -> None:
        self.plugins.append(info)
        self._infos.setdefault(info.name, info)

    def _load_entry_point(self, entry_point, where=None) -> None:
        """Import and register one entry point; ``where`` is its folder in the plugins folder."""
        dist = getattr(entry_point, "dist", None)
        info = PluginInfo(
            entry_point.name,
            "package" if where is None else "folder",
            dist.name if dist is not None else None,
            dist.version if dist is not None else None,
            folder=None if where is None else str(where),
        )
        if entry_point.name in self._infos:
            first = self._infos[entry_point.name]
            self._add_plugin(info)
            if where is not None and first.origin == "package":
                self._fail(info, f"not loaded from the plugins folder ({where}): {first.distribution} "
                                 f"{first.version or ''} installed with pip is loaded instead, as its modules "
                                 "come first; uninstall one of the two")
            else:
                self._fail(info, f"a plugin named {entry_point.name!r} is already loaded "
                                 f"(from {first.distribution}); this one is skipped")
            return
        self._add_plugin(info)
        if entry_point.name in self.disabled:
            info.status = "disabled"
            return
        try:
            with _timed(info), _users_ctrl_c() as pressed:
                if where is not None:
                    plugin_folder.add_to_path(where)
                plugin = entry_point.load()
        except PLUGIN_FAILURES as exc:
            _reraise_if_pressed(exc, pressed)
            self._fail(info, f"failed to import {entry_point.value}: {_describe(exc)}", traceback.format_exc())
            return
        refusal = _api_refusal(plugin)
        if refusal:
            self._fail(info, refusal)
            return
        self._register(plugin, info)

    def _register(self, plugin, info: PluginInfo) -> None:
        try:
            with _users_ctrl_c() as pressed:
                self._pm.register(plugin, name=info.name)
        except PLUGIN_FAILURES as exc:
            if info.origin == "built-in":
                raise
            _reraise_if_pressed(exc, pressed)
            self._fail(info, f"cannot be registered: {_describe(exc)}", traceback.format_exc())
            return
        for caller in self._pm.get_hookcallers(plugin) or ():
            if not caller.has_spec():
                cause = f"implements unknown hook {caller.name!r} (known: {', '.join(REGISTRATION_HOOKS)})"
                if info.origin == "built-in":
                    raise RuntimeError(f"built-in plugin {cause}")
                self._fail(info, cause)

    def _call(self, hook_name: str, impl) -> None:
        info = self._infos[impl.plugin_name]
        builtin = info.origin == "built-in"

        def refuse(exc: ValueError) -> None:
            if builtin:
                raise exc
            self._fail(info, f"{hook_name}: {exc}")

        if impl.hookwrapper or impl.wrapper:
            refuse(ValueError("hook wrappers are not supported by registration hooks"))
            return
        kwargs = {"registry": self.registry}
        try:
            with _timed(info), _users_ctrl_c() as pressed, self.registry.registering(info.name, on_error=refuse):
                impl.function(*(kwargs[name] for name in impl.argnames))
        except PLUGIN_FAILURES as exc:
            if builtin:
                raise
            _reraise_if_pressed(exc, pressed)
            self._fail(info, f"{hook_name} raised {_describe(exc)}", traceback.format_exc())

    def _fail(self, info: PluginInfo, cause: str, tb: str = "") -> None:
        error = PluginError(info.name, info.distribution, cause, tb)
        info.errors.append(error)
        if info.status != "disabled":
            info.status = "error"
        self.errors.append(error)
        log.warning("%s", error)

    def _warn(self, info: PluginInfo, text: str) -> None:
        source = f" ({info.distribution})" if info.distribution else ""
        warning = f"plugin {info.name!r}{source} {text}"
        info.warnings.append(warning)
        self.warnings.append(warning)
        log.warning("%s", warning)


@contextlib.contextmanager
def _timed(info: PluginInfo):
    """Add the time the block takes to ``info.load_seconds``."""
    start = time.perf_counter()
    try:
        yield
    finally:
        info.load_seconds += time.perf_counter() - start


def _api_refusal(plugin) -> str | None:
    """Why a plugin written for another plugin API cannot load, or None."""
    module = plugin if inspect.ismodule(plugin) else sys.modules.get(getattr(plugin, "__module__", ""))
    version = getattr(plugin, "CNNSTUDIO_API_VERSION", getattr(module, "CNNSTUDIO_API_VERSION", None))
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        return f"CNNSTUDIO_API_VERSION must be a positive whole number, got {version!r}"
    if version > API_VERSION:
        return (
            f"needs plugin API version {version}, but this CNN Studio provides version "
            f"{API_VERSION}; update CNN Studio or install an older version of the plugin"
        )
    return None

