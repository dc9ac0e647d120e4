"""How fast the dataset scan decodes a folder, against a plain single-threaded loop in the same run.

    python bench/bench_scan.py [--files 5000] [--size 96] [--classes 4] [--workers N] [--dir DIR]

Writes small JPEGs into a temporary folder (or --dir, reused when it already holds them), then
times ``scan_dataset`` (thread pool) and a ``verify`` loop over the same files. Both passes read
from a warm page cache: the first untimed pass lists and reads every file once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from cnnstudio.core.data.dataset import scan_dataset
from cnnstudio.core.io import images


def write_files(root: Path, files: int, size: int, classes: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    for i in range(files):
        path = root / f"class_{i % classes}" / f"img_{i:05d}.jpg"
        paths.append(path)
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 256, 3)
        ys, xs = np.mgrid[0:size, 0:size]
        img = (
            base + np.stack([xs, ys, xs + ys], axis=-1) + rng.normal(0, 12, (size, size, 3))
        ) % 256
        Image.fromarray(img.astype(np.uint8), "RGB").save(path, quality=90)
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument(
        "--workers", type=int, default=None, help="scan threads (default: the scan's own)"
    )
    parser.add_argument("--dir", type=Path, default=None, help="folder for the images (kept)")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="cnnstudio-bench-") as tmp:
        root = args.dir or Path(tmp)
        t0 = time.perf_counter()
        paths = write_files(root, args.files, args.size, args.classes)
        made = time.perf_counter() - t0
        for path in paths:  # warm the page cache for both timed passes alike
            path.read_bytes()

        t0 = time.perf_counter()
        index = scan_dataset(root, workers=args.workers)
        scan_s = time.perf_counter() - t0
        if len(index.items) != len(paths):
            print(f"scan found {len(index.items)} of {len(paths)} images: {index.summary()}")
            return 1

        t0 = time.perf_counter()
        for path in paths:
            images.verify(path)
        loop_s = time.perf_counter() - t0

    n = len(paths)
    workers = args.workers or min(8, (os.cpu_count() or 1) * 2)
    print(
        f"{n} JPEGs of {args.size}x{args.size} px in {args.classes} classes "
        f"(written in {made:.1f} s); {os.cpu_count()} CPUs; Python {sys.version.split()[0]}"
    )
    print(f"{'pass':<34}{'files/s':>10}{'s per 1000':>12}")
    print(f"{f'scan_dataset ({workers} threads)':<34}{n / scan_s:>10.0f}{scan_s / n * 1000:>12.3f}")
    print(f"{'verify() loop (1 thread)':<34}{n / loop_s:>10.0f}{loop_s / n * 1000:>12.3f}")
    print(f"speed-up of the scan over the loop: {loop_s / scan_s:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
