"""Start the window: ``cnnstudio``, ``cnnstudio PROJECT_FILE``, ``cnnstudio --sample``.

The window appears before TensorFlow is imported; the import starts in a background thread
right after the first show, and the status bar names the compute device once it is done.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

APP_NAME = "CNN Studio"
ORGANIZATION = "cnnstudio"

NO_DISPLAY_HINT = (
    "cnnstudio: no display found; use the command line (cnnstudio --help) "
    "or set QT_QPA_PLATFORM=offscreen"
)

# Set to any value, the app prints "cnnstudio: window shown after N.NNN s" once the window is
# shown and the event loop is running, and exits (bench/bench_launch.py uses it). Set to
# "stalls:SECONDS", it first starts loading TensorFlow as usual and times the event loop for that
# long, then prints "cnnstudio: stalls ..." with the longest gaps between its timer's ticks.
LAUNCH_PROBE_ENV = "CNNSTUDIO_LAUNCH_PROBE"
_TICK_MS = 5


def has_display() -> bool:
    """False on Linux with neither X11, Wayland nor an explicit Qt platform (Qt would abort)."""
    if not sys.platform.startswith("linux"):
        return True
    return any(os.environ.get(name) for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"))


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="cnnstudio", description="Open the CNN Studio window.")
    parser.add_argument("project", nargs="?", metavar="PROJECT_FILE", help="a project to open")
    parser.add_argument("--sample", action="store_true", help="start with the built-in sample dataset")
    parser.add_argument("--dataset", metavar="DATA_DIR", help="start with this dataset folder")
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow's own log lines (oneDNN, CUDA, XLA) through to the terminal")
    return parser.parse_args(argv)


def run(argv: list[str] | None = None) -> int:
    """Open the window and run until it closes; returns the exit status."""
    started = time.perf_counter()
    args = parse_args(list(sys.argv[1:] if argv is None else argv))
    if not has_display():
        print(NO_DISPLAY_HINT, file=sys.stderr)
        return 2
    from cnnstudio.core.tf.runtime import native_log

    native_log(args.verbose)
    try:
        from PySide6.QtCore import QTimer
        from PySide6.QtWidgets import QApplication
    except ImportError as exc:  # e.g. a server install without the Qt libraries
        print(f"cnnstudio: the window cannot start ({exc}); use the command line (cnnstudio --help)",
              file=sys.stderr)
        return 2

    from cnnstudio.gui.dialogs.errors import install_excepthook
    from cnnstudio.gui.widgets.common import icon

    QApplication.setApplicationName(APP_NAME)
    QApplication.setOrganizationName(ORGANIZATION)
    QApplication.setApplicationDisplayName(APP_NAME)
    app = QApplication.instance() or QApplication([sys.argv[0] if sys.argv else "cnnstudio"])
    app.setWindowIcon(icon("app"))
    app.setDesktopFileName("io.github.cnnstudio.CNNStudio")
    install_excepthook()

    from cnnstudio.gui.main_window import MainWindow

    window = MainWindow()
    window.restore_settings()
    window.show()

    def after_show():
        probe = os.environ.get(LAUNCH_PROBE_ENV)
        if probe:
            print(f"cnnstudio: window shown after {time.perf_counter() - started:.3f} s", flush=True)
            if not probe.startswith("stalls:"):
                # TensorFlow may be half-imported in its thread; leave without running finalisers.
                os._exit(0)
            _time_event_loop(app, float(probe.split(":", 1)[1]))
        window.load_tensorflow_in_background()
        if args.project:
            window.open_project(args.project)
        elif args.sample:
            window.open_sample()
        elif args.dataset:
            window.open_dataset(args.dataset, touch=False)  # quitting at once leaves nothing unsaved
        else:
            window.reopen_last_project()

    QTimer.singleShot(0, after_show)
    return app.exec()


def _time_event_loop(app, seconds: float) -> None:
    """Tick every few milliseconds for ``seconds``, then print how late the ticks came and exit."""
    from PySide6.QtCore import Qt, QTimer

    gaps: list[float] = []
    last = [time.perf_counter()]
    end = last[0] + seconds

    def tick():
        now = time.perf_counter()
        gaps.append((now - last[0]) * 1000 - _TICK_MS)
        last[0] = now
        if now >= end:
            gaps.sort()
            p99 = gaps[int(len(gaps) * 0.99)] if gaps else 0.0
            print(f"cnnstudio: stalls ticks={len(gaps)} max_ms={gaps[-1]:.1f} p99_ms={p99:.1f} "
                  f"over_50ms={sum(g > 50 for g in gaps)}", flush=True)
            os._exit(0)

    timer = QTimer(app)
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.timeout.connect(tick)
    timer.start(_TICK_MS)
