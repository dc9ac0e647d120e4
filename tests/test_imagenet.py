"""What ImageNet sees: class names, top-k, the whole classifier and ``cnnstudio predict --imagenet``.

Offline and small: the classifier is VGG16 with its top at 32 px, with random weights or a
weights file saved here from such a model; nothing is ever downloaded.
"""

import json
import subprocess
import sys

import numpy as np
import pytest
from coretrain import train
from tinydata import make_dataset, truncate

from cnnstudio.builtins.imagenet import ImageNetClassifier, class_entries, class_names, top_k
from cnnstudio.builtins.manager import load_registry
from cnnstudio.cli import main
from cnnstudio.core.errors import StudioError, WeightsError
from cnnstudio.core.io.images import load_array
from cnnstudio.core.runs.folder import RunPaths

SIZE = 32
OFFLINE = "URL fetch failure on {origin}: None -- [Errno -2] Name or service not known"


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A weights file of the whole VGG16 classifier at 32 px, its logits spread so classes differ."""
    import keras

    model = keras.applications.VGG16(include_top=True, weights=None, input_shape=(SIZE, SIZE, 3))
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel * 40.0, bias])
    path = tmp_path_factory.mktemp("imagenet") / "vgg16_top_32.weights.h5"
    model.save_weights(path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("imagenet-images"), classes=("red", "blue"), per_class=2, size=40)
    good = sorted(root.rglob("*.png"))
    broken = truncate(root / "red" / "red_001.png", keep=0.3)
    return [p for p in good if p != broken], broken


def test_class_names_are_keras_imagenet_order():
    entries = class_entries()
    synsets = [s for s, _ in entries]
    assert len(entries) == 1000 and len(set(synsets)) == 1000
    assert all(s.startswith("n") and len(s) == 9 for s in synsets)
    assert entries[0] == ("n01440764", "tench")
    names = class_names()
    assert (names[1], names[22], names[207], names[281]) == ("goldfish", "bald_eagle", "golden_retriever", "tabby")
    assert all(" " not in n for n in names)


def test_top_k_is_best_first_and_clamped():
    p = np.full(1000, 1e-4)
    p[22], p[281], p[1], p[0] = 0.9, 0.05, 0.02, 0.01
    top = top_k(p, 3)
    assert top == [("bald_eagle", "n01614925", pytest.approx(0.9)), ("tabby", "n02123045", pytest.approx(0.05)),
                   ("goldfish", "n01443537", pytest.approx(0.02))]
    assert [t[0] for t in top_k(p)][:4] == ["bald_eagle", "tabby", "goldfish", "tench"] and len(top_k(p)) == 5
    assert len(top_k(p, 5000)) == 1000 and len(top_k(p, 0)) == 1
    with pytest.raises(ValueError):
        top_k(np.ones(10))


def test_predict_paths_matches_the_keras_model_and_bad_images_get_errors(weights_file, images):
    import keras

    good, broken = images
    classifier = ImageNetClassifier("vgg16", str(weights_file), input_size=SIZE)
    assert classifier.input_size == SIZE and classifier.pretrained
    assert classifier.label == f"VGG16, weights file {weights_file}"
    paths = [str(good[0]), str(broken), *map(str, good[1:])]
    results = classifier.predict_paths(paths, k=5)
    assert [r.path for r in results] == paths
    assert results[1].top is None and ("truncated" in results[1].error or "corrupt" in results[1].error)

    model = keras.applications.VGG16(include_top=True, weights=None, input_shape=(SIZE, SIZE, 3))
    model.load_weights(weights_file)
    synsets = [s for s, _ in class_entries()]
    for result in (r for r in results if r.error is None):
        x = keras.applications.vgg16.preprocess_input(load_array(result.path, SIZE).astype("float32")[None])
        direct = np.asarray(model(x, training=False))[0]
        assert len(result.top) == 5
        assert [s for _, s, _ in result.top] == [s for _, s, _ in top_k(direct, 5)]
        for _name, synset, prob in result.top:
            assert prob == pytest.approx(float(direct[synsets.index(synset)]), rel=1e-4, abs=1e-6)
        assert result.top[0][2] > result.top[-1][2]


def test_random_weights_are_labelled_not_pretrained(images, capsys):
    classifier = ImageNetClassifier("vgg16", "none", input_size=SIZE)
    assert not classifier.pretrained and "not pretrained" in classifier.label

    good, _ = images
    assert main(["predict", "--imagenet", str(good[0]), str(good[1]), "--model", "vgg16", "--weights", "none",
                 "--image-size", str(SIZE)]) == 0
    out, err = capsys.readouterr()
    assert "VGG16, random initialisation (not pretrained)" in err
    lines = out.strip().splitlines()
    assert len(lines) == 2 and all("not pretrained" in line for line in lines)

    assert main(["predict", "--imagenet", str(good[0]), "--model", "vgg16", "--weights", "none",
                 "--image-size", str(SIZE), "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["pretrained"] is False and "not pretrained" in record["weights"]


def test_a_backbone_without_an_imagenet_classifier_is_named():
    with pytest.raises(StudioError, match="scratch.*no ImageNet classifier.*vgg16"):
        ImageNetClassifier("scratch", "none", registry=load_registry())
    with pytest.raises(StudioError, match="no backbone 'nope'"):
        ImageNetClassifier("nope", "none")


def test_offline_imagenet_fetch_gives_one_clear_error(tmp_path, monkeypatch, images, capsys):
    import keras
    import keras.src.utils.file_utils as file_utils

    def offline(fname, origin=None, **kwargs):
        raise Exception(OFFLINE.format(origin=origin))

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(WeightsError) as exc:
        ImageNetClassifier("vgg19", "imagenet")
    message = str(exc.value)
    assert "no connection" in message and "vgg19_weights_tf_dim_ordering_tf_kernels.h5" in message
    assert "notop" not in message and "--weights" not in message  # the window shows it too
    assert "local weights file" in message and "random initialisation" in message

    good, _ = images
    assert main(["predict", "--imagenet", str(good[0])]) == 1
    out, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert out == "" and lines[-1].startswith("cnnstudio predict: error: cannot download the ImageNet classifier")
    assert lines[-1].endswith("(a weights file: --weights PATH; random initialisation: --weights none)")
    assert "Traceback" not in err and not any("error" in line for line in lines[:-1])


def test_cli_imagenet_with_a_weights_file(weights_file, images, capsys):
    good, broken = images
    folder = good[0].parent
    assert main(["predict", "--imagenet", str(folder), str(broken), "--model", "vgg16",
                 "--weights", str(weights_file), "--image-size", str(SIZE)]) == 0
    out, err = capsys.readouterr()
    assert f"VGG16, weights file {weights_file}, {SIZE} px" in err
    lines = out.strip().splitlines()
    expected = ImageNetClassifier("vgg16", str(weights_file), input_size=SIZE).predict_paths([str(good[0])])[0]
    first = f"{good[0]}: " + ", ".join(f"{n} {p * 100:.2f}%" for n, _, p in expected.top)
    assert first in lines and lines[-1].startswith(f"{broken}: error: ")
    assert all(line.count("%") == 5 for line in lines[:-1]) and "not pretrained" not in out

    assert main(["predict", "--imagenet", str(good[0]), "--model", "vgg16", "--weights", str(weights_file),
                 "--image-size", str(SIZE), "--top-k", "2", "--json"]) == 0
    (record,) = json.loads(capsys.readouterr().out)
    assert record["pretrained"] is True and record["model"] == "vgg16" and len(record["top"]) == 2
    assert record["top"][0]["synset"] == expected.top[0][1]


def test_imagenet_weights_need_224_px_and_a_missing_file_is_named(tmp_path, capsys, images):
    with pytest.raises(StudioError, match="224"):
        ImageNetClassifier("vgg16", "imagenet", input_size=SIZE)
    good, _ = images
    assert main(["predict", "--imagenet", str(good[0]), "--weights", str(tmp_path / "no.weights.h5")]) == 1
    assert "does not exist" in capsys.readouterr().err


def test_predict_with_a_bundle_still_takes_bundle_then_images(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=6, size=16)
    train(data, tmp_path / "run", epochs=1)
    bundle = RunPaths(tmp_path / "run").bundle
    image = sorted((data / "red").glob("*.png"))[0]
    assert main(["predict", str(bundle), str(image), "--top-k", "2"]) == 0
    (line,) = capsys.readouterr().out.strip().splitlines()
    assert line.startswith(f"{image}: ") and line.count("%") == 2
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(bundle)])
    assert exc.value.code == 2 and "IMAGE_OR_DIR" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["predict", str(bundle), str(image), "--weights", "none"])
    assert exc.value.code == 2 and "--imagenet" in capsys.readouterr().err


def test_the_core_module_imports_no_qt_and_finds_its_resources():
    code = ("import sys\nimport cnnstudio.builtins.imagenet as m\n"
            "print(m.resources_dir().joinpath('imagenet_classes.json').is_file(), 'PySide6' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["True", "False"]
