"""Starting TensorFlow once, lazily, from one thread; which Keras backend runs; which device.

Importing TensorFlow takes seconds, so nothing imports it at module level: the window and
``cnnstudio --help`` appear first. The rest of the studio calls these through
:mod:`cnnstudio.core.tf`, whose :func:`~cnnstudio.core.tf.keras` also registers the studio's
custom layers.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import io
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


_log_filter: threading.Thread | None = None


def native_log(verbose: bool = False) -> None:
    """For the rest of the process, keep TensorFlow's native log lines off standard error, not
    only while it starts: XLA, the CUDA plugins and oneDNN log more once work is under way.

    ``verbose`` lets every line through (``TF_CPP_MIN_LOG_LEVEL`` 0 unless the user set it).
    Otherwise the process's descriptor 2 becomes a pipe that a thread reads line by line, passing
    on to the real standard error whatever is not such a line (nor absl's notice; a level the user
    set in ``TF_CPP_MIN_LOG_LEVEL`` is kept). Python's own ``sys.stderr`` writes straight to the
    real one, so progress bars still see a terminal. For a program's entry point; does nothing
    where ``sys.stderr`` was redirected already (a test capturing it) or descriptors cannot be
    juggled, and once is enough.
    """
    global _log_filter
    if verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0")
        return
    if _log_filter is not None or sys.stderr is None or sys.stderr is not sys.__stderr__:
        return
    user = os.environ.get("TF_CPP_MIN_LOG_LEVEL", "").strip()
    keep_from = min(int(user), 3) if user.isdigit() else 3
    try:
        sys.stderr.flush()
        real = os.dup(2)
        read, write = os.pipe()
        stream = io.TextIOWrapper(io.FileIO(real, "w", closefd=False), encoding=sys.stderr.encoding,
                                  errors=sys.stderr.errors, line_buffering=True, write_through=True)
        os.dup2(write, 2)
        os.close(write)
    except (OSError, ValueError, AttributeError):
        return
    sys.stderr = sys.__stderr__ = stream
    _log_filter = threading.Thread(target=_pass_on, args=(read, real, keep_from), name="native-log", daemon=True)
    _log_filter.start()

    def drain() -> None:  # at exit: what is still in the pipe reaches the terminal
        with contextlib.suppress(OSError, ValueError):
            sys.stderr.flush()
            os.dup2(real, 2)  # closes this process's end of the pipe
        _log_filter.join(2.0)  # a child process may still hold its end

    atexit.register(drain)


def _pass_on(read: int, out: int, keep_from: int) -> None:
    """Copy what arrives on ``read`` to ``out``, a line at a time, leaving the native notices out.
    A partial line goes on at once unless it may be the start of one (its first letter I, W, E, F)."""
    pending = b""
    while True:
        try:
            chunk = os.read(read, 65536)
        except OSError:
            break
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = [line + b"\n" for line in lines if not _noise(line + b"\n", keep_from)]
        if pending and pending[:1] not in (b"I", b"W", b"E", b"F"):
            kept.append(pending)
            pending = b""
        _write_all(out, b"".join(kept))
    if pending and not _noise(pending, keep_from):
        _write_all(out, pending)
    os.close(read)


def _write_all(fd: int, data: bytes) -> None:
    with contextlib.suppress(OSError):
        while data:
            data = data[os.write(fd, data):]


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
