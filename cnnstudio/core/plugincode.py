"""Calling plugin code so that it can neither stop the studio nor pass for the user's Ctrl-C.

A plugin's import, registration hook, backbone ``build``, block ``apply`` or exporter step may
raise anything, ``KeyboardInterrupt`` and ``SystemExit`` included (``sys.exit()`` in a plugin,
a stray ``raise KeyboardInterrupt``). The studio records or names those like any other error;
only a Ctrl-C the user pressed while the plugin ran goes on stopping the command::

    with users_ctrl_c() as pressed:
        try:
            provider.build(...)
        except PLUGIN_FAILURES as exc:
            reraise_if_pressed(exc, pressed)
            raise BuildError(...) from exc
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator

# What plugin code may raise that the host names instead of stopping on.
PLUGIN_FAILURES = (Exception, SystemExit, KeyboardInterrupt)


@contextlib.contextmanager
def users_ctrl_c() -> Iterator[threading.Event]:
    """Tell the user's Ctrl-C from a ``KeyboardInterrupt`` that plugin code raises itself.

    On the main thread, a SIGINT while the block runs sets the yielded event before the
    handler in place (Python's, or the command's own) interrupts; on any other thread no
    signal arrives, and with SIGINT ignored or left to the system none raises, so every
    ``KeyboardInterrupt`` there is the plugin's own. The handler in place is put back after.
    """
    pressed = threading.Event()
    previous = signal.getsignal(signal.SIGINT) if threading.current_thread() is threading.main_thread() else None
    if not callable(previous):
        yield pressed
        return

    def on_sigint(signum, frame):
        pressed.set()
        previous(signum, frame)

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield pressed
    finally:
        signal.signal(signal.SIGINT, previous)


def reraise_if_pressed(exc: BaseException, pressed: threading.Event) -> None:
    """A Ctrl-C of the user's goes on stopping the command; the plugin's own is the plugin's error."""
    if isinstance(exc, KeyboardInterrupt) and pressed.is_set():
        raise exc


def describe(exc: BaseException) -> str:
    """``Type: first line of the message``, or the type alone (``KeyboardInterrupt``)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
