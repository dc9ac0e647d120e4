"""The plugin system: hook markers, the manager, and the descriptors plugins register.

A third-party plugin needs only this package::

    from cnnstudio.plugins import BackboneProvider, Param, hookimpl

    @hookimpl
    def cnnstudio_register_backbones(registry):
        registry.add_backbone(BackboneProvider(id="tiny", display_name="Tiny", build=build_tiny))

Importing it never imports TensorFlow or Qt.
"""

from cnnstudio.core.providers import (
    BackboneProvider,
    BlockProvider,
    BuildError,
    ExportContext,
    ExporterProvider,
    Param,
    Preset,
    Registry,
)
from cnnstudio.plugins.hookspecs import API_VERSION, hookimpl, hookspec
from cnnstudio.plugins.manager import (
    PluginError,
    PluginInfo,
    PluginManager,
    default_manager,
    load_registry,
)

__all__ = [
    "API_VERSION",
    "BackboneProvider",
    "BlockProvider",
    "BuildError",
    "ExportContext",
    "ExporterProvider",
    "Param",
    "PluginError",
    "PluginInfo",
    "PluginManager",
    "Preset",
    "Registry",
    "default_manager",
    "hookimpl",
    "hookspec",
    "load_registry",
]
