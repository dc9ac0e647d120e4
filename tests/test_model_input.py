"""The image a model sees: the same pixels in training, evaluation and prediction, for every kind of file.

Plain JPEG and PNG files are decoded by TensorFlow inside the pipeline; every other file by
Pillow. These tests build a folder of both kinds and compare what each reader gives, pixel for
pixel.
"""

import shutil

import numpy as np
import pytest
from PIL import Image

from cnnstudio.core.data.dataset import scan_dataset
from cnnstudio.core.data.pipeline import ImagePipeline
from cnnstudio.core.io import fastdecode, images

SIZE = 64


def photo(w, h, seed=0):
    """Smooth colour gradients with texture, like a photo at the scale a JPEG decoder cares about."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:h, 0:w]
    base = np.stack([xs * 255 / w, ys * 255 / h, (xs + ys) * 127 / (w + h)], axis=-1)
    texture = rng.normal(0, 18, (h // 4 + 1, w // 4 + 1, 3)).repeat(4, 0).repeat(4, 1)[:h, :w]
    return np.clip(base + texture, 0, 255).astype(np.uint8)


def exif_rotated(path):
    img = Image.fromarray(photo(300, 200, 3))
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: shown rotated 90 degrees clockwise
    img.save(path, "JPEG", quality=90, exif=exif.tobytes())


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """name -> (path, whether TensorFlow decodes it)."""
    root = tmp_path_factory.mktemp("mixed")
    files = {}

    def save(name, image, plain, **kw):
        path = root / name
        image.save(path, **kw)
        files[name] = (str(path), plain)

    save("photo.jpg", Image.fromarray(photo(400, 300)), True, quality=85)  # decoded at 1/4 scale
    save("photo-progressive.jpg", Image.fromarray(photo(420, 280, 1)), True, quality=80, progressive=True)
    save("small.jpg", Image.fromarray(photo(40, 30, 2)), True, quality=95)  # enlarged
    save("grey.jpg", Image.fromarray(photo(200, 150, 4)).convert("L"), True, quality=90)
    save("photo.png", Image.fromarray(photo(130, 90, 5)), True)
    save("grey.png", Image.fromarray(photo(90, 70, 6)).convert("L"), True)
    exif_rotated(root / "rotated.jpg")
    files["rotated.jpg"] = (str(root / "rotated.jpg"), False)
    save("cmyk.jpg", Image.fromarray(photo(160, 120, 7)).convert("CMYK"), False, quality=90)
    sixteen = (photo(80, 60, 8)[..., 0].astype(np.uint16) * 257)
    save("sixteen.png", Image.fromarray(sixteen), False)
    save("palette.png", Image.fromarray(photo(80, 60, 9)).convert("P", palette=Image.Palette.ADAPTIVE), False)
    rgba = np.dstack([photo(80, 60, 10), np.tile(np.linspace(0, 255, 80, dtype=np.uint8), (60, 1))])
    save("alpha.png", Image.fromarray(rgba, "RGBA"), False)
    save("photo.bmp", Image.fromarray(photo(100, 80, 11)), False)
    save("photo.webp", Image.fromarray(photo(100, 80, 12)), False, quality=90)
    save("trailing.jpg", Image.fromarray(photo(200, 150, 13)), False, quality=90)
    with open(root / "trailing.jpg", "ab") as f:  # data after the image's end, as some cameras add
        f.write(b"camera trailer")
    return files


def test_plain_files_go_to_tensorflow_and_the_rest_to_pillow(mixed):
    for name, (path, plain) in mixed.items():
        kind, nbytes = images.probe(path)
        assert (kind != fastdecode.KIND_PIL) == plain, name
        assert nbytes == len(open(path, "rb").read())


def test_training_evaluation_and_prediction_see_the_same_pixels(mixed, tmp_path):
    names = sorted(mixed)
    paths = [mixed[n][0] for n in names]
    predicted = {}
    for kind, where, batch in images.load_batches(paths, SIZE, batch_size=5):  # what a bundle predicts on
        assert kind == "batch"
        predicted.update(zip(where, batch))
    for i, path in enumerate(paths):
        np.testing.assert_array_equal(images.load_array(path, SIZE), predicted[i], err_msg=names[i])
    for cache in ("memory", "disk", "none"):
        pipe = ImagePipeline(SIZE, cache=cache, cache_dir=tmp_path)
        train = pipe.dataset(paths, list(range(len(paths))), batch_size=4, shuffle=True, seed=2, with_index=True)
        for epoch in range(2):  # decoded, then read back from the cache
            seen = 0
            for x, _, idx in train:
                for image, i in zip(x.numpy(), idx.numpy()):
                    np.testing.assert_array_equal(image, predicted[i], err_msg=f"{names[i]}, {cache}, epoch {epoch}")
                    seen += 1
            assert seen == len(paths)
        evaluation = pipe.dataset(paths, None, batch_size=4, with_index=True, cache=False)
        for x, _, idx in evaluation:
            for image, i in zip(x.numpy(), idx.numpy()):
                np.testing.assert_array_equal(image, predicted[i], err_msg=f"{names[i]}, evaluation")
        assert pipe.recorder.as_list() == []
        pipe.close()


@pytest.mark.parametrize("size", [SIZE, 150])
def test_a_scanned_folder_gives_the_same_pixels_as_prediction(mixed, tmp_path, size):
    """Training takes each JPEG's decoding scale from the scan's width and height (no header is
    parsed per image): it must be the scale prediction finds in the file itself."""
    root = tmp_path / "data"
    for i, name in enumerate(sorted(mixed)):
        dest = root / ("a" if i % 2 else "b") / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(mixed[name][0], dest)
    index = scan_dataset(root)
    assert len(index.items) == len(mixed)
    paths = index.paths()
    for cache in ("none", "memory"):
        pipe = ImagePipeline(size, cache=cache, file_kinds=index.file_kinds())
        seen = 0
        for x, _, idx in pipe.dataset(paths, None, batch_size=4, with_index=True):
            for image, i in zip(x.numpy(), idx.numpy()):
                np.testing.assert_array_equal(image, images.load_array(paths[i], size), err_msg=f"{paths[i]}, {cache}")
                seen += 1
        assert seen == len(paths) and pipe.recorder.as_list() == []
        pipe.close()


def test_other_files_keep_pillows_handling(mixed):
    for name, (path, plain) in mixed.items():
        if not plain:
            expected = fastdecode.resized_array(images.decoded_array(path, SIZE), SIZE)
            np.testing.assert_array_equal(images.load_array(path, SIZE), expected, err_msg=name)
    # The sideways photo is upright: portrait once rotated (decoded at half scale for 64 px).
    upright = images.decoded_array(mixed["rotated.jpg"][0], SIZE)
    assert upright.shape[:2] == (150, 100)
    # Transparent pixels are on white, as everywhere in the studio.
    alpha = images.load_array(mixed["alpha.png"][0], SIZE)
    assert alpha[:, :2].min() > 240


def test_tensorflow_decodes_plain_files_like_pillow(mixed):
    """The fast decode agrees with Pillow's: PNG is lossless and identical; JPEG at a reduced
    DCT scale within a grey level, at full scale within two on average (TensorFlow's default
    fast inverse DCT, as Keras' loader decodes, against Pillow's accurate one)."""
    for name, (path, plain) in mixed.items():
        if plain:
            fast = images.load_array(path, SIZE).astype(int)
            pillow = fastdecode.resized_array(images.decoded_array(path, SIZE), SIZE).astype(int)
            diff = np.abs(fast - pillow)
            if name.endswith(".png"):
                assert diff.max() == 0, name
            else:
                assert diff.mean() < 2 and np.percentile(diff, 99) <= 6, (name, diff.max(), diff.mean())
                if name != "small.jpg":  # the others are decoded at a reduced scale for 64 px
                    assert diff.max() <= 1 and diff.mean() < 0.05, (name, diff.max(), diff.mean())


def test_a_bundle_made_before_the_tensorflow_resize_still_predicts_with_pillows(mixed):
    path = mixed["photo.jpg"][0]
    old = images.load_array(path, SIZE, resize=images.RESIZE_PIL)
    expected = np.asarray(images.load_rgb(path, draft_size=SIZE).resize((SIZE, SIZE), Image.Resampling.BILINEAR))
    np.testing.assert_array_equal(old, expected)
    # and the current resize is not that one
    assert not np.array_equal(images.load_array(path, SIZE), old)
