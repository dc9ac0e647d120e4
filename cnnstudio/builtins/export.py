"""Verified exports of a run's model: Keras, SavedModel, TFLite (float32, float16, int8) and ONNX.

Every export is checked before it is kept: the written file is reloaded in the runtime that
will use it (Keras, ``tf.saved_model.load``, the LiteRT / TFLite interpreter, onnxruntime), run
on the run's test images, and compared with the bundle's Keras model: top-1 agreement, the
largest probability difference, and both models' accuracy on the true labels. A file that does
not reload is never left at ``out``; every output is written atomically (a folder output is
built beside its destination and renamed into place).

All formats take raw RGB pixels in [0, 255] as float32 ``(n, size, size, 3)`` and return class
probabilities, like the bundle: the preprocessing layer travels inside the model.

int8 is full-integer quantisation of the model's internals (weights and activations, calibrated
on up to 100 training images) with float32 input and output, so callers feed the same pixels to
every format.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path

import numpy as np

from cnnstudio.core.errors import ImageError, StudioError
from cnnstudio.core.io.atomic import disk_failure, write_failure
from cnnstudio.core.plugincode import PLUGIN_FAILURES, reraise_if_pressed, users_ctrl_c
from cnnstudio.core.tasks import TaskState, check_stop, quiet
from cnnstudio.plugins import ExportContext, ExporterProvider

# A non-empty folder is overwritten only when it holds an earlier export of the same format.
_FOLDER_MARKERS = {"savedmodel": "saved_model.pb"}

# Training images that calibrate int8 quantisation (spread evenly over the training split).
REPRESENTATIVE_IMAGES = 100
# Images run through a model at once while verifying.
BATCH_SIZE = 32
# ONNX opset written by tf2onnx; onnxruntime 1.16 and later run it.
ONNX_OPSET = 17
# What ONNX export imports: the converter (its package loads it lazily) and the runtime that checks it.
ONNX_MODULES = ("tf2onnx.convert", "onnxruntime")
# The input's name in the SavedModel signature and the ONNX graph.
INPUT_NAME = "image"

# Progress tasks of an export besides "writing <format>" (calibration images load during the write).
LOAD_TASK = "loading test images"
CALIBRATION_TASK = "loading calibration images"


class ExportError(StudioError):
    """An export cannot be made or does not reload; the message is one line."""


@dataclass
class ExportReport:
    """What was written and how closely it matches the bundle's Keras model on the test split."""

    format: str
    path: str
    size_bytes: int
    runtime: str  # what reloaded and ran the export
    test_images: int  # test images both models ran on
    top1_agreement: float  # fraction of test images whose top class is the same
    max_prob_diff: float  # largest |p_export - p_keras| over images and classes
    accuracy_source: float  # the Keras model's accuracy on those images
    accuracy_export: float
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"}: test images that failed to load
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0
    quantised: bool = False  # the format trades accuracy for size (its accuracy change is reported)

    @property
    def accuracy_change(self) -> float:
        return self.accuracy_export - self.accuracy_source

    def to_dict(self) -> dict:
        return {**asdict(self), "accuracy_change": self.accuracy_change}

    def summary(self) -> str:
        """One line, e.g. ``tflite-int8: /x/model.tflite (1.2 MB); test images 36; top-1 agreement 97.2%; ...``."""
        line = (f"{self.format}: {self.path} ({format_size(self.size_bytes)}); test images {self.test_images}; "
                f"top-1 agreement {self.top1_agreement * 100:.1f}%; "
                f"max probability difference {self.max_prob_diff:.4f}")
        if self.quantised:
            line += (f"; accuracy {self.accuracy_source:.3f} -> {self.accuracy_export:.3f} "
                     f"({self.accuracy_change:+.3f})")
        return line


def format_size(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    if n < 1_000_000:
        return f"{n / 1000:.1f} kB"
    return f"{n / 1_000_000:.1f} MB"


# ----------------------------------------------------------------------------- the export


def export_run(run_dir, fmt: str, out, data_dir=None, exporters: Mapping[str, ExporterProvider] | None = None,
               *, state: TaskState | None = None) -> ExportReport:
    """Write the run's model as ``fmt`` at ``out`` and verify it on the run's test split.

    ``exporters`` are the formats to choose from (a registry's, plugins' included; default the
    built-in ones). ``data_dir`` replaces the dataset folder recorded in the run (when it has
    moved). For the single-file formats ``out`` may be an existing folder: the file goes inside
    it as ``model.<ext>``. Raises :class:`StudioError` with a one-line message.

    ``state`` hears ``on_progress("loading test images", i, n)`` per test image, then
    ``on_progress("writing <fmt>", 0, 1)`` and ``(1, 1)`` around the write and its verification;
    the exporter's ``write`` gets it as ``context.state``. ``state.should_stop()`` is asked while
    the test images load and before the write starts: the export then raises :class:`Cancelled`
    and leaves nothing at ``out``. A write that has started runs to its end.
    """
    from cnnstudio.core.model.bundle import MODEL_FILE, Bundle
    from cnnstudio.core.runs.folder import dataset_folder, recorded_split
    from cnnstudio.core.runs.records import open_finished_run

    started = time.monotonic()
    state = quiet(state)
    exporters = BUILTIN_EXPORTERS if exporters is None else exporters
    exporter = exporters.get(fmt)
    if exporter is None:
        raise ExportError(f"unknown export format {fmt!r}; choose one of {', '.join(exporters)}")
    paths, config = open_finished_run(run_dir, ExportError)
    test_files = recorded_split(paths, config, "test", ExportError, why="exports are verified on the test images")
    root = dataset_folder(paths, config, data_dir, ExportError,
                          hint="the test images are needed to verify the export (give the folder's new place)")
    out = _output_path(exporter, Path(out), folder=os.fspath(out).endswith(("/", os.sep)))
    if exporter.prepare is not None:
        _guarded(exporter, "prepare", exporter.prepare)  # fail before any work when something is missing

    bundle = Bundle(paths.bundle)
    size = bundle.input_size
    images, labels, skipped = _load_test_images(root, test_files, bundle.class_names, size, state)
    if not len(images):
        raise ExportError(f"{root}: none of the run's {len(test_files)} test images could be loaded "
                          f"(first: {skipped[0]['path']}: {skipped[0]['reason']})")
    # The exported graph is the bundle's model file: compare with its raw output (a calibration
    # temperature in bundle.json is applied by the app after the model, and is not exported).
    reference = _batched(lambda x: bundle.model(x.astype(np.float32), training=False), images)

    notes: list[str] = []
    temperature = bundle.meta.get("temperature")
    if temperature not in (None, 1, 1.0):
        notes.append(f"the bundle's calibration temperature {temperature} is not part of the export: its "
                     "probabilities are the uncalibrated ones (apply softmax(log(p) / T) to calibrate)")
    train_files = list((config.get("split") or {}).get("train") or [])
    context = ExportContext(
        input_size=size,
        class_names=tuple(bundle.class_names),
        model_file=bundle.folder / MODEL_FILE,
        representative=lambda: _representative_images(root, train_files, size, state),
        state=state,
    )
    check_stop(state, "export stopped before writing")
    state.on_progress(f"writing {fmt}", 0, 1)
    with (_atomic_folder if exporter.folder else _atomic_file)(out) as tmp:
        note = _guarded(exporter, "write", exporter.write, bundle.model, tmp, context)
        predict, runtime = _guarded(exporter, "load", exporter.load, tmp)
        probs = _guarded(exporter, "load", _batched, predict, images)
        _check_shape(probs, reference)
    if note:
        notes.append(str(note))
    state.on_progress(f"writing {fmt}", 1, 1)

    return ExportReport(
        format=fmt,
        path=str(out),
        quantised=exporter.quantised,
        size_bytes=_size_of(out),
        runtime=runtime,
        test_images=len(images),
        top1_agreement=float(np.mean(probs.argmax(1) == reference.argmax(1))),
        max_prob_diff=float(np.max(np.abs(probs.astype(np.float64) - reference))),
        accuracy_source=float(np.mean(reference.argmax(1) == labels)),
        accuracy_export=float(np.mean(probs.argmax(1) == labels)),
        skipped=skipped,
        notes=notes,
        seconds=round(time.monotonic() - started, 3),
    )


def _check_shape(probs: np.ndarray, reference: np.ndarray) -> None:
    if probs.shape != reference.shape:
        raise ExportError(f"the reloaded export gives outputs of shape {probs.shape}, the model {reference.shape}")


def _output_path(exporter: ExporterProvider, out: Path, folder: bool = False) -> Path:
    """Where the export goes; ``folder``: ``out`` was written with a trailing slash."""
    if exporter.folder:
        if out.exists() and not out.is_dir():
            raise ExportError(f"{out}: is a file; a {exporter.display_name} is a folder")
        marker = _FOLDER_MARKERS.get(exporter.id)
        if out.is_dir() and any(out.iterdir()) and not (marker and (out / marker).exists()):
            raise ExportError(f"{out}: is a folder that holds other files and no {exporter.display_name}; "
                              "choose another --out")
        return out
    if out.exists() and not out.is_dir() and folder:
        raise ExportError(f"{out}: is a file, not a folder")
    if out.is_dir() or folder:
        out = out / f"model{exporter.suffix}"
    if exporter.id == "keras" and out.suffix != ".keras":
        raise ExportError(f"{out}: a Keras model file must end in .keras")
    return out


def _guarded(exporter: ExporterProvider, step: str, function, *args):
    """Run an exporter's step; what a plugin's code raises becomes one line naming the format."""
    try:
        with users_ctrl_c() as pressed:
            return function(*args)
    except StudioError:
        raise
    except PLUGIN_FAILURES as exc:
        reraise_if_pressed(exc, pressed)
        if step == "write" and write_failure("", exc) is not None:
            raise  # a full or read-only disk: the atomic write names the file and the cause
        cause = type(exc).__name__ + (f": {_one_line(exc)}" if str(exc).strip() else "")
        raise ExportError(f"export format {exporter.id!r}: {step} failed ({cause})") from exc


def _size_of(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _batched(predict, images: np.ndarray) -> np.ndarray:
    return np.concatenate([np.asarray(predict(images[i:i + BATCH_SIZE]), dtype=np.float32)
                           for i in range(0, len(images), BATCH_SIZE)])


# ----------------------------------------------------------------------------- images


def _load_test_images(root: Path, files: list[str], class_names: list[str], size: int, state: TaskState):
    """The test split as uint8 arrays and class indices; unreadable files are skipped and listed.
    Raises :class:`Cancelled` when ``state`` asks to stop before the last one."""
    from cnnstudio.core.io.images import load_array

    position = {name: i for i, name in enumerate(class_names)}
    arrays, labels, skipped = [], [], []
    for i, rel in enumerate(files):
        state.on_progress(LOAD_TASK, i, len(files))
        check_stop(state, "export stopped while loading the test images")
        label = position.get(rel.split("/", 1)[0])
        if label is None:
            skipped.append({"path": rel, "reason": "its class folder is not one of the model's classes"})
            continue
        try:
            arrays.append(load_array(root / rel, size))
        except ImageError as exc:
            skipped.append({"path": rel, "reason": exc.reason})
            continue
        labels.append(label)
    state.on_progress(LOAD_TASK, len(files), len(files))
    if not arrays:
        return np.zeros((0, size, size, 3), np.uint8), np.zeros((0,), int), skipped
    return np.stack(arrays), np.asarray(labels), skipped


def _representative_images(root: Path, files: list[str], size: int, state: TaskState) -> np.ndarray:
    """Up to :data:`REPRESENTATIVE_IMAGES` training images spread over the (class-sorted) list,
    reported to ``state`` as they load (the write has started: it does not stop here)."""
    from cnnstudio.core.io.images import load_array

    if not files:
        raise ExportError("int8 quantisation needs training images to calibrate on; the run's split has none")
    picks = sorted(set(np.linspace(0, len(files) - 1, min(len(files), REPRESENTATIVE_IMAGES)).astype(int)))
    arrays = []
    for n, i in enumerate(picks):
        state.on_progress(CALIBRATION_TASK, n, len(picks))
        with contextlib.suppress(ImageError):
            arrays.append(load_array(root / files[i], size))
    state.on_progress(CALIBRATION_TASK, len(picks), len(picks))
    if not arrays:
        raise ExportError(f"{root}: none of the training images chosen to calibrate int8 quantisation could be loaded")
    return np.stack(arrays)


# ----------------------------------------------------------------------------- atomic outputs


@contextlib.contextmanager
def _atomic_file(path: Path):
    from cnnstudio.core.io.atomic import atomic_path

    with atomic_path(path, suffix=path.suffix or None) as tmp:  # which leaves the usual permissions
        yield tmp


def _atomic_folder(path: Path):
    from cnnstudio.core.io.atomic import atomic_folder

    return atomic_folder(path)


# ----------------------------------------------------------------------------- formats


def _write_keras(model, path: Path, context: ExportContext) -> None:
    from cnnstudio.core.io.atomic import keras_archive_problem

    shutil.copyfile(context.model_file, path)
    problem = keras_archive_problem(path)  # a copy cut short by a full disk (sendfile says nothing)
    if problem:
        raise ExportError(f"{path}: the copy is incomplete ({problem})")


def _load_keras(path: Path):
    from cnnstudio.core.tf import keras
    from cnnstudio.core.tf.seeding import load_model

    k = keras()
    try:
        model = load_model(path)
    except Exception as exc:
        raise ExportError(f"the exported Keras file does not reload ({_one_line(exc)})") from exc
    return (lambda x: model(x.astype(np.float32), training=False)), f"Keras {k.__version__} (safe mode)"


def _write_savedmodel(model, folder: Path, size: int) -> None:
    """A SavedModel whose ``serving_default`` signature takes ``image`` float32 (n, size, size, 3)."""
    from cnnstudio.core.tf import tf

    t = tf()
    spec = t.TensorSpec((None, size, size, 3), t.float32, name=INPUT_NAME)
    try:
        model.export(str(folder), format="tf_saved_model", verbose=False, input_signature=[spec])
    except Exception as exc:
        if disk_failure(folder, exc) is not None:
            raise  # a full or read-only disk: named by the atomic write that holds ``folder``
        raise ExportError(f"cannot write a SavedModel ({_one_line(exc)})") from exc


def _load_savedmodel(folder: Path):
    from cnnstudio.core.tf import tf

    t = tf()
    try:
        loaded = t.saved_model.load(str(folder))
        serve = loaded.signatures["serving_default"]
        (name,) = serve.structured_input_signature[1].keys()
    except Exception as exc:
        raise ExportError(f"the exported SavedModel does not reload ({_one_line(exc)})") from exc

    def predict(x):
        (y,) = serve(**{name: t.constant(x, dtype=t.float32)}).values()
        return y.numpy()

    return predict, f"TensorFlow {t.__version__} tf.saved_model.load, serving_default signature"


def _tflite_bytes(model, size: int, fmt: str, representative: np.ndarray | None) -> tuple[bytes, str | None]:
    """Convert with TensorFlow's TFLite converter, from a SavedModel of the model (TF 2.21 still ships it)."""
    from cnnstudio.core.tf import tf

    t = tf()

    def converter(saved):
        c = t.lite.TFLiteConverter.from_saved_model(saved)
        if fmt == "tflite-fp16":
            c.optimizations = [t.lite.Optimize.DEFAULT]
            c.target_spec.supported_types = [t.float16]
        elif fmt == "tflite-int8":
            c.optimizations = [t.lite.Optimize.DEFAULT]

            def dataset():
                for image in representative:
                    yield [image[None].astype(np.float32)]

            c.representative_dataset = dataset
            c.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8]
            c.inference_input_type = t.float32
            c.inference_output_type = t.float32
        return c

    with tempfile.TemporaryDirectory(prefix="cnnstudio-export-") as saved:
        try:
            _write_savedmodel(model, Path(saved), size)
        except Exception as exc:  # the converter's SavedModel goes to the temporary folder
            failure = disk_failure(Path(saved).parent, exc)
            if failure is None:
                raise
            raise failure from exc
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                return converter(saved).convert(), None
            except Exception as exc:
                if fmt != "tflite-int8":
                    raise ExportError(f"the TFLite converter failed ({_one_line(exc)})") from exc
                first = _one_line(exc)
            # An op with no int8 kernel: keep it in float32, quantise the rest.
            c = converter(saved)
            c.target_spec.supported_ops = [t.lite.OpsSet.TFLITE_BUILTINS_INT8, t.lite.OpsSet.TFLITE_BUILTINS]
            try:
                return c.convert(), f"int8: some ops have no int8 kernel and stay float32 ({first})"
            except Exception as exc:
                raise ExportError(f"the TFLite converter failed ({_one_line(exc)})") from exc


def _tflite_interpreter(blob: bytes):
    """LiteRT's interpreter (package ai-edge-litert) when installed, else TensorFlow's deprecated tf.lite one."""
    try:
        from ai_edge_litert import interpreter as litert

        try:
            label = f"LiteRT {version('ai-edge-litert')} interpreter"
        except Exception:
            label = "LiteRT interpreter"
        return litert.Interpreter(model_content=blob), label
    except ImportError:
        from cnnstudio.core.tf import tf

        t = tf()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "tf.lite.Interpreter is deprecated ... use LiteRT"
            return t.lite.Interpreter(model_content=blob), f"TensorFlow {t.__version__} tf.lite interpreter"


def _load_tflite(path: Path):
    try:
        interpreter, runtime = _tflite_interpreter(path.read_bytes())
        (inp,) = interpreter.get_input_details()
        (outp,) = interpreter.get_output_details()
    except Exception as exc:
        raise ExportError(f"the exported TFLite file does not load ({_one_line(exc)})") from exc

    def predict(x):
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], _quantise(x.astype(np.float32), inp))
        interpreter.invoke()
        return _dequantise(interpreter.get_tensor(outp["index"]), outp)

    return predict, runtime


def _quantise(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(detail["dtype"])


def _dequantise(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y
    scale, zero = detail["quantization"]
    return (y.astype(np.float32) - zero) * scale


def _onnx_modules():
    """tf2onnx and onnxruntime, or an :class:`ExportError` saying how to get them."""
    try:
        import onnxruntime
        import tf2onnx
        import tf2onnx.convert  # loaded lazily by the package: a one-folder build may lack it
    except ImportError as exc:
        if exc.name and "." in exc.name:  # the package is there, one of its modules is not (a one-folder build)
            raise ExportError(f"onnx export needs {exc.name}, which this build of CNN Studio lacks although "
                              f"{exc.name.split('.')[0]} is there; rebuild it with packaging/cnnstudio.spec") from exc
        raise ExportError(f"onnx export needs the tf2onnx and onnxruntime packages ({exc.name} is not "
                          "installed): pip install tf2onnx onnxruntime") from exc
    return tf2onnx, onnxruntime


def _onnx_bytes(model, size: int) -> tuple[bytes, str]:
    from cnnstudio.core.tf import tf

    tf2onnx, _ = _onnx_modules()
    t = tf()
    spec = (t.TensorSpec((None, size, size, 3), t.float32, name=INPUT_NAME),)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            proto, _ = tf2onnx.convert.from_keras(model, input_signature=spec, opset=ONNX_OPSET)
    except Exception as exc:
        raise ExportError(f"tf2onnx {tf2onnx.__version__} cannot convert this model with TensorFlow "
                          f"{t.__version__} ({_one_line(exc)})") from exc
    return proto.SerializeToString(), f"tf2onnx {tf2onnx.__version__}"


def _load_onnx(path: Path):
    _, ort = _onnx_modules()
    try:
        session = ort.InferenceSession(path.read_bytes(), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
    except Exception as exc:
        raise ExportError(f"the exported ONNX file does not load in onnxruntime ({_one_line(exc)})") from exc
    return (lambda x: session.run(None, {name: x.astype(np.float32)})[0]), f"onnxruntime {ort.__version__} (CPU)"


def _tflite_writer(fmt: str):
    def write(model, path: Path, context: ExportContext) -> str | None:
        representative = context.representative() if fmt == "tflite-int8" else None
        blob, note = _tflite_bytes(model, context.input_size, fmt, representative)
        path.write_bytes(blob)
        if fmt == "tflite-int8":
            calibrated = (f"int8: weights and activations int8, calibrated on {len(representative)} training "
                          "images; input and output stay float32")
            return f"{calibrated}; {note}" if note else calibrated
        return note

    return write


def _write_savedmodel_format(model, folder: Path, context: ExportContext) -> None:
    _write_savedmodel(model, folder, context.input_size)


def _write_onnx(model, path: Path, context: ExportContext) -> str:
    blob, converter = _onnx_bytes(model, context.input_size)
    path.write_bytes(blob)
    return f"converted by {converter}, opset {ONNX_OPSET}"


# The built-in formats, registered by the built-in plugin like any plugin's exporter.
BUILTIN_EXPORTERS: dict[str, ExporterProvider] = {
    e.id: e
    for e in (
        ExporterProvider("keras", "Keras model file", _write_keras, _load_keras, suffix=".keras",
                         description="the .keras file itself"),
        ExporterProvider("savedmodel", "TensorFlow SavedModel", _write_savedmodel_format, _load_savedmodel,
                         folder=True, description="a SavedModel folder (TF Serving)"),
        ExporterProvider("tflite", "TFLite (float32)", _tflite_writer("tflite"), _load_tflite, suffix=".tflite",
                         description="float32"),
        ExporterProvider("tflite-fp16", "TFLite (float16 weights)", _tflite_writer("tflite-fp16"), _load_tflite,
                         suffix=".tflite", quantised=True, description="float16 weights"),
        ExporterProvider("tflite-int8", "TFLite (int8)", _tflite_writer("tflite-int8"), _load_tflite,
                         suffix=".tflite", quantised=True,
                         description="int8 inside, float32 input and output"),
        ExporterProvider("onnx", "ONNX", _write_onnx, _load_onnx, suffix=".onnx",
                         prepare=_onnx_modules, description="via tf2onnx", modules=ONNX_MODULES),
    )
}
FORMATS = tuple(BUILTIN_EXPORTERS)


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
