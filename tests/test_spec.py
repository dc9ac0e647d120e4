"""Model specs: JSON round trip, validation messages a user can act on, presets, weights override."""

from __future__ import annotations

import json

import pytest

from cnnstudio.builtins.manager import PluginManager
from cnnstudio.core.errors import SpecError
from cnnstudio.core.model.spec import SCHEMA_VERSION, AugmentSpec, HeadSpec, ModelSpec, resolve_spec
from cnnstudio.plugins import Param


@pytest.fixture(scope="module")
def registry():
    return PluginManager(autoload=False).load()


def conv(filters, **params):
    return {"type": "conv", "filters": filters, **params}


def test_round_trip_through_json(registry):
    spec = ModelSpec(
        backbone="scratch",
        params={"blocks": [conv(16, batch_norm=True), conv(32, dropout=0.2)]},
        head=HeadSpec(pooling="avg", dense=[64, 32], dropout=0.3),
        augmentation=AugmentSpec(flip="horizontal", rotation=0.05, zoom=0.1, translation=0.1, contrast=0.2),
        input_size=48,
        preset="mine",
    )
    data = spec.to_dict()
    assert data["schema"] == SCHEMA_VERSION
    again = ModelSpec.from_dict(json.loads(json.dumps(data)))
    assert again == spec
    resolved = spec.validate(registry)
    assert ModelSpec.from_dict(json.loads(json.dumps(resolved.to_dict()))) == resolved


def test_validate_fills_defaults_without_changing_the_spec(registry):
    spec = ModelSpec("vgg16")
    resolved = spec.validate(registry)
    assert resolved.input_size == 224
    assert resolved.params == {"weights": "imagenet", "trainable": False}
    assert spec.input_size is None and spec.params == {}
    scratch = ModelSpec("scratch", params={"blocks": [{"type": "conv"}]}).validate(registry)
    assert scratch.input_size == 64
    assert scratch.params["blocks"] == [
        {"type": "conv", "filters": 32, "convs": 2, "kernel": 3, "batch_norm": False, "pooling": "max", "dropout": 0.0}
    ]
    assert resolved.validate(registry) == resolved


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (ModelSpec("vgg16", input_size=16), "input size 16 is smaller than vgg16's minimum of 32 px"),
        (ModelSpec("vgg17"), "unknown backbone 'vgg17'; known backbones: resnet50, scratch, vgg16, vgg19"),
        (ModelSpec("vgg16", params={"freeze": True}), "unknown parameter 'freeze' for backbone 'vgg16'; it takes: weights, trainable"),
        (ModelSpec("vgg16", params={"trainable": "maybe"}), "backbone 'vgg16' parameter trainable: expected true or false, got 'maybe'"),
        (ModelSpec("vgg16", params={"weights": "imagenett"}), "parameter weights: expected 'imagenet', 'none' or the path of a .weights.h5 / .h5 file"),
        (
            ModelSpec("scratch", params={"blocks": [conv(8)] * 4}, input_size=8),
            "4 pooling blocks need an input of at least 16 px; the input size is 8 px",
        ),
        (ModelSpec("scratch", params={"blocks": []}), "parameter blocks: expected a non-empty list of blocks"),
        (ModelSpec("scratch", params={"blocks": [{"type": "lstm"}]}), "block 1: unknown block type 'lstm'; known blocks: conv"),
        (ModelSpec("scratch", params={"blocks": [conv(8), conv(0)]}), "block 2 (conv) parameter filters: 0 is below the minimum of 1"),
        (ModelSpec("scratch", params={"blocks": [conv(8, strides=2)]}), "unknown parameter 'strides' for block 1 (conv)"),
        (ModelSpec("vgg16", head=HeadSpec(dropout=1.5)), "head dropout: 1.5 is above the maximum of 0.9"),
        (ModelSpec("vgg16", head=HeadSpec(pooling="mean")), "head pooling: expected one of flatten, avg, max, got 'mean'"),
        (ModelSpec("vgg16", head=HeadSpec(dense=[128, 0])), "head dense: layer sizes must be whole numbers from 1"),
        (ModelSpec("vgg16", augmentation=AugmentSpec(flip="sideways")), "augmentation flip: expected one of none, horizontal"),
        (ModelSpec("vgg16", augmentation=AugmentSpec(zoom=-0.1)), "augmentation zoom: -0.1 is below the minimum of 0"),
        (ModelSpec("vgg16", input_size=True), "input size must be a positive whole number"),
    ],
)
def test_validation_messages(registry, spec, message):
    with pytest.raises(SpecError) as caught:
        spec.validate(registry)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_pooling_blocks_are_counted_and_non_pooling_blocks_are_not(registry):
    four = [conv(8)] * 4
    assert ModelSpec("scratch", params={"blocks": four}, input_size=16).validate(registry).input_size == 16
    with pytest.raises(SpecError, match="^4 pooling blocks need an input of at least 16 px; the input size is 15 px$"):
        ModelSpec("scratch", params={"blocks": four}, input_size=15).validate(registry)
    unpooled = [conv(8, pooling="none")] * 6 + [conv(8, pooling="avg")]
    assert ModelSpec("scratch", params={"blocks": unpooled}, input_size=8).validate(registry)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"schema": 2, "backbone": "vgg16"}, "model spec schema 2 is newer than this CNN Studio reads (schema 1)"),
        ({"schema": "one", "backbone": "vgg16"}, "unknown model spec schema 'one'"),
        ({"backbone": 16}, "backbone must be a backbone id, got 16"),
        ({"backbone": "vgg16", "params": []}, "params must be a mapping"),
        ({"backbone": "vgg16", "head": {"dropout": "lots"}}, "head dropout: expected a number, got 'lots'"),
        ({"backbone": "vgg16", "head": {"dense": 128}}, "head dense: expected a list of layer sizes"),
        ({"backbone": "vgg16", "head": {"units": 128}}, "head: unknown field 'units'"),
        ({"backbone": "vgg16", "augmentation": {"shear": 0.2}}, "augmentation: unknown field 'shear'"),
        ({"backbone": "vgg16", "input_size": "224"}, "input size must be a positive whole number of pixels, got '224'"),
        ({"backbone": "vgg16", "optimizer": "sgd"}, "model spec: unknown field 'optimizer'"),
        (["vgg16"], "a model spec must be a mapping"),
    ],
)
def test_from_dict_refuses_bad_data(data, message):
    with pytest.raises(SpecError) as caught:
        ModelSpec.from_dict(data)
    assert message in str(caught.value)


def test_resolve_presets(registry):
    for preset_id in registry.presets:
        spec = resolve_spec(registry, preset_id)
        assert spec.preset == preset_id
        assert spec.input_size == (224 if preset_id == "seed-model-6" else 64)

    five = resolve_spec(registry, "seed-model-5", input_size=32)
    assert five.input_size == 32
    assert [b["filters"] for b in five.params["blocks"]] == [32, 128, 256, 256]
    assert {b["dropout"] for b in five.params["blocks"]} == {0.12}
    assert (five.head.dense, five.head.dropout) == ([512], 0.35)
    assert (five.augmentation.flip, five.augmentation.rotation, five.augmentation.zoom) == ("horizontal", 0.03, 0.17)

    four = resolve_spec(registry, "seed-model-4")
    assert [b["filters"] for b in four.params["blocks"]] == [32, 64, 128, 256]
    assert four.augmentation.enabled() and not resolve_spec(registry, "seed-model-3").augmentation.enabled()

    six = resolve_spec(registry, "seed-model-6")
    assert six.backbone == "vgg16" and six.params == {"weights": "imagenet", "trainable": False}
    assert (six.head.dense, six.head.dropout) == ([128], 0.25)

    small = resolve_spec(registry, "keras-small-convnet")
    assert [(b["filters"], b["convs"]) for b in small.params["blocks"]] == [(32, 1), (64, 1), (128, 1)]
    assert small.head.dense == []


def test_resolve_a_backbone_and_unknown_names(registry):
    spec = resolve_spec(registry, "resnet50", input_size=64)
    assert (spec.backbone, spec.preset, spec.input_size) == ("resnet50", None, 64)
    with pytest.raises(SpecError) as caught:
        resolve_spec(registry, "seed-model-9")
    assert "unknown model 'seed-model-9'; presets: keras-small-convnet, seed-model-1" in str(caught.value)
    assert "backbones: resnet50, scratch, vgg16, vgg19" in str(caught.value)


def test_weights_override(registry, tmp_path):
    assert resolve_spec(registry, "seed-model-6", weights="none").params["weights"] == "none"
    assert resolve_spec(registry, "vgg19", weights="ImageNet").params["weights"] == "imagenet"
    path = tmp_path / "base.weights.h5"
    assert resolve_spec(registry, "vgg16", weights=path).params["weights"] == str(path)
    with pytest.raises(SpecError, match="weights: backbone 'scratch' has no pretrained weights"):
        resolve_spec(registry, "seed-model-1", weights="none")
    with pytest.raises(SpecError, match="parameter weights: expected 'imagenet', 'none' or the path"):
        resolve_spec(registry, "vgg16", weights="weights.txt")


@pytest.mark.parametrize(
    ("param", "value", "expected"),
    [
        (Param("n", "int", 1), "12", 12),
        (Param("n", "int", 1), 3.0, 3),
        (Param("x", "float", 0.0), "0.25", 0.25),
        (Param("x", "float", 0.0), 2, 2.0),
        (Param("b", "bool", False), "yes", True),
        (Param("b", "bool", False), "0", False),
        (Param("c", "choice", "a", choices=("a", "b")), "b", "b"),
        (Param("c", "choice", 1, choices=(1, 2)), "2", 2),
        (Param("w", "weights", "imagenet"), None, "none"),
        (Param("s", "str", ""), "text", "text"),
    ],
)
def test_param_coerce(param, value, expected):
    assert param.coerce(value) == expected


@pytest.mark.parametrize(
    ("param", "value", "message"),
    [
        (Param("n", "int", 1), "1.5", "n: expected a whole number, got '1.5'"),
        (Param("n", "int", 1), True, "n: expected a whole number, got True"),
        (Param("n", "int", 1, maximum=10), 11, "n: 11 is above the maximum of 10"),
        (Param("x", "float", 0.0), float("nan"), "x: expected a finite number"),
        (Param("b", "bool", False), 1, "b: expected true or false, got 1"),
        (Param("c", "choice", "a", choices=("a", "b")), "z", "c: expected one of a, b, got 'z'"),
        (Param("s", "str", ""), 5, "s: expected text, got 5"),
        (Param("k", "blocks", []), [{"filters": 3}], "k: block 1 must be a mapping with a 'type'"),
    ],
)
def test_param_coerce_refuses(param, value, message):
    with pytest.raises(SpecError) as caught:
        param.coerce(value)
    assert str(caught.value).startswith(message)
