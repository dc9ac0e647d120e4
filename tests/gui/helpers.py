"""Tiny datasets, sessions and one trained run for the panel tests (each training takes seconds)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from coretrain import tiny_spec, train
from PIL import Image
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.data.dataset import scan_dataset
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.core.training.config import TrainConfig

FAST = dict(epochs=3, batch_size=4, learning_rate=0.01, patience=0, seed=1)

_registry = None
_trained: tuple[Path, Path] | None = None


def registry():
    global _registry
    if _registry is None:
        _registry = load_registry()
    return _registry


def make_session(data: Path | None = None, **config):
    """A Session over ``data`` (scanned), the tiny scratch spec and fast hyper-parameters."""
    from cnnstudio.gui.session import Session

    session = Session(registry())
    if data is not None:
        session.set_dataset(data, scan_dataset(data))
    session.set_spec(tiny_spec())
    session.set_train_config(TrainConfig(**{**FAST, **config}))
    session.set_split(0.2, 0.2, 0)
    return session


def trained_run(tmp_path_factory) -> tuple[Path, Path]:
    """(dataset folder, run folder) of one run trained through the core, shared by the test session."""
    global _trained
    if _trained is None:
        root = tmp_path_factory.mktemp("trained")
        data = make_dataset(root / "data")
        run = root / "run"
        train(data, run, **FAST)
        assert (RunPaths(run).bundle / "model.keras").exists()
        _trained = (data, run)
    return _trained


def drop_paths(widget, paths) -> bool:
    """Drag ``paths`` (as file URLs) onto ``widget`` and drop them, as a file manager would.

    True when the widget accepted both the entry and the drop.
    """
    from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
    from PySide6.QtGui import QDragEnterEvent, QDropEvent
    from PySide6.QtWidgets import QApplication

    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(p)) for p in paths])
    where = QPointF(widget.rect().center())
    args = (Qt.DropAction.CopyAction, mime, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier)
    try:
        enter = QDragEnterEvent(where, *args)  # Qt >= 6.12
    except TypeError:
        enter = QDragEnterEvent(where.toPoint(), *args)
    QApplication.sendEvent(widget, enter)  # Qt drops only on a widget that accepted the entry
    if not enter.isAccepted():
        return False
    drop = QDropEvent(where, *args)
    QApplication.sendEvent(widget, drop)
    return drop.isAccepted()


def drop_files(widget, paths) -> None:
    assert drop_paths(widget, paths)


def write_broken_png(path: Path) -> Path:
    """A PNG cut in half: the header reads, the pixels do not."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels, "RGB").save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path
