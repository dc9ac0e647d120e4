"""An epoch's checkpoint commits as one: a kill at any step of the write leaves epoch k or k+1,
the resumed run trains every epoch once, and a damaged checkpoint is named in one line."""

import json
import math
from pathlib import Path

import pytest
from coretrain import RecordingState, train
from tinydata import make_dataset, truncate

from cnnstudio.cli import main
from cnnstudio.core.errors import RecordError
from cnnstudio.core.runs import checkpoint
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.core.tf.seeding import load_model

EPOCHS = 3
BATCH = 4
STEPS = ["best", "last", "state", "prune", "history"]


class Killed(BaseException):
    """What the process would die of at that instant (not an Exception: nothing catches it)."""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), per_class=10)


class Statuses(RecordingState):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.statuses = []

    def on_status(self, message):
        self.statuses.append(message)


def kill_at(monkeypatch, step: str, epoch: int):
    """Stop the process at ``step`` of epoch ``epoch``'s commit; every epoch improves, so each
    commit has all the steps."""
    seen = {"n": 0}

    def between(name):
        if name == step:
            seen["n"] += 1
            if seen["n"] == epoch:
                raise Killed(f"{step} of epoch {epoch}")

    monkeypatch.setattr(checkpoint, "_between", between)
    monkeypatch.setattr(runs, "improves", lambda value, best, monitor: True)


@pytest.fixture(scope="module")
def per_epoch(data, tmp_path_factory) -> int:
    """The optimizer's steps in one epoch of an uninterrupted run (Keras counts one more than the
    batches when the dataset's length is unknown, as the pipeline's is)."""
    run = tmp_path_factory.mktemp("reference") / "run"
    train(data, run, epochs=1, batch_size=BATCH)
    config = json.loads(RunPaths(run).config.read_text())
    steps = iterations(checkpoint.read(RunPaths(run)).last)
    assert steps in (math.ceil(len(config["split"]["train"]) / BATCH) + i for i in (0, 1))
    return steps


def iterations(path) -> int:
    return int(load_model(path).optimizer.iterations.numpy())


def leftovers(run):
    """Temporary files as a kill in the middle of atomic writes leaves them."""
    p = RunPaths(run)
    p.checkpoints.mkdir(parents=True, exist_ok=True)
    files = [p.checkpoints / ".last-0007.keras.k2j3h4g5.keras", p.checkpoints / ".state.json.ab12cd34.tmp",
             p.root / ".history.csv.q1w2e3r4.tmp", p.checkpoints / "best-0009.weights.h5"]
    for f in files:
        f.write_bytes(b"half")
    return files


def interrupted(data, run, monkeypatch, step="history", epoch=2):
    """A run killed at ``step`` of epoch ``epoch``'s commit."""
    with monkeypatch.context() as patch:
        kill_at(patch, step, epoch)
        with pytest.raises(Killed):
            train(data, run, epochs=EPOCHS, batch_size=BATCH)
    return RunPaths(run)


@pytest.fixture(scope="module")
def killed_run(data, tmp_path_factory):
    """A run killed at the end of its second epoch's commit (2 of 3 epochs saved), to copy."""
    run = tmp_path_factory.mktemp("killed") / "run"
    interrupted(data, run, pytest.MonkeyPatch())
    return run


@pytest.fixture
def run2(killed_run, tmp_path):
    """A copy of ``killed_run`` of the test's own."""
    import shutil

    return RunPaths(Path(shutil.copytree(killed_run, tmp_path / "run")))


@pytest.mark.parametrize("step", STEPS)
def test_a_kill_at_each_step_of_the_commit_leaves_one_epoch_and_the_resume_trains_each_once(data, tmp_path,
                                                                                           monkeypatch, step, per_epoch):
    run = tmp_path / "run"
    p = interrupted(data, run, monkeypatch, step)
    steps = per_epoch

    saved = checkpoint.read(p)
    done = 1 if step in ("best", "last") else 2  # before the state was replaced: epoch 1, after: epoch 2
    assert saved.epochs_done == done and not saved.problems
    assert [r["epoch"] for r in saved.state["history"]] == list(range(1, done + 1))
    assert iterations(saved.last) == done * steps  # the model is the state's epoch, never one ahead
    assert saved.best is not None and saved.best_epoch == done
    stray = leftovers(run)

    state = Statuses()
    result = train(data, run, state=state, epochs=EPOCHS, batch_size=BATCH, resume=True)
    assert result.reason == "completed"
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [e.epoch for e in state.of("epoch")] == list(range(done, EPOCHS))  # no epoch trained twice
    assert f"resuming from epoch {done + 1}" in state.statuses
    assert any(s.startswith("removed ") for s in state.statuses)
    final = checkpoint.read(p)
    assert final.epochs_done == EPOCHS and iterations(final.last) == EPOCHS * steps
    assert not any(f.exists() for f in stray)
    assert sorted(f.name for f in p.checkpoints.iterdir()) == sorted(["state.json", final.last.name, final.best.name])
    with open(p.history) as f:
        assert [line.split(",")[0] for line in f.read().splitlines()[1:]] == ["1", "2", "3"]
    assert json.loads(p.metrics.read_text())["epochs_run"] == EPOCHS


def test_history_csv_is_repaired_from_the_committed_state_on_resume(data, tmp_path, monkeypatch):
    p = interrupted(data, tmp_path / "run", monkeypatch, "prune")  # epoch 2 committed, history.csv still at 1
    assert len(p.history.read_text().splitlines()) == 2
    state = Statuses(stop_after_batches=1)
    train(data, p.root, state=state, epochs=EPOCHS, batch_size=BATCH, resume=True)
    assert [int(line.split(",")[0]) for line in p.history.read_text().splitlines()[1:]] == [1, 2]


def test_a_run_killed_before_its_first_checkpoint_resumes_from_epoch_1(data, tmp_path, monkeypatch, per_epoch):
    run = tmp_path / "run"
    p = interrupted(data, run, monkeypatch, "last", epoch=1)
    assert p.config.exists() and not p.train_state.exists()
    assert list(p.checkpoints.glob("best-*.weights.h5"))  # the uncommitted generation's file

    state = Statuses()
    result = train(data, run, state=state, epochs=EPOCHS, batch_size=BATCH, resume=True)
    assert "no epoch was saved before the run stopped; training from epoch 1" in state.statuses
    assert result.reason == "completed" and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert iterations(checkpoint.read(p).last) == EPOCHS * per_epoch


def test_cli_resume_of_a_run_that_saved_no_epoch_and_the_refusal_of_a_new_run_there(data, tmp_path, monkeypatch,
                                                                                    capsys):
    run = tmp_path / "run"
    interrupted(data, run, monkeypatch, "best", epoch=1)
    assert main(["train", str(data), "--out", str(run)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already holds a run that did not finish (no epoch saved)" in err
    assert "--resume" in err

    assert main(["train", "--out", str(run), "--resume"]) == 0
    out = capsys.readouterr()
    assert "no epoch was saved before the run stopped; training from epoch 1" in out.err
    assert out.out.strip().splitlines()[-1] == f"Run saved in {run}; model bundle in {run / 'model'}"
    assert json.loads(RunPaths(run).metrics.read_text())["epochs_run"] == EPOCHS


def test_cli_says_what_was_saved_after_a_stop_before_and_after_an_epoch(data, tmp_path, monkeypatch, capsys):
    from cnnstudio.cli.terminal import TerminalState

    run = tmp_path / "run"
    begin = TerminalState.on_begin

    def stop_at_once(self, e):  # Ctrl-C as the first batch trains
        begin(self, e)
        self.stop.set()

    monkeypatch.setattr(TerminalState, "on_begin", stop_at_once)
    assert main(["train", str(data), "--out", str(run), "--image-size", "16", "--epochs", "2", "--param",
                 'blocks=[{"type": "conv", "filters": 4, "convs": 1}]', "--batch-size", "4", "--patience", "0"]) == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("Stopped before the first epoch ended: no epoch was saved")
    assert f"`cnnstudio train --resume --out {run}` trains the run from epoch 1" in last
    monkeypatch.undo()

    epochs = {"n": 0}
    end = TerminalState.on_epoch_end

    def stop_after_one(self, e):
        end(self, e)
        epochs["n"] += 1
        self.stop.set()

    monkeypatch.setattr(TerminalState, "on_epoch_end", stop_after_one)
    assert main(["train", "--out", str(run), "--resume"]) == 130
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last == (f"Stopped after 1 epoch: the model so far is in {run / 'model'}; "
                    f"resume with `cnnstudio train --resume --out {run}`")


def test_saved_line_names_only_what_is_on_disk(tmp_path):
    from cnnstudio.cli.train import saved_line
    from cnnstudio.core.training.trainer import RunResult

    out = tmp_path / "run"
    rows = [{"epoch": 1}, {"epoch": 2}]
    assert saved_line(out, RunResult(out, "cancelled", 2, rows, None, 1.0)) == \
        f"2 epochs checkpointed in {out}; resume with `cnnstudio train --resume --out {out}`"
    assert saved_line(out, RunResult(out, "cancelled", 0, [], None, 1.0)).startswith("Nothing was saved")
    assert saved_line(out, RunResult(out, "completed", 2, rows, {}, 1.0, bundle=True)) == \
        f"Run saved in {out}; model bundle in {out / 'model'}"


def _files(p):
    return {f.name: f.read_bytes() for f in p.checkpoints.iterdir()}


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def test_a_truncated_last_model_is_named_and_the_run_goes_on_from_its_best_epoch(run2, data, tmp_path, monkeypatch,
                                                                                 capsys):
    p = run2
    saved = checkpoint.read(p)
    truncate(saved.last, 0.5)
    kept = _files(p)

    assert main(["train", "--out", str(p.root), "--resume"]) == 1
    line = _one_error_line(capsys)
    assert line.startswith(f"cnnstudio train: error: {saved.last}: damaged (")
    assert "resume from the best epoch's weights (epoch 2) with --resume-from best" in line
    assert "start over from epoch 1 with --fresh" in line
    assert _files(p) == kept  # nothing was touched

    state = Statuses()
    result = train(data, p.root, state=state, epochs=EPOCHS, batch_size=BATCH, resume=True, fallback="best")
    assert result.reason == "completed" and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert [e.epoch for e in state.of("epoch")] == [2]
    assert not saved.last.exists()  # the damaged file went with its generation


def test_a_damaged_model_file_of_the_right_size_is_named_when_it_is_loaded(run2, data, tmp_path, monkeypatch):
    p = run2
    saved = checkpoint.read(p)
    saved.last.write_bytes(b"\0" * saved.last.stat().st_size)
    with pytest.raises(checkpoint.CheckpointError, match=r"last-0002\.keras: damaged \(not a Keras model file"):
        train(data, p.root, epochs=EPOCHS, batch_size=BATCH, resume=True)


def test_truncated_best_weights_are_named_and_the_run_goes_on_without_them(run2, data, tmp_path, monkeypatch, capsys):
    p = run2
    saved = checkpoint.read(p)
    truncate(saved.best, 0.5)
    kept = _files(p)

    assert main(["train", "--out", str(p.root), "--resume"]) == 1
    line = _one_error_line(capsys)
    assert f"{saved.best}: damaged (" in line and "the checkpoint recorded" in line
    assert "--resume-from last" in line and "--fresh" in line and "--resume-from best" not in line
    assert _files(p) == kept

    assert main(["train", "--out", str(p.root), "--resume", "--resume-from", "last"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1].startswith("Run saved in")
    assert json.loads(p.metrics.read_text())["epochs_run"] == EPOCHS
    assert not saved.best.exists()


@pytest.mark.parametrize("change, said", [
    ({"epochs_done": "two"}, "epochs_done is 'two', not a number of epochs"),
    ({"history": [{"epoch": 1}]}, "history has 1 epochs, epochs_done says 2"),
    ({"best": "low"}, "best is 'low', not a number"),
    ({"monitor": 3}, "monitor is 3, not a metric name"),
    ({"phase": "warmup"}, "phase is 'warmup', not one of train, head, finetune"),
    ({"files": {"last": {"name": "../../x.keras", "size": 1}}}, "files.last is not a checkpoint file's name and size"),
    ({"history": [{"epoch": 1}, {"epoch": 1}]}, "history entry 2 is epoch 1, not 2"),
    ({"history": [{"epoch": 1}, {"epoch": 2, "loss": [1]}]}, "history entry 2: loss is [1], not a number"),
    ({"early_stopping": {"wait": -1, "best": 0.5, "best_epoch": 1}},
     "early_stopping is not a wait count, a best value and a best epoch"),
    ({"train_seconds": None}, "train_seconds is None, not a number of seconds"),
    ({"phase_start": 5}, "phase_start is 5, not an epoch count up to 2"),
])
def test_a_damaged_state_json_is_named_in_one_line(run2, data, tmp_path, monkeypatch, capsys, change, said):
    p = run2
    state = json.loads(p.train_state.read_text())
    p.train_state.write_text(json.dumps({**state, **change}))
    with pytest.raises(RecordError) as raised:
        checkpoint.read(p)
    assert str(raised.value) == f"{p.train_state}: {said}"
    kept = _files(p)
    assert main(["train", "--out", str(p.root), "--resume"]) == 1
    line = _one_error_line(capsys)
    assert line == f"cnnstudio train: error: {p.train_state}: {said}; start over from epoch 1 with --fresh"
    assert _files(p) == kept


def test_fresh_starts_a_run_with_a_damaged_state_over(run2, data, tmp_path, monkeypatch, capsys):
    p = run2
    p.train_state.write_text("{not json")
    assert main(["train", "--out", str(p.root), "--resume", "--fresh", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["epochs_run"] == EPOCHS
    assert checkpoint.read(p).epochs_done == EPOCHS
    assert main(["train", "--out", str(p.root), "--fresh"]) == 1
    assert "--fresh goes with --resume" in _one_error_line(capsys)


def test_a_run_folder_of_the_layout_before_generations_resumes(run2, data, tmp_path, monkeypatch, per_epoch):
    """state.json without file names, last.keras and best.weights.h5: read as before, then moved on."""
    p = run2
    saved = checkpoint.read(p)
    saved.last.rename(p.checkpoints / "last.keras")
    saved.best.rename(p.checkpoints / "best.weights.h5")
    state = {k: v for k, v in saved.state.items() if k not in ("generation", "files")}
    p.train_state.write_text(json.dumps(state))
    old = checkpoint.read(p)
    assert old.last.name == "last.keras" and old.best.name == "best.weights.h5" and old.best_epoch is not None

    result = train(data, p.root, epochs=EPOCHS, batch_size=BATCH, resume=True)
    assert [r["epoch"] for r in result.history] == [1, 2, 3]
    assert iterations(checkpoint.read(p).last) == EPOCHS * per_epoch
    assert not (p.checkpoints / "last.keras").exists()
