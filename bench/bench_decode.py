"""Decoding speed: the studio's pipeline against a pure-TensorFlow one, per core and from 1 to 2 cores.

The pure-TensorFlow pipeline is ``tf.io.decode_jpeg`` + ``tf.image.resize`` mapped with
AUTOTUNE, what a hand-written Keras input pipeline does. The studio's is its training pipeline
with no cache (every image decoded each pass, as evaluation reads), and with the memory and the
disk cache filling (a training's first epoch: decoded and kept), given the scan's record of
each file. Each (pipeline, threads) pair runs in a fresh process with TensorFlow's and tf.data's thread pools
set to that many threads; one untimed pass warms the page cache. The feeds take turns for
--rounds rounds and each one's best round counts (small virtual machines have slow spells).
Printed: images per second of
wall time and per CPU-second, the studio / pure-TF ratio per CPU-second (goal >= 0.9) and each
pipeline's speed-up from 1 to 2 threads (near 2 is linear).

    python bench/bench_decode.py [--dir FOLDER] [--images 3000] [--sizes 64,224] [--rounds 3]

The folder defaults to bench_seed.py's photo folder (built there if missing).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


FEEDS = ("pure-tf", "studio", "studio-memory", "studio-disk")


def one(feed: str, size: int, threads: int, folder: str, images: int) -> dict:
    import tensorflow as tf

    tf.config.threading.set_inter_op_parallelism_threads(threads)
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.pipeline import ImagePipeline

    index = scan_dataset(folder)
    paths = index.paths()[:: max(1, len(index.items) // images)][:images]
    options = tf.data.Options()
    options.threading.private_threadpool_size = threads
    if feed == "studio":
        pipe = ImagePipeline(size, cache="none", file_kinds=index.file_kinds())
        ds = pipe.dataset(paths, None, batch_size=64, cache=False)
    elif feed in ("studio-disk", "studio-memory"):  # a training's first epoch: decoded and cached
        cache = tempfile.mkdtemp()
        pipe = ImagePipeline(size, cache=feed.split("-")[1], cache_dir=cache, file_kinds=index.file_kinds())
        for _ in pipe.dataset(paths, None, batch_size=64, name="warm").with_options(options):
            pass
        ds = iter(pipe.dataset(paths, None, batch_size=64, name="timed").with_options(options))
        next(ds)  # the functions traced; the rest of the pass is timed
        t0, c0 = time.perf_counter(), time.process_time()
        n = sum(int(batch[0].shape[0]) for batch in ds)
        out = {"images": n, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}
        pipe.close()
        return out
    else:
        def load(path):
            image = tf.io.decode_jpeg(tf.io.read_file(path), channels=3)
            return tf.cast(tf.image.resize(image, (size, size)), tf.uint8)

        ds = tf.data.Dataset.from_tensor_slices(paths).map(load, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(64).prefetch(tf.data.AUTOTUNE)
    ds = ds.with_options(options)
    for _ in ds:  # warm: files in the page cache, functions traced
        pass
    t0, c0 = time.perf_counter(), time.process_time()
    n = sum(int(batch[0].shape[0]) if isinstance(batch, tuple) else int(batch.shape[0]) for batch in ds)
    return {"images": n, "wall": time.perf_counter() - t0, "cpu": time.process_time() - c0}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "cnnstudio-bench-seed"))
    ap.add_argument("--images", type=int, default=3000)
    ap.add_argument("--sizes", default="64,224")
    ap.add_argument("--rounds", type=int, default=3, help="runs of each feed, taking turns; the best is kept")
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        feed, size, threads = args.one
        print(json.dumps(one(feed, int(size), int(threads), args.dir, args.images)))
        return 0
    from common import make_photo_folder

    make_photo_folder(Path(args.dir))
    print(f"{args.images} JPEGs of about 400x300 px from {args.dir}; {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f}")
    for size in (int(s) for s in args.sizes.split(",")):
        got = {}
        for threads in (1, 2):
            runs = {feed: [] for feed in FEEDS}
            for _ in range(args.rounds):  # the feeds take turns, so a slow spell hits them alike
                for feed in FEEDS:
                    out = subprocess.run([sys.executable, __file__, "--dir", args.dir, "--images", str(args.images),
                                          "--one", feed, str(size), str(threads)], capture_output=True, text=True)
                    if out.returncode:
                        print(out.stderr[-3000:])
                        return 1
                    runs[feed].append(json.loads(out.stdout.strip().splitlines()[-1]))
            for feed in FEEDS:  # each feed's best round: the one a slow spell did not touch
                got[feed, threads] = r = max(runs[feed], key=lambda r: r["images"] / r["cpu"])
                print(f"  {size:>3} px  {feed:<13} {threads} thread(s): {r['images'] / r['wall']:>6.0f} img/s, "
                      f"{r['images'] / r['cpu']:>6.0f} img/CPU-s  (rounds: "
                      + ", ".join(f"{x['images'] / x['cpu']:.0f}" for x in runs[feed]) + ")")
        for threads in (1, 2):
            for feed in FEEDS[1:]:
                s, p = got[feed, threads], got["pure-tf", threads]
                print(f"  {size} px, {threads} thread(s): {feed} / pure TF per CPU-second "
                      f"{(s['images'] / s['cpu']) / (p['images'] / p['cpu']):.2f} (goal >= 0.9), "
                      f"wall {(s['images'] / s['wall']) / (p['images'] / p['wall']):.2f}")
        for feed in FEEDS:
            print(f"  {size} px, {feed}: 2 threads / 1 thread {got[feed, 1]['wall'] / got[feed, 2]['wall']:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
