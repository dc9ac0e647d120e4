"""A built-in sample dataset of drawn shapes, so the studio can be tried without a download.

The images are generated on first use into the user's data folder. They vary enough (colours,
gradient backgrounds, size, position, rotation, noise, stray lines and dots) that the default
scratch model needs several epochs to learn them, so the live curves show something worth
watching, and not so much that it fails to.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from cnnstudio.core.io.atomic import make_folder, write_failed
from cnnstudio.core.io.paths import data_dir
from cnnstudio.core.tasks import TaskState, check_stop, quiet

SAMPLE_NAME = "shapes-v1"
CLASSES = ("circle", "square", "star", "triangle")
# Images per class. Fewer and the default scratch model overfits before it generalises.
PER_CLASS = 300
SEED = 20240601
# The task generation reports progress as.
SAMPLE_TASK = "generating the sample dataset"

# Written last inside the folder: a folder without it is not a finished sample.
MARKER = ".complete"

# Shapes are drawn at this multiple of the output size and reduced, which smooths the edges.
_SUPERSAMPLE = 2

# How hard the pictures are, tuned so a small conv net learns them over a few epochs (not one).
_RADIUS = (0.24, 0.38)  # shape radius, as a fraction of the image side
_OFFSET = 0.1  # largest shift of the shape's centre from the image centre, as a fraction
_OUTLINE_ONLY = 0.05  # share of shapes drawn as an outline rather than filled
_NOISE = (2.0, 5.0)  # range of the Gaussian pixel noise's standard deviation
_INVERTED = 0.1  # share of light shapes on a dark background (the rest are dark on light)


def describe_sample() -> str:
    """What the sample holds, as the Start page says it: its image count and classes."""
    return f"{PER_CLASS * len(CLASSES):,} drawn shapes in {len(CLASSES)} classes"


def sample_dataset_path(*, state: TaskState | None = None) -> Path:
    """The sample dataset's folder, generated at first use (a second or two).

    Generation happens in a temporary sibling folder that is renamed into place, so a reader
    never sees a half-written sample; when another process finishes first, its copy is kept.
    ``state`` hears :func:`generate_sample`'s progress; when it asks to stop, the half-written
    folder is removed and :class:`Cancelled` raised.
    """
    target = data_dir() / "samples" / SAMPLE_NAME
    if (target / MARKER).is_file():
        return target
    make_folder(target.parent)
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{SAMPLE_NAME}.", suffix=".tmp", dir=target.parent))
    except OSError as exc:
        raise write_failed(target, exc) from None
    try:
        try:
            generate_sample(tmp, state=state)
        except OSError as exc:  # a full or read-only data folder: one line naming it
            raise write_failed(target, exc) from exc
        if target.exists() and not (target / MARKER).is_file():
            # Left by an older, non-atomic writer or damaged by hand: it is ours to replace.
            shutil.rmtree(target, ignore_errors=True)
        try:
            os.rename(tmp, target)
        except OSError:
            if not (target / MARKER).is_file():
                raise
            # Another process won the race; its sample is as good as ours.
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def generate_sample(
    out_dir: str | os.PathLike,
    per_class: int = PER_CLASS,
    size: int = 64,
    seed: int = SEED,
    *,
    state: TaskState | None = None,
) -> None:
    """Write ``per_class`` JPEGs of ``size`` pixels for each class in :data:`CLASSES`.

    Image ``i`` of a class depends only on ``(seed, class, i)``, so the same call always
    draws the same pictures. Reports ``state.on_progress("generating the sample dataset", done,
    total)`` every 50 images and at the end; raises :class:`Cancelled` when ``state.should_stop()``
    turns true before the last image (the folder then has no completion marker).
    """
    state = quiet(state)
    out = Path(out_dir)
    total = per_class * len(CLASSES)
    done = 0
    for label, name in enumerate(CLASSES):
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rng = np.random.default_rng([seed, label, i])
            image = _draw(name, size, rng)
            image.save(folder / f"{name}_{i:04d}.jpg", quality=90)
            done += 1
            if done % 50 == 0 or done == total:
                state.on_progress(SAMPLE_TASK, done, total)
            if done < total:
                check_stop(state, "stopped while generating the sample dataset")
    (out / MARKER).write_text(
        f"{SAMPLE_NAME}: {len(CLASSES)} classes x {per_class} images, {size}px\n", encoding="utf-8"
    )


def _draw(shape: str, size: int, rng: np.random.Generator) -> Image.Image:
    big = size * _SUPERSAMPLE
    # Two background colours for the gradient and the shape's ink: dark on light, or the reverse.
    ground, ink = rng.uniform(140, 255, size=(2, 3)), rng.uniform(0, 110, size=3)
    if rng.random() < _INVERTED:
        ground, ink = rng.uniform(0, 110, size=(2, 3)), rng.uniform(150, 255, size=3)
    background = _background(big, ground, rng)
    image = Image.fromarray(background, "RGB")
    draw = ImageDraw.Draw(image)
    # Distractors go behind and in front of the shape, so they sometimes cross it.
    for _ in range(rng.integers(0, 2)):
        _distractor(draw, big, rng)
    radius = big * rng.uniform(*_RADIUS)
    centre = np.clip(big / 2 + big * rng.uniform(-_OFFSET, _OFFSET, size=2), radius, big - radius)
    colour = tuple(int(c) for c in ink)
    angle = rng.uniform(0, 2 * math.pi)
    if shape == "circle":
        points = _polygon(centre, radius, angle, [1.0] * 48, rng.uniform(0.85, 1.0))
    elif shape == "square":
        points = _polygon(centre, radius, angle, [1.0] * 4, rng.uniform(0.8, 1.0))
    elif shape == "triangle":
        points = _polygon(centre, radius * 1.1, angle, list(rng.uniform(0.85, 1.1, size=3)), 1.0)
    else:  # star
        points = _polygon(centre, radius * 1.1, angle, [1.0, rng.uniform(0.38, 0.55)] * 5, 1.0)
    if rng.random() < _OUTLINE_ONLY:
        draw.line(points + points[:1], fill=colour, width=max(2, int(radius * 0.18)), joint="curve")
    else:
        draw.polygon(points, fill=colour)
    for _ in range(rng.integers(0, 2)):
        _distractor(draw, big, rng)
    small = np.asarray(image.resize((size, size), Image.Resampling.BOX), dtype=np.float32)
    small += rng.normal(0.0, rng.uniform(*_NOISE), small.shape)
    return Image.fromarray(np.clip(small + 0.5, 0, 255).astype(np.uint8), "RGB")


def _polygon(centre, radius, angle, radii, stretch) -> list[tuple[float, float]]:
    """Vertices at equal angular steps, each at ``radius * radii[k]``, squeezed along one axis."""
    n = len(radii)
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points = []
    for k, r in enumerate(radii):
        t = 2 * math.pi * k / n
        x, y = radius * r * math.cos(t), radius * r * math.sin(t) * stretch
        points.append((centre[0] + x * cos_a - y * sin_a, centre[1] + x * sin_a + y * cos_a))
    return points


def _background(size: int, colours: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A linear gradient between two colours, at a random angle."""
    a, b = colours.astype(np.float32)
    angle = rng.uniform(0, 2 * math.pi)
    ramp = np.linspace(-0.5, 0.5, size, dtype=np.float32)
    t = np.clip(ramp[None, :] * math.cos(angle) + ramp[:, None] * math.sin(angle) + 0.5, 0, 1)
    return (a + (b - a) * t[..., None]).astype(np.uint8)


def _distractor(draw: ImageDraw.ImageDraw, size: int, rng: np.random.Generator) -> None:
    colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
    if rng.random() < 0.5:
        x0, y0, x1, y1 = rng.uniform(0, size, size=4)
        draw.line((x0, y0, x1, y1), fill=colour, width=int(rng.integers(1, 4)) * _SUPERSAMPLE)
    else:
        x, y = rng.uniform(0, size, size=2)
        r = size * rng.uniform(0.03, 0.07)
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
