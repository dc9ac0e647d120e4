"""Shared helpers for the benchmarks: synthetic JPEG folders and a timing callback."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def make_jpeg_folder(root: Path, n_images: int, size: int, classes: int = 3, seed: int = 0) -> Path:
    """``n_images`` JPEGs of ``size`` px in ``classes`` folders: coloured shapes on noise."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    marker = root / f".complete-{n_images}-{size}-{classes}"
    if marker.exists():
        return root
    for c in range(classes):
        (root / f"class_{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n_images):
        c = i % classes
        arr = rng.integers(0, 80, (size, size, 3), dtype=np.uint8)
        img = Image.fromarray(arr)
        draw = ImageDraw.Draw(img)
        x, y = rng.integers(0, size // 2, 2)
        r = int(rng.integers(size // 6, size // 3))
        colour = tuple(int(v) for v in rng.integers(120, 255, 3))
        if c == 0:
            draw.ellipse([x, y, x + r, y + r], fill=colour)
        elif c == 1:
            draw.rectangle([x, y, x + r, y + r], fill=colour)
        else:
            draw.polygon([(x, y + r), (x + r, y + r), (x + r // 2, y)], fill=colour)
        img.save(root / f"class_{c}" / f"img_{i:05d}.jpg", quality=90)
    marker.touch()
    return root


class EpochTimer:
    """Keras callback factory recording the wall time of each epoch."""

    def __new__(cls):
        import keras

        class _Timer(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.times = []

            def on_epoch_begin(self, epoch, logs=None):
                self.t0 = time.perf_counter()

            def on_epoch_end(self, epoch, logs=None):
                self.times.append(time.perf_counter() - self.t0)

        return _Timer()


def wait_for(signal, timeout_s: float):
    """Run the Qt event loop until ``signal`` fires; returns its arguments."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    got = []

    def done(*args):
        got.append(args)
        loop.quit()

    signal.connect(done)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    signal.disconnect(done)
    if not got:
        raise TimeoutError(f"no signal within {timeout_s} s")
    return got[0]


# Real photographs shipped inside two wheels of the "bench" extra, in two groups that become the
# two classes of the seed-scale folder: a model has to learn what each group's photos look like.
PHOTO_GROUPS = {
    "group_a": [("scikit-image", "skimage/data/astronaut.png"), ("scikit-image", "skimage/data/coffee.png"),
                ("scikit-image", "skimage/data/rocket.jpg"), ("scikit-image", "skimage/data/motorcycle_left.png"),
                ("scikit-image", "skimage/data/motorcycle_right.png"), ("scikit-learn", "sklearn/datasets/images/china.jpg")],
    "group_b": [("scikit-image", "skimage/data/chelsea.png"), ("scikit-image", "skimage/data/hubble_deep_field.jpg"),
                ("scikit-image", "skimage/data/ihc.png"), ("scikit-image", "skimage/data/retina.jpg"),
                ("scikit-image", "skimage/data/immunohistochemistry.png"),
                ("scikit-learn", "sklearn/datasets/images/flower.jpg")],
}


def _photos() -> dict[str, list[Image.Image]]:
    import importlib.metadata as md

    groups = {}
    for name, files in PHOTO_GROUPS.items():
        photos = []
        for dist, rel in files:
            try:
                path = Path(md.distribution(dist).locate_file(rel))
            except md.PackageNotFoundError:
                raise SystemExit(f"{dist} is not installed: pip install -e '.[bench]'") from None
            if path.exists():
                photos.append(Image.open(path).convert("RGB"))
        if not photos:
            raise SystemExit(f"none of the photos of {name} were found: pip install -e '.[bench]'")
        groups[name] = photos
    return groups


def make_photo_folder(root: Path, n_images: int = 20_000, size=(400, 300), seed: int = 0,
                      progress=None) -> Path:
    """``n_images`` JPEGs of about ``size`` (w, h), half per class, cropped from real photographs.

    Each file is a random crop (a fifth to all of the photo's shorter side, any position, mirrored
    at random), resized to the target size give or take 15%, with a little brightness jitter and
    a JPEG quality between 75 and 95, like photos from many cameras. Built once: a marker file
    records a finished folder.
    """
    root = Path(root)
    marker = root / f".complete-photos-{n_images}-{size[0]}x{size[1]}-{seed}"
    if marker.exists():
        return root
    rng = np.random.default_rng(seed)
    groups = _photos()
    for name in groups:
        (root / name).mkdir(parents=True, exist_ok=True)
    names = list(groups)
    for i in range(n_images):
        name = names[i % len(names)]
        photo = groups[name][int(rng.integers(len(groups[name])))]
        w, h = photo.size
        side = int(min(w, h) * rng.uniform(0.2, 1.0))
        aspect = rng.uniform(0.75, 1.5)
        cw, ch = min(w, int(side * aspect)), min(h, side)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        crop = photo.crop((x, y, x + cw, y + ch))
        if rng.random() < 0.5:
            crop = crop.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        scale = rng.uniform(0.85, 1.15)
        crop = crop.resize((int(size[0] * scale), int(size[1] * scale)), Image.Resampling.BILINEAR)
        arr = np.asarray(crop, np.float32) * rng.uniform(0.8, 1.2)
        Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)).save(
            root / name / f"photo_{i:05d}.jpg", quality=int(rng.integers(75, 96)))
        if progress is not None and (i + 1) % 1000 == 0:
            progress(i + 1, n_images)
    marker.touch()
    return root
