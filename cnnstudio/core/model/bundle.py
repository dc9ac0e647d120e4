"""The model bundle: a folder that alone turns image files into classes.

```
model/
  model.keras     the whole model, from raw RGB pixels to class probabilities
  bundle.json     class names, input size, colour mode, resize and preprocessing,
                  and an optional "temperature" (see core.evaluation.calibration; absent = 1)
```

The backbone's preprocessing is the model's first layer, so the bundle cannot be used with the
wrong one; ``bundle.json`` records it for people and other tools. Bundles load with Keras'
safe mode on.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnstudio import __version__
from cnnstudio.core.errors import BundleError
from cnnstudio.core.evaluation.calibration import apply_temperature
from cnnstudio.core.io.atomic import atomic_save_model, atomic_write_json, read_json
from cnnstudio.core.io.images import RESIZE, RESIZE_PIL, load_batches
from cnnstudio.core.tf.seeding import load_model

BUNDLE_FORMAT = 1
MODEL_FILE = "model.keras"
META_FILE = "bundle.json"


def save_bundle(model, folder, *, class_names: list[str], spec, weights: dict | None = None) -> Path:
    """Write the model and what it needs to predict; ``weights`` records where the base's weights
    came from (random weights are labelled as such wherever the bundle is shown)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_save_model(model, folder / MODEL_FILE)
    preprocessing = _preprocessing_of(model)
    atomic_write_json(
        folder / META_FILE,
        {
            "format": BUNDLE_FORMAT,
            "class_names": list(class_names),
            "input_size": int(spec.input_size),
            "color_mode": "rgb",
            "input_range": [0, 255],
            "resize": RESIZE,
            "preprocessing": preprocessing,
            "preprocessing_in_model": True,
            "spec": spec.to_dict(),
            "weights": weights,
            "cnnstudio_version": __version__,
        },
    )
    return folder


def set_temperature(folder, temperature: float | None) -> float:
    """Store the calibration temperature in ``folder``'s bundle.json (atomically, every other key
    kept); ``None`` or 1 removes it. Returns the temperature now in effect."""
    meta_path = Path(folder) / META_FILE
    if not meta_path.exists():
        raise BundleError(f"{folder}: not a model bundle (needs {MODEL_FILE} and {META_FILE})")
    try:
        meta = read_json(meta_path)
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
    if temperature is None or float(temperature) == 1.0:
        meta.pop("temperature", None)
        temperature = 1.0
    else:
        temperature = float(temperature)
        if not (temperature > 0 and np.isfinite(temperature)):
            raise BundleError(f"temperature must be a positive number, not {temperature}")
        meta["temperature"] = temperature
    atomic_write_json(meta_path, meta)
    return temperature


def _preprocessing_of(model) -> str | None:
    from cnnstudio.core.tf.layers import Preprocess

    for layer in model.layers:
        if isinstance(layer, Preprocess):
            return layer.mode
    return None


def stored_temperature(folder) -> float:
    """The temperature ``folder``'s bundle.json holds (1 when none), without loading the model.
    Raises BundleError when the file is missing or unreadable, or the value is not usable."""
    meta_path = Path(folder) / META_FILE
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
    return _temperature_of(meta, meta_path)


def _temperature_of(meta: dict, meta_path: Path) -> float:
    temperature = meta.get("temperature") if isinstance(meta, dict) else None
    try:
        value = 1.0 if temperature is None else float(temperature)
    except (TypeError, ValueError):
        value = float("nan")
    if not (value > 0 and np.isfinite(value)):
        raise BundleError(f"{meta_path}: temperature must be a positive number, not {temperature!r}")
    return value


def _stamp(path: Path):
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]] | None  # (class, probability), best first
    error: str | None = None
    probs: np.ndarray | None = None


class Bundle:
    """A loaded bundle: the model stays in memory between predictions."""

    def __init__(self, folder):
        folder = Path(folder)
        if folder.is_file() and folder.name == MODEL_FILE:
            folder = folder.parent
        meta_path = folder / META_FILE
        if not folder.is_dir():
            raise BundleError(f"{folder}: no such model bundle folder")
        if not meta_path.exists() or not (folder / MODEL_FILE).exists():
            raise BundleError(f"{folder}: not a model bundle (needs {MODEL_FILE} and {META_FILE})")
        try:
            self.meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise BundleError(f"{meta_path}: unreadable ({exc})") from exc
        if self.meta.get("format", 0) > BUNDLE_FORMAT:
            raise BundleError(f"{meta_path}: made by a newer CNN Studio (format {self.meta['format']})")
        self.folder = folder
        self.class_names: list[str] = list(self.meta["class_names"])
        self.input_size = int(self.meta["input_size"])
        self.resize = self.meta.get("resize", RESIZE_PIL)
        if self.resize not in (RESIZE, RESIZE_PIL):
            raise BundleError(f"{meta_path}: unknown resize {self.resize!r} (made by a newer CNN Studio?)")
        self.temperature = _temperature_of(self.meta, meta_path)
        self.meta_stamp = _stamp(meta_path)
        try:
            self.model = load_model(folder / MODEL_FILE)
        except Exception as exc:
            raise BundleError(f"{folder / MODEL_FILE}: cannot load the model ({exc})") from exc

    def refresh_temperature(self) -> bool:
        """Read the temperature again if bundle.json changed since (calibrated elsewhere, say);
        True when it changed. Raises BundleError when the file became unreadable."""
        stamp = _stamp(self.folder / META_FILE)
        if stamp == self.meta_stamp:
            return False
        before, self.temperature = self.temperature, stored_temperature(self.folder)
        if self.temperature == 1.0:
            self.meta.pop("temperature", None)
        else:
            self.meta["temperature"] = self.temperature
        self.meta_stamp = stamp
        return self.temperature != before

    def predict_arrays(self, images: np.ndarray, calibrated: bool = True) -> np.ndarray:
        """Probabilities for a batch of ``(n, size, size, 3)`` uint8 RGB images, scaled by the
        bundle's temperature unless ``calibrated`` is false."""
        x = images.astype(np.float32)
        probs = np.asarray(self.model(x, training=False))
        return apply_temperature(probs, self.temperature) if calibrated else probs

    def predict_paths(self, paths, top_k: int = 3, batch_size: int = 32) -> list[Prediction]:
        """Predict files; a file that cannot be read gets its own error and the rest still predict."""
        results: list[Prediction | None] = [None] * len(paths)
        k = max(1, min(top_k, len(self.class_names)))
        for kind, where, what in load_batches(paths, self.input_size, batch_size, self.resize):
            if kind == "error":
                results[where] = Prediction(str(paths[where]), None, what)
                continue
            for i, p in zip(where, self.predict_arrays(what)):
                order = np.argsort(-p)[:k]
                results[i] = Prediction(str(paths[i]), [(self.class_names[j], float(p[j])) for j in order], None, p)
        return results
