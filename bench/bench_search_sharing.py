"""Trials per hour of one search shared by 2 ``cnnstudio tune`` processes, against 1, in one run.

Both searches are the same tiny search (the same space, data and budget), each on a SQLite
storage of its own: first one process runs all ``--trials``, then two processes started together
share them. The rate is taken from the storage, from the first trial's start to the last trial's
end (the processes' start-up, mostly TensorFlow's import, is shown apart), so it is the rate at
which the shared search gets through trials once its workers are up.

    python bench/bench_search_sharing.py [--trials 8] [--epochs 2] [--image-size 32]

On one machine the two processes share its cores, and each TensorFlow process uses all of them:
a second process can only gain what one leaves idle (Python between steps, model building,
evaluation, writing the run folder), and loses to the two contending for the cores and caches.
On a 2-core CPU shared with other work two runs measured 0.72x and 1.19x (each trial 2.7x and
1.6x as long as alone): about 1, the second process gaining roughly what the contention costs.
Sharing pays across machines, each adding its own cores, not within a small one. The script says
which case it saw.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

SPACE = {"train.learning_rate": {"choices": [0.03, 0.01, 0.003]}, "blocks.filters.0": {"choices": [8, 16]}}


def run_search(workers: int, data: Path, folder: Path, args) -> dict:
    import optuna

    storage = f"sqlite:///{folder / 'study.db'}"
    space = folder / "space.json"
    folder.mkdir(parents=True, exist_ok=True)
    space.write_text(json.dumps(SPACE))
    command = [sys.executable, "-m", "cnnstudio", "tune", str(data), "--out", str(folder / "search"),
               "--storage", storage, "--trials", str(args.trials), "--space", str(space), "--no-prune",
               "--epochs", str(args.epochs), "--image-size", str(args.image_size), "--model", "scratch",
               "--batch-size", "8"]
    start = time.perf_counter()
    procs = [subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(workers)]
    for proc in procs:
        _, err = proc.communicate(timeout=3600)
        if proc.returncode != 0:
            raise RuntimeError(f"a tune process failed: {err[-2000:]}")
    wall = time.perf_counter() - start
    trials = optuna.load_study(study_name="cnnstudio", storage=storage).get_trials()
    done = [t for t in trials if t.state.name == "COMPLETE"]
    first = min(t.datetime_start for t in done)
    last = max(t.datetime_complete for t in done)
    span = (last - first).total_seconds()
    return {"workers": workers, "trials": len(done), "span_s": span, "wall_s": wall,
            "per_hour": 3600 * len(done) / span, "per_hour_wall": 3600 * len(done) / wall,
            "seconds_per_trial": sum((t.datetime_complete - t.datetime_start).total_seconds() for t in done)
            / len(done)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--per-class", type=int, default=30)
    args = parser.parse_args()

    import os

    from tinydata import make_dataset

    cores = os.cpu_count()
    with tempfile.TemporaryDirectory(prefix="bench-sharing-") as tmp:
        tmp = Path(tmp)
        data = make_dataset(tmp / "data", per_class=args.per_class, size=args.image_size)
        rows = [run_search(n, data, tmp / f"workers-{n}", args) for n in (1, 2)]
    print(f"{args.trials} trials of {args.epochs} epoch(s), scratch model, {args.image_size} px, "
          f"{3 * args.per_class} images, {cores} CPU core(s)")
    print(f"{'processes':>9}  {'trials/hour':>11}  {'(with start-up)':>15}  {'s per trial':>11}  {'first-to-last':>13}")
    for r in rows:
        print(f"{r['workers']:>9}  {r['per_hour']:>11.0f}  {r['per_hour_wall']:>15.0f}  "
              f"{r['seconds_per_trial']:>11.1f}  {r['span_s']:>11.1f} s")
    one, two = rows
    ratio = two["per_hour"] / one["per_hour"]
    print(f"2 processes / 1 process: {ratio:.2f}x trials per hour "
          f"({two['per_hour_wall'] / one['per_hour_wall']:.2f}x counting start-up)")
    slower = two["seconds_per_trial"] / one["seconds_per_trial"]
    print(f"Each trial took {slower:.2f}x as long with 2 processes as alone: they share {cores} core(s).")
    if ratio < 1.0:
        print("Below 1: on this CPU two TensorFlow processes, each using every core, slow each other down "
              "more than they overlap; share a search among machines (one process each), not within one.")
    elif ratio < 1.5:
        print("Near 1: the cores were already busy with one process; the second only fills the time one "
              "leaves them idle (Python between steps, model building, evaluation, writing).")
    else:
        print("Well above 1: the trials were bound by something other than the cores, which a second process "
              "overlaps.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
