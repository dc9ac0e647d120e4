"""Predict panel: a dropped image to its shown result, with a warm small model.

A small scratch model is trained for one epoch on generated images (or ``--bundle`` names one),
the Predict panel loads it, one drop warms it up, then each of ``--drops`` drops sends a real
``QDropEvent`` holding one file URL (a photo-sized JPEG) and runs the event loop until the
panel has filled the result card (``predicted``). Printed: median and p90 of drop -> result,
beside the bare ``Bundle.predict_paths`` of the same file measured in the same run.
Target: median < 150 ms.

    python bench/bench_predict.py [--drops 30] [--photo 1024] [--bundle MODEL_DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import numpy as np  # noqa: E402
from common import make_jpeg_folder, wait_for  # noqa: E402


def train_small_bundle(work: Path, size: int) -> Path:
    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import make_split, scan_dataset
    from cnnstudio.core.model.spec import resolve_spec
    from cnnstudio.core.training.config import TrainConfig
    from cnnstudio.core.training.trainer import Trainer

    data = make_jpeg_folder(work / "data", 90, 64)
    index = scan_dataset(data)
    registry = load_registry()
    spec = resolve_spec(registry, "seed-model-2", input_size=size)
    run = work / "run"
    Trainer(index, make_split(index, 0.2, 0.2, 0), spec, TrainConfig(epochs=1, batch_size=16, patience=0),
            run, registry).run()
    return run / "model"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--drops", type=int, default=30)
    ap.add_argument("--photo", type=int, default=1024, help="width of the dropped JPEG (height 3/4 of it)")
    ap.add_argument("--size", type=int, default=64, help="input size of the generated model")
    ap.add_argument("--bundle", default=None, help="a model bundle folder instead of training one")
    args = ap.parse_args()

    from PIL import Image
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv[:1])

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.model.bundle import Bundle
    from cnnstudio.gui.panels.predict import PredictPanel
    from cnnstudio.gui.session import Session

    work_dir = tempfile.TemporaryDirectory(prefix="cnnstudio-bench-predict-")
    work = Path(work_dir.name)
    os.environ["CNNSTUDIO_DATA_DIR"] = str(work / "studio")
    bundle_dir = Path(args.bundle) if args.bundle else train_small_bundle(work, args.size)

    rng = np.random.default_rng(0)
    photos = []
    for i in range(4):
        w, h = args.photo, args.photo * 3 // 4
        pixels = rng.integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
        path = work / f"photo_{i}.jpg"
        Image.fromarray(pixels).resize((w, h), Image.Resampling.BILINEAR).save(path, quality=90)
        photos.append(path)

    panel = PredictPanel(Session(load_registry()))
    panel.resize(1200, 800)
    panel.show()
    app.processEvents()
    panel.open_bundle(bundle_dir)
    wait_for(panel.modelLoaded, 300)

    def drop(path: Path) -> float:
        mime = QMimeData()
        mime.setUrls([QUrl.fromLocalFile(str(path))])
        where = QPointF(panel.rect().center())
        args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
        try:
            enter = QDragEnterEvent(where, *args)  # Qt >= 6.12
        except TypeError:
            enter = QDragEnterEvent(where.toPoint(), *args)
        QApplication.sendEvent(panel, enter)  # Qt delivers a drop only where the entry was accepted
        event = QDropEvent(where, *args)
        t0 = time.perf_counter()
        QApplication.sendEvent(panel, event)
        (cards,) = wait_for(panel.predicted, 60)
        elapsed = time.perf_counter() - t0
        assert cards and cards[0].top, "no result shown"
        return elapsed

    for path in photos:  # warm-up: the first calls trace the model
        drop(path)
    times = [drop(photos[i % len(photos)]) for i in range(args.drops)]
    app.processEvents()

    bare = Bundle(bundle_dir)
    bare.predict_paths([str(photos[0])])
    core = []
    for i in range(args.drops):
        t0 = time.perf_counter()
        bare.predict_paths([str(photos[i % len(photos)])])
        core.append(time.perf_counter() - t0)

    ms = np.asarray(times) * 1000
    print(f"model {bundle_dir} ({bare.input_size} px, {len(bare.class_names)} classes), "
          f"{args.photo}x{args.photo * 3 // 4} JPEG, {args.drops} drops, {os.cpu_count()} CPUs")
    print(f"drop -> result shown : median {statistics.median(ms):.1f} ms, p90 {np.percentile(ms, 90):.1f} ms, "
          f"max {ms.max():.1f} ms")
    cms = np.asarray(core) * 1000
    print(f"Bundle.predict_paths : median {statistics.median(cms):.1f} ms, p90 {np.percentile(cms, 90):.1f} ms "
          f"(the core alone, same file)")
    print(f"panel overhead       : {statistics.median(ms) - statistics.median(cms):.1f} ms (median difference)")
    panel.close()
    work_dir.cleanup()


if __name__ == "__main__":
    main()
