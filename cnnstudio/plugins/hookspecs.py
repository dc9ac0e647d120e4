"""The hooks a CNN Studio plugin implements (pytest's ``hookspec.py`` style).

A plugin is a module (or any object) exposed through an entry point of the group
``cnnstudio.plugins``::

    [project.entry-points."cnnstudio.plugins"]
    my-backbones = "my_backbones.plugin"

whose functions are marked with :data:`hookimpl`. Registration hooks receive the
:class:`~cnnstudio.plugins.providers.Registry` and call its ``add_*`` methods (tox 4's style) rather
than returning lists, so a plugin can register any number of providers and the host can check
each one. Providers are light descriptors: import TensorFlow inside ``build`` / ``apply`` only.

A plugin module may set ``CNNSTUDIO_API_VERSION``; a plugin written for a newer API than
:data:`API_VERSION` is refused with a clear error instead of failing half-way.
"""

from __future__ import annotations

import pluggy

from cnnstudio.plugins.providers import Registry

PROJECT = "cnnstudio"

# The plugin API this CNN Studio provides; raised when a hook changes incompatibly.
API_VERSION = 1

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def cnnstudio_register_backbones(registry: Registry) -> None:
    """Register backbones with ``registry.add_backbone(BackboneProvider(...))``.

    Called once per plugin at start-up, before blocks and presets. ``build(params, input_size,
    registry)`` returns a ``keras.Model`` named ``"backbone"`` that maps preprocessed
    ``(input_size, input_size, 3)`` float32 images to a 4D feature map.
    """


@hookspec
def cnnstudio_register_blocks(registry: Registry) -> None:
    """Register blocks for scratch stacks with ``registry.add_block(BlockProvider(...))``.

    ``apply(x, params, name)`` adds the block's layers to a Keras functional graph and returns
    the new tensor; prefix every layer name with ``name`` so a stack of blocks has unique names.
    """


@hookspec
def cnnstudio_register_exporters(registry: Registry) -> None:
    """Register model file formats with ``registry.add_exporter(ExporterProvider(...))``.

    Each format appears in ``cnnstudio export --format`` and in the window's export. The studio
    calls ``write`` into a temporary path, reloads the result with ``load`` and compares it with
    the Keras model on the run's test images before it moves the file into place. ``write``
    finds the export's task state in ``context.state`` (status, progress, stop; see
    :class:`~cnnstudio.plugins.providers.ExportContext`).
    """


@hookspec
def cnnstudio_register_presets(registry: Registry) -> None:
    """Register ready-made model specs with ``registry.add_preset(Preset(...))``.

    Called after every plugin's backbones and blocks are registered: a preset is checked
    against them and refused if it does not validate.
    """
