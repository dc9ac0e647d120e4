import json
import subprocess
import sys

import numpy as np
import pytest
from coretrain import train
from tinydata import make_dataset

from cnnstudio.core.errors import BundleError
from cnnstudio.core.model.bundle import Bundle


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
