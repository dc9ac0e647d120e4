"""The model spec: which backbone with which parameters, the head, the augmentation, the input size.

A spec is what a project file stores and what ``cnnstudio train --model`` resolves to; it is
plain data (JSON round trip, versioned schema) and never imports TensorFlow.
:meth:`ModelSpec.validate` checks it against the plugin registry and fills in every default,
so a resolved spec says exactly what :func:`cnnstudio.core.model.models.build_model` will build.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from cnnstudio.core.errors import SpecError
from cnnstudio.core.model.params import Param

SCHEMA_VERSION = 1

POOLINGS = ("flatten", "avg", "max")
FLIPS = ("none", "horizontal", "vertical", "horizontal_and_vertical")
MAX_DENSE_UNITS = 65536


@dataclass
class HeadSpec:
    """The classifier on top of the backbone: pooling, then ``Dense(units, relu)`` (+ dropout) per entry of ``dense``."""

    pooling: str = "flatten"
    dense: list[int] = field(default_factory=lambda: [128])
    dropout: float = 0.0  # after each dense layer

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("pooling", "choice", "flatten", label="Pooling", choices=POOLINGS,
              help="How the feature map becomes a vector: flatten, global average or global max."),
        Param("dropout", "float", 0.0, label="Dropout", minimum=0.0, maximum=0.9, step=0.05,
              help="Dropout rate after each dense layer."),
    )

    def _checked(self) -> HeadSpec:
        values = _coerce_section("head", self.PARAMS, {"pooling": self.pooling, "dropout": self.dropout})
        dense = self.dense
        if not isinstance(dense, (list, tuple)):
            raise SpecError(f"head dense: expected a list of layer sizes, got {dense!r}")
        for units in dense:
            if isinstance(units, bool) or not isinstance(units, int) or not 1 <= units <= MAX_DENSE_UNITS:
                raise SpecError(
                    f"head dense: layer sizes must be whole numbers from 1 to {MAX_DENSE_UNITS}, got {units!r}"
                )
        return HeadSpec(dense=list(dense), **values)


@dataclass
class AugmentSpec:
    """Random training-time augmentation (Keras preprocessing layers; inactive at inference).

    ``rotation`` is a fraction of a full turn, ``zoom`` / ``translation`` fractions of the image
    size, ``contrast`` a contrast factor, as the Keras layers take them; 0 turns one off.
    """

    flip: str = "none"
    rotation: float = 0.0
    zoom: float = 0.0
    translation: float = 0.0
    contrast: float = 0.0

    PARAMS: ClassVar[tuple[Param, ...]] = (
        Param("flip", "choice", "none", label="Flip", choices=FLIPS),
        Param("rotation", "float", 0.0, label="Rotation", minimum=0.0, maximum=1.0, step=0.01,
              help="Random rotation, as a fraction of a full turn (0.05 = up to 18 degrees)."),
        Param("zoom", "float", 0.0, label="Zoom", minimum=0.0, maximum=0.9, step=0.01,
              help="Random zoom in or out, as a fraction of the image size."),
        Param("translation", "float", 0.0, label="Shift", minimum=0.0, maximum=0.9, step=0.01,
              help="Random shift, as a fraction of the image size."),
        Param("contrast", "float", 0.0, label="Contrast", minimum=0.0, maximum=1.0, step=0.05,
              help="Random contrast change factor."),
    )

    def enabled(self) -> bool:
        return self.flip != "none" or any((self.rotation, self.zoom, self.translation, self.contrast))

    def _checked(self) -> AugmentSpec:
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return AugmentSpec(**_coerce_section("augmentation", self.PARAMS, values))


@dataclass
class ModelSpec:
    """A model to build: ``backbone`` id and its ``params``, head, augmentation, input size.

    ``input_size`` None means the backbone's default; ``preset`` records the preset the spec
    came from (informational).
    """

    backbone: str
    params: dict = field(default_factory=dict)
    head: HeadSpec = field(default_factory=HeadSpec)
    augmentation: AugmentSpec = field(default_factory=AugmentSpec)
    input_size: int | None = None
    preset: str | None = None

    def to_dict(self) -> dict:
        return {
            "schema": SCHEMA_VERSION,
            "backbone": self.backbone,
            "params": copy.deepcopy(self.params),
            "head": {"pooling": self.head.pooling, "dense": list(self.head.dense), "dropout": self.head.dropout},
            "augmentation": {f.name: getattr(self.augmentation, f.name) for f in fields(AugmentSpec)},
            "input_size": self.input_size,
            "preset": self.preset,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ModelSpec:
        """Read a spec written by :meth:`to_dict` (``schema`` may be left out in presets)."""
        if not isinstance(data, dict):
            raise SpecError(f"a model spec must be a mapping, got {type(data).__name__}")
        schema = data.get("schema", SCHEMA_VERSION)
        if schema != SCHEMA_VERSION or isinstance(schema, bool):
            if isinstance(schema, int) and not isinstance(schema, bool) and schema > SCHEMA_VERSION:
                raise SpecError(
                    f"model spec schema {schema} is newer than this CNN Studio reads "
                    f"(schema {SCHEMA_VERSION}); update CNN Studio"
                )
            raise SpecError(f"unknown model spec schema {schema!r} (expected {SCHEMA_VERSION})")
        known = {f.name for f in fields(cls)} | {"schema"}
        _refuse_unknown("model spec", data, known)
        backbone = data.get("backbone")
        if not isinstance(backbone, str) or not backbone:
            raise SpecError(f"model spec: backbone must be a backbone id, got {backbone!r}")
        params, head, augmentation = ({} if data.get(k) is None else data[k] for k in ("params", "head", "augmentation"))
        if not isinstance(params, dict):
            raise SpecError(f"model spec: params must be a mapping, got {params!r}")
        for name, section in (("head", head), ("augmentation", augmentation)):
            if not isinstance(section, dict):
                raise SpecError(f"model spec: {name} must be a mapping, got {section!r}")
        _refuse_unknown("head", head, {f.name for f in fields(HeadSpec)})
        _refuse_unknown("augmentation", augmentation, {f.name for f in fields(AugmentSpec)})
        preset = data.get("preset")
        if preset is not None and not isinstance(preset, str):
            raise SpecError(f"model spec: preset must be a preset id, got {preset!r}")
        return cls(
            backbone=backbone,
            params=copy.deepcopy(params),
            head=HeadSpec(**head)._checked(),
            augmentation=AugmentSpec(**augmentation)._checked(),
            input_size=_check_input_size(data.get("input_size")),
            preset=preset,
        )

    def validate(self, registry) -> ModelSpec:
        """A resolved copy: input size and every parameter filled in and checked against ``registry``."""
        provider = registry.backbones.get(self.backbone)
        if provider is None:
            raise SpecError(
                f"unknown backbone {self.backbone!r}; known backbones: {_listing(registry.backbones)}"
            )
        size = _check_input_size(self.input_size)
        if size is None:
            size = provider.default_input_size
        if size < provider.min_input_size:
            raise SpecError(
                f"input size {size} is smaller than {provider.id}'s minimum of {provider.min_input_size} px"
            )
        if not isinstance(self.params, dict):
            raise SpecError(f"model spec: params must be a mapping, got {self.params!r}")
        params = _resolve_params(registry, provider.params, self.params, f"backbone {provider.id!r}")
        pools = sum(
            1
            for p in provider.params
            if p.kind == "blocks"
            for block in params[p.name]
            if block.get("pooling", "none") != "none"
        )
        if size < 2**pools:
            raise SpecError(
                f"{pools} pooling block{'s' if pools != 1 else ''} need{'' if pools != 1 else 's'} "
                f"an input of at least {2**pools} px; the input size is {size} px"
            )
        return ModelSpec(
            backbone=self.backbone,
            params=params,
            head=self.head._checked(),
            augmentation=self.augmentation._checked(),
            input_size=size,
            preset=self.preset,
        )


def resolve_spec(registry, id_or_preset: str, input_size: int | None = None, weights=None,
                 params: dict | None = None) -> ModelSpec:
    """The validated spec for a preset id or a backbone id (with its defaults).

    ``input_size`` overrides the preset's / backbone's size; ``weights`` (``"imagenet"``,
    ``"none"`` or a weights file) overrides the ``weights`` parameter of a pretrained backbone;
    ``params`` set other backbone parameters (a plugin's too), checked against its schema.
    """
    if id_or_preset in registry.presets:
        spec = ModelSpec.from_dict(registry.presets[id_or_preset].spec)
        spec.preset = id_or_preset
    elif id_or_preset in registry.backbones:
        spec = ModelSpec(backbone=id_or_preset)
    else:
        raise SpecError(
            f"unknown model {id_or_preset!r}; presets: {_listing(registry.presets)}; "
            f"backbones: {_listing(registry.backbones)}"
        )
    if input_size is not None:
        spec.input_size = input_size
    if weights is not None:
        provider = registry.backbones.get(spec.backbone)
        if provider is not None and not any(p.name == "weights" for p in provider.params):
            raise SpecError(f"weights: backbone {spec.backbone!r} has no pretrained weights to choose")
        spec.params["weights"] = weights
    spec.params.update(params or {})
    return spec.validate(registry)


def _resolve_params(registry, schema: tuple[Param, ...], values: dict, owner: str) -> dict:
    known = {p.name: p for p in schema}
    unknown = sorted(set(values) - set(known))
    if unknown:
        takes = ", ".join(known) or "no parameters"
        raise SpecError(f"unknown parameter {unknown[0]!r} for {owner}; it takes: {takes}")
    resolved = {}
    for param in schema:
        value = values[param.name] if param.name in values else copy.deepcopy(param.default)
        try:
            value = param.coerce(value)
        except SpecError as exc:
            raise SpecError(f"{owner} parameter {exc}") from None
        if param.kind == "blocks":
            value = [_resolve_block(registry, i, block) for i, block in enumerate(value, 1)]
        resolved[param.name] = value
    return resolved


def _resolve_block(registry, index: int, block: dict) -> dict:
    provider = registry.blocks.get(block["type"])
    if provider is None:
        raise SpecError(
            f"block {index}: unknown block type {block['type']!r}; known blocks: {_listing(registry.blocks)}"
        )
    values = {k: v for k, v in block.items() if k != "type"}
    return {"type": provider.id, **_resolve_params(registry, provider.params, values, f"block {index} ({provider.id})")}


def _coerce_section(section: str, schema: tuple[Param, ...], values: dict[str, Any]) -> dict:
    out = {}
    for param in schema:
        try:
            out[param.name] = param.coerce(values[param.name])
        except SpecError as exc:
            raise SpecError(f"{section} {exc}") from None
    return out


def _check_input_size(size):
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 1):
        raise SpecError(f"input size must be a positive whole number of pixels, got {size!r}")
    return size


def _refuse_unknown(section: str, data: dict, known: set[str]) -> None:
    unknown = sorted(set(data) - known)
    if unknown:
        raise SpecError(f"{section}: unknown field {unknown[0]!r}; known fields: {', '.join(sorted(known))}")


def _listing(table: dict) -> str:
    return ", ".join(sorted(table)) or "none"
