"""Training one run on several machines: two worker processes on loopback ports, as two machines."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tinydata import history_losses as _losses
from tinydata import make_dataset, wait_for_epochs
from tinydata import train_error_lines as _error_lines

from cnnstudio.core.training.cluster import ClusterError, read_cluster

# Two workers against one: the same global batches, the same seeded order, so the same losses
# but for the order in which the gradients of the replicas are summed (measured: relative
# differences of 1e-8 to 3e-8 over 3 epochs).
LOSS_TOLERANCE = 1e-6

TRAIN = ["--model", "keras-small-convnet", "--image-size", "16", "--batch-size", "6", "--seed", "1"]


def _ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _cluster_files(folder: Path, n: int) -> list[Path]:
    addresses = [f"127.0.0.1:{p}" for p in _ports(n)]
    files = []
    for i in range(n):
        path = folder / f"worker{i}.json"
        path.write_text(json.dumps({"cluster": {"worker": addresses}, "task": {"type": "worker", "index": i}}))
        files.append(path)
    return files


def _start(data: Path, out: Path, cluster: Path, *extra, tmp: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    if tmp is not None:
        env["TMPDIR"] = str(tmp)
    return subprocess.Popen(
        [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out), *TRAIN, "--cluster", str(cluster),
         *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _finish(procs, timeout=240) -> list[tuple[int, str, str]]:
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=timeout)
        results.append((proc.returncode, out, err))
    return results




@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # 3 classes of 20: 42 training images, 7 whole batches of 6.
    return make_dataset(tmp_path_factory.mktemp("cluster") / "data", per_class=20, size=16)


# ------------------------------------------------------------------------------------ the file


@pytest.mark.parametrize("text, reason", [
    ("{", "not valid JSON (line 1"),
    ('{"task": {"type": "worker", "index": 0}}', 'expected {"cluster"'),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:2"]}, "task": {"type": "worker"}}', "job 'ps' is not supported"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "listed twice"),
    ('{"cluster": {"worker": ["nohost"]}, "task": {"type": "worker", "index": 0}}', "'nohost' is not a host:port"),
    ('{"cluster": {"worker": ["a:1", "b:2"]}, "task": {"type": "worker", "index": 2}}',
     "task.index 2 is not one of the 2 worker address(es)"),
    ('{"cluster": {"worker": ["a:1"]}}', "task must be"),
])
def test_a_bad_cluster_file_is_one_line_naming_it(tmp_path, text, reason):
    path = tmp_path / "cluster.json"
    path.write_text(text)
    with pytest.raises(ClusterError) as caught:
        read_cluster(path, environ={})
    assert str(caught.value).startswith(f"{path}: ") and reason in str(caught.value)
    assert "\n" not in str(caught.value)


def test_tf_config_in_the_environment_names_the_chief_and_the_workers(tmp_path):
    config = {"cluster": {"chief": ["h0:2222"], "worker": ["h1:2222", "h2:2222"]}, "task": {"type": "worker", "index": 1}}
    cluster = read_cluster(None, environ={"TF_CONFIG": json.dumps(config)})
    assert cluster.size == 3 and cluster.rank == 2 and not cluster.is_chief
    assert cluster.name() == "worker 1 (h2:2222)" and cluster.name(0) == "the chief (h0:2222)"
    assert read_cluster(None, environ={}) is None
    with pytest.raises(ClusterError, match="no such file"):
        read_cluster(tmp_path / "missing.json", environ={})


# ------------------------------------------------------------------------------------ training


@pytest.mark.slow
def test_two_workers_train_one_run_that_the_chief_writes_with_one_workers_losses(data, tmp_path):
    chief_tmp, worker_tmp = tmp_path / "tmp0", tmp_path / "tmp1"
    chief_tmp.mkdir()
    worker_tmp.mkdir()
    files = _cluster_files(tmp_path, 2)
    out = tmp_path / "run"
    procs = [_start(data, out, files[0], "--epochs", "3", tmp=chief_tmp),
             _start(data, out, files[1], "--epochs", "3", tmp=worker_tmp)]
    (code0, out0, err0), (code1, out1, err1) = _finish(procs)
    assert code0 == 0, err0[-3000:]
    assert code1 == 0, err1[-3000:]
    assert f"Run saved in {out}" in out0
    assert f"the chief saves the run in {out}" in out1 and "worker 1 (127.0.0.1:" in out1
    config = json.loads((out / "config.json").read_text())
    assert config["cluster"]["workers"] == 2 and config["cluster"]["replicas"] == 2
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["cluster"]["workers"] == 2
    assert metrics["skipped_files"] == 0  # a worker's share is not taken for unreadable files
    assert (out / "model" / "model.keras").is_file()
    assert list(worker_tmp.iterdir()) == []  # the worker's private folder is gone: it kept nothing

    solo = _cluster_files(tmp_path / "solo", 1) if (tmp_path / "solo").mkdir() is None else None
    alone = tmp_path / "alone"
    ((code, _, err),) = _finish([_start(data, alone, solo[0], "--epochs", "3")])
    assert code == 0, err[-3000:]
    two, one = _losses(out), _losses(alone)
    assert len(two) == len(one) == 3
    for a, b in zip(two, one):
        assert abs(a - b) <= LOSS_TOLERANCE * abs(b), (two, one)

    # The bundle is a plain model: it predicts in a process that knows nothing of the cluster.
    image = next((data / "red").iterdir())
    predicted = subprocess.run([sys.executable, "-m", "cnnstudio", "predict", str(out / "model"), str(image), "--json"],
                               capture_output=True, text=True, env={k: v for k, v in os.environ.items()
                                                                    if k != "TF_CONFIG"})
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    assert json.loads(predicted.stdout)[0]["top"][0]["class"] in ("red", "green", "blue")


@pytest.mark.slow
def test_a_worker_with_other_files_is_named_and_every_worker_stops(data, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(data, other)
    victim = next((other / "green").iterdir())
    victim.write_bytes(next((other / "red").iterdir()).read_bytes())  # same name, other content
    files = _cluster_files(tmp_path, 2)
    out = tmp_path / "run"
    procs = [_start(data, out, files[0], "--epochs", "1"), _start(other, out, files[1], "--epochs", "1")]
    results = _finish(procs)
    for code, _out, err in results:
        assert code == 1, err[-3000:]
        (line,) = _error_lines(err)
        assert "the dataset on worker 1 (127.0.0.1:" in line and "differs from the chief's" in line
        assert "other contents or classes" in line and "Traceback" not in err
    assert not (out / "history.csv").exists() or _losses(out) == []


@pytest.mark.slow
def test_a_killed_worker_ends_the_run_with_one_line_and_resume_goes_on_from_the_chiefs_checkpoint(data, tmp_path):
    files = _cluster_files(tmp_path, 2)
    out = tmp_path / "run"
    chief = _start(data, out, files[0], "--epochs", "40")
    worker = _start(data, out, files[1], "--epochs", "40")
    wait_for_epochs(out, chief, 2, timeout=180)
    worker.send_signal(signal.SIGKILL)
    ((code, _out, err),) = _finish([chief])
    worker.wait()
    assert code == 1, err[-3000:]
    (line,) = _error_lines(err)
    assert "the cluster lost worker 1 (127.0.0.1:" in line or "the cluster lost another worker" in line
    assert "--resume on every machine" in line and "Traceback" not in err
    done = json.loads((out / "checkpoints" / "state.json").read_text())["epochs_done"]
    assert 2 <= done < 40

    files = _cluster_files(tmp_path / "again", 2) if (tmp_path / "again").mkdir() is None else None
    procs = [_start(data, out, files[0], "--resume", "--epochs", str(done + 2)),
             _start(data, out, files[1], "--resume", "--epochs", str(done + 2))]
    (code0, out0, err0), (code1, _out1, err1) = _finish(procs)
    assert code0 == 0, err0[-3000:]
    assert code1 == 0, err1[-3000:]
    assert f"resuming from epoch {done + 1}" in err0 + out0
    history = [int(row["epoch"]) for row in csv.DictReader(open(out / "history.csv", newline=""))]
    assert history == list(range(1, done + 3))  # every epoch once: none lost, none trained twice


@pytest.mark.slow
def test_ctrl_c_on_the_chief_stops_every_worker_after_the_same_epoch(data, tmp_path):
    files = _cluster_files(tmp_path, 2)
    out = tmp_path / "run"
    worker = _start(data, out, files[1], "--epochs", "200")
    env = dict(os.environ)
    chief = subprocess.Popen(  # with Python's own Ctrl-C handler, as a terminal gives it
        [sys.executable, "-c", "import signal, sys, runpy; signal.signal(signal.SIGINT, signal.default_int_handler); "
         "sys.argv = ['cnnstudio', *sys.argv[1:]]; runpy.run_module('cnnstudio', run_name='__main__')",
         "train", str(data), "--out", str(out), *TRAIN, "--cluster", str(files[0]), "--epochs", "200"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    wait_for_epochs(out, chief, 2, timeout=180)
    chief.send_signal(signal.SIGINT)
    (code0, out0, err0), (code1, out1, err1) = _finish([chief, worker])
    assert code0 == 130 and code1 == 130, (err0[-2000:], err1[-2000:])
    done = json.loads((out / "checkpoints" / "state.json").read_text())["epochs_done"]
    assert f"Stopped after {done} epoch" in out0 and "--cluster FILE` on every machine" in out0
    assert f"Trained {done} epoch(s) as worker 1" in out1  # the same epochs: the stop reached it
    assert json.loads((out / "metrics.json").read_text())["status"] == "cancelled"
