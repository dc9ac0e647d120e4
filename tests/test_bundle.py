import json
import shutil
import subprocess
import sys
import time
import zipfile

import numpy as np
import pytest
from coretrain import train
from tinydata import make_dataset

from cnnstudio.core.errors import BundleError, ModelFileError
from cnnstudio.core.model import bundle as bundle_module
from cnnstudio.core.model.bundle import Bundle
from cnnstudio.core.tf.modelfile import check_model_file


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("bundle")
    data = make_dataset(root / "data", per_class=12)
    train(data, root / "run", epochs=2)
    return data, root / "run" / "model"


def test_bundle_records_what_prediction_needs(trained):
    _, folder = trained
    meta = json.loads((folder / "bundle.json").read_text())
    assert meta["class_names"] == ["blue", "green", "red"]
    assert meta["input_size"] == 16 and meta["color_mode"] == "rgb"
    assert meta["preprocessing"] == "rescale" and meta["preprocessing_in_model"] is True
    assert meta["spec"]["backbone"] == "scratch"


def test_bundle_predicts_identically_in_a_fresh_process(trained, tmp_path):
    data, folder = trained
    images = sorted(str(p) for p in (data / "blue").iterdir())[:3] + sorted(str(p) for p in (data / "red").iterdir())[:3]
    here = Bundle(folder).predict_paths(images, top_k=3)
    out = subprocess.run(
        [sys.executable, "-m", "cnnstudio", "predict", str(folder), *images, "--top-k", "3", "--json"],
        capture_output=True, text=True, check=True,
    )
    there = json.loads(out.stdout)
    assert [r["path"] for r in there] == images
    for a, b in zip(here, there):
        assert [c for c, _ in a.top] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([p for _, p in a.top], [t["probability"] for t in b["top"]], atol=1e-6)


def test_a_broken_image_gets_its_own_error_and_the_rest_predict(trained, tmp_path):
    data, folder = trained
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    text = tmp_path / "notes.png"
    text.write_text("hello")
    good = str(next((data / "green").iterdir()))
    results = Bundle(folder).predict_paths([str(broken), good, str(text)])
    assert results[0].error and results[2].error and "not an image" in results[2].error
    assert results[1].error is None and results[1].top[0][0] == "green"


def test_missing_or_incomplete_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="no such model bundle"):
        Bundle(tmp_path / "nowhere")
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "bundle.json").write_text("{}")
    with pytest.raises(BundleError, match="not a model bundle"):
        Bundle(tmp_path / "half")


def _copy(folder, tmp_path, meta=None, text=None):
    """A copy of the bundle ``folder`` whose bundle.json is ``meta`` (or the raw ``text``)."""
    copy = tmp_path / "copy"
    shutil.copytree(folder, copy)
    if text is None and meta is not None:
        text = json.dumps(meta)
    if text is not None:
        (copy / "bundle.json").write_text(text)
    return copy


def _meta(folder):
    return json.loads((folder / "bundle.json").read_text())


def _set(key, value):
    def change(meta):
        meta[key] = value
    return change


def _drop(key):
    def change(meta):
        del meta[key]
    return change


# Each is refused from bundle.json alone, before the model file is opened.
FIELD_CASES = [
    ("input_size_huge", _set("input_size", 100000), "input_size must be a whole number of pixels from 8 to 1024"),
    ("input_size_zero", _set("input_size", 0), "input_size must be"),
    ("input_size_string", _set("input_size", "224"), "not '224'"),
    ("input_size_float", _set("input_size", 16.0), "not 16.0"),
    ("input_size_bool", _set("input_size", True), "input_size must be"),
    ("input_size_missing", _drop("input_size"), "input_size must be"),
    ("class_names_not_a_list", _set("class_names", "blue,green,red"), "class_names must be a list"),
    ("class_names_non_string", _set("class_names", ["blue", 7, "red"]), "class_names[1] must be a non-empty string"),
    ("class_names_blank", _set("class_names", ["blue", " ", "red"]), "class_names[1] must be a non-empty string"),
    ("class_names_duplicates", _set("class_names", ["blue", "red", "blue"]), "names 'blue' more than once"),
    ("class_names_empty", _set("class_names", []), "at least 2 classes, not 0"),
    ("class_names_missing", _drop("class_names"), "class_names must be a list"),
    ("format_future", _set("format", 99), "made by a newer CNN Studio (format 99"),
    ("format_string", _set("format", "1"), "format must be a whole number"),
    ("format_missing", _drop("format"), "format must be a whole number"),
    ("resize_unknown", _set("resize", "lanczos-9"), "unknown resize 'lanczos-9'"),
    ("preprocessing_unknown", _set("preprocessing", "os.system"), "unknown preprocessing 'os.system'"),
    ("preprocessing_outside", _set("preprocessing_in_model", False), "preprocessing_in_model must be true"),
    ("color_mode", _set("color_mode", "bgr"), "color_mode must be 'rgb'"),
    ("input_range", _set("input_range", [-1, 1]), "input_range must be [0, 255]"),
    ("temperature", _set("temperature", -2), "temperature must be a positive number"),
    ("spec", _set("spec", "scratch"), "spec must be a JSON object"),
]


@pytest.mark.parametrize("change, message", [c[1:] for c in FIELD_CASES], ids=[c[0] for c in FIELD_CASES])
def test_a_hostile_bundle_json_is_one_line_naming_the_file_before_the_model_loads(
        trained, tmp_path, monkeypatch, change, message):
    _, folder = trained
    meta = _meta(folder)
    change(meta)
    copy = _copy(folder, tmp_path, meta)

    def no_load(path):
        raise AssertionError("the model was loaded before bundle.json was checked")

    monkeypatch.setattr(bundle_module, "load_model", no_load)
    with pytest.raises(BundleError) as info:
        Bundle(copy)
    text = str(info.value)
    assert text.startswith(f"{copy / 'bundle.json'}: ") and message in text and "\n" not in text


@pytest.mark.parametrize("text, message", [
    ('{"format": 1, "class_names": ', "unreadable"),
    ("[1, 2, 3]", "not a JSON object (a JSON list)"),
    ('"hello"', "not a JSON object"),
    ("\xff\xfe", "unreadable"),
], ids=["truncated", "list", "string", "not_utf8"])
def test_a_bundle_json_that_is_not_an_object_is_one_line(trained, tmp_path, text, message):
    _, folder = trained
    copy = _copy(folder, tmp_path)
    (copy / "bundle.json").write_bytes(text.encode("latin-1"))
    with pytest.raises(BundleError) as info:
        Bundle(copy)
    assert str(info.value).startswith(f"{copy / 'bundle.json'}: ") and message in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("names, what", [
    (["blue", "green"], "the model has outputs (3,), bundle.json names 2 classes"),
    (["blue", "green", "red", "yellow"], "the model has outputs (3,), bundle.json names 4 classes"),
], ids=["fewer", "more"])
def test_class_names_must_count_the_model_outputs(trained, tmp_path, names, what):
    _, folder = trained
    meta = _meta(folder)
    meta["class_names"] = names
    copy = _copy(folder, tmp_path, meta)
    with pytest.raises(BundleError) as info:
        Bundle(copy)
    text = str(info.value)
    assert text == f"{copy / 'model.keras'} does not match {copy / 'bundle.json'}: {what}"


def test_input_size_must_be_the_model_input(trained, tmp_path):
    _, folder = trained
    meta = _meta(folder)
    meta["input_size"] = 32
    copy = _copy(folder, tmp_path, meta)
    with pytest.raises(BundleError) as info:
        Bundle(copy)
    assert str(info.value) == (f"{copy / 'model.keras'} does not match {copy / 'bundle.json'}: the model takes "
                               "(16, 16, 3) images, bundle.json says input_size 32 ((32, 32, 3))")


def test_the_studio_s_own_bundle_passes_the_model_file_check(trained):
    _, folder = trained
    config = check_model_file(folder / "model.keras")
    classes = {layer["class_name"] for layer in config["config"]["layers"]}
    assert "Preprocess" in classes and "Dense" in classes


def _rewrite_config(keras_file, change):
    """Rewrite ``config.json`` inside the ``.keras`` archive ``keras_file``."""
    with zipfile.ZipFile(keras_file) as z:
        members = {name: z.read(name) for name in z.namelist()}
    config = json.loads(members["config.json"])
    change(config)
    members["config.json"] = json.dumps(config).encode()
    with zipfile.ZipFile(keras_file, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)


def test_a_lambda_layer_is_refused_before_anything_in_it_runs(trained, tmp_path, monkeypatch):
    from cnnstudio.core.tf import keras

    k = keras()
    _, folder = trained
    marker = tmp_path / "the lambda ran"

    def leave_a_mark(x):
        marker.write_text("ran")
        return x

    name = f"leave_a_mark_{tmp_path.name}"
    leave_a_mark.__name__ = leave_a_mark.__qualname__ = name
    k.saving.register_keras_serializable(package="hostile", name=name)(leave_a_mark)
    inputs = k.Input((16, 16, 3))
    outputs = k.layers.Dense(3, activation="softmax")(
        k.layers.GlobalAveragePooling2D()(k.layers.Lambda(leave_a_mark)(inputs)))
    hostile = k.Model(inputs, outputs)
    marker.unlink(missing_ok=True)  # in case building the model called it
    copy = _copy(folder, tmp_path)
    hostile.save(copy / "model.keras")
    assert not marker.exists()

    with pytest.raises(BundleError) as info:
        Bundle(copy)
    assert str(info.value).startswith(f"{copy / 'model.keras'}: it holds a Lambda layer ")
    assert "the studio does not load it" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()

    # What the check guards against: Keras' own safe mode runs the function as the model loads.
    k.saving.load_model(copy / "model.keras", safe_mode=True)
    assert marker.exists()


@pytest.mark.parametrize("change, message", [
    (lambda c: c["config"]["layers"][-1]["config"].update(activation={
        "module": "keras.datasets.mnist", "class_name": "function", "config": "load_data",
        "registered_name": "function"}), "a function 'load_data' from keras.datasets.mnist"),
    (lambda c: c["config"]["layers"][-1].update(class_name="TFSMLayer"), "it holds a TFSMLayer layer"),
    (lambda c: c["config"]["layers"][-1].update(module="os"), "from module 'os', neither Keras nor the studio"),
    (lambda c: c["config"]["layers"][-1].update(registered_name="evil>Dense"), "registered by 'evil'"),
], ids=["named_function", "tfsm_layer", "foreign_module", "foreign_registration"])
def test_a_model_file_naming_code_outside_keras_is_refused(trained, tmp_path, change, message):
    _, folder = trained
    copy = _copy(folder, tmp_path)
    _rewrite_config(copy / "model.keras", change)
    with pytest.raises(BundleError) as info:
        Bundle(copy)
    assert str(info.value).startswith(f"{copy / 'model.keras'}: ") and message in str(info.value)


@pytest.mark.parametrize("content, message", [
    (b"not a zip at all", "not a Keras model file (not a zip archive)"),
    (None, "not a Keras model file (no config.json inside)"),
], ids=["not_zip", "no_config"])
def test_a_model_file_that_is_not_a_keras_archive_is_one_line(tmp_path, content, message):
    path = tmp_path / "model.keras"
    if content is None:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("metadata.json", "{}")
    else:
        path.write_bytes(content)
    with pytest.raises(ModelFileError) as info:
        check_model_file(path)
    assert str(info.value) == f"{path}: {message}"


def test_predict_on_a_bundle_with_a_huge_input_size_exits_1_in_one_line(trained, tmp_path):
    data, folder = trained
    meta = _meta(folder)
    meta["input_size"] = 100000
    copy = _copy(folder, tmp_path, meta)
    image = str(next((data / "red").iterdir()))
    start = time.monotonic()
    out = subprocess.run([sys.executable, "-m", "cnnstudio", "predict", str(copy), image],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    err = out.stderr.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in out.stderr
    assert str(copy / "bundle.json") in err[0] and "input_size must be" in err[0] and "100000" in err[0]
    assert time.monotonic() - start < 60
