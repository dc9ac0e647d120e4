"""Grad-CAM: maps of the input's size that light up what decides the class, for scratch and
pretrained backbones, and the overlays ``cnnstudio predict --gradcam`` writes."""

import json

import numpy as np
import pytest
from coretrain import tiny_spec, train
from PIL import Image

from cnnstudio.cli import main
from cnnstudio.core.errors import SpecError
from cnnstudio.core.evaluation.gradcam import (
    GradCam,
    candidate_layers,
    colormap,
    default_layer,
    gradcam_paths,
    overlay,
)
from cnnstudio.core.model.bundle import Bundle

SIZE = 32
PATCH = 10
COLOURS = {"red": (230, 30, 30), "blue": (30, 30, 230)}


def sample(rng, colour):
    """Grey noise with one square of ``colour`` somewhere: the square alone decides the class."""
    img = np.clip(rng.normal(128, 30, (SIZE, SIZE, 1)).repeat(3, axis=2), 0, 255)
    y, x = rng.integers(0, SIZE - PATCH + 1, 2)
    img[y:y + PATCH, x:x + PATCH] = COLOURS[colour]
    mask = np.zeros((SIZE, SIZE), bool)
    mask[y:y + PATCH, x:x + PATCH] = True
    return img.astype(np.uint8), mask


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("gradcam")
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        (root / "data" / colour).mkdir(parents=True)
        for i in range(30):
            Image.fromarray(sample(rng, colour)[0]).save(root / "data" / colour / f"{colour}_{i:02d}.png")
    result = train(root / "data", root / "run", spec=tiny_spec(SIZE), epochs=12, batch_size=8, learning_rate=0.01)
    assert result.reason == "completed"
    return Bundle(root / "run" / "model")


def test_the_map_has_the_input_size_and_lights_up_the_deciding_square(bundle):
    cam = GradCam(bundle.model)
    assert cam.layer == default_layer(bundle.model) == "block1_conv1"  # the last conv, not the pooling
    rng = np.random.default_rng(1)
    colours = ["red", "blue"] * 8
    images, masks = zip(*(sample(rng, c) for c in colours), strict=True)
    labels = np.array([bundle.class_names.index(c) for c in colours])
    maps, classes, probs = cam.compute(np.stack(images))

    assert maps.shape == (len(images), SIZE, SIZE) and maps.dtype == np.float32
    assert (classes == labels).mean() >= 0.9 and probs.shape == (len(images), 2)
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    inside = np.array([m[mask].mean() for m, mask in zip(maps, masks, strict=True)])
    outside = np.array([m[~mask].mean() for m, mask in zip(maps, masks, strict=True)])
    assert all(m.std() > 0.05 for m in maps)  # not constant
    assert np.all(inside > outside) and inside.mean() > 3 * outside.mean()

    # One image on its own gives the same map; explaining the other class lights the square less.
    single = cam.heatmap(images[0])
    assert single.shape == (SIZE, SIZE) and np.allclose(single, maps[0], atol=1e-4)
    other = cam.heatmap(images[0], class_index=1 - int(labels[0]))
    assert other[masks[0]].mean() < inside[0]


def test_a_pretrained_backbone_gives_a_map_of_the_input_size():
    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.model.models import build_model
    from cnnstudio.core.model.spec import AugmentSpec, HeadSpec, ModelSpec

    spec = ModelSpec("vgg16", {"weights": "none", "trainable": False}, HeadSpec(pooling="avg", dense=[8], dropout=0.2),
                     AugmentSpec(flip="horizontal"), SIZE)
    model = build_model(spec, 3, load_registry())
    cam = GradCam(model)
    assert cam.layer == "block5_conv3"
    images = np.random.default_rng(2).integers(0, 256, (2, SIZE, SIZE, 3), dtype=np.uint8)
    maps, classes, probs = cam.compute(images, class_index=[0, 2])
    assert maps.shape == (2, SIZE, SIZE) and list(classes) == [0, 2]
    assert np.isfinite(maps).all() and maps.max() <= 1.0
    assert GradCam(model, "block3_conv3").heatmap(images[0]).shape == (SIZE, SIZE)
    with pytest.raises(SpecError, match="out of range"):
        cam.compute(images, class_index=3)


def test_the_layer_can_be_chosen_and_a_wrong_name_lists_the_choices(bundle):
    assert candidate_layers(bundle.model) == ["block1_conv1", "block1_pool"]
    cam = GradCam(bundle.model, layer="block1_pool")
    image = sample(np.random.default_rng(3), "red")[0]
    heat = cam.heatmap(image)
    assert cam.layer == "block1_pool" and heat.shape == (SIZE, SIZE) and heat.std() > 0
    with pytest.raises(SpecError, match="'no_such_layer'.*block1_conv1, block1_pool"):
        GradCam(bundle.model, layer="no_such_layer")
    with pytest.raises(SpecError, match="predictions"):  # a head layer is no feature map
        GradCam(bundle.model, layer="predictions")


def test_overlay_colours_the_image_with_the_heat():
    assert colormap(np.array([0.0, 1.0])).tolist() == [[0, 0, 128], [128, 0, 0]]
    image = np.full((20, 30, 3), 100, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[:, 4:] = 1.0
    out = overlay(image, heat, alpha=0.5)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out[10, 0].tolist() == [50, 50, 114] and out[10, -1].tolist() == [114, 50, 50]


def test_gradcam_paths_and_the_cli_write_overlays(bundle, tmp_path, capsys):
    rng = np.random.default_rng(4)
    red = tmp_path / "in" / "red.png"
    blue = tmp_path / "in" / "sub" / "blue.jpg"
    blue.parent.mkdir(parents=True)
    big = np.asarray(Image.fromarray(sample(rng, "red")[0]).resize((96, 64)))
    Image.fromarray(big).save(red)
    Image.fromarray(sample(rng, "blue")[0]).save(blue)
    broken = tmp_path / "in" / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\nnot really")

    written = gradcam_paths(bundle, [red, broken, blue], tmp_path / "out")
    assert [w.out is not None for w in written] == [True, False, True]
    assert written[0].class_name == "red" and written[2].class_name == "blue"
    assert "truncated" in written[1].error or "corrupt" in written[1].error
    with Image.open(tmp_path / "out" / "red.gradcam.png") as img:
        assert img.size == (96, 64) and img.mode == "RGB"  # on the original image
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["blue.gradcam.png", "red.gradcam.png"]

    out = tmp_path / "cli"
    code = main(["predict", str(bundle.folder), str(tmp_path / "in"), "--gradcam", str(out),
                 "--gradcam-layer", "block1_pool", "--json"])
    captured = capsys.readouterr()
    assert code == 0
    rows = {r["path"]: r for r in json.loads(captured.out)}
    assert rows[str(red)]["gradcam"] == str(out / "red.gradcam.png") and rows[str(broken)]["gradcam"] is None
    assert f"layer block1_pool) of 2 images in {out}" in captured.err
    assert sorted(p.name for p in out.iterdir()) == ["blue.gradcam.png", "red.gradcam.png"]

    assert main(["predict", str(bundle.folder), str(red), "--gradcam", str(tmp_path / "x"),
                 "--gradcam-layer", "nope"]) == 1
    assert "'nope'" in capsys.readouterr().err and not (tmp_path / "x").exists()
    with pytest.raises(SystemExit):
        main(["predict", str(bundle.folder), str(red), "--gradcam-layer", "block1_pool"])
