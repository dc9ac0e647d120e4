"""The model bundle: a folder that alone turns image files into classes.

```
model/
  model.keras     the whole model, from raw RGB pixels to class probabilities
  bundle.json     class names, input size, colour mode, resize and preprocessing,
                  and an optional "temperature" (see core.evaluation.calibration; absent = 1)
```

The backbone's preprocessing is the model's first layer, so the bundle cannot be used with the
wrong one; ``bundle.json`` records it for people and other tools. Loading checks every field of
``bundle.json`` first (:func:`read_meta`), then the model file's config without deserializing it
(:func:`cnnstudio.core.tf.modelfile.check_model_file`: no ``Lambda`` or other layer that runs
code the file names), loads it with Keras' safe mode on, and checks that its input is
``(input_size, input_size, 3)`` and that it has one output per class name. Each refusal is one
line naming the file.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnstudio import __version__
from cnnstudio.core.errors import BundleError, ModelFileError
from cnnstudio.core.evaluation.calibration import apply_temperature
from cnnstudio.core.io.atomic import atomic_save_model, atomic_write_json, make_folder, read_json
from cnnstudio.core.io.images import RESIZE, RESIZE_PIL, load_batches
from cnnstudio.core.tf.preprocessing import APPLICATION_MODULE, RESCALE
from cnnstudio.core.tf.seeding import load_model

BUNDLE_FORMAT = 1
MODEL_FILE = "model.keras"
META_FILE = "bundle.json"
MIN_INPUT_SIZE, MAX_INPUT_SIZE = 8, 1024


def save_bundle(model, folder, *, class_names: list[str], spec, weights: dict | None = None) -> Path:
    """Write the model and what it needs to predict; ``weights`` records where the base's weights
    came from (random weights are labelled as such wherever the bundle is shown)."""
    folder = make_folder(folder)
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


def read_meta(meta_path) -> dict:
    """``meta_path``'s bundle.json with every field the studio uses checked (format, class names,
    input size, colour mode, input range, resize, preprocessing, temperature and the records kept
    for people); BundleError ``"PATH: what is wrong"`` in one line otherwise."""
    meta_path = Path(meta_path)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:
        raise BundleError(f"{meta_path}: unreadable ({_one_line(exc)})") from exc
    problem = _meta_problem(meta)
    if problem:
        raise BundleError(f"{meta_path}: {problem}")
    _temperature_of(meta, meta_path)
    return meta


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _meta_problem(meta) -> str | None:
    if not isinstance(meta, dict):
        return f"not a JSON object (a JSON {type(meta).__name__})"
    fmt = meta.get("format")
    if not _is_int(fmt) or fmt < 1:
        return f"format must be a whole number from 1, not {_short(fmt)}"
    if fmt > BUNDLE_FORMAT:
        return f"made by a newer CNN Studio (format {fmt}; this one reads up to {BUNDLE_FORMAT})"
    names = meta.get("class_names")
    if not isinstance(names, list):
        return f"class_names must be a list of class names, not {_short(names)}"
    if len(names) < 2:
        return f"class_names must name at least 2 classes, not {len(names)}"
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name.strip():
            return f"class_names[{i}] must be a non-empty string, not {_short(name)}"
    if len(set(names)) != len(names):
        twice = next(n for i, n in enumerate(names) if n in names[:i])
        return f"class_names names {_short(twice)} more than once"
    size = meta.get("input_size")
    if not _is_int(size) or not MIN_INPUT_SIZE <= size <= MAX_INPUT_SIZE:
        return f"input_size must be a whole number of pixels from {MIN_INPUT_SIZE} to {MAX_INPUT_SIZE}, not {_short(size)}"
    if meta.get("color_mode", "rgb") != "rgb":
        return f"color_mode must be 'rgb', not {_short(meta['color_mode'])}"
    if "input_range" in meta and meta["input_range"] != [0, 255]:
        return f"input_range must be [0, 255], not {_short(meta['input_range'])}"
    resize = meta.get("resize", RESIZE_PIL)
    if resize not in (RESIZE, RESIZE_PIL):
        return f"unknown resize {_short(resize)} (made by a newer CNN Studio?)"
    pre = meta.get("preprocessing")
    if pre is not None and not (pre == RESCALE or (isinstance(pre, str) and APPLICATION_MODULE.fullmatch(pre))):
        return f"unknown preprocessing {_short(pre)} (the studio knows 'rescale' and keras.applications modules)"
    if meta.get("preprocessing_in_model", True) is not True:
        return (f"preprocessing_in_model must be true (the studio's models preprocess their input), "
                f"not {_short(meta['preprocessing_in_model'])}")
    for key in ("spec", "weights"):
        if meta.get(key) is not None and not isinstance(meta[key], dict):
            return f"{key} must be a JSON object or null, not {_short(meta[key])}"
    if meta.get("cnnstudio_version") is not None and not isinstance(meta["cnnstudio_version"], str):
        return f"cnnstudio_version must be a string, not {_short(meta['cnnstudio_version'])}"
    return None


def _check_model_matches(model, meta: dict, model_path: Path, meta_path: Path) -> None:
    """The loaded model takes (input_size, input_size, 3) images, has one output per class name and
    the preprocessing bundle.json records; BundleError naming both files otherwise."""
    where = f"{model_path} does not match {meta_path}"
    size = meta["input_size"]
    try:
        inputs = [tuple(t.shape) for t in model.inputs]
        outputs = [tuple(t.shape) for t in model.outputs]
    except Exception as exc:
        raise BundleError(f"{model_path}: not a model with inputs and outputs ({_one_line(exc)})") from exc
    if len(inputs) != 1 or tuple(inputs[0][1:]) != (size, size, 3):
        shown = ", ".join(str(s[1:]) for s in inputs) or "nothing"
        raise BundleError(f"{where}: the model takes {shown} images, bundle.json says input_size {size} "
                          f"({(size, size, 3)})")
    count = len(meta["class_names"])
    if len(outputs) != 1 or len(outputs[0]) != 2 or outputs[0][1] != count:
        shown = ", ".join(str(s[1:]) for s in outputs) or "nothing"
        raise BundleError(f"{where}: the model has outputs {shown}, bundle.json names {count} classes")
    recorded = meta.get("preprocessing")
    if recorded is not None and _preprocessing_of(model) != recorded:
        raise BundleError(f"{where}: the model preprocesses with {_preprocessing_of(model)!r}, "
                          f"bundle.json says {recorded!r}")


def _short(value, limit: int = 60) -> str:
    text = " ".join(repr(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


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
        self.meta = read_meta(meta_path)  # every field checked before anything is loaded or allocated
        self.folder = folder
        self.class_names: list[str] = list(self.meta["class_names"])
        self.input_size = int(self.meta["input_size"])
        self.resize = self.meta.get("resize", RESIZE_PIL)
        self.temperature = _temperature_of(self.meta, meta_path)
        self.meta_stamp = _stamp(meta_path)
        model_path = folder / MODEL_FILE
        try:
            self.model = load_model(model_path)  # refuses a Lambda (and the like) before deserializing
        except ModelFileError as exc:
            raise BundleError(str(exc)) from exc
        except Exception as exc:
            raise BundleError(f"{model_path}: cannot load the model ({_one_line(exc)})") from exc
        _check_model_matches(self.model, self.meta, model_path, meta_path)

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
