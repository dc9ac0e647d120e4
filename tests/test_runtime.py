"""TensorFlow's start: its native log lines stay off the user's terminal, other output does not."""

import os
import re
import subprocess
import sys

import pytest
from coretrain import train
from tinydata import make_dataset

from cnnstudio.core.tf import runtime


def test_native_notices_while_tensorflow_starts_are_dropped_and_other_lines_kept(capfd, monkeypatch):
    monkeypatch.setattr(runtime, "_DEFAULT_LEVEL", True)
    with runtime._startup_log():
        os.write(2, b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n")
        os.write(2, b"I0000 00:00:1796240743.607274   23482 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"E0000 00:00:1796240746.070877   23482 cuda_platform.cc:52] failed call to cuInit\n")
        os.write(2, b"plugin 'slow' took 7.0 s to load\n")
    assert capfd.readouterr().err == "plugin 'slow' took 7.0 s to load\n"


def test_a_level_the_user_set_is_kept(capfd, monkeypatch):
    monkeypatch.setattr(runtime, "_DEFAULT_LEVEL", False)
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "1")
    with runtime._startup_log():
        os.write(2, b"I0000 00:00:12.5   1 port.cc:153] info\n")
        os.write(2, b"W0000 00:00:12.5   1 port.cc:153] warning\n")
    assert capfd.readouterr().err == "W0000 00:00:12.5   1 port.cc:153] warning\n"


def test_starting_tensorflow_prints_nothing():
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    done = subprocess.run([sys.executable, "-c", "from cnnstudio.core.tf import tf; tf().constant(1)"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr


NATIVE = re.compile(r"^[IWEF]\d{4} |cuInit|oneDNN", re.MULTILINE)
# Run as 'cnnstudio ARGS', with a native line logged once the command's work is done, as XLA or a
# CUDA plugin logs one after TensorFlow has started.
LATE_LINE = """
import os, sys
import cnnstudio.cli.parser as command  # the parser picks the function each command runs
real = command.cmd_predict
def with_a_late_line(args):
    code = real(args)
    os.write(2, b"E0000 00:00:1796240746.070877   23482 cuda_dnn.cc:52] late native line\\n")
    os.write(2, b"a line of a child process\\n")
    return code
command.cmd_predict = with_a_late_line
from cnnstudio.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    root = tmp_path_factory.mktemp("native-log")
    data = make_dataset(root / "data", classes=("red", "blue"), per_class=6)
    train(data, root / "run", epochs=1)
    return root / "run" / "model", next((data / "red").iterdir())


def _cnnstudio(*args, env=None):
    env = {k: v for k, v in (env or os.environ).items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-c", LATE_LINE, *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=300)


def test_a_command_keeps_tensorflows_native_log_lines_off_stderr_unless_verbose(bundle):
    model, image = bundle
    done = _cnnstudio("predict", model, image)
    assert done.returncode == 0 and "red" in done.stdout, done.stderr
    assert not NATIVE.search(done.stderr), done.stderr
    assert done.stderr == "a line of a child process\n"  # other lines on descriptor 2 still come through

    done = _cnnstudio("predict", model, image, "--verbose")  # global: anywhere on the line
    assert done.returncode == 0 and "red" in done.stdout
    assert "late native line" in done.stderr and "oneDNN" in done.stderr  # TensorFlow's start-up lines too

    done = _cnnstudio("predict", model, tmp := image.with_name("missing.png"))
    assert done.returncode == 1 and f"{tmp}: error" in done.stdout + done.stderr
    assert not NATIVE.search(done.stderr), done.stderr


def test_the_window_takes_verbose_too():
    from cnnstudio.gui.app import parse_args

    assert parse_args(["--sample", "--verbose"]).verbose and not parse_args([]).verbose
