"""Tiny generated datasets for the core tests: classes a small network separates in a few epochs."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

COLOURS = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220), "yellow": (230, 220, 40)}


def make_dataset(root: Path, classes=("red", "green", "blue"), per_class: int = 12, size: int = 20,
                 fmt: str = "PNG", seed: int = 0) -> Path:
    """One folder per class of noisy images whose dominant colour is the class."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    for name in classes:
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        base = np.array(COLOURS[name], dtype=float)
        for i in range(per_class):
            noise = rng.normal(0, 25, (size, size, 3))
            arr = np.clip(base + noise, 0, 255).astype(np.uint8)
            ext = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(arr).save(folder / f"{name}_{i:03d}.{ext}", fmt)
    return root


def truncate(path: Path, keep: float = 0.5) -> Path:
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: int(len(data) * keep)])
    return Path(path)


def damaged_exif_jpeg(path: Path, colour=(220, 40, 40), size: int = 20) -> Path:
    """A good JPEG whose EXIF block names a tag with more data than the block holds: Pillow
    decodes the pixels and warns ("Tag data larger than file") when it reads the EXIF."""
    import struct

    tiff = (b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", 1)
            + struct.pack("<HHII", 0x010E, 2, 100, 26) + struct.pack("<I", 0))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), colour).save(path, "JPEG", exif=b"Exif\x00\x00" + tiff)
    return path


def mislabel_a_validation_image(run: Path, dest: Path) -> Path:
    """A copy (``dest``) of ``run``'s dataset where one validation image of the first class holds a
    picture of another class, and ``run``'s config pointing at it: a model sure of every image is
    then wrong once, so a fitted temperature lands inside its range. Returns ``dest``."""
    import json
    import shutil

    config_file = Path(run) / "config.json"
    config = json.loads(config_file.read_text())
    data = Path(shutil.copytree(config["dataset"]["root"], dest))
    val = config["split"]["val"]
    first = next(p for p in val if p.split("/")[0] == val[0].split("/")[0])
    other = next(p for p in val if p.split("/")[0] != first.split("/")[0])
    shutil.copyfile(data / other, data / first)
    config["dataset"]["root"] = str(data)
    config_file.write_text(json.dumps(config))
    return data


def history_losses(run: Path) -> list[float]:
    """The training loss of each epoch of ``run``, from its history.csv."""
    with open(run / "history.csv", newline="") as f:
        return [float(row["loss"]) for row in csv.DictReader(f)]


def train_error_lines(err: str) -> list[str]:
    """The one-line errors that ``cnnstudio train`` printed to ``err``."""
    return [line for line in err.splitlines() if line.startswith("cnnstudio train: error:")]


def wait_for_epochs(run: Path, proc, epochs: int = 2, timeout: float = 180) -> None:
    """Return once ``run``'s checkpoint records ``epochs`` epochs, ``proc`` ended, or ``timeout`` passed."""
    state = run / "checkpoints" / "state.json"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["epochs_done"] >= epochs:
                return
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
