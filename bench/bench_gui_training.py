"""Training from the window: event-loop responsiveness, and the cost of the GUI over the core.

One scratch model, one dataset, one seed, trained several times in one process:
  core   cnnstudio.core.training.Trainer.run() alone, no Qt event loop
  gui    the same through TrainPanel / TrainWorker (training thread, live curves, log,
         progress), in a real QApplication (offscreen unless a display is set)
Runs alternate (core, gui, gui with the probe, core, ...) after one warm-up run, so a machine
whose load changes affects all alike; medians are compared.

(a) While the probed gui runs train, a QTimer fires every 10 ms on the GUI thread and records
    how late it fires (the event loop's delay). Targets: p99 < 50 ms, max < 200 ms.
    TensorFlow is imported before the probe starts, as the window does at launch.
(b) Core runs against the gui runs without the probe (waking the GUI thread 100 times a second
    is the measurement's own cost, not the window's): wall time of the whole run (build, fit, test evaluation, saving), of the fit alone
    (RunResult.train_seconds), and the process's CPU time (all threads), gui / core.
    Target: <= 1.05. CPU time is the steadier figure on a machine shared with other work.

    python bench/bench_gui_training.py [--images 600] [--size 32] [--epochs 4] [--reps 2]
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

PROBE_MS = 10


class Probe:
    """A 10 ms QTimer on the GUI thread; records how late each tick fires (seconds)."""

    def __init__(self):
        from PySide6.QtCore import Qt, QTimer

        self.delays: list[float] = []
        self.times: list[float] = []
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(PROBE_MS)
        self.timer.timeout.connect(self._tick)
        self.last = 0.0

    def start(self):
        self.last = time.perf_counter()
        self.timer.start()

    def stop(self):
        self.timer.stop()

    def _tick(self):
        now = time.perf_counter()
        self.delays.append(max(0.0, now - self.last - PROBE_MS / 1000))
        self.times.append(now)
        self.last = now


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=600)
    ap.add_argument("--source-size", type=int, default=64, help="size of the JPEGs on disk")
    ap.add_argument("--size", type=int, default=32, help="model input size")
    ap.add_argument("--model", default="seed-model-1", help="preset or backbone id (a scratch model)")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=2, help="runs of each kind after the warm-up")
    ap.add_argument("--dir", default=None, help="folder for the generated JPEGs (kept between runs)")
    args = ap.parse_args()

    work = tempfile.TemporaryDirectory(prefix="cnnstudio-bench-gui-")
    os.environ["CNNSTUDIO_DATA_DIR"] = work.name  # the panel's runs go there

    from PySide6.QtWidgets import QApplication, QMainWindow

    app = QApplication.instance() or QApplication(sys.argv[:1])

    from cnnstudio.builtins.manager import load_registry
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.model.spec import resolve_spec
    from cnnstudio.core.tf import keras
    from cnnstudio.core.training.config import TrainConfig
    from cnnstudio.core.training.trainer import Trainer
    from cnnstudio.gui.panels.train import TrainPanel
    from cnnstudio.gui.session import Session

    root = Path(args.dir or Path(tempfile.gettempdir()) / "cnnstudio-bench-gui-data")
    make_jpeg_folder(root, args.images, args.source_size)
    index = scan_dataset(root)
    registry = load_registry()
    session = Session(registry)
    session.set_dataset(root, index)
    session.set_spec(resolve_spec(registry, args.model, input_size=args.size))
    config = TrainConfig(epochs=args.epochs, batch_size=args.batch_size, patience=0, seed=0)
    session.set_train_config(config)
    split = session.make_split()
    keras()  # TensorFlow is imported before any timing, as the window does at launch

    window = QMainWindow()
    panel = TrainPanel(session)
    window.setCentralWidget(panel)
    window.resize(1440, 900)
    window.show()
    app.processEvents()

    def core_run(n):
        t0, c0 = time.perf_counter(), time.process_time()
        result = Trainer(index, split, session.spec, config, Path(work.name) / f"core-{n}", registry).run()
        return time.perf_counter() - t0, result.train_seconds, time.process_time() - c0

    probe = Probe()
    delays_fit: list[float] = []
    delays_all: list[float] = []
    worst: list[tuple[float, str]] = []
    gui_thread_cpu: list[float] = []
    gui_thread_cpu_probed: list[float] = []

    def gui_run(probed: bool):
        marks = []  # (time, what) noted on the training thread by plain-function slots
        probe.delays, probe.times = [], []
        if probed:
            probe.start()
        t0, c0, g0 = time.perf_counter(), time.process_time(), time.thread_time()
        worker = panel.start()
        worker.status.connect(lambda m: marks.append((time.perf_counter(), m)))
        worker.begin.connect(lambda e: marks.append((time.perf_counter(), "fitting")))
        worker.epoch_end.connect(lambda e: marks.append((time.perf_counter(), f"after epoch {e.epoch + 1}")))
        worker.ended.connect(lambda e: marks.append((time.perf_counter(), "fit ended")))
        wait_for(panel.trainingFinished, 3600)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        (gui_thread_cpu_probed if probed else gui_thread_cpu).append(time.thread_time() - g0)
        probe.stop()
        result = panel.result
        fit_t0 = next((t for t, m in marks if m == "fitting"), t0)
        fit_t1 = next((t for t, m in marks if m == "fit ended"), time.perf_counter())
        delays_all.extend(probe.delays)
        delays_fit.extend(d for d, t in zip(probe.delays, probe.times, strict=True) if fit_t0 <= t <= fit_t1)
        for d, t in zip(probe.delays, probe.times, strict=True):
            if d > 0.1:
                phase = max(((mt, m) for mt, m in marks if mt <= t), default=(t0, "start"))[1]
                worst.append((d, f"{t - t0:6.2f} s into the run, during: {phase}"))
        return wall, result.train_seconds, cpu

    print(f"{len(index.items)} images, {args.model} at {args.size} px, {args.epochs} epochs, "
          f"batch {args.batch_size}, {os.cpu_count()} CPUs")
    w, f, c = core_run(0)
    print(f"warm-up (core): {w:.2f} s")
    core, gui = [], []
    for rep in range(args.reps):
        core.append(core_run(rep + 1))
        print(f"core {rep + 1}: wall {core[-1][0]:.2f} s, fit {core[-1][1]:.2f} s, CPU {core[-1][2]:.2f} s", flush=True)
        gui.append(gui_run(probed=False))
        print(f"gui  {rep + 1}: wall {gui[-1][0]:.2f} s, fit {gui[-1][1]:.2f} s, CPU {gui[-1][2]:.2f} s", flush=True)
        w, f, c = gui_run(probed=True)
        print(f"gui  {rep + 1} with the probe: wall {w:.2f} s, fit {f:.2f} s, CPU {c:.2f} s", flush=True)

    def stats(delays):
        a = np.asarray(delays) * 1000
        return f"p50 {np.percentile(a, 50):.1f} ms, p99 {np.percentile(a, 99):.1f} ms, max {a.max():.1f} ms ({a.size} ticks)"

    print()
    print("(a) event-loop delay while training through the window (10 ms QTimer probe)")
    print(f"    fitting          : {stats(delays_fit)}")
    print(f"    whole run        : {stats(delays_all)}   (incl. model build, test evaluation, saving)")
    print("(b) GUI worker with live curves vs the core alone (medians)")
    for i, what in enumerate(("whole run", "fit", "CPU time")):
        c = statistics.median(x[i] for x in core)
        g = statistics.median(x[i] for x in gui)
        print(f"    {what:<17}: core {c:.2f} s, gui {g:.2f} s, gui/core {g / c:.3f}")
    print(f"    GUI thread's own CPU time per run: {statistics.median(gui_thread_cpu):.2f} s "
          f"(curves, progress, log); with the probe {statistics.median(gui_thread_cpu_probed):.2f} s")
    if worst:
        print("    event-loop stalls over 100 ms:")
        for d, where in sorted(worst, reverse=True)[:8]:
            print(f"      {d * 1000:6.0f} ms at {where}")
    window.close()
    work.cleanup()


if __name__ == "__main__":
    main()
