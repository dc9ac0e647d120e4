import json
import subprocess
import sys

import pytest
from tinydata import make_dataset

from cnnstudio import __version__
from cnnstudio.cli import main


def run_cli(*args):
    """Run the command line in a fresh process, as a user or a script does."""
    return subprocess.run([sys.executable, "-m", "cnnstudio", *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = make_dataset(tmp_path_factory.mktemp("cli") / "data", per_class=12)
    (root / "red" / "empty.jpg").write_bytes(b"")
    (root / "blue" / "readme.png").write_text("not an image")
    return root


def test_version():
    out = run_cli("--version")
    assert out.returncode == 0 and out.stdout.strip() == f"cnnstudio {__version__}"


def test_every_command_has_help(capsys):
    from cnnstudio.cli import COMMANDS

    assert len(COMMANDS) == 13
    for command in COMMANDS:
        with pytest.raises(SystemExit) as exc:
            main([command, "--help"])
        assert exc.value.code == 0
        out = capsys.readouterr().out
        assert out.startswith(f"usage: cnnstudio {command}") and "options:" in out, command
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    assert all(f"    {command} " in listed or f"    {command}\n" in listed for command in COMMANDS)


def test_an_unknown_command_is_refused_with_the_list_not_a_window(tmp_path):
    """A misspelt command exits 2 at once, even with no display (where a window would never open)."""
    import os

    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = subprocess.run([sys.executable, "-m", "cnnstudio", "trian", "data"], capture_output=True, text=True,
                         env=env, cwd=tmp_path, timeout=120)
    assert out.returncode == 2
    assert "invalid choice: 'trian'" in out.stderr and "'train'" in out.stderr and "'predict'" in out.stderr
    assert out.stdout == ""


def test_scan_json_lists_classes_and_problems(data, capsys):
    assert main(["scan", str(data), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(c["name"], c["images"]) for c in out["classes"]] == [("blue", 12), ("green", 12), ("red", 12)]
    reasons = {p["path"]: p["reason"] for p in out["problems"]}
    assert "empty file" in reasons["red/empty.jpg"] and "not an image" in reasons["blue/readme.png"]


def test_scan_text_output_names_problem_files(data, capsys):
    main(["scan", str(data)])
    out = capsys.readouterr().out
    assert "36 images in 3 classes" in out and "red/empty.jpg: empty file" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["scan", "/no/such/folder"], "no such folder"),
        (["train", "/no/such/folder", "--out", "{tmp}/r"], "no such folder"),
        (["train", "{one}", "--out", "{tmp}/r"], "at least two"),
        (["train", "{data}", "--out", "{tmp}/r", "--model", "vgg16", "--image-size", "16", "--weights", "none"],
         "minimum"),
        (["train", "{data}", "--out", "{tmp}/r", "--model", "no-such-net"], "no-such-net"),
        (["train", "{data}", "--out", "{tmp}/r", "--epochs", "0"], "epochs"),
        (["train", "{data}", "--out", "{tmp}/r", "--mode", "finetune"], "needs a pretrained backbone"),
        (["predict", "{tmp}/nothing", "{data}"], "no such model bundle"),
    ],
)
def test_bad_input_gives_one_clear_line_and_exit_1(args, message, data, tmp_path, capsys):
    one = make_dataset(tmp_path / "one", classes=("red",), per_class=3)
    args = [a.format(tmp=tmp_path, data=data, one=one) for a in args]
    code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert len(err.splitlines()) == 1 and message in err and "Traceback" not in err


def test_bad_arguments_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "x", "--out", "r", "--optimizer", "rmsprop"])
    assert exc.value.code == 2


def test_train_with_a_mode_prints_the_block_table_and_records_the_weights(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("CNNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    code = main(["train", str(data), "--out", str(out), "--model", "vgg16", "--weights", "none", "--image-size", "32",
                 "--mode", "extract", "--bottleneck", "--epochs", "1", "--batch-size", "8"])
    err = capsys.readouterr().err
    assert code == 0
    assert "bottleneck features cached in" in err
    assert "block5            0    7,079,424  frozen" in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["weights"]["label"] == "random initialisation (not pretrained)"
    assert metrics["bottleneck"]["cache"] == "built" and metrics["mode"] == "extract"
    config = json.loads((out / "config.json").read_text())
    assert config["weights"]["pretrained"] is False and config["train"]["mode"] == "extract"


@pytest.mark.slow
def test_train_then_predict_end_to_end(data, tmp_path):
    run = tmp_path / "run"
    out = run_cli("train", data, "--out", run, "--model", "keras-small-convnet", "--image-size", "16",
                  "--epochs", "2", "--batch-size", "8", "--json")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["status"] == "completed" and result["epochs_run"] == 2
    metrics = json.loads((run / "metrics.json").read_text())
    for key in ("test_accuracy", "test_loss", "confusion_matrix", "class_names", "per_class", "epochs_run",
                "train_seconds"):
        assert key in metrics
    assert (run / "model" / "model.keras").exists()

    again = run_cli("train", data, "--out", run)
    assert again.returncode == 1 and "already holds a run" in again.stderr

    broken = tmp_path / "b.png"
    broken.write_bytes(b"")
    good = sorted((data / "green").glob("*.png"))[0]
    pred = run_cli("predict", run / "model", good, broken, "--top-k", "2")
    lines = pred.stdout.strip().splitlines()
    assert pred.returncode == 0 and len(lines) == 2
    assert lines[0].startswith(f"{good}: ") and lines[0].count("%") == 2
    assert lines[1].startswith(f"{broken}: error: empty file")


def test_plugins_and_models_json(capsys):
    assert main(["plugins", "--json"]) == 0
    plugins = json.loads(capsys.readouterr().out)
    builtin = next(p for p in plugins if p["origin"] == "built-in")
    assert builtin["status"] == "ok" and "backbone:vgg16" in builtin["provides"]

    assert main(["models", "--json"]) == 0
    models = json.loads(capsys.readouterr().out)
    ids = {b["id"] for b in models["backbones"]}
    assert {"scratch", "vgg16", "vgg19", "resnet50"} <= ids
    presets = {p["id"] for p in models["presets"]}
    assert {f"seed-model-{i}" for i in range(1, 7)} | {"keras-small-convnet"} <= presets


def test_backbone_parameters_from_the_command_line(tmp_path, capsys):
    data = make_dataset(tmp_path / "data", per_class=6)
    blocks = '[{"type": "conv", "filters": 4, "convs": 1}]'
    out = tmp_path / "run"
    assert main(["train", str(data), "--param", f"blocks={blocks}", "--image-size", "16", "--epochs", "1",
                 "--out", str(out), "--json"]) == 0
    spec = json.loads((out / "config.json").read_text())["spec"]
    assert [b["filters"] for b in spec["params"]["blocks"]] == [4] and spec["params"]["blocks"][0]["convs"] == 1
    capsys.readouterr()

    assert main(["train", str(data), "--param", "alpha=0.35", "--out", str(tmp_path / "r2")]) == 1
    assert "unknown parameter 'alpha'" in capsys.readouterr().err
    assert main(["train", str(data), "--param", "blocks=[{oops", "--out", str(tmp_path / "r3")]) == 1
    assert "--param blocks: not valid JSON" in capsys.readouterr().err
    assert main(["train", str(data), "--param", "noequals", "--out", str(tmp_path / "r4")]) == 1
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_resume_after_a_class_folder_was_added_is_refused_in_one_line(tmp_path, capsys):
    """Resuming onto a folder with a new class would shift every label under the checkpoint's
    weights: the resume names the folder and stops, leaving the run as it was."""
    import shutil

    data = make_dataset(tmp_path / "data", per_class=6)
    blocks = '[{"type": "conv", "filters": 4, "convs": 1}]'
    out = tmp_path / "run"
    assert main(["train", str(data), "--param", f"blocks={blocks}", "--image-size", "16", "--epochs", "1",
                 "--out", str(out), "--json"]) == 0
    capsys.readouterr()
    kept = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    shutil.copytree(data / "red", data / "amber")  # sorts first: every label would move by one

    assert main(["train", "--out", str(out), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "class folder 'amber' was added since the run was trained" in err and str(data) in err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == kept


def test_ctrl_c_in_train_stops_after_the_batch_and_leaves_a_resumable_run(tmp_path):
    """The first Ctrl-C ends `cnnstudio train` after the current batch: exit 130, status
    'cancelled', no traceback, and the run folder can be resumed."""
    import signal
    import time

    data = make_dataset(tmp_path / "data", per_class=6)
    out = tmp_path / "run"
    blocks = '[{"type": "conv", "filters": 4, "convs": 1}]'
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out), "--epochs", "500",
         "--image-size", "16", "--param", f"blocks={blocks}", "--batch-size", "2", "--patience", "0", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not (out / "history.csv").exists():  # an epoch is done: the run is training
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
            time.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-2000:]
    assert json.loads(stdout)["status"] == "cancelled"
    assert "Traceback" not in stderr
    from cnnstudio.core.runs import checkpoint
    from cnnstudio.core.runs.folder import RunPaths

    saved = checkpoint.read(RunPaths(out))  # what --resume continues from
    assert saved is not None and saved.epochs_done >= 1 and not saved.problems


@pytest.mark.parametrize("command", ["scan", "train"])
def test_a_stop_during_the_scan_ends_in_one_line_and_exit_130(command, data, tmp_path, capsys, monkeypatch):
    from cnnstudio.cli.terminal import TerminalTask

    monkeypatch.setattr(TerminalTask, "should_stop", lambda self: True)  # as after the first Ctrl-C
    args = [command, str(data)] + (["--out", str(tmp_path / "run")] if command == "train" else [])
    assert main(args) == 130
    err = capsys.readouterr().err.strip()
    assert err == f"cnnstudio {command}: stopped while scanning the dataset"
    assert not (tmp_path / "run").exists()


def test_the_first_ctrl_c_asks_the_terminal_state_to_stop_and_says_so(capsys):
    import os
    import signal
    import time

    from cnnstudio.cli.terminal import TerminalState, TerminalTask, stop_on_ctrl_c

    state = TerminalTask()
    before = signal.getsignal(signal.SIGINT)
    with stop_on_ctrl_c(state, at="batch of files"):
        assert not state.should_stop()
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 5
        while not state.should_stop() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert state.should_stop()
    assert capsys.readouterr().err == "Stopping after this batch of files (Ctrl-C again to abort)...\n"
    assert signal.getsignal(signal.SIGINT) is before
    assert isinstance(TerminalState(), TerminalTask)  # training's state is the same terminal state


def test_the_terminal_state_prints_status_lines_unless_quiet(capsys):
    from cnnstudio.cli.terminal import TerminalTask

    loud, silent = TerminalTask(), TerminalTask(quiet=True)
    for state in (loud, silent):
        state.on_status("checking the cache")
        state.on_progress("scanning", 3, 10)
        state.on_progress("scanning", 10, 10)
        assert state.bar is None  # the finished task's bar is taken down
        state.on_progress("downloading X ImageNet weights (bytes)", 100, 0)  # size not known yet
        state.close()
    assert capsys.readouterr().err == "checking the cache\n"


@pytest.mark.parametrize("command", ["train", "tune", "cv"])
def test_training_options_default_to_the_train_config_defaults(command):
    """TrainConfig is the one source of the defaults: options left out give TrainConfig()."""
    from cnnstudio.cli.common import train_config
    from cnnstudio.cli.parser import build_parser
    from cnnstudio.core.training.config import TrainConfig

    args = build_parser().parse_args([command, "DATA", "--out", "OUT"])
    assert train_config(args) == TrainConfig()
    typed = build_parser().parse_args([command, "DATA", "--out", "OUT", "--momentum", "0.5", "--monitor",
                                       "val_accuracy", "--epochs", "3"])
    config = train_config(typed)
    assert (config.momentum, config.monitor, config.epochs) == (0.5, "val_accuracy", 3)


@pytest.mark.parametrize(("command", "option", "said"), [
    ("train", ["--lr", "-1"], "learning rate must be between 0 and 10, not -1.0"),
    ("train", ["--momentum", "1.5"], "momentum must be at least 0 and below 1, not 1.5"),
    ("train", ["--epochs", "0"], "epochs must be at least 1, not 0"),
    ("cv", ["--patience", "-1"], "patience must be 0 (off) or more, not -1"),
    ("tune", ["--batch-size", "0"], "batch size must be at least 1, not 0"),
])
def test_a_setting_train_config_refuses_is_one_line_before_the_dataset_is_read(tmp_path, capsys, command, option,
                                                                                said):
    out = tmp_path / "out"
    assert main([command, str(tmp_path / "no-such-data"), "--out", str(out), *option]) == 1
    assert capsys.readouterr().err.strip() == f"cnnstudio {command}: error: {said}"
    assert not out.exists()


def test_train_says_which_files_the_scan_left_out_and_where_the_list_is(tmp_path, capsys):
    from tinydata import make_dataset

    data = make_dataset(tmp_path / "data", per_class=8, size=16)
    for i in range(7):
        (data / "red" / f"broken-{i}.png").write_bytes(b"not a png")
    out = tmp_path / "run"
    assert main(["train", str(data), "--out", str(out), "--epochs", "1", "--image-size", "16", "--model",
                 "scratch"]) == 0
    err = capsys.readouterr().err.splitlines()
    start = err.index(f"7 files left out (unreadable or not images); the whole list is in {out / 'config.json'} "
                      "(dataset.problems):")
    shown = err[start + 1:start + 7]
    assert [line.split(":")[0].strip() for line in shown[:5]] == [f"red/broken-{i}.png" for i in range(5)]
    assert all(len(line.split(": ", 1)[1]) > 3 for line in shown[:5]) and shown[5] == "  and 2 more"
    recorded = json.loads((out / "config.json").read_text())["dataset"]["problems"]
    assert len([p for p in recorded if p["scope"] == "file"]) == 7


def test_class_names_with_terminal_escapes_are_shown_escaped(tmp_path, capsys):
    from tinydata import make_dataset

    data = make_dataset(tmp_path / "data", classes=("red", "green"), per_class=3, size=16)
    (data / "green").rename(data / "gr\x1b[31meen")
    main(["scan", str(data)])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "gr\\x1b[31meen" in out


def test_control_characters_in_class_and_file_names_never_reach_the_terminal(tmp_path, capsys):
    """A class folder named with an ANSI escape and file names with a newline: every command that
    names them prints them escaped, and an error naming one stays one line."""
    data = make_dataset(tmp_path / "data", classes=("red", "green"), per_class=8, size=16)
    (data / "red").rename(data / "\x1b[31mred")
    odd = data / "green" / "two\nlines.png"
    sorted((data / "green").glob("*.png"))[0].rename(odd)
    (data / "green" / "bad\nfile.png").write_bytes(b"")

    def said() -> str:
        captured = capsys.readouterr()
        text = captured.out + captured.err
        assert "\x1b" not in text
        assert not any(line.startswith(("lines.png", "file.png")) for line in text.splitlines()), text
        return text

    assert main(["scan", str(data)]) == 0
    text = said()
    assert "\\x1b[31mred" in text and "bad\\nfile.png" in text

    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--image-size", "16",
                 "--model", "scratch", "--batch-size", "4"]) == 0
    assert "bad\\nfile.png" in said()

    assert main(["predict", str(run / "model"), str(odd), str(data / "green" / "bad\nfile.png")]) == 0
    lines = said().strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"{str(odd)!r}"[1:-1] + ": ")
    assert "\\x1b[31mred" in lines[0] or "green" in lines[0]
    assert lines[1].startswith(str(data / "green" / "bad\\nfile.png") + ": error: empty file")

    assert main(["evaluate", str(run)]) == 0
    assert "\\x1b[31mred" in said()

    other = tmp_path / "other"
    assert main(["train", str(data), "--out", str(other), "--epochs", "1", "--image-size", "16",
                 "--model", "scratch", "--batch-size", "4", "--seed", "7", "--json"]) == 0
    capsys.readouterr()
    assert main(["diff", str(run), str(other)]) == 0
    said()

    missing = tmp_path / "no\x1b[2Jsuch\nbundle"
    assert main(["predict", str(missing), str(odd)]) == 1
    err = said()
    assert len(err.strip().splitlines()) == 1 and "no\\x1b[2Jsuch\\nbundle" in err


def test_pillows_warnings_reach_scan_and_predict_as_the_studios_line_naming_the_file(tmp_path, capsys):
    from tinydata import damaged_exif_jpeg

    data = make_dataset(tmp_path / "data", classes=("red", "green"), per_class=8, size=16)
    bad = damaged_exif_jpeg(data / "red" / "bad_exif.jpg")
    note = "damaged EXIF data; what cannot be read of it is ignored"

    def no_raw_warning(text: str) -> None:
        assert "UserWarning" not in text and "Warning:" not in text and "warnings.warn" not in text
        assert "Tag data larger than file" not in text

    scanned = run_cli("scan", data)
    assert scanned.returncode == 0, scanned.stderr
    no_raw_warning(scanned.stdout + scanned.stderr)
    assert f"  warning: red/bad_exif.jpg: {note}" in scanned.stdout.splitlines()

    run = tmp_path / "run"
    assert main(["train", str(data), "--out", str(run), "--epochs", "1", "--image-size", "16",
                 "--model", "scratch", "--batch-size", "4", "--json"]) == 0
    capsys.readouterr()
    predicted = run_cli("predict", run / "model", bad)
    assert predicted.returncode == 0, predicted.stderr
    no_raw_warning(predicted.stdout + predicted.stderr)
    assert predicted.stderr.splitlines().count(f"{bad}: {note}") == 1
    assert predicted.stdout.startswith(f"{bad}: ")
