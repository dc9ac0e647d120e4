"""The one image loader: every awkward file a user may drop gives the right RGB pixels or a clear reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cnnstudio.core.errors import ImageError
from cnnstudio.core.io import images


def pixels(path) -> np.ndarray:
    return np.asarray(images.load_rgb(path))


def assert_colour(arr: np.ndarray, colour, tol=0):
    assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
    diff = np.abs(arr.astype(int) - np.array(colour)).max()
    assert diff <= tol, f"expected {colour}, got e.g. {arr.reshape(-1, 3)[0].tolist()}"


# --- colour modes ---------------------------------------------------------------------------


def test_grayscale_becomes_three_equal_channels(tmp_path, write_image):
    path = write_image(tmp_path / "g.png", mode="L", colour=100)
    assert_colour(pixels(path), (100, 100, 100))


def test_palette_image_keeps_its_colours(tmp_path):
    rgb = Image.new("RGB", (20, 20), (10, 120, 240))
    rgb.paste((250, 200, 0), (0, 0, 10, 20))
    rgb.convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(tmp_path / "p.png")
    arr = pixels(tmp_path / "p.png")
    assert_colour(arr[:, :10], (250, 200, 0))
    assert_colour(arr[:, 10:], (10, 120, 240))


def test_palette_transparency_becomes_white(tmp_path):
    img = Image.new("P", (20, 20), 0)
    img.putpalette([0, 0, 0, 200, 0, 0] + [0] * 762)
    img.paste(1, (10, 0, 20, 20))
    img.save(tmp_path / "pt.png", transparency=0)
    arr = pixels(tmp_path / "pt.png")
    assert_colour(arr[:, :10], images.BACKGROUND)  # black in the palette, but transparent
    assert_colour(arr[:, 10:], (200, 0, 0))


def test_rgba_is_composited_on_white(tmp_path):
    rgba = np.zeros((16, 16, 4), np.uint8)  # fully transparent black
    rgba[:, 8:] = (255, 0, 0, 128)  # half-transparent red
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    arr = pixels(tmp_path / "a.png")
    assert_colour(arr[:, :8], (255, 255, 255))
    assert_colour(arr[:, 8:], (255, 127, 127), tol=1)


def test_gray_with_alpha_is_composited_on_white(tmp_path):
    la = np.zeros((16, 16, 2), np.uint8)
    la[:, 8:] = (50, 255)
    Image.fromarray(la, "LA").save(tmp_path / "la.png")
    arr = pixels(tmp_path / "la.png")
    assert_colour(arr[:, :8], (255, 255, 255))
    assert_colour(arr[:, 8:], (50, 50, 50))


def test_cmyk_jpeg_gives_rgb(tmp_path, write_image):
    path = write_image(tmp_path / "c.jpg", mode="CMYK", colour=(0, 255, 255, 0), quality=95)
    assert_colour(pixels(path), (255, 0, 0), tol=6)


def test_16_bit_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 16384, 32768, 65535]] * 4, dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    row = pixels(tmp_path / "deep.png")[0, :, 0].astype(int)
    assert np.abs(row - [0, 64, 128, 255]).max() <= 1


def test_exif_orientation_is_applied(tmp_path):
    # Stored landscape with a red top-left corner; Orientation=6 means "rotate 90 degrees
    # clockwise to display", so the photo is portrait and the red corner is top-right.
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    img.save(tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)

    arr = pixels(tmp_path / "rotated.jpg")
    assert arr.shape == (40, 20, 3)
    assert_colour(arr[1:8, 13:19], (255, 0, 0), tol=12)
    assert_colour(arr[1:8, 1:8], (0, 0, 255), tol=12)
    assert images.verify(tmp_path / "rotated.jpg") == (20, 40)


def test_broken_exif_does_not_make_a_photo_unusable(tmp_path, write_image, monkeypatch):
    path = write_image(tmp_path / "p.jpg", colour=(0, 200, 0), quality=95)

    def broken(self):
        raise SyntaxError("corrupt EXIF")

    monkeypatch.setattr(Image.Image, "getexif", broken)
    assert_colour(pixels(path), (0, 200, 0), tol=6)
    assert images.verify(path) == (24, 24)


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 16), c) for c in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:], duration=50)
    assert Image.open(tmp_path / "anim.gif").n_frames == 3
    assert_colour(pixels(tmp_path / "anim.gif"), (255, 0, 0))


@pytest.mark.parametrize(
    "name, save",
    [("x.webp", {"lossless": True}), ("x.bmp", {}), ("PHOTO.PNG", {}), ("x.tiff", {})],
)
def test_other_formats_and_uppercase_names(tmp_path, write_image, name, save):
    path = write_image(tmp_path / name, colour=(30, 140, 220), **save)
    assert_colour(pixels(path), (30, 140, 220))


def test_uppercase_jpeg_extension(tmp_path, write_image):
    path = write_image(tmp_path / "IMG_0001.JPG", colour=(30, 140, 220), quality=95)
    assert_colour(pixels(path), (30, 140, 220), tol=4)


def test_content_decides_not_the_extension(tmp_path, write_image):
    path = write_image(tmp_path / "really-a-png.jpg", colour=(1, 2, 3), fmt="PNG")
    assert_colour(pixels(path), (1, 2, 3))
    assert images.verify(path) == (24, 24)


def test_load_array_is_squashed_to_the_model_input(tmp_path):
    img = Image.new("RGB", (48, 24), (255, 0, 0))
    img.paste((0, 0, 255), (24, 0, 48, 24))
    img.save(tmp_path / "wide.png")
    arr = images.load_array(tmp_path / "wide.png", 16)
    assert arr.shape == (16, 16, 3) and arr.dtype == np.uint8
    # The whole image is kept: red on the left half, blue on the right, nothing cropped.
    assert_colour(arr[:, :7], (255, 0, 0))
    assert_colour(arr[:, 9:], (0, 0, 255))


def test_load_array_of_a_large_jpeg_matches_a_full_decode(tmp_path):
    # The reduced-scale JPEG decode must give nearly the same input as decoding everything.
    ys, xs = np.mgrid[0:256, 0:256]
    grad = np.stack([xs, ys, 255 - xs], axis=-1).astype(np.uint8)
    Image.fromarray(grad, "RGB").save(tmp_path / "big.jpg", quality=95)
    fast = images.load_array(tmp_path / "big.jpg", 32).astype(int)
    full = np.asarray(
        images.load_rgb(tmp_path / "big.jpg").resize((32, 32), Image.Resampling.BILINEAR)
    ).astype(int)
    assert np.abs(fast - full).mean() < 3


# --- failures -------------------------------------------------------------------------------


def reason_for(path) -> str:
    with pytest.raises(ImageError) as info:
        images.verify(path)
    err = info.value
    assert err.path == str(path)
    assert str(err) == f"{path}: {err.reason}"
    with pytest.raises(ImageError):  # load_rgb refuses the same file for the same reason
        images.load_rgb(path)
    return err.reason


def test_empty_file(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    assert reason_for(tmp_path / "empty.jpg") == "empty file (0 bytes)"


def test_truncated_jpeg(tmp_path, noise_jpeg):
    path = noise_jpeg(tmp_path / "full.jpg")
    data = path.read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    assert reason_for(tmp_path / "half.jpg").startswith("truncated or corrupt")


def test_truncated_png(tmp_path):
    noise = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(noise, "RGB").save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "half.png").write_bytes(data[: len(data) // 2])
    assert reason_for(tmp_path / "half.png").startswith("truncated or corrupt")


def test_text_file_is_not_an_image(tmp_path):
    (tmp_path / "notes.png").write_text("these are not pixels\n")
    assert reason_for(tmp_path / "notes.png").startswith("not an image")


def test_image_too_large(tmp_path, write_image, monkeypatch):
    path = write_image(tmp_path / "big.png", size=(40, 30))
    monkeypatch.setattr(images, "MAX_PIXELS", 1000)
    reason = reason_for(path)
    assert reason.startswith("image too large") and "40x30" in reason


def test_folder_named_like_an_image_is_unreadable(tmp_path):
    (tmp_path / "folder.jpg").mkdir()
    assert reason_for(tmp_path / "folder.jpg").startswith("unreadable")


def test_dangling_symlink_is_unreadable(tmp_path):
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "deleted.jpg")
    assert reason_for(tmp_path / "gone.jpg") == "unreadable (No such file or directory)"


def test_prediction_batches_come_as_files_are_read_not_after_all_of_them(tmp_path, monkeypatch):
    """Predicting a big folder holds a few batches in memory, not the folder: the first batch
    comes out after a bounded number of files were read, in order, with bad files in place."""
    paths = []
    for i in range(60):
        path = tmp_path / f"{i:02d}.png"
        if i == 5:
            path.write_text("not an image")
        else:
            Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(path)
        paths.append(str(path))
    read = []
    real = images.load_array
    monkeypatch.setattr(images, "load_array", lambda p, *a: (read.append(p), real(p, *a))[1])

    stream = images.load_batches(paths, 8, batch_size=4, workers=2)
    assert next(stream)[0] == "batch"
    assert len(read) <= 16  # decoded ahead: twice the batch, or four per worker
    rest = list(stream)
    errors = [(where, reason) for kind, where, reason in rest if kind == "error"]
    assert [where for where, _ in errors] == [5] and "image" in errors[0][1]
    order = [i for kind, where, _ in rest if kind == "batch" for i in where]
    assert order == [i for i in range(4, 60) if i != 5]
    batch = next(r for r in rest if r[0] == "batch")
    assert batch[2].shape == (4, 8, 8, 3) and batch[2][0, 0, 0, 0] == batch[1][0]


def _png_header(path, width, height):
    """A PNG whose header says ``width`` x ``height`` (its pixels are never read)."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + chunk(b"IEND", b""))
    return path


def test_a_huge_image_is_refused_by_its_size_in_pixels_and_pillow_prints_no_warning(tmp_path):
    import subprocess
    import sys

    huge = _png_header(tmp_path / "huge.png", 12_001, 12_001)
    big = _png_header(tmp_path / "big.png", 10_000, 10_000)  # above Pillow's own default warning
    code = ("import sys\n"
            "from cnnstudio.core.errors import ImageError\n"
            "from cnnstudio.core.io.images import open_checked\n"
            "open_checked(sys.argv[2]).close()\n"
            "try:\n"
            "    open_checked(sys.argv[1])\n"
            "except ImageError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code, str(huge), str(big)], capture_output=True,
                          text=True, timeout=120)
    assert done.stdout.strip().endswith(
        "image too large (12001x12001 = 144,024,001 pixels, above the limit of 144,000,000)")
    assert "DecompressionBomb" not in done.stderr  # Pillow's raw warning never reaches the terminal


def test_pillows_warnings_become_notes_on_the_file_that_raised_them_on_each_thread(tmp_path):
    """Files decoded at once on several threads: each file's notes are its own, none is lost."""
    from concurrent.futures import ThreadPoolExecutor

    from tinydata import damaged_exif_jpeg

    from cnnstudio.core.io.images import file_notes, inspect

    paths = []
    for i in range(16):
        if i % 2:
            paths.append(damaged_exif_jpeg(tmp_path / f"bad_{i}.jpg"))
        else:
            paths.append(tmp_path / f"good_{i}.jpg")
            Image.new("RGB", (20, 20), (i, 0, 0)).save(paths[-1], "JPEG")

    def notes_of(path):
        with file_notes() as notes:
            inspect(path)
        return list(notes)

    with ThreadPoolExecutor(4) as pool:
        found = dict(zip(paths, pool.map(notes_of, paths * 3)))
    for path, notes in found.items():
        if path.name.startswith("bad"):
            assert notes == ["damaged EXIF data; what cannot be read of it is ignored"], path
        else:
            assert notes == [], path


def test_a_pillow_warning_reaches_the_terminal_as_one_line_naming_the_file(tmp_path):
    import subprocess
    import sys

    from tinydata import damaged_exif_jpeg

    bad = damaged_exif_jpeg(tmp_path / "bad.jpg")
    code = ("import sys\n"
            "from cnnstudio.core.io.images import load_array, load_rgb\n"
            "for _ in range(3):\n"
            "    load_array(sys.argv[1], 16); load_rgb(sys.argv[1])\n"
            "import warnings; warnings.warn('an unrelated warning still shows')\n")
    done = subprocess.run([sys.executable, "-W", "default", "-c", code, str(bad)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if "bad.jpg" in line or "Warning" in line]
    assert lines[0] == f"{bad}: damaged EXIF data; what cannot be read of it is ignored"
    assert "Tag data larger than file" not in done.stderr and "TiffImagePlugin" not in done.stderr
    assert [line for line in lines if "bad.jpg" in line] == lines[:1]  # said once, not per read
    assert "UserWarning: an unrelated warning still shows" in done.stderr
