"""Starting TensorFlow once, lazily, from one thread; which Keras backend runs; which device.

Importing TensorFlow takes seconds, so nothing imports it at module level: the window and
``cnnstudio --help`` appear first. The rest of the studio calls these through
:mod:`cnnstudio.core.tf`, whose :func:`~cnnstudio.core.tf.keras` also registers the studio's
custom layers.
"""

from __future__ import annotations

import contextlib
import gc
import os
import re
import sys
import tempfile
import threading

_lock = threading.RLock()
_modules: dict = {}
_DEFAULT_LEVEL = True  # whether TF_CPP_MIN_LOG_LEVEL is the studio's own, not the user's


class TensorFlowStarted(RuntimeError):
    """Something had to come before TensorFlow's runtime started, and it had started."""


def tf(setup=None):
    """TensorFlow, imported and its runtime started once, by one thread.

    The window imports TensorFlow in the background while a worker may already want it; two
    threads starting TensorFlow's runtime at the same time can leave eager ops hanging, so
    the first use holds a lock until the devices are set up.

    ``setup(tensorflow)`` runs after the import and before the runtime starts, for what must
    come first (joining a cluster's collectives, splitting devices); when TensorFlow has
    started already it raises :class:`TensorFlowStarted`.
    """
    if setup is not None and "tf" in _modules:
        raise TensorFlowStarted("TensorFlow has started already in this process")
    if "tf" not in _modules:
        with _lock:
            if "tf" not in _modules:
                global _DEFAULT_LEVEL
                _DEFAULT_LEVEL = "TF_CPP_MIN_LOG_LEVEL" not in os.environ
                os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
                # The import makes millions of objects; the collector's full passes over them
                # would hold the interpreter lock for hundreds of milliseconds each, freezing the
                # window's event loop. Collect nothing until it is done, then leave them out.
                collecting = gc.isenabled()
                gc.disable()
                try:
                    with _startup_log():
                        _preload_libraries()
                        import tensorflow

                        if setup is not None:
                            setup(tensorflow)
                        tensorflow.config.list_physical_devices()
                        tensorflow.constant(0.0) + 1.0  # the eager context and its thread pools
                finally:
                    gc.freeze()
                    if collecting:
                        gc.enable()
                _modules["tf"] = tensorflow
    return _modules["tf"]


# A line of TensorFlow's native log: severity letter, date, time, thread, file:line.
_NATIVE_LINE = re.compile(rb"^([IWEF])\d{4} \d\d:\d\d:\d+\.\d+\s+\d+ [^\]]+\] ")
_ABSL_NOTICE = b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


@contextlib.contextmanager
def _startup_log():
    """While TensorFlow starts, keep its native log lines off the terminal.

    TensorFlow's C++ logging writes whatever comes before its own initialisation straight to
    standard error, whatever ``TF_CPP_MIN_LOG_LEVEL`` says (oneDNN notices, "could not find cuda
    drivers", "failed call to cuInit" on every machine without a GPU). The studio says itself
    which device it uses. Standard error is caught in a file for the while; afterwards every line
    that is not such a notice goes back to it, in order (a level set in ``TF_CPP_MIN_LOG_LEVEL``
    by the user is kept: 0 shows all of them). Where descriptors cannot be juggled, nothing changes.
    """
    keep_from = _startup_threshold()
    try:
        sys.stderr.flush()
        saved = os.dup(2)
        caught = tempfile.TemporaryFile()
        os.dup2(caught.fileno(), 2)
    except (OSError, ValueError, AttributeError):
        yield
        return
    try:
        yield
    finally:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        caught.seek(0)
        kept = [line for line in caught.read().splitlines(keepends=True) if not _noise(line, keep_from)]
        caught.close()
        if kept:
            with contextlib.suppress(OSError):
                os.write(2, b"".join(kept))


def _startup_threshold() -> int:
    """The least severe native line shown while TensorFlow starts, as an index into "IWEF"."""
    if _DEFAULT_LEVEL:
        return 3  # the studio's default: fatal lines only
    level = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0").strip()
    return min(int(level), 3) if level.isdigit() else 0


def _noise(line: bytes, keep_from: int) -> bool:
    if line.rstrip(b"\r\n") == _ABSL_NOTICE:
        return True
    m = _NATIVE_LINE.match(line)
    return bool(m) and "IWEF".index(m.group(1).decode()) < keep_from


# TensorFlow's largest native libraries: loading them (relocations, op registration) takes about
# a second, during which Python's import holds the interpreter lock.
_NATIVE_LIBRARIES = ("libtensorflow_framework.so.2", "libtensorflow_cc.so.2", "python/_pywrap_tensorflow_internal.so")


def _preload_libraries() -> None:
    """Load TensorFlow's big native libraries through libc's ``dlopen``, which ctypes calls with
    the interpreter lock released, so other threads (the window) run meanwhile; the import then
    finds them loaded. Linux only; anything unexpected just leaves the loading to the import."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes
        import importlib.util

        spec = importlib.util.find_spec("tensorflow")
        if spec is None or not spec.submodule_search_locations:
            return
        folder = list(spec.submodule_search_locations)[0]
        libc = ctypes.CDLL(None)
        libc.dlopen.restype = ctypes.c_void_p
        libc.dlopen.argtypes = [ctypes.c_char_p, ctypes.c_int]
        for name in _NATIVE_LIBRARIES:
            path = os.path.join(folder, name)
            if os.path.exists(path):
                libc.dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_LOCAL)
    except (OSError, AttributeError, ImportError, ValueError):
        return


def tensorflow_backend() -> bool:
    """Whether Keras runs on TensorFlow (the studio's backend; ``KERAS_BACKEND`` may pick another
    for model-only work such as benchmarks on a machine without TensorFlow)."""
    return os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow"


def import_keras():
    """Keras itself, TensorFlow started first (:func:`cnnstudio.core.tf.keras` adds the studio's layers)."""
    if "keras" not in _modules:
        with _lock:
            if "keras" not in _modules:
                if tensorflow_backend():
                    tf()
                import keras as _keras

                _modules["keras"] = _keras
    return _modules["keras"]


def device_description() -> str:
    """The compute device training will use, e.g. ``GPU: NVIDIA H100`` or ``CPU (2 cores)``."""
    tensorflow = tf()
    gpus = tensorflow.config.list_physical_devices("GPU")
    if gpus:
        try:
            name = tensorflow.config.experimental.get_device_details(gpus[0]).get("device_name")
        except Exception:  # details are best effort; the device is still a GPU
            name = None
        extra = f" (+{len(gpus) - 1} more)" if len(gpus) > 1 else ""
        return f"GPU: {name or gpus[0].name}{extra}"
    return f"CPU ({os.cpu_count()} cores)"
