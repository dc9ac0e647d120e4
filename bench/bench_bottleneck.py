"""Bottleneck features: a head trained on cached base features against the same head trained
through the frozen base, and feature extraction against a plain ``model.predict``.

Measured in one run, on the same images, split and head (the studio's default: flatten ->
dense 128 -> softmax), VGG16 at 64 px:

  head epoch ratio   median epoch time after the first, through the frozen base / on cached
                     features (target >= 50; a hand-written ideal reaches about 130 on a 2-core CPU)
  accuracy           validation accuracy of both after the same number of epochs (same within noise)
  extraction ratio   images/s of the studio's feature extraction (batched over its pipeline, with
                     progress) / ``extractor.predict`` over the same tf.data pipeline (target >= 0.9),
                     rounds interleaved, best round of each

Weights are random (``weights="none"``; no download here): the speed does not depend on them,
and both heads see the same features, so their accuracies are comparable.

    python bench/bench_bottleneck.py [--images 600] [--size 64] [--epochs 5] [--backbone vgg16]
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
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--backbone", default="vgg16")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the extraction comparison")
    ap.add_argument("--dir", default=None, help="folder for the generated JPEGs (kept between runs)")
    args = ap.parse_args()

    import keras

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import make_split, scan_dataset
    from cnnstudio.core.data.pipeline import ImagePipeline
    from cnnstudio.core.model import transfer
    from cnnstudio.core.model.models import build_model
    from cnnstudio.core.model.spec import ModelSpec

    root = Path(args.dir or Path(tempfile.gettempdir()) / "cnnstudio-bench-bottleneck")
    make_jpeg_folder(root, args.images, 96)
    index = scan_dataset(root)
    split = make_split(index, 0.2, 0.0, seed=0)
    registry = load_registry()
    spec = ModelSpec(args.backbone, {"weights": "none", "trainable": False}, input_size=args.size).validate(registry)
    n_classes = len(index.class_names)
    train_paths, train_labels = index.paths(split.train), index.labels(split.train)
    val_paths, val_labels = index.paths(split.val), index.labels(split.val)
    print(f"{args.backbone} at {args.size} px, frozen base, random weights; {len(train_paths)} training and "
          f"{len(val_paths)} validation images; batch {args.batch_size}; {args.epochs} epochs; {os.cpu_count()} CPUs")

    def fresh_model():
        keras.utils.set_random_seed(0)
        model = build_model(spec, n_classes, registry)
        return model

    def timed_fit(model, train_ds, val_ds):
        times, accs = [], []
        for _ in range(args.epochs):
            t0 = time.perf_counter()
            history = model.fit(train_ds, validation_data=val_ds, epochs=1, verbose=0, shuffle=False)
            times.append(time.perf_counter() - t0)
            accs.append(history.history["val_accuracy"][-1])
        return np.array(times), accs

    pipe = ImagePipeline(args.size, cache="memory")
    train_ds = pipe.dataset(train_paths, train_labels, batch_size=args.batch_size, shuffle=True, seed=0)
    val_ds = pipe.dataset(val_paths, val_labels, batch_size=args.batch_size)

    # 1. The head trained through the frozen base: every epoch runs the base on every image.
    full = fresh_model()
    full.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    full_times, full_accs = timed_fit(full, train_ds, val_ds)

    # 2. The same head on bottleneck features computed once.
    model = fresh_model()
    extractor = transfer.feature_extractor(model)
    t0 = time.perf_counter()
    train_f = transfer.extract_features(extractor, pipe, train_paths, train_labels, args.batch_size)
    val_f = transfer.extract_features(extractor, pipe, val_paths, val_labels, args.batch_size)
    extract_s = time.perf_counter() - t0
    head = transfer.head_model(model)
    head.compile("adam", "sparse_categorical_crossentropy", metrics=["accuracy"])
    head_times, head_accs = timed_fit(
        head, transfer.features_dataset(train_f, args.batch_size, shuffle=True),
        transfer.features_dataset(val_f, args.batch_size),
    )

    print("\nper-epoch seconds")
    print("  through the frozen base: " + " ".join(f"{t:.3f}" for t in full_times))
    print("  on cached features:      " + " ".join(f"{t:.3f}" for t in head_times)
          + f"   (+ {extract_s:.2f} s to compute the features once)")
    print("validation accuracy by epoch")
    print("  through the frozen base: " + " ".join(f"{a:.3f}" for a in full_accs))
    print("  on cached features:      " + " ".join(f"{a:.3f}" for a in head_accs))
    ratio = np.median(full_times[1:]) / np.median(head_times[1:])
    print(f"  head epoch ratio (median after the first): {ratio:.0f}x   (target >= 50)")
    total_full, total_head = full_times.sum(), head_times.sum() + extract_s
    print(f"  whole {args.epochs}-epoch training, extraction included: {total_full:.1f} s vs {total_head:.1f} s "
          f"({total_full / total_head:.1f}x)")

    # 3. Feature extraction throughput: the studio's extraction vs extractor.predict, same pipeline.
    eval_pipe = ImagePipeline(args.size, cache="none")
    # The pipeline extract_features reads through: decode, resize, batch, prefetch.
    ds = eval_pipe.dataset(train_paths, train_labels, batch_size=args.batch_size, cache=False)
    n = len(train_paths)
    studio, plain = [], []
    for _ in range(args.rounds):
        t0 = time.perf_counter()
        got = transfer.extract_features(extractor, eval_pipe, train_paths, train_labels, args.batch_size,
                                        progress=lambda done, total: None)
        studio.append(n / (time.perf_counter() - t0))
        t0 = time.perf_counter()
        ref = extractor.predict(ds.map(lambda x, y: x), verbose=0)
        plain.append(n / (time.perf_counter() - t0))
    assert got.features.shape == ref.shape
    print("\nfeature extraction over the same decoding pipeline, images/s per round")
    print("  studio extract_features: " + " ".join(f"{v:.0f}" for v in studio))
    print("  extractor.predict:       " + " ".join(f"{v:.0f}" for v in plain))
    print(f"  extraction ratio (best round of each): {max(studio) / max(plain):.2f}   (target >= 0.9)")
    pipe.close()
    eval_pipe.close()


if __name__ == "__main__":
    main()
