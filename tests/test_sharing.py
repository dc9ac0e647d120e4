"""Searches and cross-validations shared by many processes through one Optuna storage: each trial
(or fold) runs once, by whichever process takes it; the count stops at --trials; a trial whose
process was killed is run again by another; a bad storage URL is one line naming it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from pgserver import find_binaries, postgres_server
from tinydata import make_dataset

from cnnstudio.cli import main
from cnnstudio.core.experiments.storage import StorageError, masked, open_storage

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")

SPACE = {"train.learning_rate": {"choices": [0.03, 0.01, 0.003]}, "blocks.filters.0": {"choices": [4, 8]}}
TRAIN = ["--epochs", "1", "--image-size", "16", "--model", "scratch", "--batch-size", "8"]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), per_class=6, size=16)


@pytest.fixture(scope="module")
def space(tmp_path_factory):
    path = tmp_path_factory.mktemp("space") / "space.json"
    path.write_text(json.dumps(SPACE))
    return path


def tune(data, out, storage, space, trials=4, extra=()):
    return subprocess.Popen(
        [sys.executable, "-m", "cnnstudio", "tune", str(data), "--out", str(out), "--storage", storage,
         "--trials", str(trials), "--space", str(space), "--no-prune", *TRAIN, *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def trial_lines(stdout: str) -> list[int]:
    """The trial numbers (from 1) a process reported as finished."""
    return [int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("trial ")]


def finish(procs, timeout=300):
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=timeout)
        out.append((p.returncode, stdout, stderr))
    return out


def trials_of(storage: str, name="cnnstudio"):
    return optuna.load_study(study_name=name, storage=storage).get_trials()


def assert_shared_once(results, out: Path, storage: str):
    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr and "Warning" not in stderr
    ran = [trial_lines(stdout) for _, stdout, _ in results]
    # No trial was run by both, and together they ran the four (each one's share depends on which
    # started first).
    assert not set(ran[0]) & set(ran[1]) and sorted(ran[0] + ran[1]) == [1, 2, 3, 4]
    trials = trials_of(storage)
    assert [t.state.name for t in trials] == ["COMPLETE"] * 4
    folders = sorted(p.name for p in (out / "trials").iterdir())
    assert folders == ["trial-001", "trial-002", "trial-003", "trial-004"]
    for folder in folders:  # every trial trained once, into its own folder
        assert json.loads((out / "trials" / folder / "metrics.json").read_text())["epochs_run"] == 1
        assert len((out / "trials" / folder / "history.csv").read_text().splitlines()) == 2
    recorded = json.loads((out / "trials.json").read_text())["trials"]
    assert [(t["number"], t["status"]) for t in recorded] == [(n, "complete") for n in range(4)]
    assert json.loads((out / "best.json").read_text())["trial"] in range(4)


def test_two_tune_processes_on_one_sqlite_storage_share_the_trials(data, space, tmp_path):
    out, storage = tmp_path / "search", f"sqlite:///{tmp_path / 'shared.db'}"
    results = finish([tune(data, out, storage, space) for _ in range(2)])
    assert_shared_once(results, out, storage)


@pytest.mark.skipif(find_binaries() is None, reason="no PostgreSQL binaries (initdb, pg_ctl) on PATH or in "
                                                    "/usr/lib/postgresql/*/bin")
def test_two_tune_processes_on_one_postgresql_server_share_the_trials(data, space, tmp_path):
    with postgres_server() as url:
        out = tmp_path / "search"
        results = finish([tune(data, out, url, space) for _ in range(2)])
        assert_shared_once(results, out, url)


def test_a_killed_worker_s_trial_is_run_again_by_the_other(data, space, tmp_path):
    out, storage = tmp_path / "search", f"sqlite:///{tmp_path / 'shared.db'}"
    # Two epochs a trial, so the victim is surely mid-trial when it is killed.
    slow = ["--heartbeat", "1", "--epochs", "2"]
    victim = tune(data, out, storage, space, trials=2, extra=slow)
    for line in victim.stderr:  # its first trial has started
        if line.startswith("Trial "):
            break
    survivor = tune(data, out, storage, space, trials=2, extra=slow)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    ((code, stdout, stderr),) = finish([survivor])
    assert code == 0, stderr[-3000:]
    assert "Traceback" not in stderr
    trials = trials_of(storage)
    states = [t.state.name for t in trials]
    # The killed trial failed, was retried once with its parameters in a trial of its own, and the
    # retry counts in its place: two trials finished, besides the killed one.
    assert states.count("FAIL") == 1 and states.count("COMPLETE") == 2 and len(trials) == 3
    (killed,) = [t for t in trials if t.state.name == "FAIL"]
    (retry,) = [t for t in trials if optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(t) is not None]
    assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == killed.number
    assert retry.params == killed.params and retry.state.name == "COMPLETE"
    assert killed.number + 1 not in trial_lines(stdout) and retry.number + 1 in trial_lines(stdout)
    assert f"runs trial {killed.number + 1} again" in stderr
    recorded = {t["number"]: t for t in json.loads((out / "trials.json").read_text())["trials"]}
    assert recorded[killed.number]["status"] == "failed"
    assert f"run again as trial {retry.number + 1}" in recorded[killed.number]["error"]
    retry_dir = out / "trials" / f"trial-{retry.number + 1:03d}"
    assert json.loads((retry_dir / "metrics.json").read_text())["epochs_run"] == 2  # trained whole, on its own
    assert not (out / "trials" / f"trial-{killed.number + 1:03d}" / "metrics.json").exists()


def test_two_cv_processes_share_the_folds_each_run_once(data, tmp_path):
    out, storage = tmp_path / "cv", f"sqlite:///{tmp_path / 'shared.db'}"
    procs = [subprocess.Popen([sys.executable, "-m", "cnnstudio", "cv", str(data), "--out", str(out),
                               "--storage", storage, "--folds", "3", *TRAIN],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = finish(procs)
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    ran = [[int(line.split()[1].split("/")[0]) for line in stdout.splitlines() if line.startswith("Fold ")]
           for _, stdout, _ in results]
    assert not set(ran[0]) & set(ran[1]) and sorted(ran[0] + ran[1]) == [1, 2, 3]
    record = json.loads((out / "cv.json").read_text())
    assert [f["status"] for f in record["folds"]] == ["completed"] * 3
    assert record["status"] == "completed" and len(record["summary"]["val_accuracy"]["values"]) == 3
    for fold in (1, 2, 3):
        assert json.loads((out / f"fold-{fold}" / "metrics.json").read_text())["epochs_run"] == 1
    for _, stdout, _ in results:  # each process ends with the summary of all three folds
        assert "mean ± std over 3 folds" in stdout


# ----------------------------------------------------------------------------- bad storage


def test_a_password_is_masked_in_what_is_shown():
    assert masked("postgresql://ann:s3cr:et@db.example:5432/studio") == "postgresql://ann:***@db.example:5432/studio"
    assert masked("mysql://ann@db/studio") == "mysql://ann@db/studio"


@pytest.mark.parametrize("url, reason", [
    ("redis://localhost/0", "not a storage URL"),
    ("postgres://ann@localhost/studio", "write postgresql://"),
    ("postgresql://ann:secret@127.0.0.1:1/studio", "127.0.0.1"),  # nothing listens on port 1
])
def test_a_bad_or_unreachable_storage_is_one_line_naming_the_url(url, reason, tmp_path):
    with pytest.raises(StorageError) as caught:
        open_storage(url, tmp_path / "study.db")
    said = str(caught.value)
    assert said.startswith(masked(url) + ": ") and reason in said
    assert "\n" not in said and "secret" not in said


def test_a_missing_driver_is_named_with_the_extra_that_brings_it(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pymysql", None)  # as if PyMySQL were not installed
    with pytest.raises(StorageError, match=r"^mysql://ann:\*\*\*@127\.0\.0\.1/studio: the MySQL driver \(pymysql\) "
                                           r"is not installed; pip install \"cnnstudio\[cluster\]\"$"):
        open_storage("mysql://ann:pw@127.0.0.1/studio", tmp_path / "study.db")


def test_cli_tune_with_an_unreachable_server_says_so_in_one_line(data, space, tmp_path, capsys):
    url = "postgresql://ann:secret@127.0.0.1:1/studio"
    code = main(["tune", str(data), "--out", str(tmp_path / "s"), "--storage", url, "--trials", "1",
                 "--space", str(space), *TRAIN])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1 and err[-1].startswith("cnnstudio tune: error: postgresql://ann:***@127.0.0.1:1/studio: ")
    assert "secret" not in "\n".join(err) and "Traceback" not in "\n".join(err)
    assert not os.path.exists(tmp_path / "s" / "trials")


# ----------------------------------------------------------------------------- in one process


@pytest.fixture(scope="module")
def parts(data):
    from coretrain import tiny_spec

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import make_split, scan_dataset
    from cnnstudio.core.training.config import TrainConfig

    index = scan_dataset(data)
    return index, make_split(index, 0.25, 0.2, seed=0), tiny_spec(16), \
        TrainConfig(epochs=2, batch_size=8, learning_rate=0.01, patience=0, seed=1), load_registry()


def shared_search(parts, out, storage, space=SPACE, **kwargs):
    from cnnstudio.core.experiments.search import Search, SearchSpace

    index, split, spec, config, registry = parts
    return Search(index, split, spec, config, SearchSpace.from_dict(space), out, registry, storage=storage,
                  prune=False, **kwargs)


def test_a_shared_trial_stopped_by_the_user_is_given_back_and_run_again_in_its_own_folder(parts, tmp_path):
    from coretrain import RecordingState

    class StopAfterOneEpoch(RecordingState):
        def on_trial_start(self, number, params):
            pass

        def on_trial_end(self, record):
            pass

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = shared_search(parts, tmp_path / "a", storage, trials=1,
                          state=StopAfterOneEpoch(stop_after_epochs=1)).run()
    assert first.reason == "cancelled" and [(r.number, r.status) for r in first.trials] == [(0, "failed")]
    # Another process (here, a second search object) takes it up as a trial of its own, which
    # counts in its place.
    second = shared_search(parts, tmp_path / "b", storage, trials=1).run()
    assert second.reason == "completed"
    assert [(r.number, r.status) for r in second.trials] == [(0, "failed"), (1, "complete")]
    assert second.trials[1].params == first.trials[0].params and second.trials[1].epochs == 2
    assert second.trials[0].error == "stopped before it ended; run again as trial 2"
    assert Path(second.trials[1].run_dir) == tmp_path / "b" / "trials" / "trial-002"
    assert json.loads((tmp_path / "b" / "trials.json").read_text())["reason"] == "completed"


def test_a_process_with_other_settings_is_refused_from_a_shared_search_in_one_line(parts, tmp_path):
    from cnnstudio.core.experiments.search import SearchError

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    shared_search(parts, tmp_path / "a", storage, trials=1).run()
    other = shared_search(parts, tmp_path / "b", storage, space={"train.learning_rate": {"choices": [0.1, 0.2]}},
                          trials=1)
    with pytest.raises(SearchError, match=r"^sqlite:///.*shared\.db: study 'cnnstudio' is a search with other "
                                          r"settings \(space differ\); give the same ones to join it, or another "
                                          r"--study$"):
        other.run()
    assert not (tmp_path / "b" / "trials").exists() and not (tmp_path / "b" / "trials.json").exists()


def test_a_search_shared_through_a_journal_file_records_its_trials_there(parts, tmp_path):
    from cnnstudio.core.experiments.search import read_study

    journal = tmp_path / "shared" / "search.log"
    result = shared_search(parts, tmp_path / "a", f"journal:{journal}", trials=1).run()
    assert result.reason == "completed" and [r.status for r in result.trials] == ["complete"]
    assert journal.stat().st_size > 0
    # What another machine reading the same file sees (the window's Watch reads it so).
    assert read_study(str(journal)).trials == result.trials
