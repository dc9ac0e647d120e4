"""The plugin as CNN Studio sees it once installed: found through its entry point, building
MobileNetV2 and EfficientNetB0 bases, with blocks for fine-tuning, and fetching the same
ImageNet files Keras does. Random weights and tiny inputs only: no test needs a network."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from cnnstudio.builtins.manager import PluginManager
from cnnstudio.core.errors import WeightsError
from cnnstudio.core.model import transfer
from cnnstudio.core.model.models import build_model
from cnnstudio.core.model.spec import resolve_spec

from cnnstudio_mobilenet import plugin

BACKBONES = ("mobilenetv2", "efficientnetb0")
# The block fine-tuning unfreezes first, and the inverted residual block below it.
TOP_BLOCKS = {"mobilenetv2": ("Conv_1", "block_16"), "efficientnetb0": ("top", "block7a")}


@pytest.fixture(scope="module")
def manager():
    manager = PluginManager()
    manager.load()
    return manager


@pytest.fixture(scope="module")
def registry(manager):
    return manager.registry


def random_spec(registry, backbone: str, mode: str | None = None):
    provider = registry.backbones[backbone]
    spec = resolve_spec(registry, backbone, input_size=provider.min_input_size, weights="none")
    return transfer.apply_mode(spec, mode, provider)


def test_the_installed_plugin_registers_both_backbones(manager, registry):
    info = next(p for p in manager.plugins if p.name == "mobilenet")
    assert (info.origin, info.distribution, info.version, info.status) == (
        "package", "cnnstudio-mobilenet", "0.1.0", "ok")
    assert sorted(info.provides) == ["backbone:efficientnetb0", "backbone:mobilenetv2"]
    assert [e for e in manager.errors if e.plugin == "mobilenet"] == []
    for backbone in BACKBONES:
        provider = registry.backbones[backbone]
        assert registry.origin("backbone", backbone) == "mobilenet"
        assert provider.pretrained and provider.block_pattern
        assert (provider.min_input_size, provider.default_input_size) == (32, 224)
    assert registry.backbones["mobilenetv2"].preprocessing == "keras.applications.mobilenet_v2"
    assert registry.backbones["efficientnetb0"].preprocessing == "keras.applications.efficientnet"


def test_importing_the_plugin_imports_no_tensorflow():
    code = textwrap.dedent("""
        import sys
        from cnnstudio.builtins.manager import PluginManager
        registry = PluginManager().load()
        assert {"mobilenetv2", "efficientnetb0"} <= set(registry.backbones)
        print(",".join(m for m in ("tensorflow", "keras", "PySide6") if m in sys.modules))
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("backbone", BACKBONES)
def test_builds_at_its_minimum_size_and_finetuning_unfreezes_only_the_top_block(registry, backbone):
    provider = registry.backbones[backbone]
    model = build_model(random_spec(registry, backbone, "finetune"), 3, registry)
    features = model.get_layer("backbone").output
    assert len(features.shape) == 4 and features.shape[-1] == 1280
    assert model.output.shape[-1] == 3
    top, below = TOP_BLOCKS[backbone]

    names = [name for name, _ in transfer.base_blocks(model.get_layer("backbone"), provider)]
    assert names[0] == "stem" and top in names and below in names
    assert len([n for n in names if n != "stem"]) >= 16  # one block per inverted residual block

    before = {r["block"]: r["state"] for r in transfer.block_summary(model, provider)}
    assert before.pop("head") == "trainable"
    assert set(before.values()) == {"frozen"}

    unfrozen = transfer.unfreeze_top(model, provider, blocks=1)
    assert unfrozen and all(name.startswith(top) for name in unfrozen)
    after = {r["block"]: r["state"] for r in transfer.block_summary(model, provider)}
    assert after[top] == "trainable" and after[below] == "frozen" and after["stem"] == "frozen"
    assert [b for b, state in after.items() if state != "frozen"] == [top, "head"]


class FakeFetch:
    """Stands in for Keras' ``get_file``: records what it is asked for, then answers with
    ``path`` or, when that is None, fails as Keras does without a connection."""

    def __init__(self):
        self.calls: list[tuple] = []
        self.path: str | None = None

    def __call__(self, fname, origin, **kwargs):
        self.calls.append((fname, origin, kwargs.get("file_hash")))
        if self.path is not None:
            return self.path
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")


@pytest.fixture
def keras_fetches(monkeypatch):
    from keras.src.utils import file_utils

    fake = FakeFetch()
    monkeypatch.setattr(file_utils, "get_file", fake)
    return fake


# Keras warns that it loads the 224 px file for other sizes: for a base, the weights are the same.
@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")
@pytest.mark.parametrize(("backbone", "alpha", "size", "expected"), [
    ("mobilenetv2", 1.0, 32, plugin.mobilenet_v2_weights(1.0, 224)),
    ("mobilenetv2", 0.35, 96, plugin.mobilenet_v2_weights(0.35, 96)),
    ("efficientnetb0", None, 32, plugin.EFFICIENTNETB0_FILES[0]),
])
def test_imagenet_weights_are_the_file_keras_fetches(registry, keras_fetches, backbone, alpha, size, expected):
    spec = resolve_spec(registry, backbone, input_size=size)
    if alpha is not None:
        spec.params["alpha"] = alpha
    with pytest.raises(WeightsError, match=r"cannot download the ImageNet weights of .*Name or service not known"):
        build_model(spec, 2, registry)
    assert keras_fetches.calls == [(expected.fname, expected.origin, expected.file_hash)]
    # The file the studio downloads first, with progress, is the one Keras then loads.
    assert registry.backbones[backbone].weights_file(spec.params, spec.input_size) == expected


def test_an_efficientnet_weights_file_gives_the_network_imagenet_weights_give(registry, keras_fetches, tmp_path):
    """Keras' own ImageNet file used as a local weights file (offline) must predict exactly as
    when Keras loads it for weights="imagenet", although Keras builds EfficientNet differently
    for the two (an extra input scaling for ImageNet weights only)."""
    provider = registry.backbones["efficientnetb0"]
    params = dict(resolve_spec(registry, "efficientnetb0").params)
    source = provider.build({**params, "weights": "none"}, 32, registry)
    for layer in source.layers:  # ImageNet-like input statistics, as Keras' file holds them
        if type(layer).__name__ == "Normalization":
            layer.set_weights([np.array(v, "float32") for v in
                               ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225], 0)])
    path = tmp_path / "base.weights.h5"
    source.save_weights(str(path))
    keras_fetches.path = str(path)

    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    from_imagenet = provider.build({**params, "weights": "imagenet"}, 32, registry)
    from_file = provider.build({**params, "weights": str(path)}, 32, registry)
    assert from_file.name == from_imagenet.name == "backbone"
    assert [type(layer).__name__ for layer in from_file.layers] == \
        [type(layer).__name__ for layer in from_imagenet.layers]
    np.testing.assert_allclose(from_file(images), from_imagenet(images), rtol=1e-5, atol=1e-9)


def test_a_missing_weights_file_is_named(registry, tmp_path):
    missing = tmp_path / "base.weights.h5"
    for backbone in BACKBONES:
        spec = resolve_spec(registry, backbone, input_size=32, weights=str(missing))
        with pytest.raises(WeightsError, match=f"^weights file {re.escape(str(missing))} does not exist$"):
            build_model(spec, 2, registry)
