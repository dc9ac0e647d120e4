"""Input pipeline: images/s training a small scratch model from a JPEG folder.

Three ways to feed the same model the same images, measured in one run:
  studio     cnnstudio's pipeline (decode once, cache uint8, shuffle, batch, prefetch)
  memory     the images pre-loaded as in-memory tensors (the ceiling)
  keras      keras.utils.image_dataset_from_directory (decodes every JPEG every epoch)
Targets: studio / memory >= 0.9, studio / keras >= 1.2.

Each feed's first epoch includes building it (the studio decodes every file into its cache
then); later epochs are interleaved across the feeds. Four ratios are printed: all epochs by
wall time, the median and the best later epoch, and images per CPU-second over all epochs.
On small virtual machines whole epochs at times run on one core's worth of CPU (seen as epochs
of exactly the same length whatever the feed); the best epoch and the CPU-second figures are
the ones such spells do not distort.

    python bench/bench_pipeline.py [--images 1500] [--size 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import make_jpeg_folder  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=1500)
    ap.add_argument("--size", type=int, default=64, help="model input size")
    ap.add_argument("--source-size", type=int, default=256, help="size of the JPEGs on disk")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--models", default="small,keras-small-convnet",
                    help="comma-separated: 'small' (three 1-conv blocks of 16/32/64 filters, global average "
                    "pooling) and/or any preset or backbone id")
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", default=None, help="folder for the generated JPEGs (kept between runs)")
    args = ap.parse_args()

    import keras
    import tensorflow as tf

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.pipeline import ImagePipeline
    from cnnstudio.core.io.images import load_array
    from cnnstudio.core.model.models import build_model
    from cnnstudio.core.model.spec import HeadSpec, ModelSpec, resolve_spec

    root = Path(args.dir or Path(tempfile.gettempdir()) / "cnnstudio-bench-pipeline")
    make_jpeg_folder(root, args.images, args.source_size)
    index = scan_dataset(root)
    paths, labels = index.paths(), index.labels()
    n = len(paths)
    registry = load_registry()

    def spec_for(name):
        if name == "small":
            blocks = [{"type": "conv", "filters": f, "convs": 1} for f in (16, 32, 64)]
            return ModelSpec("scratch", {"blocks": blocks}, HeadSpec("avg", [], 0.0), input_size=args.size)
        return resolve_spec(registry, name, input_size=args.size)

    def timed_epoch(model, ds):
        t0, c0 = time.perf_counter(), time.process_time()
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        return time.perf_counter() - t0, time.process_time() - c0

    def first_epoch(make_ds, spec):
        """A model and its feed, after one timed epoch; building the feed (the studio's decoding
        into its cache) counts towards that epoch."""
        keras.utils.set_random_seed(0)
        model = build_model(spec, len(index.class_names), registry)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        t0, c0 = time.perf_counter(), time.process_time()
        ds = make_ds()
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        return model, ds, (time.perf_counter() - t0, time.process_time() - c0)

    def measure(feeds, spec):
        """Every feed's first epoch, then the later epochs interleaved feed by feed (in a rotating
        order), so a slow spell of the machine hits them all alike."""
        runs = {name: first_epoch(make, spec) for name, make in feeds.items()}
        later = {name: [] for name in feeds}
        names = list(feeds)
        for epoch in range(1, args.epochs):
            for name in names[epoch % len(names):] + names[:epoch % len(names)]:
                model, ds, _ = runs[name]
                later[name].append(timed_epoch(model, ds))
        if os.environ.get("BENCH_VERBOSE"):
            print({k: [round(n / wall) for wall, _ in v] for k, v in later.items()})
        out = {}
        for name, (_, _, (first, first_cpu)) in runs.items():
            walls = np.array([w for w, _ in later[name]])
            cpus = np.array([c for _, c in later[name]])
            steady = float(np.median(walls))
            out[name] = {
                "name": name,
                "all": n * args.epochs / (first + walls.sum()),
                "steady": n / steady,
                "best": n / walls.min(),
                "cpu": n * args.epochs / (first_cpu + cpus.sum()),
                "first": first,
            }
        return out

    pipes = []

    def studio_ds():
        pipes.append(ImagePipeline(args.size, cache="auto"))
        return pipes[-1].dataset(paths, labels, batch_size=args.batch_size, shuffle=True, seed=0)

    x = np.stack([load_array(p, args.size) for p in paths]).astype(np.float32)
    y = np.array(labels, np.int32)
    memory_ds = (tf.data.Dataset.from_tensor_slices((x, y)).shuffle(n, seed=0).batch(args.batch_size)
                 .prefetch(tf.data.AUTOTUNE))

    keras_ds = keras.utils.image_dataset_from_directory(
        root, image_size=(args.size, args.size), batch_size=args.batch_size, seed=0, verbose=False,
    ).prefetch(tf.data.AUTOTUNE)

    print(f"{n} JPEGs of {args.source_size} px -> {args.size} px, batch {args.batch_size}, {args.epochs} epochs, "
          f"{os.cpu_count()} CPUs")
    for model_name in args.models.split(","):
        spec = spec_for(model_name)
        by = measure({"memory": lambda: memory_ds, "studio": studio_ds, "keras": lambda: keras_ds}, spec)
        results = list(by.values())
        print(f"\nmodel {model_name}")
        print(f"  {'feed':<8} {'img/s all':>10} {'median later':>13} {'best later':>11} {'img/CPU-s':>10} "
              f"{'1st epoch s':>12}")
        for r in results:
            print(f"  {r['name']:<8} {r['all']:>10.0f} {r['steady']:>13.0f} {r['best']:>11.0f} {r['cpu']:>10.0f} "
                  f"{r['first']:>12.2f}")
        for key, label in (("all", "all epochs, wall"), ("steady", "median later epoch"),
                           ("best", "best later epoch"), ("cpu", "all epochs, per CPU-second")):
            print(f"  ratio studio/memory ({label}): {by['studio'][key] / by['memory'][key]:.2f}   (target >= 0.9)")
            print(f"  ratio studio/keras  ({label}): {by['studio'][key] / by['keras'][key]:.2f}   (target >= 1.2)")
    for pipe in pipes:
        pipe.close()


if __name__ == "__main__":
    main()
