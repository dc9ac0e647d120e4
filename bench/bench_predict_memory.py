"""Memory of `cnnstudio predict` on a folder: 20,000 photos against 1,000, at 224 px.

Prediction decodes and predicts batch by batch, so its peak memory should hardly depend on how
many files a folder holds (target: 20,000 images need under 25% more peak RSS than 1,000).
A small model at 224 px is trained for one epoch on generated images; then, each in a fresh
process, `cnnstudio predict BUNDLE FOLDER --json` runs on 1,000 and on 20,000 photos of about
400x300 px (bench_seed.py's folder, built there if missing). Printed: each run's peak RSS, wall
time and images per second, and the ratio of the peaks.

    python bench/bench_predict_memory.py [--small 1000] [--large 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def measure(bundle: str, folder: str) -> dict:
    """One `cnnstudio predict` in a child process: its own peak RSS (this process waits for nothing else)."""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cnnstudio", "predict", bundle, folder, "--json"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - t0
    if out.returncode:
        raise SystemExit(f"predict failed: {out.stderr.strip().splitlines()[-1:]}")
    results = json.loads(out.stdout)
    return {"images": len(results), "errors": sum(1 for r in results if r["error"]), "wall": wall,
            "rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", type=int, default=1000)
    ap.add_argument("--large", type=int, default=20_000)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "cnnstudio-bench-seed"))
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(measure(*args.one)))
        return 0

    from bench_predict import train_small_bundle
    from common import make_photo_folder

    make_photo_folder(Path(args.dir), max(args.large, args.small))
    photos = sorted(str(p) for p in Path(args.dir).rglob("*.jpg"))
    with tempfile.TemporaryDirectory(prefix="cnnstudio-bench-predict-memory-") as tmp:
        work = Path(tmp)
        os.environ["CNNSTUDIO_DATA_DIR"] = str(work / "studio")
        bundle = train_small_bundle(work, 224)
        got = {}
        for n in (args.small, args.large):
            folder = work / f"photos-{n}"
            folder.mkdir()
            for i, src in enumerate(photos[:: max(1, len(photos) // n)][:n]):
                (folder / f"{i:06d}.jpg").symlink_to(src)
            out = subprocess.run([sys.executable, __file__, "--one", str(bundle), str(folder)],
                                 capture_output=True, text=True)
            if out.returncode:
                print(out.stdout + out.stderr[-2000:])
                return 1
            got[n] = r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"  {r['images']:>6} images: peak RSS {r['rss_mb']:>6.0f} MB, {r['wall']:>6.1f} s, "
                  f"{r['images'] / r['wall']:>5.0f} img/s ({r['errors']} errors)")
        small, large = got[args.small], got[args.large]
        print(f"  peak RSS {args.large} / {args.small} images: {large['rss_mb'] / small['rss_mb']:.2f} "
              f"(target < 1.25)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
