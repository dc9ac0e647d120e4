"""Soak test of resuming: `cnnstudio train` killed (SIGKILL) at random moments, resumed each time.

A small model trains for ``--epochs`` epochs in a subprocess. The script kills it ``--kills``
times at seeded random moments (most while it trains, some while it starts up and loads
TensorFlow), each time running `cnnstudio train --resume --out RUN` again, until the run
finishes. Then it checks what a kill must never do: every epoch is in the history exactly once,
the last checkpoint's optimizer made ``epochs`` epochs' worth of steps (an uninterrupted
one-epoch run in the same process measures one epoch's worth), each resume went on from the
epoch the checkpoint had committed when the process died, and nothing an interrupted write left
behind survives. It prints "N/N resumed, X epochs lost, Y trained twice".

    python bench/soak_resume.py [--epochs 12] [--kills 20] [--seed 0]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import make_jpeg_folder  # noqa: E402

BLOCKS = '[{"type": "conv", "filters": 8, "convs": 1}]'
RESUMED = re.compile(r"resuming from epoch (\d+)")
EPOCH_TIME = re.compile(r"^Epoch 1/1: .*\(([0-9.]+)s")


def train_args(data: Path, run: Path, epochs: int, resume: bool) -> list[str]:
    if resume:
        return [sys.executable, "-m", "cnnstudio", "train", "--out", str(run), "--resume"]
    return [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(run), "--epochs", str(epochs),
            "--image-size", "24", "--param", f"blocks={BLOCKS}", "--batch-size", "8", "--patience", "0",
            "--val-split", "0.2", "--test-split", "0.1"]


class Training:
    """One `cnnstudio train` process; its standard error is read as it comes."""

    def __init__(self, args: list[str]):
        env = dict(os.environ, PYTHONUNBUFFERED="1", TF_CPP_MIN_LOG_LEVEL="2")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.training = threading.Event()  # the first epoch began
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stderr:
            for part in line.split("\r"):
                self.lines.append(part.strip())
                if part.startswith("Training on"):
                    self.training.set()

    def resumed_from(self) -> int | None:
        for line in self.lines:
            if "no epoch was saved before the run stopped" in line:
                return 1
            m = RESUMED.search(line)
            if m:
                return int(m.group(1))
        return None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.reader.join(timeout=10)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout=timeout)
        self.reader.join(timeout=10)
        return code


def committed(run: Path) -> int:
    """The epochs the checkpoint commits now (0 before the first)."""
    state = run / "checkpoints" / "state.json"
    return json.loads(state.read_text())["epochs_done"] if state.exists() else 0


def uncommitted(run: Path) -> list[str]:
    """Files in checkpoints/ that state.json does not name: a kill came in the middle of a commit."""
    folder = run / "checkpoints"
    if not folder.is_dir():
        return []
    state = folder / "state.json"
    named = {f["name"] for f in json.loads(state.read_text()).get("files", {}).values() if f} if state.exists() else set()
    return [p.name for p in folder.iterdir() if p.name != "state.json" and p.name not in named]


def iterations(run: Path) -> int:
    from cnnstudio.core.runs import checkpoint
    from cnnstudio.core.runs.folder import RunPaths
    from cnnstudio.core.tf.seeding import load_model

    return int(load_model(checkpoint.read(RunPaths(run)).last).optimizer.iterations.numpy())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=12)
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--images", type=int, default=240)
    args = ap.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # this process loads the checkpoints at the end
    rng = random.Random(args.seed)

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        data = make_jpeg_folder(tmp / "data", args.images, 24)
        t0 = time.perf_counter()
        reference = Training(train_args(data, tmp / "reference", 1, resume=False))
        if reference.wait(600) != 0:
            print("the reference run failed:\n" + "\n".join(reference.lines[-20:]))
            return 1
        per_epoch = iterations(tmp / "reference")
        startup = time.perf_counter() - t0  # an upper bound of the start-up, a one-epoch run's whole time
        timed = [float(m.group(1)) for line in reference.lines if (m := EPOCH_TIME.search(line))]
        epoch_seconds = timed[0] if timed else 1.0

        run = tmp / "run"
        kills, resumed, lost, at_startup, mid_write = 0, 0, 0, 0, 0
        startup_kills = set(rng.sample(range(args.kills), args.kills // 5))  # the rest while it trains
        failures = []
        proc, before = Training(train_args(data, run, args.epochs, resume=False)), 0
        while True:
            killed = False
            if kills < args.kills:
                if kills in startup_kills:  # while it starts up: reading the run, importing TensorFlow, building
                    time.sleep(rng.uniform(0.2, startup))
                    at_startup += 1
                else:  # while it trains: anywhere in an epoch, its checkpoint's commit included
                    proc.training.wait(timeout=600)
                    time.sleep(rng.uniform(0.0, 1.2 * epoch_seconds))
                if proc.proc.poll() is None:
                    proc.kill()
                    killed = True
            code = 0 if killed else proc.wait(600)
            start = proc.resumed_from()
            if start is not None:  # where a resume went on from, against what was committed when it started
                lost += abs(before - (start - 1))  # back: committed epochs lost; ahead: epochs never trained
            if kills and code == 0:
                resumed += 1  # the resume after the last kill worked (or was killed in turn, not failing)
            if code != 0:
                failures.append(proc.lines[-1] if proc.lines else f"exit status {code}")
                break
            if not killed:
                break
            kills += 1
            before = committed(run)
            mid_write += bool(uncommitted(run))
            proc = Training(train_args(data, run, args.epochs, resume=True))

        from cnnstudio.core.runs.records import read_history

        history = [row["epoch"] for row in read_history(run)]
        steps = iterations(run) if (run / "checkpoints" / "state.json").exists() else 0
        twice = max(0, round((steps - args.epochs * per_epoch) / per_epoch))
        missing = sorted(set(range(1, args.epochs + 1)) - set(history))
        repeated = sorted({e for e in history if history.count(e) > 1})
        left = [p.name for folder in (run, run / "checkpoints", run / "model") if folder.is_dir()
                for p in folder.iterdir() if p.name.startswith(".") and p.name != ".cnnstudio-lock" and p.is_file()]
        print(f"{resumed}/{kills} resumed, {lost + len(missing)} epochs lost, {twice + len(repeated)} trained twice")
        print(f"  kills while starting up: {at_startup}, while training: {kills - at_startup} "
              f"(an epoch takes {epoch_seconds:.1f} s), {mid_write} of them in the middle of a checkpoint's write; "
              f"{time.perf_counter() - t0:.0f} s in all")
        print(f"  history: epochs {history[:1]}..{history[-1:]} ({len(history)} rows); optimizer steps {steps} "
              f"= {args.epochs} x {per_epoch}: {steps == args.epochs * per_epoch}")
        if missing or repeated:
            print(f"  missing epochs {missing}, repeated epochs {repeated}")
        if left:
            print(f"  left behind: {', '.join(left)}")
        for failure in failures:
            print(f"  a resume failed: {failure}")
        ok = resumed == kills and not (lost or missing or repeated or twice or left or failures)
        return 0 if ok and steps == args.epochs * per_epoch else 1


if __name__ == "__main__":
    sys.exit(main())
