"""The one image loader used for scanning, training, evaluation and prediction.

A photo dropped on the window must get exactly the pixels the model was trained on, so every
path through the studio gives the model :func:`load_array`'s pixels. A plain file (see
:func:`probe`) is decoded by TensorFlow's own decoders, inside the training pipeline and here
alike (:mod:`cnnstudio.core.io.fastdecode`); every other file is decoded by :func:`load_rgb`
(EXIF orientation, CMYK, 16-bit, palette, alpha); both are resized by the same TensorFlow op.
The backbone's own ``preprocess_input`` runs inside the model (see ``core.layers``), so the
arrays here are plain RGB ``uint8``.
"""

from __future__ import annotations

import collections
import contextlib
import itertools
import logging
import os
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, ImageFile, UnidentifiedImageError

from cnnstudio.core.errors import ImageError
from cnnstudio.core.io import fastdecode
from cnnstudio.core.io.fastdecode import KIND_JPEG, KIND_PIL, KIND_PNG

# Images above this many pixels are refused before decoding (decompression-bomb guard).
# 12,000 x 12,000 covers every camera; Pillow's own guard stays on above it.
MAX_PIXELS = 144_000_000

# Transparent pixels are composited onto this colour, the same way everywhere.
BACKGROUND = (255, 255, 255)

# How the image is fitted to the model's square input: stretched, the whole image kept, with
# TensorFlow's bilinear resize (as keras.utils.image_dataset_from_directory does by default).
RESIZE = "squash-bilinear-tf"
# Bundles before it were resized by Pillow's bilinear filter; they still predict that way.
RESIZE_PIL = "squash-bilinear"

FORMATS = ("JPEG", "PNG", "BMP", "GIF", "WEBP", "TIFF", "MPO")

ImageFile.LOAD_TRUNCATED_IMAGES = False
# Pillow's own guard at the studio's limit: it raises (DecompressionBombError, named as "image too
# large") only at twice it, and its warning in between is replaced by the studio's own refusal
# below, which names the file and the size; a raw warning would reach the terminal otherwise.
Image.MAX_IMAGE_PIXELS = MAX_PIXELS
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
# Every other warning Pillow raises about a file (a damaged EXIF block, a palette's transparency,
# a format it lacks support for) is said by the studio, naming the file, once per file: never as
# Pillow's raw text with a source line. warnings.catch_warnings is not thread-safe, and files are
# decoded on many threads, so a warning raised while this module decodes a file goes to that
# thread's list (see _showwarning); "always", so a second file with the same trouble says so too.

log = logging.getLogger(__name__)

# Pillow's wording -> the studio's; other warnings are quoted, as "Pillow: <first line>".
_PILLOW_SAYS = (
    ("Palette images with Transparency", "palette image with partial transparency; composited on white"),
    ("corrupt EXIF data", "damaged EXIF data; what cannot be read of it is ignored"),
    ("Tag data larger than file", "damaged EXIF data; what cannot be read of it is ignored"),
    ("Truncated File Read", "damaged metadata (it ends early); it is ignored"),
    ("AVIF support not installed", "an AVIF image, which this Pillow cannot read"),
)

# EXIF orientation -> the transposition that shows the image upright (as ImageOps.exif_transpose).
_UPRIGHT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


_thread = threading.local()  # .raw: a file's warnings while it is read; .collector: see file_notes
_install_lock = threading.Lock()
_passed_on = warnings.showwarning  # where warnings raised outside a file's reading still go


def _showwarning(message, category, filename, lineno, file=None, line=None):
    raw = getattr(_thread, "raw", None)
    if raw is not None and not issubclass(category, (DeprecationWarning, PendingDeprecationWarning)):
        raw.append(str(message))
        return
    _passed_on(message, category, filename, lineno, file, line)


# Pillow's modules and this one (a warning Pillow attributes to its caller): said every time.
_LOUD_MODULES = (r"PIL(\.|$)", re.escape(__name__))
_ALWAYS = [("always", None, Warning, re.compile(module), 0) for module in _LOUD_MODULES]


def _install() -> None:
    """Route warnings through :func:`_showwarning`, and say Pillow's each time (again, where
    something replaced them since, such as a test runner's record of warnings, which restores
    the filters it found); what is not a file's goes on where it went."""
    global _passed_on
    if warnings.showwarning is _showwarning and all(f in warnings.filters for f in _ALWAYS):
        return
    with _install_lock:
        current = warnings.showwarning
        if current is not _showwarning:
            _passed_on = current
            warnings.showwarning = _showwarning
        for module in _LOUD_MODULES:
            warnings.filterwarnings("always", module=module, append=True)


_install()


def pillow_note(message: str) -> str:
    """The studio's line for a warning Pillow raised about one file."""
    for wording, said in _PILLOW_SAYS:
        if wording.lower() in message.lower():
            return said
    first = message.strip().splitlines()
    return f"Pillow: {first[0]}" if first else "Pillow warned about this file"


@contextlib.contextmanager
def file_notes():
    """Collect in the yielded list the studio's notes on the files this thread reads inside the
    block (one per kind of warning Pillow raised), instead of logging them.

    The scan records them as the file's warnings; without such a block each note is logged as
    one line naming the file.
    """
    outer = getattr(_thread, "collector", None)
    collected: list[str] = []
    _thread.collector = collected
    try:
        yield collected
    finally:
        _thread.collector = outer


@contextlib.contextmanager
def _warnings_of(path):
    """While Pillow reads ``path`` on this thread, its warnings become the studio's notes on it."""
    outer = getattr(_thread, "raw", None)
    if outer is not None:  # nested: the outer reading of the same file says them
        yield
        return
    _install()
    raw: list[str] = []
    _thread.raw = raw
    try:
        yield
    finally:
        _thread.raw = None
        collector = getattr(_thread, "collector", None)
        for note in dict.fromkeys(pillow_note(m) for m in raw):
            if collector is None:
                _log_once(str(path), note)
            elif note not in collector:
                collector.append(note)


_logged: set[tuple[str, str]] = set()


def _log_once(path: str, note: str) -> None:
    """Log a file's note once per process (training reads the same files every epoch)."""
    with _install_lock:
        if (path, note) in _logged:
            return
        _logged.add((path, note))
    log.warning("%s: %s", _printable(path), note)


def _printable(text: str) -> str:
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def open_checked(path: str | os.PathLike) -> Image.Image:
    """Open ``path`` lazily and check what can be checked from the header.

    Raises :class:`ImageError` with a reason a person understands.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ImageError(path, f"unreadable ({exc.strerror or exc})") from exc
    if size == 0:
        raise ImageError(path, "empty file (0 bytes)")
    try:
        img = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageError(path, "not an image (content is not a recognised image format)") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image too large ({exc})") from exc
    except PermissionError as exc:
        raise ImageError(path, "unreadable (permission denied)") from exc
    except (OSError, SyntaxError, EOFError) as exc:
        # Pillow reads the header here: a file cut short often fails already ("Truncated File Read").
        msg = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or isinstance(exc, EOFError):
            raise ImageError(path, f"truncated or corrupt ({msg})") from exc
        raise ImageError(path, f"unreadable ({msg})") from exc
    if img.format not in FORMATS:
        fmt = img.format
        img.close()
        raise ImageError(path, f"unsupported image format {fmt}")
    w, h = img.size
    if w * h > MAX_PIXELS:
        img.close()
        raise ImageError(
            path, f"image too large ({w}x{h} = {w * h:,} pixels, above the limit of {MAX_PIXELS:,})"
        )
    if w < 1 or h < 1:
        img.close()
        raise ImageError(path, "image has no pixels")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Convert any mode to 8-bit RGB, EXIF orientation applied, transparency on white.

    Always returns a new image, so the caller may close ``img``.
    """
    original = img
    img.load()
    method = _UPRIGHT.get(_orientation(img))
    if method is not None:
        img = img.transpose(method)
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float64)
        hi = 65535.0 if mode.startswith("I;16") or arr.max() > 255 else 255.0
        arr = np.clip(arr / hi * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        img = Image.fromarray(arr.astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA") if "transparency" in img.info else img.convert("RGB")
    if img.mode in ("LA", "La", "PA"):
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "RGBa"):
        background = Image.new("RGBA", img.size, BACKGROUND + (255,))
        img = Image.alpha_composite(background, img.convert("RGBA"))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img.copy() if img is original else img


def _orientation(img: Image.Image) -> int:
    """The EXIF orientation (1 to 8), 1 where there is none or the EXIF block cannot be read.

    A damaged EXIF block is common in edited photos and says nothing about the pixels, so it
    must not make an otherwise good image unusable.
    """
    try:
        value = img.getexif().get(ExifTags.Base.Orientation, 1)
        return value if value in _UPRIGHT else 1
    except Exception:  # Pillow's EXIF parser raises many kinds on malformed data
        return 1


def load_rgb(path: str | os.PathLike, draft_size: int | None = None) -> Image.Image:
    """Decode ``path`` fully into an RGB image.

    ``draft_size`` lets JPEG decode at a reduced scale (never below that size), which is
    much faster for large photos and still reads the whole stream, so truncation is found.
    """
    with _warnings_of(path):
        return _decode(open_checked(path), path, draft_size)[0]


def _decode(img: Image.Image, path, draft_size: int | None) -> tuple[Image.Image, int]:
    """Decode and convert ``img`` (closing it); return the RGB image and the EXIF orientation."""
    try:
        if draft_size and img.format in ("JPEG", "MPO"):
            img.draft("RGB", (draft_size, draft_size))
        img.seek(0)  # GIF / animated WebP: the first frame
        img.load()
        return to_rgb(img), _orientation(img)
    except Image.DecompressionBombError as exc:
        raise ImageError(path, f"image too large ({exc})") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg or isinstance(exc, EOFError) or "broken data stream" in msg:
            raise ImageError(path, f"truncated or corrupt ({msg})") from exc
        raise ImageError(path, f"corrupt image data ({msg})") from exc
    finally:
        img.close()


def probe(path: str | os.PathLike) -> tuple[int, int]:
    """How ``path`` is decoded, from its header alone: ``(kind, bytes)``.

    ``kind`` is ``KIND_JPEG`` or ``KIND_PNG`` for a plain file (8-bit RGB or grey, no EXIF
    rotation, no transparency, no palette), which TensorFlow decodes to the same pixels as
    Pillow, and ``KIND_PIL`` for everything else, including files that do not open (Pillow then
    names what is wrong). ``bytes`` is the file's size, which the pipeline checks again.
    """
    with _warnings_of(path):
        try:
            img = open_checked(path)
        except ImageError:
            return KIND_PIL, -1
        try:
            return _kind(img, path), os.stat(path).st_size
        except Exception:  # Pillow decodes whatever the header cannot settle, and names what is wrong
            return KIND_PIL, -1
        finally:
            img.close()


def _kind(img: Image.Image, path) -> int:
    if img.mode not in ("RGB", "L") or _orientation(img) != 1 or "transparency" in img.info:
        return KIND_PIL
    if img.format == "JPEG":
        return KIND_JPEG if _ends_with(path, _JPEG_END) else KIND_PIL
    if img.format == "PNG" and getattr(img, "n_frames", 1) == 1:
        with open(path, "rb") as f:
            depth, colour = f.read(26)[24:26]  # IHDR: bit depth, colour type (0 grey, 2 RGB)
        if depth == 8 and colour in (0, 2) and _ends_with(path, _PNG_END):
            return KIND_PNG
    return KIND_PIL


# A file cut short (or with data after its image) goes to Pillow, which names the problem or
# decodes what is there; TensorFlow's decoders would only log a line of their own.
_JPEG_END, _PNG_END = b"\xff\xd9", b"IEND\xaeB`\x82"


def _ends_with(path, end: bytes) -> bool:
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        if f.tell() < len(end):
            return False
        f.seek(-len(end), os.SEEK_END)
        return f.read(len(end)) == end


def decoded_array(path: str | os.PathLike, size: int) -> np.ndarray:
    """Pillow's decode of ``path`` for a model of ``size`` px: upright RGB ``uint8``, before resizing."""
    return np.asarray(load_rgb(path, draft_size=size), dtype=np.uint8)


def load_array(path: str | os.PathLike, size: int, resize: str = RESIZE) -> np.ndarray:
    """The model's input for ``path``: ``(size, size, 3)`` ``uint8`` RGB, squashed bilinearly.

    The same pixels as the training pipeline gives for the file. ``resize`` is a bundle's
    recorded resize; :data:`RESIZE_PIL` is the one of bundles made before :data:`RESIZE`.
    """
    with _warnings_of(path):
        return _load_array(path, size, resize)


def _load_array(path, size: int, resize: str) -> np.ndarray:
    if resize == RESIZE_PIL:
        img = load_rgb(path, draft_size=size)
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8)
    kind, nbytes = probe(path)
    if kind != fastdecode.KIND_PIL:
        data = Path(path).read_bytes()
        if len(data) == nbytes:
            try:
                return fastdecode.plain_array(data, kind, size)
            except Exception:  # damaged after the header: Pillow names the problem below
                pass
    return fastdecode.resized_array(decoded_array(path, size), size)


def inspect(path: str | os.PathLike) -> tuple[int, int, int, int]:
    """:func:`verify` and :func:`probe` in one read: ``(width, height, kind, bytes)``."""
    with _warnings_of(path):
        img = open_checked(path)
        width, height = img.size
        try:
            kind, nbytes = _kind(img, path), os.stat(path).st_size
        except Exception:  # how to decode is only a speed-up: Pillow decodes whatever this cannot tell
            kind, nbytes = KIND_PIL, -1
        _, orientation = _decode(img, path, draft_size=64)
    return (*((height, width) if orientation >= 5 else (width, height)), kind, nbytes)


def verify(path: str | os.PathLike) -> tuple[int, int]:
    """Decode ``path`` completely to prove it is usable; return its upright (width, height).

    The size is the one :func:`load_rgb` gives, EXIF orientation applied, so a portrait photo
    reads as portrait. Raises :class:`ImageError` with the reason.
    """
    return inspect(path)[:2]


def expand_paths(items) -> list[str]:
    """Files as given; folders replaced by their files (recursively, sorted, hidden ones left out).

    What ``cnnstudio predict`` and the Predict panel do with what they are given.
    """
    files: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            for root, dirs, names in os.walk(p):
                dirs[:] = sorted(d for d in dirs if not d.startswith("."))
                files.extend(str(Path(root) / n) for n in sorted(names) if not n.startswith("."))
        else:
            files.append(str(p))
    return files


def load_batches(paths, size: int, batch_size: int, resize: str = RESIZE, workers: int | None = None):
    """Load ``paths`` at ``size`` for prediction, in batches; a file that cannot be read is reported, not raised.

    Yields ``("error", i, reason)`` for a bad file and ``("batch", indices, uint8 array)`` for
    each batch of good ones, ``indices`` being their positions in ``paths``, as the files are
    read: a few batches are decoded ahead (in threads), never the whole list, so memory stays
    bounded by the batch size however many files there are.
    """
    def one(i):
        try:
            return i, load_array(paths[i], size, resize), None
        except ImageError as exc:
            return i, None, exc.reason

    workers = workers or min(4, os.cpu_count() or 1)
    ahead = max(batch_size * 2, workers * 4)  # files being decoded at most
    good, arrays = [], []
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="load") as pool:
        pending = collections.deque()
        following = iter(range(len(paths)))
        for i in itertools.islice(following, ahead):
            pending.append(pool.submit(one, i))
        while pending:
            i, array, reason = pending.popleft().result()
            j = next(following, None)
            if j is not None:
                pending.append(pool.submit(one, j))
            if reason is not None:
                yield "error", i, reason
                continue
            good.append(i)
            arrays.append(array)
            if len(good) == batch_size:
                yield "batch", good, np.stack(arrays)
                good, arrays = [], []
    if good:
        yield "batch", good, np.stack(arrays)
