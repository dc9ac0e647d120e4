"""Exports: every format reloads in its own runtime and agrees with the run's Keras model."""

import dataclasses
import json
import shutil
import sys

import numpy as np
import pytest
from coretrain import train
from taskstates import Recording
from tinydata import make_dataset, truncate

from cnnstudio.builtins import export as export_module
from cnnstudio.builtins.export import FORMATS, ExportError, export_run
from cnnstudio.cli import build_parser, main
from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.io.images import load_array
from cnnstudio.core.model.bundle import Bundle

FLOAT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export")
    data = make_dataset(root / "data", per_class=12)
    train(data, root / "run", epochs=4)
    return root / "run"


@pytest.fixture(scope="module")
def test_inputs(run):
    """The run's test images and the bundle's own probabilities for them."""
    config = read_json(run / "config.json")
    bundle = Bundle(run / "model")
    images = np.stack([load_array(f"{config['dataset']['root']}/{p}", bundle.input_size)
                       for p in config["split"]["test"]]).astype(np.float32)
    return images, bundle.predict_arrays(images)


def _reload_and_predict(fmt, path, images):
    """An independent reload of the export, as its user would do it."""
    if fmt == "keras":
        from cnnstudio.core.tf import keras

        return np.asarray(keras().saving.load_model(path, safe_mode=True)(images))
    if fmt == "savedmodel":
        import tensorflow as tf

        serve = tf.saved_model.load(str(path)).signatures["serving_default"]
        assert list(serve.structured_input_signature[1]) == ["image"]
        return next(iter(serve(image=tf.constant(images)).values())).numpy()
    if fmt.startswith("tflite"):
        interpreter = _interpreter(path)
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        assert inp["dtype"] == np.float32 and out["dtype"] == np.float32
        interpreter.resize_tensor_input(inp["index"], list(images.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], images)
        interpreter.invoke()
        return interpreter.get_tensor(out["index"])
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def _interpreter(path):
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        import tensorflow as tf

        Interpreter = tf.lite.Interpreter
    return Interpreter(model_path=str(path))


def _onnx_available() -> bool:
    try:
        import onnxruntime  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError:
        return False
    return True


def _out(tmp_path, fmt):
    return tmp_path / {"keras": "m.keras", "savedmodel": "saved", "onnx": "m.onnx"}.get(fmt, "m.tflite")


@pytest.mark.parametrize("fmt", ["keras", "savedmodel", "tflite"])
def test_float_formats_reload_and_agree_exactly(run, test_inputs, tmp_path, fmt):
    images, reference = test_inputs
    report = export_run(run, fmt, _out(tmp_path, fmt))
    assert report.path == str(_out(tmp_path, fmt)) and report.size_bytes > 0
    assert report.test_images == len(images) and report.skipped == []
    assert report.top1_agreement == 1.0 and report.max_prob_diff < FLOAT_TOLERANCE
    assert report.accuracy_export == report.accuracy_source and not report.quantised
    probs = _reload_and_predict(fmt, report.path, images)
    assert np.array_equal(probs.argmax(1), reference.argmax(1))
    assert np.abs(probs - reference).max() < FLOAT_TOLERANCE
    assert "accuracy" not in report.summary()
    # Nothing but the export is left beside it (no temp files or folders).
    assert [p.name for p in tmp_path.iterdir()] == [_out(tmp_path, fmt).name]


def test_fp16_agrees_on_every_top_class(run, test_inputs, tmp_path):
    images, reference = test_inputs
    report = export_run(run, "tflite-fp16", tmp_path / "m.tflite")
    assert report.quantised and report.top1_agreement == 1.0 and report.max_prob_diff < 1e-2
    probs = _reload_and_predict("tflite-fp16", report.path, images)
    assert np.array_equal(probs.argmax(1), reference.argmax(1))
    assert "accuracy" in report.summary()


def test_int8_reports_its_accuracy_change(run, test_inputs, tmp_path):
    images, reference = test_inputs
    report = export_run(run, "tflite-int8", tmp_path / "m.tflite")
    assert report.quantised and report.top1_agreement >= 0.8 and report.max_prob_diff < 0.2
    assert report.accuracy_change == pytest.approx(report.accuracy_export - report.accuracy_source)
    assert any("int8" in note and "float32" in note for note in report.notes)
    summary = report.summary()
    assert f"accuracy {report.accuracy_source:.3f} -> {report.accuracy_export:.3f}" in summary
    probs = _reload_and_predict("tflite-int8", report.path, images)
    assert np.mean(probs.argmax(1) == reference.argmax(1)) == pytest.approx(report.top1_agreement)
    # Quantised inside (float32 only at the input and output).
    dtypes = {d["dtype"] for d in _interpreter(report.path).get_tensor_details()}
    assert np.int8 in dtypes


def test_onnx_exports_or_says_why(run, test_inputs, tmp_path):
    images, reference = test_inputs
    if not _onnx_available():
        with pytest.raises(ExportError, match="tf2onnx"):
            export_run(run, "onnx", tmp_path / "m.onnx")
        return
    report = export_run(run, "onnx", tmp_path / "m.onnx")
    assert report.top1_agreement == 1.0 and report.max_prob_diff < FLOAT_TOLERANCE
    assert report.runtime.startswith("onnxruntime")
    probs = _reload_and_predict("onnx", report.path, images)
    assert np.abs(probs - reference).max() < FLOAT_TOLERANCE


def test_onnx_without_the_converter_fails_with_one_clear_line(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tf2onnx", None)  # import tf2onnx raises ImportError
    with pytest.raises(ExportError) as exc:
        export_run(run, "onnx", tmp_path / "m.onnx")
    assert "pip install tf2onnx onnxruntime" in str(exc.value) and "\n" not in str(exc.value)
    assert not (tmp_path / "m.onnx").exists()


def test_savedmodel_replaces_an_earlier_export(run, tmp_path):
    out = tmp_path / "saved"
    export_run(run, "savedmodel", out)
    report = export_run(run, "savedmodel", out)
    assert (out / "saved_model.pb").exists() and report.top1_agreement == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["saved"]


def test_existing_folder_gets_model_file_inside(run, tmp_path):
    report = export_run(run, "tflite", tmp_path)
    assert report.path == str(tmp_path / "model.tflite")


def test_unreadable_test_images_are_skipped_and_counted(run, tmp_path):
    config = read_json(run / "config.json")
    data = shutil.copytree(config["dataset"]["root"], tmp_path / "moved")
    bad = config["split"]["test"][0]
    truncate(data / bad, keep=0.3)
    report = export_run(run, "keras", tmp_path / "m.keras", data_dir=data)
    assert report.test_images == len(config["split"]["test"]) - 1
    assert [d["path"] for d in report.skipped] == [bad] and report.top1_agreement == 1.0


@pytest.mark.parametrize("fmt, out", [("tflite", "m.tflite"), ("savedmodel", "saved")])
def test_failed_verification_leaves_nothing_behind(run, tmp_path, monkeypatch, fmt, out):
    def broken(path):
        raise ExportError("the export does not load (simulated)")

    exporter = dataclasses.replace(export_module.BUILTIN_EXPORTERS[fmt], load=broken)
    monkeypatch.setitem(export_module.BUILTIN_EXPORTERS, fmt, exporter)
    with pytest.raises(ExportError, match="simulated"):
        export_run(run, fmt, tmp_path / out)
    assert list(tmp_path.iterdir()) == []


def _copy_run(run, dest):
    shutil.copytree(run, dest)
    return dest


@pytest.mark.parametrize(
    "setup, fmt, out, message",
    [
        (lambda run, tmp: tmp / "nope", "tflite", "m.tflite", "no such run folder"),
        (lambda run, tmp: shutil.rmtree(_copy_run(run, tmp / "r") / "model") or tmp / "r", "tflite", "m.tflite",
         "no model bundle"),
        (lambda run, tmp: _without_test_split(_copy_run(run, tmp / "r")), "tflite", "m.tflite", "no test split"),
        (lambda run, tmp: run, "tfjs", "m", "unknown export format"),
        (lambda run, tmp: run, "keras", "m.h5", "must end in .keras"),
        (lambda run, tmp: _foreign_folder(tmp) or run, "savedmodel", "foreign", "holds other files"),
    ],
    ids=["no-run", "no-bundle", "no-test-split", "bad-format", "keras-suffix", "foreign-folder"],
)
def test_bad_input_is_one_clear_error(run, tmp_path, setup, fmt, out, message):
    run_dir = setup(run, tmp_path)
    with pytest.raises(StudioError, match=message) as exc:
        export_run(run_dir, fmt, tmp_path / out)
    assert "\n" not in str(exc.value)


def _without_test_split(run_dir):
    config = read_json(run_dir / "config.json")
    config["split"]["test"] = []
    atomic_write_json(run_dir / "config.json", config)
    return run_dir


def _foreign_folder(tmp):
    (tmp / "foreign").mkdir()
    (tmp / "foreign" / "notes.txt").write_text("mine")


def test_cli_text_and_json(run, tmp_path, capsys):
    assert main(["export", str(run), "--format", "tflite-int8", "--out", str(tmp_path / "q.tflite")]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith(f"tflite-int8: {tmp_path / 'q.tflite'} (") and "top-1 agreement" in line
    assert "max probability difference" in line and "accuracy" in line and "->" in line

    assert main(["export", str(run), "--format", "keras", "--out", str(tmp_path / "k.keras"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["format"] == "keras" and out["top1_agreement"] == 1.0 and out["size_bytes"] > 0


def test_cli_error_is_one_line_and_exit_1(tmp_path, capsys):
    assert main(["export", str(tmp_path / "nope"), "--format", "tflite", "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("cnnstudio export: error:") and "no such run folder" in err and "\n" not in err


def test_every_builtin_format_is_registered_through_the_plugin_hook():
    from cnnstudio.builtins.manager import load_registry

    registry = load_registry()
    assert set(FORMATS) <= set(registry.exporters)
    assert {registry.origin("exporter", f) for f in FORMATS} == {"builtins"}


def test_cli_help_names_every_builtin_format():
    parser = build_parser()
    export = parser._subparsers._group_actions[0].choices["export"]
    (fmt,) = [a for a in export._actions if a.dest == "format"]
    assert all(f in fmt.help for f in FORMATS) and "plugin" in fmt.help


def test_cli_refuses_an_unknown_format_listing_the_known_ones(run, tmp_path, capsys):
    assert main(["export", str(run), "--format", "gif", "--out", str(tmp_path / "m")]) == 1
    err = capsys.readouterr().err
    assert "unknown export format 'gif'" in err and "tflite-int8" in err


def _keras_exporter(**overrides):
    from cnnstudio.core.tf import keras
    from cnnstudio.plugins import ExporterProvider

    def write(model, path, context):
        model.save(path)
        return f"saved at {context.input_size} px for {len(context.class_names)} classes"

    def load(path):
        model = keras().saving.load_model(path, safe_mode=True)
        return (lambda x: np.asarray(model(x))), "a plugin's reloader"

    fields = {"id": "plugin-keras", "display_name": "Plugin Keras", "write": write, "load": load,
              "suffix": ".keras"}
    return ExporterProvider(**{**fields, **overrides})


def test_a_plugin_format_is_written_verified_and_reported(run, tmp_path):
    exporter = _keras_exporter()
    report = export_run(run, "plugin-keras", tmp_path, exporters={exporter.id: exporter})
    assert report.path == str(tmp_path / "model.keras") and (tmp_path / "model.keras").is_file()
    assert report.runtime == "a plugin's reloader" and report.top1_agreement == 1.0
    assert any("for 4 classes" in note or "classes" in note for note in report.notes)


def test_a_plugin_format_that_fails_to_reload_leaves_no_file_and_names_the_format(run, tmp_path):
    def load(path):
        raise RuntimeError("the runtime is not installed")

    exporter = _keras_exporter(load=load)
    with pytest.raises(ExportError, match="export format 'plugin-keras': load failed .*runtime is not installed"):
        export_run(run, "plugin-keras", tmp_path / "m.keras", exporters={exporter.id: exporter})
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("raised, named", [(KeyboardInterrupt, "KeyboardInterrupt"),
                                            (SystemExit(2), "SystemExit: 2")])
def test_a_plugin_format_that_raises_keyboardinterrupt_or_exits_is_named_not_taken_for_a_stop(
        run, tmp_path, raised, named):
    """On the export's thread no Ctrl-C arrives: a KeyboardInterrupt there is the plugin's own, and
    sys.exit() in a plugin must not end the window or the command."""
    def write(model, path, context):
        raise raised

    exporter = _keras_exporter(write=write)
    with pytest.raises(ExportError) as caught:
        export_run(run, "plugin-keras", tmp_path / "m.keras", exporters={exporter.id: exporter})
    assert str(caught.value) == f"export format 'plugin-keras': write failed ({named})"
    assert not list(tmp_path.iterdir())


def test_tflite_without_litert_uses_tensorflows_interpreter(run, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)  # the package is not installed
    report = export_run(run, "tflite", tmp_path / "m.tflite")
    assert "tf.lite interpreter" in report.runtime and report.top1_agreement == 1.0


def test_calibration_temperature_is_noted_and_not_compared(run, tmp_path):
    """The export is the model file; a temperature in bundle.json is applied by the app, not exported."""
    run_dir = _copy_run(run, tmp_path / "r")
    meta = read_json(run_dir / "model" / "bundle.json")
    atomic_write_json(run_dir / "model" / "bundle.json", {**meta, "temperature": 2.0})
    report = export_run(run_dir, "tflite", tmp_path / "m.tflite")
    assert report.top1_agreement == 1.0 and report.max_prob_diff < FLOAT_TOLERANCE
    assert any("temperature 2.0" in note for note in report.notes)


def test_export_reports_each_task_to_its_total_and_hands_the_state_to_the_exporter(run, tmp_path):
    seen = []

    def write(model, path, context):
        seen.append(context.state)
        context.state.on_progress("packing", 1, 1)
        model.save(path)

    exporter = _keras_exporter(write=write)
    state = Recording()
    export_run(run, "plugin-keras", tmp_path / "m.keras", exporters={exporter.id: exporter}, state=state)
    assert seen == [state]
    n = len(read_json(run / "config.json")["split"]["test"])
    assert state.of("loading test images")[-1] == (n, n)
    assert state.of("packing") == [(1, 1)]
    assert state.of("writing plugin-keras") == [(0, 1), (1, 1)]
    assert [t for t, _, _ in state.progress if not t.startswith("loading")] == [
        "writing plugin-keras", "packing", "writing plugin-keras"]


def test_a_stop_while_the_test_images_load_raises_cancelled_and_writes_nothing(run, tmp_path):
    from cnnstudio.core.errors import Cancelled

    def write(model, path, context):
        raise AssertionError("a stopped export must not write")

    exporter = _keras_exporter(write=write)
    state = Recording(stop_after=2, stop_task="loading test images")
    with pytest.raises(Cancelled, match="export stopped while loading the test images"):
        export_run(run, "plugin-keras", tmp_path / "m.keras", exporters={exporter.id: exporter}, state=state)
    n = len(read_json(run / "config.json")["split"]["test"])
    assert state.of("loading test images") == [(0, n), (1, n)] and n > 2  # stopped at the second image
    assert not list(tmp_path.iterdir())


def test_the_int8_writer_reports_its_calibration_images(run, tmp_path):
    state = Recording()
    export_run(run, "tflite-int8", tmp_path / "q.tflite", state=state)
    loaded = state.of("loading calibration images")
    assert loaded and loaded[-1][0] == loaded[-1][1] > 0
