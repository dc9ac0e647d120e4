"""Writes that fail say so in one line and break nothing: a full disk, a read-only folder.

Each test injects the fault with :mod:`faultdisk`: a real tmpfs (filled up, or remounted
read-only) where this process can mount, else a writer that runs out of room after its budget of
bytes, and a chmod'ed folder (skipped as root without mounting: a chmod does not stop root).
Each asserts the exit code, the one line naming the file and the cause, no traceback, and that
the good file written before is still there, byte for byte.
"""

from __future__ import annotations

import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from coretrain import train
from faultdisk import read_only, small_disk
from tinydata import make_dataset

from cnnstudio.cli import main

TESTS = Path(__file__).parent
TINY = ["--param", 'blocks=[{"type": "conv", "filters": 4, "convs": 1}]', "--batch-size", "8", "--image-size", "16"]
# Six blocks of 4 filters: 128 px images, small model files (about 50 KB), a disk cache of 864 KiB.
LARGE_IMAGES = ["--param", "blocks=[" + ", ".join(['{"type": "conv", "filters": 4, "convs": 1}'] * 6) + "]",
                "--batch-size", "8", "--image-size", "128"]


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), str(TESTS.parent), env.get("PYTHONPATH", "")])
    return env


def run_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cnnstudio", *map(str, args)], capture_output=True, text=True,
                          env=_env(), timeout=600)


def one_line_error(err: str, command: str) -> str:
    """The error line the command ended with, after checking that nothing raw came before it."""
    assert "Traceback" not in err and "Exception ignored" not in err and "ResourceExhausted" not in err, err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"cnnstudio {command}: error: "), err
    return last.removeprefix(f"cnnstudio {command}: error: ")


def left_over(folder: Path) -> list[str]:
    """Temp files an atomic write left behind (none may be)."""
    return sorted(p.name for p in folder.rglob(".*") if p.name not in (".filler", ".cnnstudio-lock"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("faults") / "data", per_class=8, size=16)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, data):
    run = tmp_path_factory.mktemp("faults-run") / "run"
    train(data, run, epochs=2)
    return run


# ----------------------------------------------------------------------------- training


@pytest.mark.slow
def test_a_disk_full_after_epoch_2_ends_training_in_one_line_and_the_run_resumes(data, tmp_path):
    """The reported crash: training onto a disk that fills up. Now: exit 1 with the file and the
    cause, no traceback and no segmentation fault; epoch 2's checkpoint is whole, and once there
    is room again ``--resume`` finishes the run."""
    with small_disk(tmp_path / "disk", "3m") as disk:
        run = disk.folder / "run"
        fault = [str(disk.folder), "3"] + (["--real"] if disk.real else [])
        out = subprocess.run(
            [sys.executable, str(TESTS / "faultrun.py"), *fault, "--", "train", str(data), "--out", str(run),
             "--epochs", "4", *TINY],
            capture_output=True, text=True, env=_env(), timeout=600,
        )
        assert out.returncode == 1, out.stderr  # not -11
        message = one_line_error(out.stderr, "train")
        assert re.fullmatch(re.escape(str(run / "checkpoints")) + r"/[\w.-]+: no space left on device", message)
        assert "Epoch 3/4" in out.stderr and "Epoch 4/4" not in out.stderr
        state = json.loads((run / "checkpoints" / "state.json").read_text())
        assert state["epochs_done"] == 2 and len(state["history"]) == 2
        assert not (run / "metrics.json").exists() and left_over(run) == []

        disk.free()  # and a fresh process: the patched writer, where there is one, is gone too
        again = run_cli("train", "--resume", "--out", run)
        assert again.returncode == 0, again.stderr
        assert "resuming from epoch 3" in again.stderr
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["epochs_run"] == 4 and metrics["status"] == "completed"


def test_training_into_a_read_only_folder_is_one_line(data, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    with read_only(folder) as reason:
        code = main(["train", str(data), "--out", str(folder / "run"), "--epochs", "1", *TINY])
        err = capsys.readouterr().err
        assert code == 1
        assert one_line_error(err, "train") == f"{folder / 'run'}: {reason}"
        assert list(folder.iterdir()) == []


def test_the_disk_cache_on_a_full_disk_falls_back_in_one_note(data, tmp_path, capsys, monkeypatch):
    """Room for the run's files but not for the decoded images: the run trains without the
    cache and says so in one line, never a ResourceExhaustedError dump."""
    from cnnstudio.core.data import pipeline

    with small_disk(tmp_path / "disk", "3m", monkeypatch) as disk:
        if disk.real:
            # The run's files fit (two checkpoints while one commits); 18 training images of
            # 128 x 128 x 3 (884 KB) do not.
            disk.fill(room=860 << 10)
        else:
            def full(fd, offset, length):
                raise OSError(errno.ENOSPC, "No space left on device")

            monkeypatch.setattr(pipeline.os, "posix_fallocate", full, raising=False)
        run = disk.folder / "run"
        code = main(["train", str(data), "--out", str(run), "--epochs", "2", "--cache", "disk", *LARGE_IMAGES])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "Traceback" not in err and "ResourceExhausted" not in err
        notes = [line for line in err.splitlines() if "image cache" in line]
        assert notes and all("no room for the image cache" in n and n.endswith("decoded every epoch instead")
                              for n in notes)
        assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 2


def test_cache_writes_that_fail_after_the_reservation_only_cost_decoding(data, tmp_path, monkeypatch):
    """A row that cannot be written to the reserved cache file (a file system that does not keep
    its reservation) is decoded again next epoch: every image still comes, no error."""
    from cnnstudio.core.data import pipeline
    from cnnstudio.core.data.dataset import scan_dataset

    index = scan_dataset(data)
    paths, labels = index.paths(), index.labels()

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline.os, "pwrite", full)
    pipe = pipeline.ImagePipeline(16, cache="disk", cache_dir=tmp_path / "cache")
    ds = pipe.dataset(paths, labels, batch_size=8, with_index=True)
    for _ in range(2):
        seen = np.concatenate([idx.numpy() for _, _, idx in ds])
        assert sorted(seen) == list(range(len(paths)))
    assert pipe.recorder.as_list() == [] and pipe.notes == []
    pipe.close()


def test_a_full_bottleneck_cache_costs_only_time(data, tmp_path, capsys, monkeypatch):
    """The feature cache lives outside the run: when its disk is full the run trains on the
    features it computed, and says in one line that they were not cached."""
    with small_disk(tmp_path / "cache", "3m", monkeypatch) as disk:
        monkeypatch.setenv("CNNSTUDIO_CACHE_DIR", str(disk.folder))
        disk.fill()
        run = tmp_path / "run"
        code = main(["train", str(data), "--out", str(run), "--model", "vgg16", "--weights", "none",
                     "--image-size", "32", "--mode", "extract", "--bottleneck", "--epochs", "1", "--batch-size", "8"])
        err = capsys.readouterr().err
        assert code == 0, err
        assert "Traceback" not in err
        (note,) = [line for line in err.splitlines() if "bottleneck features not cached" in line]
        assert str(disk.folder) in note and "no space left on device" in note
        assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 1


def test_a_full_disk_under_tensorflow_s_own_file_operations_is_one_line(data, tmp_path, capsys, monkeypatch):
    """TensorFlow reports a full disk as a ResourceExhaustedError of dozens of lines: the run ends
    with one line naming its folder instead."""
    from cnnstudio.core.tf import tf
    from cnnstudio.core.training import trainer

    def fit(self, *args, **kwargs):
        raise tf().errors.ResourceExhaustedError(None, None, "/somewhere/x.tmp; No space left on device")

    monkeypatch.setattr(trainer.Trainer, "_fit", fit)
    run = tmp_path / "run"
    code = main(["train", str(data), "--out", str(run), "--epochs", "1", *TINY])
    assert code == 1
    assert one_line_error(capsys.readouterr().err, "train") == f"{run}: no space left on device"


# ----------------------------------------------------------------------------- export


def _contents(path: Path) -> dict:
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path.parent)): p.read_bytes() for p in files}


@pytest.mark.parametrize("fmt, name", [("keras", "model.keras"), ("tflite", "model.tflite"),
                                       ("savedmodel", "savedmodel")])
def test_an_export_onto_a_full_disk_keeps_the_previous_one(finished_run, tmp_path, capsys, monkeypatch, fmt, name):
    with small_disk(tmp_path / "disk", "3m", monkeypatch) as disk:
        if fmt == "savedmodel" and not disk.real:
            pytest.skip("TensorFlow writes a SavedModel past Python's file objects: only a real full disk stops it")
        target = disk.folder / name
        assert main(["export", str(finished_run), "--format", fmt, "--out", str(target)]) == 0
        before = _contents(target)
        capsys.readouterr()
        disk.fill()
        code = main(["export", str(finished_run), "--format", fmt, "--out", str(target)])
        err = capsys.readouterr().err
        assert code == 1
        assert one_line_error(err, "export") == f"{target}: no space left on device"
        assert _contents(target) == before and left_over(disk.folder) == []


def test_an_export_into_a_read_only_folder_keeps_the_previous_one(finished_run, tmp_path, capsys):
    folder = tmp_path / "exports"
    target = folder / "model.keras"
    assert main(["export", str(finished_run), "--format", "keras", "--out", str(target)]) == 0
    before = target.read_bytes()
    capsys.readouterr()
    with read_only(folder) as reason:
        code = main(["export", str(finished_run), "--format", "keras", "--out", str(target)])
        err = capsys.readouterr().err
        assert code == 1
        assert one_line_error(err, "export") == f"{target}: {reason}"
        assert target.read_bytes() == before


# ----------------------------------------------------------------------------- reports


def _report(run: Path, out: Path, *extra) -> int:
    return main(["report", str(run), "--out", str(out), *extra])


def test_a_report_onto_a_full_disk_keeps_the_previous_report(finished_run, tmp_path, capsys, monkeypatch):
    with small_disk(tmp_path / "disk", "3m", monkeypatch) as disk:
        assert _report(finished_run, disk.folder, "--pdf") == 0
        before = {p: (disk.folder / p).read_bytes() for p in ("report.html", "report.pdf")}
        capsys.readouterr()
        disk.fill()
        code = _report(finished_run, disk.folder, "--pdf")
        err = capsys.readouterr().err
        assert code == 1
        assert one_line_error(err, "report") == f"{disk.folder / 'report.html'}: no space left on device"
        assert {p: (disk.folder / p).read_bytes() for p in before} == before and left_over(disk.folder) == []


def test_a_pdf_that_does_not_fit_keeps_the_previous_pdf_byte_for_byte(finished_run, tmp_path, capsys, monkeypatch):
    """The reported fault: 60 KB free, exit 0 and the previous PDF replaced by 8 KB without its
    end. Now the web page fits, the PDF does not: exit 1, and the old PDF is as it was."""
    from cnnstudio.core.report import run_report_html

    with small_disk(tmp_path / "disk", "3m", monkeypatch) as disk:
        assert _report(finished_run, disk.folder, "--pdf") == 0
        old_pdf = (disk.folder / "report.pdf").read_bytes()
        assert old_pdf.rstrip().endswith(b"%%EOF") and len(old_pdf) > 20_000
        capsys.readouterr()
        html = len(run_report_html(finished_run).encode())
        disk.fill(room=html + 8192 if disk.real else html + 1024)  # the page and less than the PDF
        code = _report(finished_run, disk.folder, "--pdf")
        err = capsys.readouterr().err
        assert code == 1
        assert one_line_error(err, "report") == f"{disk.folder / 'report.pdf'}: no space left on device"
        assert (disk.folder / "report.pdf").read_bytes() == old_pdf and left_over(disk.folder) == []


def test_a_report_into_a_read_only_folder_is_one_line(finished_run, tmp_path, capsys):
    folder = tmp_path / "reports"
    assert _report(finished_run, folder, "--pdf") == 0
    before = {p.name: p.read_bytes() for p in folder.iterdir()}
    capsys.readouterr()
    with read_only(folder) as reason:
        for extra in ((), ("--pdf",)):
            code = _report(finished_run, folder, *extra)
            err = capsys.readouterr().err
            assert code == 1
            assert one_line_error(err, "report") == f"{folder / 'report.html'}: {reason}"
        assert {p.name: p.read_bytes() for p in folder.iterdir()} == before
