"""Errors reach the user as a readable dialog, never as a silent death.

:func:`show_error` is the one dialog every panel uses (tests replace it to record calls, so call
it as ``errors.show_error(...)``). :func:`install_excepthook` routes any exception that escapes a
slot, a virtual method or a plain thread into that dialog; an exception from another thread is
sent to the GUI thread first, because widgets may only be touched there.
"""

from __future__ import annotations

import sys
import threading
import traceback

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QApplication, QMessageBox, QWidget

from cnnstudio.core.errors import StudioError


def show_error(parent: QWidget | None, title: str, message: str, details: str = "") -> None:
    """A modal error box: the message in plain words, the traceback behind "Show Details..."."""
    box = QMessageBox(parent)
    box.setIcon(QMessageBox.Icon.Critical)
    box.setWindowTitle(title)
    box.setText(message)
    box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
    if details:
        box.setDetailedText(details)
    box.setStandardButtons(QMessageBox.StandardButton.Ok)
    box.exec()


def describe(exc: BaseException) -> tuple[str, str]:
    """(message, details) for an exception: a StudioError speaks for itself, anything else is a bug
    whose traceback belongs in the details."""
    if isinstance(exc, StudioError):
        return str(exc), ""
    message = f"Unexpected error: {type(exc).__name__}: {exc}" if str(exc) else f"Unexpected error: {type(exc).__name__}"
    return message, "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))


class _Relay(QObject):
    """Carries an exception report from any thread to the GUI thread (queued by Qt)."""

    report = Signal(str, str)


_relay: _Relay | None = None
_showing = False


def _show_report(message: str, details: str) -> None:
    global _showing
    if _showing:  # an error inside the dialog's own event loop: print it rather than stack boxes
        print(message, details, sep="\n", file=sys.stderr)
        return
    _showing = True
    try:
        app = QApplication.instance()
        parent = app.activeWindow() if app is not None else None
        show_error(parent, "CNN Studio: error", message, details)
    finally:
        _showing = False


def _excepthook(exc_type, exc, tb) -> None:
    if issubclass(exc_type, KeyboardInterrupt):
        sys.__excepthook__(exc_type, exc, tb)
        return
    if exc is None:
        exc = exc_type()
    if exc.__traceback__ is None:
        exc = exc.with_traceback(tb)
    message, details = describe(exc)
    print(details or message, file=sys.stderr)
    if _relay is not None:
        _relay.report.emit(message, details)


def _thread_excepthook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:
        return
    _excepthook(args.exc_type, args.exc_value, args.exc_traceback)


def install_excepthook() -> None:
    """Show every uncaught exception (GUI thread or any other) in :func:`show_error`.

    Call once, after the QApplication exists.
    """
    global _relay
    if _relay is None:
        _relay = _Relay()
        app = QApplication.instance()
        if app is not None:
            _relay.moveToThread(app.thread())
        _relay.report.connect(_show_report, Qt.ConnectionType.QueuedConnection)
    sys.excepthook = _excepthook
    threading.excepthook = _thread_excepthook
