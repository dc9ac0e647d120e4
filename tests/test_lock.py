"""One owner at a time for a run folder or a search folder: a second is refused in one line
naming the holder, a lock left by a killed process is taken over, and no record is mixed."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from coretrain import tiny_spec
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.cli import main
from cnnstudio.core.data.dataset import make_split, scan_dataset
from cnnstudio.core.experiments.search import Search, SearchSpace
from cnnstudio.core.io.lock import FolderBusy, hold_folder
from cnnstudio.core.training.config import TrainConfig

HOLD = ("import sys, time\n"
        "from cnnstudio.core.io.lock import hold_folder\n"
        "with hold_folder(sys.argv[1], sys.argv[2]):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n")


@pytest.fixture
def holder():
    """Start a process that holds a folder; yields a function (folder, doing) -> Popen."""
    procs = []

    def start(folder, doing="trained"):
        proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder), doing], stdout=subprocess.PIPE, text=True)
        procs.append(proc)
        assert proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def test_a_held_run_folder_refuses_a_second_training_naming_the_holder_then_a_killed_holder_is_taken_over(
        holder, tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=8, size=16)
    out = tmp_path / "run"
    proc = holder(out)
    since = time.strftime("%H:%M")
    with pytest.raises(FolderBusy) as refused:
        with hold_folder(out):
            pass
    assert str(refused.value) in {
        f"{out}: being trained by process {proc.pid} since {when}; wait until it ends or choose another folder"
        for when in (since, time.strftime("%H:%M"))}

    args = ["train", str(data), "--out", str(out), "--epochs", "1", "--image-size", "16", "--model", "scratch"]
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"cnnstudio train: error: {out}: being trained by process {proc.pid} since ")
    assert "\n" not in err and not (out / "config.json").exists()

    proc.send_signal(signal.SIGKILL)  # killed while holding: the operating system lets go
    proc.wait()
    assert main(args) == 0
    assert (out / "metrics.json").exists()


def test_a_search_folder_held_by_another_job_is_refused_before_anything_is_written(tmp_path):
    index = scan_dataset(make_dataset(tmp_path / "data", per_class=8, size=16))
    out = tmp_path / "search"
    search = Search(index, make_split(index, 0.25, 0.2, seed=0), tiny_spec(16),
                    TrainConfig(epochs=1, batch_size=8, patience=0, seed=1),
                    SearchSpace.from_dict({"train.learning_rate": {"choices": [0.01, 0.001]}}), out, load_registry(),
                    trials=1)
    with hold_folder(out, "searched"):
        with pytest.raises(FolderBusy, match=r"search: being searched by another job of this process since "):
            search.run()
    assert sorted(p.name for p in out.iterdir()) == [".cnnstudio-lock"]  # no search.json, no trials


def test_two_trainings_started_at_once_on_one_folder_leave_one_whole_run(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=8, size=16)
    out = tmp_path / "run"
    procs = [subprocess.Popen([sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out),
                               "--epochs", "3", "--image-size", "16", "--model", "scratch", "--seed", str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (11, 22)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1]
    (winner,) = [seed for seed, (code, _) in zip((11, 22), results) if code == 0]
    (said,) = [err.strip().splitlines()[-1] for code, err in results if code == 1]
    assert said.startswith(f"cnnstudio train: error: {out}")
    assert "being trained by process" in said or "already holds a run" in said
    config = json.loads((out / "config.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    history = (out / "history.csv").read_text().splitlines()
    assert config["train"]["seed"] == winner and metrics["epochs_run"] == 3 and len(history) == 4


def test_two_searches_started_at_once_on_one_folder_leave_one_whole_search(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=8, size=16)
    out = tmp_path / "search"
    procs = [subprocess.Popen([sys.executable, "-m", "cnnstudio", "tune", str(data), "--out", str(out),
                               "--trials", "2", "--epochs", "1", "--image-size", "16", "--model", "scratch",
                               "--seed", str(seed)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for seed in (11, 22)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    assert sorted(code for code, _ in results) == [0, 1], results
    (winner,) = [seed for seed, (code, _) in zip((11, 22), results) if code == 0]
    (refusal,) = [err for code, err in results if code == 1]
    said = refusal.strip().splitlines()[-1]
    assert said.startswith(f"cnnstudio tune: error: {out}") and "being searched by process" in said
    assert "Traceback" not in refusal
    assert json.loads((out / "search.json").read_text())["settings"]["seed"] == winner
    trials = json.loads((out / "trials.json").read_text())["trials"]
    assert [(t["number"], t["status"]) for t in trials] == [(0, "complete"), (1, "complete")]
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == ["trial-001", "trial-002"]
    for folder in folders:
        config = json.loads((out / "trials" / folder / "config.json").read_text())
        assert config["train"]["epochs"] == 1
        assert json.loads((out / "trials" / folder / "metrics.json").read_text())["epochs_run"] == 1
