"""Building models: every backbone and preset trains a step, preprocessing, saving, weights loading.

No network: pretrained backbones use ``weights="none"`` or a weights file saved here; the
ImageNet download is made to fail the way it fails offline.
"""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from cnnstudio.builtins.manager import PluginManager
from cnnstudio.core.errors import SpecError, WeightsError
from cnnstudio.core.model.models import build_model, parameter_counts, unfreeze_backbone
from cnnstudio.core.model.spec import AugmentSpec, HeadSpec, ModelSpec, resolve_spec
from cnnstudio.core.tf import keras
from cnnstudio.core.tf.layers import Preprocess
from cnnstudio.plugins import BackboneProvider, Param, Registry

keras = keras()
PRETRAINED = ("vgg16", "vgg19", "resnet50")


@pytest.fixture(scope="module")
def registry():
    return PluginManager(autoload=False).load()


def images(n: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 255, (n, size, size, 3)).astype("float32")


def one_training_step(model, n_classes: int) -> float:
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", run_eagerly=True)
    x = images(2, model.input.shape[1])
    loss = model.train_on_batch(x, np.arange(2) % n_classes)
    assert np.isfinite(loss)
    return loss


@pytest.mark.parametrize(
    "backbone",
    ["scratch", "vgg16", "vgg19", pytest.param("resnet50", marks=pytest.mark.slow)],
)
def test_every_builtin_backbone_builds_and_trains(registry, backbone):
    weights = "none" if backbone in PRETRAINED else None
    model = build_model(resolve_spec(registry, backbone, input_size=32, weights=weights), 3, registry)
    assert model.name == backbone
    assert model.input.shape[1:] == (32, 32, 3) and model.input.name == "image"
    assert model.output.shape[1:] == (3,)
    assert [layer.name for layer in model.layers][-1] == "predictions"
    assert model.get_layer("preprocess").mode == registry.backbones[backbone].preprocessing
    assert len(model.get_layer("backbone").output.shape) == 4
    one_training_step(model, 3)


@pytest.mark.parametrize(
    "preset",
    [
        "seed-model-1",
        "seed-model-2",
        "seed-model-3",
        "seed-model-4",
        pytest.param("seed-model-5", marks=pytest.mark.slow),
        "seed-model-6",
        "keras-small-convnet",
    ],
)
def test_every_preset_builds_and_trains(registry, preset):
    weights = "none" if preset == "seed-model-6" else None
    spec = resolve_spec(registry, preset, input_size=32, weights=weights)
    model = build_model(spec, 2, registry)
    assert model.name == preset
    dense = [layer for layer in model.layers if layer.name.startswith("dense_")]
    assert [layer.units for layer in dense] == spec.head.dense
    one_training_step(model, 2)


def test_seed_model_4_has_the_report_layers(registry):
    model = build_model(resolve_spec(registry, "seed-model-4", input_size=32), 2, registry)
    names = {layer.name for layer in model.layers}
    assert {"augment_flip", "augment_rotation", "augment_zoom", "dropout_1"} <= names
    assert "augment_translation" not in names and "augment_contrast" not in names
    assert model.get_layer("dropout_1").rate == 0.25
    base = model.get_layer("backbone")
    assert [base.get_layer(f"block{i}_dropout").rate for i in range(1, 5)] == [0.1] * 4
    assert [base.get_layer(f"block{i}_conv2").filters for i in range(1, 5)] == [32, 64, 128, 256]


@pytest.mark.parametrize("backbone", PRETRAINED)
def test_preprocess_matches_keras_applications(backbone):
    x = images(2, 8, seed=1)
    expected = importlib.import_module(f"keras.applications.{backbone}").preprocess_input(x.copy())
    actual = keras.ops.convert_to_numpy(Preprocess(f"keras.applications.{backbone}")(x))
    np.testing.assert_allclose(actual, expected, rtol=1e-6, atol=1e-4)


def test_preprocess_rescale_and_refused_modes():
    x = images(1, 4)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(Preprocess("rescale")(x)), x / 255.0, rtol=1e-6)
    for mode in ("os", "keras.src.applications.vgg16", "keras.applications.no_such_net", "keras.applications.vgg16.os"):
        with pytest.raises(ValueError, match="preprocess"):
            Preprocess(mode)


def test_a_model_saves_and_reloads_in_safe_mode(registry, tmp_path):
    spec = resolve_spec(registry, "seed-model-4", input_size=16)
    spec.params["blocks"] = spec.params["blocks"][:2]
    model = build_model(spec, 3, registry)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.get_layer("preprocess").mode == "rescale"
    x = images(3, 16)
    np.testing.assert_allclose(loaded.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-5, atol=1e-6)

    # A caffe-preprocessing model too: the mode travels in the layer's config.
    inputs = keras.Input((8, 8, 3))
    outputs = Preprocess("keras.applications.resnet50", name="preprocess")(inputs)
    small = keras.Model(inputs, outputs)
    small.save(tmp_path / "small.keras")
    reloaded = keras.saving.load_model(tmp_path / "small.keras", safe_mode=True)
    np.testing.assert_allclose(reloaded.predict(images(1, 8), verbose=0), small.predict(images(1, 8), verbose=0))


def test_augmentation_is_inactive_at_inference(registry):
    spec = resolve_spec(registry, "seed-model-1", input_size=16)
    spec.augmentation = AugmentSpec(flip="horizontal_and_vertical", rotation=0.2, zoom=0.2, translation=0.2, contrast=0.5)
    augmented = build_model(spec, 2, registry)
    assert sum(layer.name.startswith("augment_") for layer in augmented.layers) == 5
    spec.augmentation = AugmentSpec()
    plain = build_model(spec, 2, registry)
    plain.set_weights(augmented.get_weights())

    x = images(4, 16)
    first = augmented.predict(x, verbose=0)
    np.testing.assert_array_equal(augmented.predict(x, verbose=0), first)
    np.testing.assert_allclose(plain.predict(x, verbose=0), first, rtol=1e-6, atol=1e-7)
    assert not np.allclose(keras.ops.convert_to_numpy(augmented(x, training=True)), first)


def test_a_frozen_base_is_counted_as_frozen(registry):
    frozen = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 2, registry)
    base = frozen.get_layer("backbone")
    assert base.trainable is False
    counts = parameter_counts(frozen)
    assert counts["frozen"] == base.count_params() == 14_714_688
    assert counts["trainable"] == frozen.count_params() - base.count_params()
    assert counts["total"] == frozen.count_params()

    spec = resolve_spec(registry, "vgg16", input_size=32, weights="none")
    spec.params["trainable"] = True
    unfrozen = build_model(spec, 2, registry)
    assert unfrozen.get_layer("backbone").trainable is True
    assert parameter_counts(unfrozen)["frozen"] == 0


def _bn_net(params, input_size, registry):
    inputs = keras.Input((input_size, input_size, 3))
    x = keras.layers.Conv2D(4, 3, padding="same")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    return keras.Model(inputs, x, name="backbone")


def bn_registry() -> Registry:
    registry = Registry()
    registry.add_backbone(BackboneProvider(
        "bn-net", "BN net", _bn_net, pretrained=True, default_input_size=8, min_input_size=8,
        params=(Param("weights", "weights", "none"), Param("trainable", "bool", True)),
    ))
    return registry


def statistics_move_in_training(model) -> bool:
    bn = model.get_layer("backbone").get_layer("bn")
    before = keras.ops.convert_to_numpy(bn.moving_mean).copy()
    one_training_step(model, 2)
    return not np.allclose(keras.ops.convert_to_numpy(bn.moving_mean), before)


@pytest.mark.parametrize(
    ("weights", "trainable", "statistics_move"),
    [("none", True, True), ("pretend.weights.h5", True, False), ("pretend.weights.h5", False, False)],
)
def test_pretrained_batch_norm_statistics_are_kept(weights, trainable, statistics_move):
    registry = bn_registry()
    spec = ModelSpec("bn-net", params={"weights": weights, "trainable": trainable}, head=HeadSpec(dense=[]))
    model = build_model(spec, 2, registry)
    assert statistics_move_in_training(model) is statistics_move


def test_unfreeze_backbone_for_fine_tuning(registry):
    model = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 2, registry)
    head = parameter_counts(model)["trainable"]
    unfreeze_backbone(model, "block5_conv1")
    block5 = 3 * (3 * 3 * 512 * 512 + 512)
    assert parameter_counts(model)["trainable"] == head + block5
    with pytest.raises(SpecError, match="the backbone has no layer 'block9_conv1'"):
        unfreeze_backbone(model, "block9_conv1")

    spec = ModelSpec("bn-net", params={"weights": "pretend.weights.h5", "trainable": False}, head=HeadSpec(dense=[]))
    bn_model = build_model(spec, 2, bn_registry())
    unfreeze_backbone(bn_model)
    conv = bn_model.get_layer("backbone").layers[1]
    kernel = keras.ops.convert_to_numpy(conv.kernel).copy()
    assert not statistics_move_in_training(bn_model)
    assert not np.allclose(keras.ops.convert_to_numpy(conv.kernel), kernel)


def test_a_weights_file_of_the_base_loads_through_the_weights_param(registry, tmp_path):
    source = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 2, registry)
    path = tmp_path / "vgg16 base.weights.h5"
    source.get_layer("backbone").save_weights(path)

    loaded = build_model(resolve_spec(registry, "vgg16", input_size=32, weights=str(path)), 2, registry)
    x = images(2, 32)
    features = source.get_layer("backbone").predict(x, verbose=0)
    np.testing.assert_array_equal(loaded.get_layer("backbone").predict(x, verbose=0), features)


@pytest.mark.filterwarnings("ignore:Skipping nested container")
def test_a_weights_file_of_another_architecture_is_refused(registry, tmp_path):
    path = tmp_path / "vgg16.weights.h5"
    build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 2, registry).get_layer(
        "backbone"
    ).save_weights(path)
    with pytest.raises(WeightsError) as caught:
        build_model(resolve_spec(registry, "vgg19", input_size=32, weights=str(path)), 2, registry)
    message = str(caught.value)
    assert message.startswith(f"weights file {path} cannot be loaded into VGG19 without its classifier")
    assert "\n" not in message and len(message) < 500

    missing = tmp_path / "missing.weights.h5"
    with pytest.raises(WeightsError, match="missing.weights.h5 does not exist"):
        build_model(resolve_spec(registry, "vgg16", input_size=32, weights=str(missing)), 2, registry)


def test_imagenet_weights_offline_give_a_clear_error(registry, monkeypatch):
    from keras.src.utils import file_utils

    def offline(fname, origin, **kwargs):
        # What keras.utils.get_file raises when the host cannot be resolved.
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as caught:
        build_model(resolve_spec(registry, "vgg16", input_size=32), 2, registry)
    message = str(caught.value)
    assert message.startswith("cannot download the ImageNet weights of VGG16 (URL fetch failure on https://")
    assert "Name or service not known" in message
    assert "choose a local weights file" in message  # what to do, in the window's words too:
    assert message.endswith("or random initialisation (not pretrained)")
    assert "--weights" not in message  # the command line adds its own options to the line
    assert "\n" not in message
