"""Light descriptors of what plugins contribute: backbones, blocks, presets and export formats.

A descriptor holds everything the window and ``cnnstudio models`` show (id, name, parameter
schema, input sizes, preprocessing) and a ``build`` / ``apply`` callable that imports
TensorFlow only when a model is actually built (npe2's lazy contributions). So listing every
architecture never imports TensorFlow, and this module must not either.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from cnnstudio.core.errors import SpecError
from cnnstudio.core.model.params import PARAM_KINDS, Param
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.tasks import QUIET, TaskState
from cnnstudio.core.tf.preprocessing import APPLICATION_MODULE

# Provider and preset ids: what a user types after ``--model`` and what a project file stores.
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]*")
_PARAM_NAME = re.compile(r"[a-z_][a-z0-9_]*")


@dataclass(frozen=True)
class BackboneProvider:
    r"""A feature extractor: preprocessed ``(s, s, 3)`` float32 images -> a 4D feature map.

    ``build(params, input_size, registry)`` returns a ``keras.Model`` named ``"backbone"``; it
    receives params already coerced and completed with defaults. ``preprocessing`` is
    ``"rescale"`` (x / 255) or the dotted module of a ``keras.applications`` ``preprocess_input``
    (e.g. ``"keras.applications.vgg16"``); it runs inside the model, so a saved model carries
    it. A ``pretrained`` provider has a ``weights`` parameter; a ``trainable`` bool parameter
    set to False freezes the base.

    Optional, for pretrained providers:

    * ``imagenet_weights``: the :class:`cnnstudio.core.model.weights.WeightsFile` that ``build``
      loads for ``weights="imagenet"``; the studio fetches it first, with progress. When the
      file depends on the parameters or the input size (MobileNetV2's width and size), a
      callable ``(params, input_size) -> WeightsFile`` instead; see :meth:`weights_file`.
    * ``imagenet_top``: the file of the whole ImageNet classifier (with its top), and
      ``build_imagenet(weights, input_size)`` returning that classifier, for "What ImageNet sees".
    * ``block_pattern``: a regular expression whose first group names the block of a base layer
      (``r"^(block\d+)_"`` for VGG): fine-tuning unfreezes the top N blocks and the model
      summary counts parameters per block. Layers it does not match belong to the stem.
    """

    id: str
    display_name: str
    build: Callable
    params: tuple[Param, ...] = ()
    default_input_size: int = 224
    min_input_size: int = 32
    preprocessing: str = "rescale"
    pretrained: bool = False
    description: str = ""
    imagenet_weights: Any = None
    imagenet_top: Any = None
    build_imagenet: Callable | None = None
    block_pattern: str | None = None

    def weights_file(self, params: dict, input_size: int):
        """The ImageNet weights file ``build`` loads with these parameters at this size, or None."""
        if callable(self.imagenet_weights):
            return self.imagenet_weights(dict(params), input_size)
        return self.imagenet_weights


@dataclass(frozen=True)
class BlockProvider:
    """A block usable in scratch stacks: ``apply(x, params, name) -> x`` with Keras' functional API.

    Convention the spec checks rely on: a block whose params have a ``pooling`` value other than
    ``"none"`` halves the spatial size (2x2 pooling).
    """

    id: str
    display_name: str
    apply: Callable
    params: tuple[Param, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Preset:
    """A named model spec (a :meth:`ModelSpec.to_dict` mapping), e.g. a seed report's network."""

    id: str
    display_name: str
    spec: dict
    description: str = ""


@dataclass(frozen=True)
class ExportContext:
    """What an exporter's ``write`` may need besides the model.

    ``model_file`` is the bundle's ``.keras`` file; ``representative()`` loads up to 100 of the
    run's training images as uint8 ``(n, size, size, 3)`` (for calibrating quantisation) and is
    only called when needed, since it reads files. ``state`` is the export's
    :class:`~cnnstudio.core.tasks.TaskState`: a long ``write`` may report
    ``state.on_status(message)`` and ``state.on_progress(task, done, total)`` to the command
    line's or the window's progress, and may check ``state.should_stop()`` between its steps
    (raising :class:`~cnnstudio.core.errors.Cancelled` to give up; nothing is then kept).
    """

    input_size: int
    class_names: tuple[str, ...]
    model_file: Any
    representative: Callable[[], Any]
    state: TaskState = QUIET


@dataclass(frozen=True)
class ExporterProvider:
    """A model file format for ``cnnstudio export`` and the window's export.

    ``write(model, path, context)`` writes the Keras ``model`` (raw RGB pixels in [0, 255] in,
    class probabilities out) at ``path`` (a file ending in ``suffix``, or an empty folder when
    ``folder`` is True) and may return a one-line note for the report. ``load(path)`` reloads
    it in the runtime that will use it and returns ``(predict, runtime)``: ``predict`` maps a
    float32 ``(n, size, size, 3)`` batch to an ``(n, classes)`` array, ``runtime`` names what
    ran it. The studio runs the test images through both and keeps the file only if it loads
    and agrees. ``prepare()``, if given, runs before any work and raises when something the
    format needs is missing (say which package to install). ``quantised`` formats report the
    accuracy change too. ``modules`` names the modules its converter and runtime import
    (``"tf2onnx.convert"``): ``cnnstudio plugins`` says when one cannot be found, and the
    one-folder app's build collects each with the submodules its package loads lazily.
    """

    id: str
    display_name: str
    write: Callable
    load: Callable
    suffix: str = ""
    folder: bool = False
    quantised: bool = False
    prepare: Callable | None = None
    description: str = ""
    modules: tuple[str, ...] = ()


_KINDS = {"backbone": BackboneProvider, "block": BlockProvider, "preset": Preset, "exporter": ExporterProvider}


class Registry:
    """Everything the loaded plugins provide, keyed by id, each remembering its plugin.

    Plugins fill it through their registration hooks (``registry.add_backbone(...)``). Each
    ``add_*`` validates the descriptor and raises ``ValueError`` with a readable message;
    while the plugin manager registers a plugin (:meth:`registering`), the error is handed to
    the manager instead, so one bad provider does not take the plugin's others with it.
    """

    def __init__(self):
        self.backbones: dict[str, BackboneProvider] = {}
        self.blocks: dict[str, BlockProvider] = {}
        self.presets: dict[str, Preset] = {}
        self.exporters: dict[str, ExporterProvider] = {}
        self._origins: dict[tuple[str, str], str] = {}
        self._plugin: str | None = None
        self._on_error: Callable[[ValueError], None] | None = None

    @contextlib.contextmanager
    def registering(
        self, plugin: str, on_error: Callable[[ValueError], None] | None = None
    ) -> Iterator[Registry]:
        """Attribute what is added inside the block to ``plugin``; route validation errors to ``on_error``."""
        previous = self._plugin, self._on_error
        self._plugin, self._on_error = plugin, on_error
        try:
            yield self
        finally:
            self._plugin, self._on_error = previous

    def clear(self) -> None:
        """Forget every provider, so the plugins can be registered again (after an install).

        The tables are replaced, not emptied: a :meth:`snapshot` taken before keeps its own."""
        self.backbones, self.blocks, self.presets, self.exporters = {}, {}, {}, {}
        self._origins = {}

    def snapshot(self) -> Registry:
        """A copy of what is registered now, for a job that must keep the providers it started
        with while plugins are reloaded (the providers themselves are shared, not copied)."""
        copy = Registry()
        copy.replace_with(self)
        return copy

    def replace_with(self, other: Registry) -> None:
        """Take ``other``'s providers, table by table in one step each: a lookup from another
        thread sees the old table or the new one, never an empty or half-filled one."""
        self.backbones, self.blocks = dict(other.backbones), dict(other.blocks)
        self.presets, self.exporters = dict(other.presets), dict(other.exporters)
        self._origins = dict(other._origins)

    def add_backbone(self, provider: BackboneProvider) -> None:
        self._add("backbone", provider, self.backbones, _check_backbone)

    def add_block(self, provider: BlockProvider) -> None:
        self._add("block", provider, self.blocks, _check_block)

    def add_preset(self, preset: Preset) -> None:
        self._add("preset", preset, self.presets, self._check_preset)

    def add_exporter(self, provider: ExporterProvider) -> None:
        self._add("exporter", provider, self.exporters, _check_exporter)

    def origin(self, kind: str, id: str) -> str:
        """The name of the plugin that registered ``kind`` (backbone, block, preset, exporter) ``id``."""
        try:
            return self._origins[(kind, id)]
        except KeyError:
            raise KeyError(f"no {kind} {id!r} is registered") from None

    def provided_by(self, plugin: str) -> list[str]:
        """What ``plugin`` registered, as ``"kind:id"`` strings."""
        return [f"{kind}:{id}" for (kind, id), name in self._origins.items() if name == plugin]

    def _add(self, kind: str, item, table: dict, check: Callable) -> None:
        try:
            expected = _KINDS[kind]
            if not isinstance(item, expected):
                raise ValueError(f"expected a {expected.__name__}, got {type(item).__name__}")
            _check_id(kind, item.id)
            if item.id in table:
                raise ValueError(
                    f"{kind} {item.id!r} is already registered by plugin "
                    f"{self._origins[(kind, item.id)]!r}"
                )
            if not isinstance(item.display_name, str) or not item.display_name.strip():
                raise ValueError(f"{kind} {item.id!r} has no display name")
            check(item)
        except ValueError as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)
            return
        table[item.id] = item
        self._origins[(kind, item.id)] = self._plugin or "unknown"

    def _check_preset(self, preset: Preset) -> None:
        # Presets come after every backbone and block is registered, so they are checked whole:
        # a preset that cannot be built is refused here rather than when a user picks it.
        if not isinstance(preset.spec, dict):
            raise ValueError(f"preset {preset.id!r}: spec must be a mapping")
        try:
            ModelSpec.from_dict(preset.spec).validate(self)
        except SpecError as exc:
            raise ValueError(f"preset {preset.id!r}: {exc}") from None


def _check_id(kind: str, id) -> None:
    if not isinstance(id, str) or not ID_PATTERN.fullmatch(id):
        raise ValueError(
            f"{kind} id {id!r} is invalid: use lower-case letters, digits, '_', '.', '-', "
            "starting with a letter or digit"
        )


def _check_params(owner: str, params) -> None:
    if not isinstance(params, tuple):
        raise ValueError(f"{owner}: params must be a tuple of Param, got {type(params).__name__}")
    seen = set()
    for param in params:
        if not isinstance(param, Param):
            raise ValueError(f"{owner}: params must be Param objects, got {type(param).__name__}")
        if not isinstance(param.name, str) or not _PARAM_NAME.fullmatch(param.name):
            raise ValueError(f"{owner}: parameter name {param.name!r} is not an identifier")
        if param.name in seen:
            raise ValueError(f"{owner}: parameter {param.name!r} is defined twice")
        seen.add(param.name)
        if param.kind not in PARAM_KINDS:
            raise ValueError(
                f"{owner}: parameter {param.name!r} has unknown kind {param.kind!r} "
                f"(expected one of {', '.join(PARAM_KINDS)})"
            )
        if param.kind == "choice" and (not isinstance(param.choices, tuple) or not param.choices):
            raise ValueError(f"{owner}: choice parameter {param.name!r} needs a tuple of choices")
        if (
            param.minimum is not None
            and param.maximum is not None
            and param.minimum > param.maximum
        ):
            raise ValueError(f"{owner}: parameter {param.name!r} has minimum > maximum")
        try:
            param.coerce(param.default)
        except SpecError as exc:
            raise ValueError(f"{owner}: default of parameter {exc}") from None


def _check_sizes(owner: str, provider: BackboneProvider) -> None:
    for field in ("default_input_size", "min_input_size"):
        value = getattr(provider, field)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{owner}: {field} must be a positive whole number, got {value!r}")
    if provider.default_input_size < provider.min_input_size:
        raise ValueError(
            f"{owner}: default_input_size {provider.default_input_size} is below "
            f"min_input_size {provider.min_input_size}"
        )


def _check_backbone(provider: BackboneProvider) -> None:
    owner = f"backbone {provider.id!r}"
    if not callable(provider.build):
        raise ValueError(f"{owner}: build is not callable")
    _check_params(owner, provider.params)
    _check_sizes(owner, provider)
    if provider.preprocessing != "rescale" and not (
        isinstance(provider.preprocessing, str)
        and APPLICATION_MODULE.fullmatch(provider.preprocessing)
    ):
        raise ValueError(
            f"{owner}: preprocessing must be 'rescale' or a keras.applications module "
            f"such as 'keras.applications.vgg16', got {provider.preprocessing!r}"
        )
    if provider.pretrained and not any(
        p.name == "weights" and p.kind == "weights" for p in provider.params
    ):
        raise ValueError(f"{owner}: a pretrained backbone needs a 'weights' parameter of kind 'weights'")


def _check_block(provider: BlockProvider) -> None:
    owner = f"block {provider.id!r}"
    if not callable(provider.apply):
        raise ValueError(f"{owner}: apply is not callable")
    _check_params(owner, provider.params)
    if any(p.name == "type" for p in provider.params):
        raise ValueError(f"{owner}: 'type' is reserved for the block id")


def _check_exporter(provider: ExporterProvider) -> None:
    owner = f"exporter {provider.id!r}"
    for name in ("write", "load"):
        if not callable(getattr(provider, name)):
            raise ValueError(f"{owner}: {name} is not callable")
    if provider.prepare is not None and not callable(provider.prepare):
        raise ValueError(f"{owner}: prepare is not callable")
    if provider.folder:
        if provider.suffix:
            raise ValueError(f"{owner}: a folder format has no file suffix, got {provider.suffix!r}")
    elif not (isinstance(provider.suffix, str) and re.fullmatch(r"\.[A-Za-z0-9][A-Za-z0-9._-]*", provider.suffix)):
        raise ValueError(f"{owner}: a file format needs a suffix such as '.onnx', got {provider.suffix!r}")
    modules = provider.modules
    if not isinstance(modules, tuple) or not all(
            isinstance(m, str) and re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", m) for m in modules):
        raise ValueError(f"{owner}: modules must be a tuple of module names such as 'tf2onnx.convert', "
                         f"got {modules!r}")
