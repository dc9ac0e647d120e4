"""Where a pretrained backbone's weights come from: ImageNet (Keras' own download and cache), a
local weights file, or random initialisation; and how each is named in the window and records.

ImageNet files are fetched with ``keras.utils.get_file``, the same call, file name, address and
hash ``keras.applications`` use, into Keras' cache (``~/.keras/models``, or ``$KERAS_HOME``).
Fetching first, with progress, means the application's own call then finds the file in the
cache and checks its hash instead of downloading silently. A truncated or corrupted cached file
fails that hash check and is fetched again. Without internet the error says so and offers the
two other sources.

This module imports no TensorFlow until a file is actually fetched.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from cnnstudio.core.errors import WeightsError
from cnnstudio.core.io.atomic import make_folder
from cnnstudio.core.io.hashing import file_digest
from cnnstudio.core.tasks import TaskState, quiet

IMAGENET = "imagenet"
RANDOM = "none"

KERAS_APPLICATIONS = "https://storage.googleapis.com/tensorflow/keras-applications/"


@dataclass(frozen=True)
class WeightsFile:
    """One downloadable weights file, as ``keras.utils.get_file`` takes it.

    ``size`` (bytes) lets progress show a total before the server says; ``file_hash`` is the
    md5 or sha256 hex digest Keras checks the cached file against.
    """

    fname: str
    origin: str
    file_hash: str | None = None
    size: int | None = None


def _app(folder: str, fname: str, file_hash: str, size: int | None = None) -> WeightsFile:
    return WeightsFile(fname, f"{KERAS_APPLICATIONS}{folder}/{fname}", file_hash, size)


# ImageNet weights of the built-in backbones: (without the classifier, with it), exactly as
# keras.applications fetches them (checked against Keras' sources by the tests).
VGG16_FILES = (
    _app("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5", "6d6bbae143d832006294945121d1f1fc", 58_889_256),
    _app("vgg16", "vgg16_weights_tf_dim_ordering_tf_kernels.h5", "64373286793e3c8b2b4e3219cbf3544b", 553_467_096),
)
VGG19_FILES = (
    _app("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5", "253f8cb515780f3b799900260a226db6", 80_134_624),
    _app("vgg19", "vgg19_weights_tf_dim_ordering_tf_kernels.h5", "cbe5617147190e668d6c5d5026f83318", 574_710_816),
)
RESNET50_FILES = (
    _app("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5", "4d473c1dd8becc155b73f8504c6f6626",
         94_765_736),
    _app("resnet", "resnet50_weights_tf_dim_ordering_tf_kernels.h5", "2cb95161c43110f7111970584f804107",
         102_967_424),
)


def keras_cache_dir() -> Path:
    """The folder Keras keeps downloaded weights in (``$KERAS_HOME/models``, default ``~/.keras/models``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return Path(home) / "models"


def cached_path(wf: WeightsFile) -> Path:
    return keras_cache_dir() / wf.fname


def cache_state(wf: WeightsFile) -> str:
    """``"missing"``, ``"ok"`` or ``"corrupt"`` (present but failing its hash: fetched again)."""
    path = cached_path(wf)
    if not path.is_file():
        return "missing"
    if wf.file_hash is None:
        return "ok"
    algorithm = "sha256" if len(wf.file_hash) == 64 else "md5"
    return "ok" if file_digest(path, algorithm) == wf.file_hash else "corrupt"


def offline_message(display_name: str, reason: str) -> str:
    return (
        f"cannot download the ImageNet weights of {display_name} ({reason}). "
        "Without internet, choose a local weights file (e.g. Keras' "
        f"*_notop.h5 file copied into {keras_cache_dir()}) or random initialisation "
        "(not pretrained)"
    )


def fetch(wf: WeightsFile, display_name: str, *, state: TaskState | None = None) -> Path:
    """Make sure ``wf`` is in Keras' cache, downloading it with ``keras.utils.get_file``.

    ``state.on_status(message)`` says what is happening; while the file downloads,
    ``state.on_progress("downloading <display_name> ImageNet weights (bytes)", done_bytes,
    total_bytes)`` is called about five times a second (from a watcher thread; ``total`` is 0
    until known) and once at the end with ``done == total``. A download cannot be stopped half-way,
    so ``state.should_stop()`` is not asked. Raises :class:`WeightsError` with
    :func:`offline_message` when the download fails.
    """
    state = quiet(state)
    cached = cache_state(wf)
    target = cached_path(wf)
    if cached == "ok":
        return target
    if cached == "corrupt":
        state.on_status(f"the cached {wf.fname} is incomplete or corrupted; downloading it again")
    else:
        state.on_status(f"downloading {display_name} ImageNet weights into {target.parent}")
    task = download_task(display_name)
    from cnnstudio.core.tf import keras

    # Keras falls back to a temporary folder when its cache folder does not exist yet.
    make_folder(target.parent)
    done = threading.Event()

    def watch():
        while not done.wait(0.2):
            try:
                state.on_progress(task, target.stat().st_size, wf.size or 0)
            except OSError:
                pass

    watcher = threading.Thread(target=watch, name="cnnstudio-weights-progress", daemon=True)
    watcher.start()
    try:
        path = keras().utils.get_file(
            wf.fname, wf.origin, cache_subdir="models", file_hash=wf.file_hash,
            cache_dir=str(keras_cache_dir().parent),
        )
    except Exception as exc:
        raise WeightsError(offline_message(display_name, download_failure(exc))) from exc
    finally:
        done.set()
        watcher.join()
    size = Path(path).stat().st_size
    state.on_progress(task, size, size)
    return Path(path)


def download_task(display_name: str) -> str:
    """The progress task of a weights download; "(bytes)" tells a state to count bytes."""
    return f"downloading {display_name} ImageNet weights (bytes)"


def failure_reason(exc: BaseException) -> str:
    """The first line of an exception's message: Keras' loading errors run to pages of tensors."""
    text = str(exc).strip().splitlines()
    line = text[0].rstrip(":. ") if text else type(exc).__name__
    return line if len(line) <= 300 else line[:297] + "..."


def download_failure(exc: BaseException) -> str:
    """:func:`failure_reason` of a failed download, saying so when there was no connection."""
    line = failure_reason(exc)
    if "URL fetch failure" in line or "urlopen error" in line or "Name or service not known" in line:
        return "no connection: " + line
    return line


def describe(weights: str) -> str:
    """How a weights choice reads in the window, the run record and the report."""
    if weights == IMAGENET:
        return "ImageNet (pretrained)"
    if weights == RANDOM:
        return "random initialisation (not pretrained)"
    return f"weights file {weights}"


def source_record(weights: str | None) -> dict | None:
    """What a run records about its weights: kind, label, and for a file its path and sha256."""
    if weights is None:
        return None
    record = {"kind": "imagenet" if weights == IMAGENET else "random" if weights == RANDOM else "file",
              "label": describe(weights), "pretrained": weights != RANDOM}
    if record["kind"] == "file":
        record["path"] = str(weights)
        try:
            record["sha256"] = file_digest(weights)
        except OSError:
            record["sha256"] = None
    return record
