"""The built-in plugin: backbones, blocks, presets and export formats, registered through the
same hooks as any third-party plugin.

The plugin manager (:mod:`cnnstudio.builtins.manager`) registers this module under the plugin
name ``builtins``; a failure here is a bug and raises, where a third-party plugin's failure is
only recorded. Beside it: the verified export of a run (:mod:`~cnnstudio.builtins.export`) and
What ImageNet sees (:mod:`~cnnstudio.builtins.imagenet`), whose defaults are the built-in
formats and the studio's plugins.
"""

from __future__ import annotations

from cnnstudio.builtins.applications import RESNET50, VGG16, VGG19
from cnnstudio.builtins.blocks import CONV
from cnnstudio.builtins.export import BUILTIN_EXPORTERS
from cnnstudio.builtins.presets import PRESETS
from cnnstudio.builtins.scratch import SCRATCH
from cnnstudio.plugins import hookimpl


@hookimpl
def cnnstudio_register_backbones(registry):
    for provider in (SCRATCH, VGG16, VGG19, RESNET50):
        registry.add_backbone(provider)


@hookimpl
def cnnstudio_register_blocks(registry):
    registry.add_block(CONV)


@hookimpl
def cnnstudio_register_exporters(registry):
    for exporter in BUILTIN_EXPORTERS.values():
        registry.add_exporter(exporter)


@hookimpl
def cnnstudio_register_presets(registry):
    for preset in PRESETS:
        registry.add_preset(preset)
