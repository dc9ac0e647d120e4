"""Launch time of the window against ``python -c "import tensorflow"``, measured in one run.

The window must be visible and usable before TensorFlow has loaded (it imports in the
background after the first show). Each launch is a fresh process on the offscreen platform;
``CNNSTUDIO_LAUNCH_PROBE`` makes the app report when its event loop first runs with the window
shown, and exit. The time is taken from outside: process start to that line.

    python bench/bench_launch.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

PROBE_LINE = "cnnstudio: window shown"


def launch_window(env: dict) -> float:
    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnstudio"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    try:
        for line in proc.stdout:
            if line.startswith(PROBE_LINE):
                elapsed = time.perf_counter() - start
                break
        else:
            raise RuntimeError(f"the window never reported being shown (exit status {proc.wait()})")
    finally:
        proc.stdout.close()
        proc.wait(timeout=60)
    return elapsed


def import_tensorflow(env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="launches of each kind (default: %(default)s)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CNNSTUDIO_LAUNCH_PROBE="1",
                   CNNSTUDIO_DATA_DIR=tmp, XDG_CONFIG_HOME=tmp, TF_CPP_MIN_LOG_LEVEL="2")
        launch_window(env)  # warm the file cache once, for both kinds
        import_tensorflow(env)
        window, tensorflow = [], []
        for _ in range(args.repeat):  # interleaved, so drift affects both alike
            window.append(launch_window(env))
            tensorflow.append(import_tensorflow(env))
    w, t = statistics.median(window), statistics.median(tensorflow)
    print(f"window shown and usable:  median {w:.3f} s  (min {min(window):.3f}, max {max(window):.3f})")
    print(f"python -c 'import tensorflow': median {t:.3f} s  (min {min(tensorflow):.3f}, max {max(tensorflow):.3f})")
    print(f"ratio window / tensorflow import: {w / t:.2f}")
    print(f"target: window under 1.5 s -> {'met' if w < 1.5 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
