"""Launch time of the window against ``python -c "import tensorflow"``, measured in one run,
and how long the window's event loop stalls while TensorFlow loads behind it.

The window must be visible and usable before TensorFlow has loaded (it imports in the
background after the first show). Each launch is a fresh process on the offscreen platform;
``CNNSTUDIO_LAUNCH_PROBE`` makes the app report when its event loop first runs with the window
shown, and exit. The time is taken from outside: process start to that line. With
``CNNSTUDIO_LAUNCH_PROBE=stalls:10`` the app instead loads TensorFlow as usual and ticks a 5 ms
timer for the 10 s after the window shows; the lateness of the ticks is the stall.

    python bench/bench_launch.py [--repeat 5] [--stall-launches 3]
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


def stalls(env: dict, seconds: float = 10.0) -> dict:
    out = subprocess.run([sys.executable, "-m", "cnnstudio"], env=dict(env, CNNSTUDIO_LAUNCH_PROBE=f"stalls:{seconds}"),
                         capture_output=True, text=True, timeout=seconds + 120)
    line = next((x for x in out.stdout.splitlines() if x.startswith("cnnstudio: stalls")), None)
    if line is None:
        raise RuntimeError(f"the window reported no stalls (exit status {out.returncode})")
    return {k: float(v) for k, v in (item.split("=") for item in line.split()[2:])}


def import_tensorflow(env: dict) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import tensorflow"], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="launches of each kind (default: %(default)s)")
    parser.add_argument("--stall-launches", type=int, default=3, help="launches timing the event loop (default: %(default)s)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, QT_QPA_PLATFORM="offscreen", CNNSTUDIO_LAUNCH_PROBE="1",
                   CNNSTUDIO_DATA_DIR=tmp, XDG_CONFIG_HOME=tmp, TF_CPP_MIN_LOG_LEVEL="2")
        launch_window(env)  # warm the file cache once, for both kinds
        import_tensorflow(env)
        window, tensorflow = [], []
        for _ in range(args.repeat):  # interleaved, so drift affects both alike
            window.append(launch_window(env))
            tensorflow.append(import_tensorflow(env))
        stalled = [stalls(env) for _ in range(args.stall_launches)]
    w, t = statistics.median(window), statistics.median(tensorflow)
    print(f"window shown and usable:  median {w:.3f} s  (min {min(window):.3f}, max {max(window):.3f})")
    print(f"python -c 'import tensorflow': median {t:.3f} s  (min {min(tensorflow):.3f}, max {max(tensorflow):.3f})")
    print(f"ratio window / tensorflow import: {w / t:.2f}")
    print(f"target: window under 1.5 s -> {'met' if w < 1.5 else 'NOT met'}")
    for i, st in enumerate(stalled, 1):
        print(f"event loop over the 10 s after the window shows, launch {i}: max stall {st['max_ms']:.0f} ms, "
              f"p99 {st['p99_ms']:.1f} ms, {st['over_50ms']:.0f} ticks over 50 ms late ({st['ticks']:.0f} ticks)")
    if stalled:
        worst_max, worst_p99 = max(s["max_ms"] for s in stalled), max(s["p99_ms"] for s in stalled)
        print(f"target: stalls under 50 ms p99 and 200 ms max -> "
              f"{'met' if worst_p99 < 50 and worst_max < 200 else 'NOT met'} (worst p99 {worst_p99:.1f}, max {worst_max:.0f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
