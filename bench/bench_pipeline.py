"""Input pipeline: images/s training a small scratch model from a JPEG folder.

Three ways to feed the same model the same images, measured in one run:
  studio     cnnstudio's pipeline (decode once, cache uint8, shuffle, batch, prefetch)
  memory     the images pre-loaded as in-memory tensors (the ceiling)
  keras      keras.utils.image_dataset_from_directory (decodes every JPEG every epoch)
Targets: studio / memory >= 0.9, studio / keras >= 1.2.

    python bench/bench_pipeline.py [--images 1500] [--size 64] [--epochs 4]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from common import EpochTimer, make_jpeg_folder  # noqa: E402


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

    from cnnstudio.core.dataset import scan_dataset
    from cnnstudio.core.images import load_array
    from cnnstudio.core.models import build_model
    from cnnstudio.core.pipeline import ImagePipeline
    from cnnstudio.core.spec import HeadSpec, ModelSpec, resolve_spec
    from cnnstudio.plugins import load_registry

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

    def fit(ds, name, spec):
        keras.utils.set_random_seed(0)
        model = build_model(spec, len(index.class_names), registry)
        model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
        timer = EpochTimer()
        model.fit(ds, epochs=args.epochs, callbacks=[timer], verbose=0, shuffle=False)
        t = np.array(timer.times)
        return {"name": name, "all": n * len(t) / t.sum(), "steady": n * (len(t) - 1) / t[1:].sum(), "first": t[0]}

    pipe = ImagePipeline(args.size, cache="auto")
    studio_ds = pipe.dataset(paths, labels, batch_size=args.batch_size, shuffle=True, seed=0)

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
        results = [fit(memory_ds, "memory", spec), fit(studio_ds, "studio", spec), fit(keras_ds, "keras", spec)]
        by = {r["name"]: r for r in results}
        print(f"\nmodel {model_name}")
        print(f"  {'feed':<8} {'img/s all epochs':>17} {'img/s after 1st':>16} {'1st epoch s':>12}")
        for r in results:
            print(f"  {r['name']:<8} {r['all']:>17.0f} {r['steady']:>16.0f} {r['first']:>12.2f}")
        for key, label in (("all", "all epochs"), ("steady", "after the first epoch")):
            print(f"  ratio studio/memory ({label}): {by['studio'][key] / by['memory'][key]:.2f}   (target >= 0.9)")
            print(f"  ratio studio/keras  ({label}): {by['studio'][key] / by['keras'][key]:.2f}   (target >= 1.2)")
    pipe.close()


if __name__ == "__main__":
    main()
