"""The plugin system: hook markers, the descriptors plugins register, and the host that loads them.

A third-party plugin needs only this package::

    from cnnstudio.plugins import BackboneProvider, Param, hookimpl

    @hookimpl
    def cnnstudio_register_backbones(registry):
        registry.add_backbone(BackboneProvider(id="tiny", display_name="Tiny", build=build_tiny))

``Param`` and ``BuildError`` are the core's own (the spec's head and augmentation are described
with ``Param`` too); they are part of the contract and exported here. The studio's manager,
with the built-in plugin, is :class:`cnnstudio.builtins.manager.PluginManager`.

Importing it never imports TensorFlow or Qt.
"""

from cnnstudio.core.errors import BuildError
from cnnstudio.core.model.params import Param
from cnnstudio.plugins.hookspecs import API_VERSION, hookimpl, hookspec
from cnnstudio.plugins.manager import PluginError, PluginHost, PluginInfo
from cnnstudio.plugins.providers import (
    BackboneProvider,
    BlockProvider,
    ExportContext,
    ExporterProvider,
    Preset,
    Registry,
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
    "PluginHost",
    "PluginInfo",
    "Preset",
    "Registry",
    "hookimpl",
    "hookspec",
]
