"""Memory: peak RSS training on 1,000 vs 8,000 images of 128 px (target: grows by under 25%).

Each size trains in its own process (so each peak is its own), one epoch of a small scratch
model (three 1-conv blocks of 16/32/64 filters, global average pooling) at 128 px through the studio's Trainer, with the default cache policy and with the cache
off. The seed reports loaded the whole dataset as float32 (8,000 x 128 x 128 x 3 x 4 bytes =
1.5 GB); the studio streams and caches uint8 on disk beyond a budget.

    python bench/bench_memory.py [--small 1000] [--large 8000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from common import make_jpeg_folder  # noqa: E402


def child(data: str, n: int, cache: str, out: str) -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import make_split, scan_dataset
    from cnnstudio.core.model.spec import HeadSpec, ModelSpec
    from cnnstudio.core.training.config import TrainConfig
    from cnnstudio.core.training.trainer import Trainer

    registry = load_registry()
    index = scan_dataset(data)
    step = len(index.items) / n  # every class equally represented
    index.items = [index.items[int(i * step)] for i in range(n)]
    split = make_split(index, 0.1, 0.1, seed=0)
    blocks = [{"type": "conv", "filters": f, "convs": 1} for f in (16, 32, 64)]
    spec = ModelSpec("scratch", {"blocks": blocks}, HeadSpec("avg", [], 0.0), input_size=128)
    Trainer(index, split, spec, TrainConfig(epochs=1, batch_size=32, patience=0, cache=cache), out, registry).run()
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_mb": peak_kb / 1024}))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=8000)
    ap.add_argument("--dir", default=None, help="folder for the generated JPEGs (kept between runs)")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        data, n, cache, out = args.child
        child(data, int(n), cache, out)
        return

    root = Path(args.dir or Path(tempfile.gettempdir()) / "cnnstudio-bench-memory")
    make_jpeg_folder(root, args.large, 128, classes=4)
    print(f"peak RSS, one epoch of a small scratch model at 128 px, {os.cpu_count()} CPUs")
    for cache in ("auto", "none"):
        peaks = {}
        for n in (args.small, args.large):
            with tempfile.TemporaryDirectory() as run:
                out = subprocess.run([sys.executable, __file__, "--child", str(root), str(n), cache, run + "/run"],
                                     capture_output=True, text=True)
                if out.returncode:
                    sys.exit(out.stderr[-3000:])
                peaks[n] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        growth = peaks[args.large] / peaks[args.small] - 1
        print(f"cache={cache:<5} {args.small} images: {peaks[args.small]:7.0f} MB   {args.large} images: "
              f"{peaks[args.large]:7.0f} MB   growth {growth * 100:+.1f}%   (target < +25%)")


if __name__ == "__main__":
    main()
