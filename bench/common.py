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
