"""The studio at its users' scale: 20,000 photos of about 400x300 px trained at 224 px.

Builds (once, kept in --dir) a folder of JPEGs cropped from real photographs (the sample photos
scikit-image and scikit-learn ship: ``pip install -e ".[bench]"``), two classes of 10,000. Then,
side by side in one run, each feed trains the same model with the same batch size, every
(model, feed) in a fresh process so its peak memory is its own:

- ``studio``: the studio's pipeline with its default cache (``auto``: on disk at this size);
- ``keras``: ``keras.utils.image_dataset_from_directory`` (shuffled, as Keras does by default);
- ``memory``: every image already decoded into one in-memory ``uint8`` tensor, batches gathered
  from a permutation (the decoding is done before the clock starts).

Printed for each: images per second of wall time and per CPU-second (all the process' threads)
for each epoch and over all, the time from the start of ``fit`` to the end of the first batch,
and the peak RSS. The one-class batch fraction is that of the studio's visiting order over the
class-sorted training list, next to what the buffered shuffle before it gave and what a uniform
shuffle gives. Also the scan of the folder, first and again.

    python bench/bench_seed.py [--images 20000] [--models keras-small-convnet,vgg16:1000] [--epochs 2]

A model may name how many of the images it trains on (``vgg16:1000``): a frozen VGG16 at 224 px
runs at a few images a second on two CPU cores.
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

SIZE = 224
OLD_SHUFFLE_BUFFER_BYTES = 64 << 20  # what the disk-cache shuffle buffer held before


def one_run(args) -> dict:
    """One feed, one model, in this process; returns its figures."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.pipeline import ImagePipeline
    from cnnstudio.core.io.images import load_array
    from cnnstudio.core.model.models import build_model
    from cnnstudio.core.model.spec import resolve_spec

    index = scan_dataset(args.dir)
    take = np.linspace(0, len(index.items) - 1, args.limit).astype(int) if args.limit else np.arange(len(index.items))
    paths, labels = index.paths(take), index.labels(take)
    n = len(paths)
    registry = load_registry()
    keras.utils.set_random_seed(0)
    spec = resolve_spec(registry, args.model, input_size=SIZE, weights="none" if args.model != "keras-small-convnet" else None)
    model = build_model(spec, len(index.class_names), registry)
    model.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])

    if args.feed == "studio":
        pipe = ImagePipeline(SIZE, cache="auto", cache_dir=tempfile.gettempdir(), file_kinds=index.file_kinds())
        make = lambda: pipe.dataset(paths, labels, batch_size=args.batch_size, shuffle=True, seed=0)  # noqa: E731
    elif args.feed == "keras":
        root = Path(args.dir)
        files = [str(root / index.items[i].path) for i in take]
        if args.limit:
            make = lambda: _keras_subset(files, labels, args.batch_size)  # noqa: E731
        else:
            make = lambda: keras.utils.image_dataset_from_directory(  # noqa: E731
                root, image_size=(SIZE, SIZE), batch_size=args.batch_size, seed=0, verbose=False,
            ).prefetch(tf.data.AUTOTUNE)
    else:
        x = tf.constant(np.stack([load_array(p, SIZE) for p in paths]))
        y = tf.constant(np.array(labels, np.int32))

        def make():
            order = tf.data.Dataset.range(n).shuffle(n, seed=0, reshuffle_each_iteration=True).batch(args.batch_size)
            return order.map(lambda i: (tf.gather(x, i), tf.gather(y, i))).prefetch(tf.data.AUTOTUNE)

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.first_batch = None
            self.epochs = []

        def on_epoch_begin(self, epoch, logs=None):
            self.t = (time.perf_counter(), time.process_time())

        def on_train_batch_end(self, batch, logs=None):
            if self.first_batch is None:
                self.first_batch = time.perf_counter() - start

        def on_epoch_end(self, epoch, logs=None):
            self.epochs.append((time.perf_counter() - self.t[0], time.process_time() - self.t[1],
                                float(logs.get("accuracy", 0))))

    clock = Clock()
    start = time.perf_counter()
    cpu0 = time.process_time()
    ds = make()
    model.fit(ds, epochs=args.epochs, verbose=0, callbacks=[clock], shuffle=False)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu0
    return {
        "feed": args.feed, "model": args.model, "images": n, "wall": wall, "cpu": cpu,
        "epochs": clock.epochs, "first_batch": clock.first_batch,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def _keras_subset(files, labels, batch_size):
    """Keras' own loader's dataset over a subset: ``paths_and_labels_to_dataset`` as
    ``image_dataset_from_directory`` calls it, shuffled the same way."""
    import tensorflow as tf
    from keras.src.utils.image_dataset_utils import paths_and_labels_to_dataset

    ds = paths_and_labels_to_dataset(
        image_paths=files, image_size=(SIZE, SIZE), num_channels=3, labels=[int(x) for x in labels],
        label_mode="int", num_classes=2, interpolation="bilinear", data_format="channels_last",
        shuffle=True, shuffle_buffer_size=batch_size * 8, seed=0,
    )
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def one_class_fractions(args) -> dict:
    import numpy as np
    import tensorflow as tf

    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.pipeline import visiting_order

    labels = np.array(scan_dataset(args.dir).labels())  # class-sorted, as the studio lists them
    n = len(labels)

    def fraction(order):
        batches = [labels[b] for b in order.batch(args.batch_size).as_numpy_iterator()]
        return float(np.mean([len(set(b)) == 1 for b in batches]))

    old_buffer = max(1, min(n, OLD_SHUFFLE_BUFFER_BYTES // (SIZE * SIZE * 3)))
    uniform = 2 * 0.5 ** args.batch_size  # two balanced classes
    return {
        "studio": fraction(visiting_order(n, True, 0)),
        "old": fraction(tf.data.Dataset.range(n).shuffle(old_buffer, seed=0)),
        "uniform": uniform, "old_buffer": old_buffer,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=20_000)
    ap.add_argument("--models", default="keras-small-convnet,vgg16:1000")
    ap.add_argument("--feeds", default="studio,keras,memory")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--dir", default=str(Path(tempfile.gettempdir()) / "cnnstudio-bench-seed"))
    ap.add_argument("--one", nargs=3, metavar=("FEED", "MODEL", "LIMIT"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.one:
        args.feed, args.model, limit = args.one
        args.limit = int(limit)
        print(json.dumps(one_run(args)))
        return 0

    from common import make_photo_folder

    from cnnstudio.core.data.dataset import scan_dataset

    t0 = time.perf_counter()
    make_photo_folder(Path(args.dir), args.images,
                      progress=lambda d, t: print(f"  building the folder: {d}/{t}", end="\r", flush=True))
    print(f"folder {args.dir}: {args.images} JPEGs ({time.perf_counter() - t0:.0f} s to build or find)")
    t0 = time.perf_counter()
    index = scan_dataset(args.dir)
    first_scan = time.perf_counter() - t0
    t0 = time.perf_counter()
    scan_dataset(args.dir)
    print(f"scan: {len(index.items)} images in {first_scan:.2f} s, again (unchanged) in "
          f"{time.perf_counter() - t0:.2f} s (a first scan here may already be a rescan)")
    print(f"{os.cpu_count()} CPUs, load average before the runs {os.getloadavg()[0]:.2f}, "
          f"{SIZE} px, batch {args.batch_size}, {args.epochs} epochs")

    fr = one_class_fractions(args)
    print(f"one-class batches over the class-sorted list: studio {fr['studio']:.1%}, the old buffered "
          f"shuffle ({fr['old_buffer']} images) {fr['old']:.1%}, a uniform shuffle {fr['uniform']:.1e}")

    for entry in args.models.split(","):
        model, _, limit = entry.partition(":")
        results = {}
        for feed in args.feeds.split(","):
            out = subprocess.run([sys.executable, __file__, "--dir", args.dir, "--epochs", str(args.epochs),
                                  "--batch-size", str(args.batch_size), "--one", feed, model, limit or "0"],
                                 capture_output=True, text=True)
            if out.returncode:
                print(f"{model} / {feed} failed:\n{out.stderr[-3000:]}")
                return 1
            results[feed] = json.loads(out.stdout.strip().splitlines()[-1])
        n = next(iter(results.values()))["images"]
        print(f"\nmodel {model}, {n} images")
        print(f"  {'feed':<8}" + "".join(f"{f'epoch {e + 1} img/s':>15}{'img/CPU-s':>11}" for e in range(args.epochs))
              + f"{'all img/s':>11}{'img/CPU-s':>11}{'1st batch s':>12}{'peak RSS MB':>12}")
        for feed, r in results.items():
            cells = "".join(f"{r['images'] / w:>15.0f}{r['images'] / c:>11.0f}" for w, c, _ in r["epochs"])
            total = r["images"] * args.epochs
            print(f"  {feed:<8}{cells}{total / r['wall']:>11.0f}{total / r['cpu']:>11.0f}"
                  f"{r['first_batch']:>12.2f}{r['rss_mb']:>12.0f}")
        if "studio" in results and "keras" in results:
            s, k = results["studio"], results["keras"]
            for e in range(args.epochs):
                print(f"  studio/keras epoch {e + 1}: per CPU-second {k['epochs'][e][1] / s['epochs'][e][1]:.2f}, "
                      f"wall {k['epochs'][e][0] / s['epochs'][e][0]:.2f}")
            print(f"  studio/keras all epochs: per CPU-second {k['cpu'] / s['cpu']:.2f} (goal >= 1.2), "
                  f"wall {k['wall'] / s['wall']:.2f}; peak RSS {s['rss_mb'] / k['rss_mb']:.2f} (goal <= 1.1)")
        if "studio" in results and "memory" in results:
            s, m = results["studio"], results["memory"]
            wall_m = sum(w for w, _, _ in m["epochs"])
            print(f"  studio/in-memory tensors all epochs, wall: {wall_m / s['wall']:.2f} (goal >= 0.9; "
                  f"the in-memory feed's decoding is not counted)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
