import numpy as np
import pytest
from PIL import Image
from tinydata import make_dataset, truncate

from cnnstudio.core.data import pipeline
from cnnstudio.core.data.pipeline import ImagePipeline, cache_mode_for
from cnnstudio.core.io.images import load_array


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
    pipe = ImagePipeline(16, cache=cache)
    ds = pipe.dataset(paths, labels, batch_size=4, with_index=True)
    for _ in range(2):  # the second epoch skips them again
        x, y, idx = collect(ds)
        assert len(x) == 13 and 4 not in idx and 7 not in idx
        assert [labels[i] for i in idx] == list(y)
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


@pytest.mark.parametrize("cache", ["none", "disk"])
def test_a_file_damaged_after_the_dataset_was_built_is_skipped_and_recorded(data, cache, tmp_path):
    paths, labels = data
    pipe = ImagePipeline(16, cache=cache, cache_dir=tmp_path / "cache")
    ds = pipe.dataset(paths, labels, batch_size=4, with_index=True)  # every file probed as plain PNG
    truncate(paths[2], 0.5)  # cut short: TensorFlow's decoder fails, Pillow names why
    data9 = bytearray(open(paths[9], "rb").read())
    data9[40:60] = b"\x00" * 20  # the same size and ending, broken inside: TensorFlow fails on it
    open(paths[9], "wb").write(bytes(data9))
    x, y, idx = collect(ds)
    assert sorted(idx) == [i for i in range(15) if i not in (2, 9)]
    problems = {d["path"]: d["reason"] for d in pipe.recorder.as_list()}
    assert set(problems) == {paths[2], paths[9]}
    assert "truncated" in problems[paths[2]]
    pipe.close()


def batches_of(ds, epochs):
    out = []
    for _ in range(epochs):
        out.append([(y.numpy(), i.numpy()) for _, y, i in ds])
    return out


@pytest.fixture
def sorted_two_classes(tmp_path):
    """80 images of two classes, the first class's files all before the second's."""
    root = make_dataset(tmp_path / "sorted", classes=("red", "blue"), per_class=40, size=20)
    paths = sorted(str(p) for p in root.rglob("*.png"))
    paths.sort(key=lambda p: "blue" in p)
    labels = [int("blue" in p) for p in paths]
    return paths, labels


def test_batches_mix_the_classes_when_the_cache_is_on_disk(sorted_two_classes, tmp_path, monkeypatch):
    paths, labels = sorted_two_classes
    monkeypatch.setattr(pipeline, "MEMORY_CACHE_BUDGET", 10 * 16 * 16 * 3)  # 10 images: the set goes to disk
    assert cache_mode_for(len(paths), 16) == "disk"
    pipe = ImagePipeline(16, cache="auto", cache_dir=tmp_path / "cache")
    epochs = batches_of(pipe.dataset(paths, labels, batch_size=8, shuffle=True, seed=1, with_index=True), 3)
    one_class = 0
    for batches in epochs:
        assert sorted(i for _, idx in batches for i in idx) == list(range(80))  # every image once
        for y, _ in batches:
            one_class += len(set(y)) == 1
            assert 1 <= y.sum() <= 7 or len(y) < 8 or one_class <= 1
    # A uniform shuffle makes a one-class batch of 8 from a 50/50 set once in 128 batches;
    # the old buffered shuffle over a class-sorted list made nearly all of them one class.
    assert one_class <= 1
    orders = [[i for _, idx in batches for i in idx] for batches in epochs]
    assert orders[0] != orders[1] != orders[2]
    pipe.close()


def test_the_order_depends_on_the_seed_alone_not_on_the_cache(sorted_two_classes, tmp_path):
    paths, labels = sorted_two_classes

    def orders(cache, seed):
        pipe = ImagePipeline(16, cache=cache, cache_dir=tmp_path / cache)
        ds = pipe.dataset(paths, labels, batch_size=8, shuffle=True, seed=seed, with_index=True)
        got = [[int(i) for _, idx in batches for i in idx] for batches in batches_of(ds, 2)]
        pipe.close()
        return got

    memory = orders("memory", 5)
    assert orders("disk", 5) == memory and orders("none", 5) == memory
    assert orders("memory", 6) != memory


def test_the_first_epoch_trains_while_images_are_decoded(tmp_path, monkeypatch):
    """The first batch comes after a few decodes, not after every file was decoded."""
    root = make_dataset(tmp_path / "bmp", classes=("red", "blue"), per_class=150, size=20)
    paths = []
    for p in sorted(root.rglob("*.png")):  # BMP goes through Pillow, where decodes can be counted
        Image.open(p).save(p.with_suffix(".bmp"))
        paths.append(str(p.with_suffix(".bmp")))
    decoded = []
    real = pipeline.decoded_array
    monkeypatch.setattr(pipeline, "decoded_array", lambda path, size: (decoded.append(path), real(path, size))[1])
    pipe = ImagePipeline(16, cache="memory")
    it = iter(pipe.dataset(paths, [int("blue" in p) for p in paths], batch_size=4, shuffle=True))
    first = next(it)
    assert first[0].shape == (4, 16, 16, 3)
    assert len(decoded) < len(paths) / 2
    rest = sum(len(y) for _, y in it)
    assert rest + 4 == len(paths) and len(set(decoded)) == len(paths)


def test_a_disk_too_full_for_the_cache_trains_without_one_and_says_so(data, tmp_path, monkeypatch):
    import errno

    paths, labels = data

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.os, "posix_fallocate", full, raising=False)
    pipe = ImagePipeline(16, cache="disk", cache_dir=tmp_path / "cache")
    ds = pipe.dataset(paths, labels, batch_size=4, with_index=True)
    for _ in range(2):  # every image, every epoch: decoded again instead of read from a cache
        x, y, idx = collect(ds)
        assert sorted(idx) == list(range(15))
        np.testing.assert_array_equal(x[list(idx).index(3)], load_array(paths[3], 16))
    (note,) = pipe.notes
    assert "no room for the image cache" in note and str(tmp_path / "cache") in note
    assert "decoded every epoch" in note and "\n" not in note
    pipe.close()
