"""TensorFlow's start: its native log lines stay off the user's terminal, other output does not."""

import os
import subprocess
import sys

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
