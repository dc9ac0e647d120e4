"""Training on two devices against one: the studio's own training (``cnnstudio train``) with
``--devices 2`` (MirroredStrategy over two devices) and ``--devices 1``, the same images,
model, global batch and seed, measured side by side in one run.

On a machine without GPUs, ``--devices 2`` splits the CPU into two logical devices that share
its cores: the ratio then shows what MirroredStrategy costs (splitting each batch, summing the
gradients), not a speed-up. On a machine with two GPUs it shows the speed-up.

  images/s   training images over the median epoch time after the first (the first traces the
             step and decodes the images into the cache), from each run's history.csv
  ratio      two devices / one, per round; rounds alternate 1, 2, 1, 2 ...; the median counts

Each training is its own process (logical devices are made before TensorFlow starts).

    python bench/bench_devices.py [--images 600] [--size 32] [--batch 32] [--epochs 4] [--rounds 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import make_jpeg_folder  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def train(data: Path, out: Path, devices: str, args) -> dict:
    """One training in a fresh process; its images/s and what it recorded."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "cnnstudio", "train", str(data), "--out", str(out), "--model", "keras-small-convnet",
         "--image-size", str(args.size), "--batch-size", str(args.batch), "--epochs", str(args.epochs),
         "--patience", "0", "--seed", "1", "--val-split", "0.1", "--test-split", "0.1", "--devices", devices],
        capture_output=True, text=True, env=env, cwd=str(ROOT))
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"--devices {devices}: training failed:\n{done.stderr[-2000:]}")
    with open(out / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    config = json.loads((out / "config.json").read_text())
    n_train = len(config["split"]["train"]) if isinstance(config.get("split"), dict) else None
    seconds = [float(r["seconds"]) for r in rows]
    steady = statistics.median(seconds[1:] or seconds)
    compute = json.loads((out / "metrics.json").read_text())["compute"]
    return {"devices": devices, "replicas": compute["replicas"], "strategy": compute["strategy"],
            "images_per_s": (n_train or 0) / steady, "epoch_s": seconds, "wall_s": wall,
            "loss": [float(r["loss"]) for r in rows], "n_train": n_train}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--batch", type=int, default=32, help="the global batch (even: it splits over 2 devices)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--data", type=Path, default=None, help="folder for the synthetic images (kept)")
    args = ap.parse_args()
    if args.batch % 2:
        ap.error(f"--batch {args.batch}: must be even to split over two devices")

    from cnnstudio.core.tf import tf

    gpus = len(tf().config.list_physical_devices("GPU"))
    kind = "GPUs" if gpus >= 2 else "logical CPU devices"
    with tempfile.TemporaryDirectory(prefix="bench-devices-") as tmp:
        data = make_jpeg_folder(args.data or Path(tmp) / "data", args.images, args.size)
        rounds = []
        for r in range(args.rounds):
            pair = {}
            for devices in ("1", "2"):
                result = train(data, Path(tmp) / f"run-{r}-{devices}", devices, args)
                pair[devices] = result
                print(f"round {r + 1}, --devices {devices}: {result['replicas']} replica(s), "
                      f"{result['strategy']}, {result['images_per_s']:.0f} images/s "
                      f"(epochs {', '.join(f'{s:.2f}' for s in result['epoch_s'])} s; process {result['wall_s']:.1f} s)",
                      flush=True)
            rounds.append(pair)
    ratios = [p["2"]["images_per_s"] / p["1"]["images_per_s"] for p in rounds]
    gaps = [max(abs(p["2"]["loss"][e] - p["1"]["loss"][e]) / abs(p["1"]["loss"][e]) for p in rounds)
            for e in range(min(len(p["1"]["loss"]) for p in rounds))]
    print()
    print(f"{args.images} images of {args.size} px, keras-small-convnet, global batch {args.batch}, "
          f"{args.epochs} epochs; {os.cpu_count()} CPU cores, {gpus} GPU(s)")
    print(f"images/s, one device: {statistics.median(p['1']['images_per_s'] for p in rounds):.0f}; "
          f"two {kind}: {statistics.median(p['2']['images_per_s'] for p in rounds):.0f}")
    print(f"ratio two/one: {statistics.median(ratios):.2f}x (rounds: {', '.join(f'{x:.2f}' for x in ratios)})")
    print("relative difference of each epoch's loss, two devices against one (the largest over the rounds): "
          + ", ".join(f"{g:.1e}" for g in gaps) + " (the replicas' gradients are summed in another order; "
          "rounding differences grow as training goes on)")
    if gpus < 2:
        print("Without two GPUs the two devices are one CPU split in two, sharing its cores: the ratio shows "
              "MirroredStrategy's overhead, not a speed-up.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
