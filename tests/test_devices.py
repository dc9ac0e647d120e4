"""Training on several devices of one machine (``--devices``), in mixed precision, with XLA.

Logical devices must be made before TensorFlow starts, so the trainings on two devices run in
a subprocess through the command line, the CPU split into two logical devices.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import zipfile

import pytest
from coretrain import train
from tinydata import history_losses as _losses
from tinydata import make_dataset, wait_for_epochs
from tinydata import train_error_lines as _error_lines

from cnnstudio.cli import main
from cnnstudio.core.training.devices import DeviceError, parse_devices

# Two devices against one, the same global batches in the same seeded order: the same losses
# but for the order in which the replicas' gradients are summed (measured: relative differences
# of at most 1.2e-7 over 3 epochs, an interrupted and resumed run included; 0 with bottleneck features
# and fine-tuning). The bound leaves room for other machines' float rounding.
LOSS_TOLERANCE = 1e-5

BLOCKS = json.dumps([{"type": "conv", "filters": 8, "convs": 1, "kernel": 3, "batch_norm": False,
                      "pooling": "max", "dropout": 0.0}])
# 3 classes of 10 at 0.2/0.2: 18 training images, 3 whole global batches of 6 (3 per replica).
TRAIN = ["--model", "scratch", "--param", f"blocks={BLOCKS}", "--image-size", "16", "--batch-size", "6",
         "--seed", "1", "--val-split", "0.2", "--test-split", "0.2", "--patience", "0"]


def _cli(*args, timeout=300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TF_CONFIG"}
    return subprocess.run([sys.executable, "-m", "cnnstudio", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)




@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("devices") / "data", per_class=10, size=16)


def _interrupted(data, out, *extra) -> tuple[int, subprocess.CompletedProcess]:
    """A training stopped with Ctrl-C once 2 epochs are saved: (epochs saved, its result)."""
    proc = subprocess.Popen(  # with Python's own Ctrl-C handler, as a terminal gives it
        [sys.executable, "-c", "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "sys.argv = ['cnnstudio', *sys.argv[1:]]; runpy.run_module('cnnstudio', run_name='__main__')",
         "train", str(data), "--out", str(out), *TRAIN, *extra, "--epochs", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_epochs(out, proc, 2, timeout=240)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    return json.loads((out / "checkpoints" / "state.json").read_text())["epochs_done"], subprocess.CompletedProcess(proc.args, proc.returncode,
                                                                                   stdout, stderr)


@pytest.fixture(scope="module")
def two_devices(data, tmp_path_factory):
    """A run on the CPU split into 2 devices, stopped with Ctrl-C after 2 or more epochs and
    resumed for one more, and the same run on one device."""
    root = tmp_path_factory.mktemp("runs")
    two, one = root / "two", root / "one"
    done, first = _interrupted(data, two, "--devices", "2")
    assert first.returncode == 130, first.stderr[-3000:]
    resumed = _cli("train", "--resume", "--out", str(two), "--epochs", str(done + 1))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    alone = _cli("train", str(data), "--out", str(one), *TRAIN, "--devices", "1", "--epochs", str(done + 1))
    assert alone.returncode == 0, alone.stderr[-3000:]
    return two, one, first, resumed, done


@pytest.mark.slow
def test_two_devices_record_two_replicas_and_train_with_one_devices_losses(two_devices):
    two, one, first, _, done = two_devices
    config = json.loads((two / "config.json").read_text())
    metrics = json.loads((two / "metrics.json").read_text())
    for record in (config["compute"], metrics["compute"]):
        assert record["strategy"] == "MirroredStrategy" and record["replicas"] == 2
        assert record["devices"] == ["CPU:0", "CPU:1"]
    assert "2 CPU devices (CPU:0, CPU:1), MirroredStrategy" in metrics["device"]
    assert "Training on 2 CPU devices" in first.stdout + first.stderr
    assert json.loads((one / "metrics.json").read_text())["compute"]["replicas"] == 1
    assert main(["report", str(two)]) == 0
    report = (two / "report.html").read_text()
    assert "MirroredStrategy" in report and "CPU:0, CPU:1" in report
    a, b = _losses(two), _losses(one)
    assert len(a) == len(b) == done + 1
    for x, y in zip(a, b):
        assert abs(x - y) <= LOSS_TOLERANCE * abs(y), (a, b)


@pytest.mark.slow
def test_a_run_on_two_devices_stops_on_ctrl_c_resumes_on_them_and_its_bundle_is_a_plain_model(two_devices, data):
    two, _, first, resumed, done = two_devices
    assert f"Stopped after {done} epoch" in first.stdout and "Traceback" not in first.stderr
    assert f"resuming from epoch {done + 1}" in resumed.stdout + resumed.stderr
    assert [int(r["epoch"]) for r in csv.DictReader(open(two / "history.csv", newline=""))] == list(range(1, done + 2))
    metrics = json.loads((two / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["compute"]["replicas"] == 2  # the run's own devices
    # The bundle predicts in a process that splits nothing, on TensorFlow's default device.
    image = next((data / "red").iterdir())
    predicted = _cli("predict", str(two / "model"), str(image), "--json")
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout)[0]["top"][0]["class"] in ("red", "green", "blue")
    with zipfile.ZipFile(two / "model" / "model.keras") as z:
        text = z.read("config.json").decode()
    assert "Mirrored" not in text and "distribute" not in text.lower()


@pytest.mark.slow
def test_bottleneck_features_and_fine_tuning_on_two_devices_train_as_on_one(data, tmp_path):
    runs = {}
    for devices in ("2", "1"):
        env = {"CNNSTUDIO_CACHE_DIR": str(tmp_path / f"cache{devices}")}  # each computes its features
        out = tmp_path / f"run{devices}"
        result = subprocess.run(
            [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out), "--model", "vgg16",
             "--weights", "none", "--image-size", "32", "--mode", "finetune", "--bottleneck", "--epochs", "1",
             "--finetune-epochs", "1", "--batch-size", "6", "--val-split", "0.2", "--test-split", "0.2",
             "--devices", devices], capture_output=True, text=True, env={**os.environ, **env}, timeout=300)
        assert result.returncode == 0, result.stderr[-3000:]
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["bottleneck"]["cache"] == "built" and metrics["compute"]["replicas"] == int(devices)
        with open(out / "history.csv", newline="") as f:
            runs[devices] = [(row["phase"], float(row["loss"])) for row in csv.DictReader(f)]
    assert [p for p, _ in runs["2"]] == [p for p, _ in runs["1"]] == ["head", "finetune"]
    for (_, x), (_, y) in zip(runs["2"], runs["1"]):  # the features of every image once, the same batches
        assert abs(x - y) <= LOSS_TOLERANCE * abs(y), runs


@pytest.mark.slow
def test_a_batch_that_does_not_split_over_the_devices_is_one_line(data, tmp_path):
    args = [a if a != "6" else "5" for a in TRAIN]
    result = _cli("train", str(data), "--out", str(tmp_path / "run"), *args, "--devices", "2", "--epochs", "1")
    assert result.returncode == 1
    (line,) = _error_lines(result.stderr)
    assert "--batch-size 5 does not split over the 2 devices; use a multiple of 2" in line
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("value, reason", [
    ("x", "not a device choice; expected auto, cpu"),
    ("0", "a number of devices must be at least 1"),
    ("0,0", "a GPU is listed twice"),
    ("-1", "not a device choice"),
])
def test_a_bad_devices_value_is_one_line_naming_it_and_why(value, reason):
    with pytest.raises(DeviceError) as caught:
        parse_devices(value)
    assert str(caught.value).startswith(f"devices {value!r}: ") and reason in str(caught.value)


def test_the_command_line_names_a_bad_devices_value_in_one_line(data, tmp_path, capsys):
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--devices", "two"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "devices 'two': not a device choice" in line and "0,2" in line
    assert not (tmp_path / "run" / "config.json").exists()


def test_splitting_the_cpu_after_tensorflow_started_is_one_line(data, tmp_path, capsys):
    from cnnstudio.core.tf import tf

    T = tf()  # started in this process, as in the window
    if T.config.list_physical_devices("GPU") or len(T.config.list_logical_devices("CPU")) > 1:
        pytest.skip("--devices 2 needs no split here: the machine has a GPU or the CPU is split already")
    assert main(["train", str(data), "--out", str(tmp_path / "run"), *TRAIN, "--devices", "2", "--epochs", "1"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "devices '2': this machine has no GPU, and its CPU can be split into 2 devices only before " \
           "TensorFlow starts" in line


def test_devices_with_a_cluster_are_one_line(data, tmp_path, capsys):
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--devices", "2",
                 "--cluster", str(tmp_path / "cluster.json")]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--devices 2: a cluster trains on every GPU of each machine" in line


def test_gpus_asked_of_a_machine_without_them_are_one_line(data, tmp_path, capsys):
    from cnnstudio.core.tf import tf

    if tf().config.list_physical_devices("GPU"):
        pytest.skip("this machine has a GPU: the test asks for GPUs of a machine without any")
    assert main(["train", str(data), "--out", str(tmp_path / "run"), "--devices", "0,2", "--epochs", "1"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "devices '0,2': this machine has no GPU" in line


def test_precision_and_jit_are_recorded_and_the_output_stays_float32(data, tmp_path):
    import numpy as np

    from cnnstudio.core.tf import keras

    run = tmp_path / "mixed"
    result = train(data, run, epochs=1, precision="mixed", jit="off")
    assert result.reason == "completed"
    config = json.loads((run / "config.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    assert config["train"]["precision"] == "mixed" and config["train"]["jit"] == "off"
    assert config["compute"]["precision"] == metrics["compute"]["precision"] == "mixed_float16"
    assert metrics["compute"]["jit"] is False
    assert keras().mixed_precision.global_policy().name == "float32"  # the process's policy is put back
    # The bundle computes in float32: the same predictions on a machine without float16 arithmetic.
    model = keras().models.load_model(run / "model" / "model.keras", compile=False)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    probabilities = np.asarray(model(np.zeros((1, 16, 16, 3), "float32")))
    assert probabilities.dtype == np.float32 and abs(float(probabilities.sum()) - 1) < 1e-5

    # Resumed where "auto" or another choice means float32, it goes on in the precision it trained in.
    again = train(data, run, epochs=2, precision="float32", resume=True)
    assert again.reason == "completed" and again.epochs_run == 2
    assert json.loads((run / "metrics.json").read_text())["compute"]["precision"] == "mixed_float16"

    plain = tmp_path / "plain"
    train(data, plain, epochs=1, precision="float32", jit="on")
    metrics = json.loads((plain / "metrics.json").read_text())
    assert metrics["compute"]["precision"] == "float32" and metrics["compute"]["jit"] is True
    assert metrics["compute"]["asked"] == {"devices": "auto", "precision": "float32", "jit": "on"}


@pytest.mark.slow
def test_a_resume_keeps_the_runs_precision_and_says_so_in_one_line(two_devices, capsys):
    two = two_devices[0]
    assert main(["train", "--resume", "--out", str(two), "--precision", "mixed"]) == 1
    (line,) = _error_lines(capsys.readouterr().err)
    assert "--precision mixed: the run trains in precision auto; a resume keeps it" in line
