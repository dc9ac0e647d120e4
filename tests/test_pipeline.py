import numpy as np
import pytest
from tinydata import make_dataset, truncate

from cnnstudio.core import pipeline
from cnnstudio.core.images import load_array
from cnnstudio.core.pipeline import ImagePipeline, cache_mode_for


@pytest.fixture
def data(tmp_path):
    root = make_dataset(tmp_path / "data", per_class=5, size=24)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    labels = [0 if "blue" in p else 1 if "green" in p else 2 for p in paths]
    return paths, labels


def collect(ds):
    images, labels, index = [], [], []
    for x, y, i in ds:
        images.append(x.numpy())
        labels.append(y.numpy())
        index.append(i.numpy())
    return np.concatenate(images), np.concatenate(labels), np.concatenate(index)


@pytest.mark.parametrize("cache", ["none", "memory", "disk"])
def test_pipeline_yields_the_loaders_pixels_with_every_cache(data, cache, tmp_path):
    paths, labels = data
    pipe = ImagePipeline(16, cache=cache, cache_dir=tmp_path / "cache")
    ds = pipe.dataset(paths, labels, batch_size=4, with_index=True)
    for _ in range(2):  # the second pass reads from the cache
        x, y, idx = collect(ds)
        assert x.dtype == np.uint8 and x.shape == (15, 16, 16, 3)
        assert list(idx) == list(range(15)) and list(y) == labels
        np.testing.assert_array_equal(x[3], load_array(paths[3], 16))
    pipe.close()
    assert not any((tmp_path / "cache").glob("cnnstudio-cache-*"))


def test_shuffled_pipeline_covers_every_image_in_a_new_order_each_epoch(data):
    paths, labels = data
    ds = ImagePipeline(16, cache="memory").dataset(paths, labels, batch_size=4, shuffle=True, seed=3,
                                                   with_index=True)
    orders = [list(collect(ds)[2]) for _ in range(2)]
    assert sorted(orders[0]) == list(range(15)) and sorted(orders[1]) == list(range(15))
    assert orders[0] != orders[1] and orders[0] != list(range(15))


@pytest.mark.parametrize("cache", ["none", "memory"])
def test_bad_file_is_skipped_and_recorded_not_raised(data, cache):
    paths, labels = data
    truncate(paths[4], 0.4)
    (open(paths[7], "w")).write("not an image")
    seen = []
    pipe = ImagePipeline(16, cache=cache, progress=lambda done, total: seen.append((done, total)))
    x, y, idx = collect(pipe.dataset(paths, labels, batch_size=4, with_index=True))
    assert len(x) == 13 and 4 not in idx and 7 not in idx
    assert [labels[i] for i in idx] == list(y)
    if cache == "memory":  # decoded up front, with progress up to every file
        assert seen and seen[-1] == (15, 15)
    problems = {d["path"]: d["reason"] for d in pipe.recorder.as_list()}
    assert set(problems) == {paths[4], paths[7]}
    assert "truncated" in problems[paths[4]] and "not an image" in problems[paths[7]]


def test_auto_cache_goes_to_disk_when_images_do_not_fit_in_memory(monkeypatch):
    assert cache_mode_for(1000, 64) == "memory"
    assert cache_mode_for(20_000, 128) == "disk"  # 983 MB of decoded images
    monkeypatch.setattr(pipeline, "MEMORY_CACHE_BUDGET", 1000 * 64 * 64 * 3 - 1)
    assert cache_mode_for(1000, 64) == "disk"
    with pytest.raises(ValueError, match="cache must be one of"):
        cache_mode_for(10, 64, "ram")
