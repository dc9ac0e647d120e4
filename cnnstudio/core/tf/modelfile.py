"""What a ``.keras`` file holds, checked before Keras deserializes any of it.

Keras' safe mode refuses a ``Lambda`` whose function is stored as bytecode, but not one that
names a function by module (``keras.datasets.mnist.load_data`` runs, and downloads, as the model
loads), and some layers exist to run code or graphs from elsewhere (``TFSMLayer``,
``TorchModuleWrapper``, ``JaxLayer``). :func:`check_model_file` reads the archive's
``config.json`` with :mod:`zipfile` and refuses every such object, and any object from a module
outside Keras and the studio, so nothing in the file is imported or called. Importing this module
never imports TensorFlow.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from cnnstudio.core.errors import ModelFileError

CONFIG = "config.json"
# Layers whose whole point is to call a function, module or graph the file names.
CODE_LAYERS = frozenset({"Lambda", "TFSMLayer", "TorchModuleWrapper", "JaxLayer", "FlaxLayer"})
# A function stored by name is loaded only from these modules (activations, losses, metrics).
FUNCTION_MODULES = ("keras.activations", "keras.losses", "keras.metrics",
                    "keras.src.activations", "keras.src.losses", "keras.src.metrics")
MAX_CONFIG_BYTES = 64 * 2**20


def check_model_file(path) -> dict:
    """The parsed ``config.json`` of the ``.keras`` archive at ``path``; ModelFileError, one line
    naming the file, when it is not such an archive or holds an object that could run code."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            try:
                info = z.getinfo(CONFIG)
            except KeyError:
                raise ModelFileError(f"{path}: not a Keras model file (no {CONFIG} inside)") from None
            if info.file_size > MAX_CONFIG_BYTES:
                raise ModelFileError(f"{path}: its {CONFIG} is {info.file_size} bytes, too large for a model")
            raw = z.read(info)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile):
        raise ModelFileError(f"{path}: not a Keras model file (not a zip archive)") from None
    except OSError as exc:
        raise ModelFileError(f"{path}: unreadable ({exc.strerror or exc})") from None
    except Exception as exc:  # a damaged archive: bad CRC, unsupported compression, ...
        raise ModelFileError(f"{path}: damaged Keras model file ({_one_line(exc)})") from None
    try:
        config = json.loads(raw)
    except (ValueError, RecursionError):
        raise ModelFileError(f"{path}: its {CONFIG} is not JSON") from None
    if not isinstance(config, dict):
        raise ModelFileError(f"{path}: its {CONFIG} is not a JSON object")
    problem = _first_problem(config)
    if problem:
        raise ModelFileError(f"{path}: {problem}; the studio does not load it")
    return config


def _first_problem(config) -> str | None:
    stack = [config]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        problem = _problem_of(item)
        if problem:
            return problem
        stack.extend(reversed(list(item.values())))
    return None


def _problem_of(obj: dict) -> str | None:
    if "class_name" not in obj:
        return None
    cls = obj.get("class_name")
    module = obj.get("module")
    registered = obj.get("registered_name")
    inner = obj.get("config")
    name = inner.get("name") if isinstance(inner, dict) else None
    label = f"{cls} layer {name!r}" if isinstance(name, str) else f"{cls!r} object"
    if not isinstance(cls, str):
        return f"an object whose class_name is {cls!r}"
    if cls in CODE_LAYERS:
        return f"it holds a {label}, which runs code the file names"
    if cls == "__lambda__":
        return "it holds a function stored as Python bytecode"
    if cls == "function":
        where = module if isinstance(module, str) else "?"
        if not (isinstance(module, str) and module.startswith(FUNCTION_MODULES)):
            return f"it holds a function {inner!r} from {where}, not a Keras activation, loss or metric"
        return None
    if module is not None and not (isinstance(module, str) and _known_module(module)):
        return f"it holds {label} from module {module!r}, neither Keras nor the studio"
    if registered is not None:
        if not isinstance(registered, str):
            return f"it holds {label} registered as {registered!r}"
        package = registered.split(">", 1)[0] if ">" in registered else None
        if package is not None and not _known_module(package):
            return f"it holds {label} registered by {package!r}, neither Keras nor the studio"
    return None


def _known_module(module: str) -> bool:
    top = module.split(".", 1)[0]
    return top == "keras" or top == "cnnstudio" or top.startswith("cnnstudio_")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
