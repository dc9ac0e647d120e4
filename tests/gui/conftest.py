"""Shared set-up of the GUI tests: an offscreen Qt platform, private settings and data folders,
and no modal question or error box that would wait for a person."""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from PIL import Image  # noqa: E402


@pytest.fixture(autouse=True)
def _private_state(qapp, tmp_path, monkeypatch):
    """Every test gets its own QSettings file and CNNSTUDIO_DATA_DIR; questions answer themselves."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QMessageBox

    from cnnstudio.gui.widgets import common as widgets

    monkeypatch.setenv("CNNSTUDIO_DATA_DIR", str(tmp_path / "studio-data"))
    qapp.setOrganizationName("cnnstudio-tests")
    qapp.setApplicationName("CNN Studio tests")
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(tmp_path / "settings"))
    questions = []

    def answer(parent, title, text, buttons, default):
        questions.append(title)
        for choice in (QMessageBox.StandardButton.Discard, QMessageBox.StandardButton.Yes):
            if buttons & choice:
                return choice
        return default

    monkeypatch.setattr(widgets, "ask", answer)
    yield questions


@pytest.fixture
def questions(_private_state):
    """Titles of the questions asked so far (answered Discard, else Yes)."""
    return _private_state


@pytest.fixture
def shown_errors(monkeypatch):
    """(title, message, details) of every error dialog, recorded instead of shown."""
    from cnnstudio.gui.dialogs import errors

    calls = []
    monkeypatch.setattr(errors, "show_error",
                        lambda parent, title, message, details="": calls.append((title, message, details)))
    return calls


def write_png(path: Path, colour, size: int = 16, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 20, (size, size, 3)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    return path


@pytest.fixture
def tiny_dataset(tmp_path) -> Path:
    """Three classes (red 6, green 5, blue 4 PNGs of 16 px) and one broken file in red."""
    root = tmp_path / "tiny"
    colours = {"red": (220, 40, 40), "green": (40, 200, 60), "blue": (40, 60, 220)}
    for (name, colour), n in zip(colours.items(), (6, 5, 4), strict=True):
        for i in range(n):
            write_png(root / name / f"{name}_{i:02d}.png", colour, seed=i)
    (root / "red" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png")
    return root


@pytest.fixture
def wait_for_workers(qtbot):
    """Call to let every Worker finish and deliver its signals."""
    from cnnstudio.gui.qthreading import wait_for_all

    def wait(timeout_ms: int = 120_000) -> None:
        assert wait_for_all(timeout_ms / 1000)
        qtbot.wait(20)

    return wait


@pytest.fixture
def window(qtbot, shown_errors, wait_for_workers):
    """A main window over the built-in plugins, shown offscreen; workers drained at the end."""
    from cnnstudio.gui.main_window import MainWindow

    w = MainWindow()
    qtbot.addWidget(w)
    w.resize(1280, 800)
    w.show()
    qtbot.waitUntil(lambda: not w.plugins_loading(), timeout=60_000)  # the first window of a process looks for them
    yield w
    wait_for_workers()
    import shiboken6

    if shiboken6.isValid(w):  # in a few tests Qt has deleted the window by now
        w.session.mark_saved()  # closing at the end asks nothing
