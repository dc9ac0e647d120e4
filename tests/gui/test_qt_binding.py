"""The Qt binding must not leak references to Python's singletons.

PySide6 6.12.0 on Python < 3.12 drops a reference to ``None`` on every call of a Qt method that
returns nothing and to ``True`` on every signal emit; live training curves make hundreds of those
calls a second, and the process dies (``Fatal Python error: none_dealloc``) after minutes.
"""

import sys

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QWidget


class Emitter(QObject):
    changed = Signal(bool)


def test_void_calls_and_emits_keep_none_and_true_alive(qtbot):
    widget = QWidget()
    qtbot.addWidget(widget)
    emitter = Emitter()
    seen = []
    emitter.changed.connect(seen.append)
    none_before, true_before = sys.getrefcount(None), sys.getrefcount(True)
    for _ in range(200):
        widget.update()
        emitter.changed.emit(True)
    assert len(seen) == 200
    # Other threads may hold or drop a few references meanwhile; a leak is one per call.
    assert sys.getrefcount(None) - none_before > -50
    assert sys.getrefcount(True) - true_before > -50
