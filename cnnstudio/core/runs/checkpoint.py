"""A run's checkpoint: the epoch it reached, model, optimizer, best weights and history committed as one.

```
checkpoints/
  state.json             the commit record: epochs done, history, best value, early stopping,
                         phase, and the files of its generation with their sizes
  last-0004.keras        the model after the last epoch, its optimizer's state included
  best-0003.weights.h5   the best epoch's weights (a new file only when an epoch improves)
```

Each epoch writes a new generation: its files first (each written atomically and fsynced),
then ``state.json`` is replaced by one naming them; that replacement is the commit. The files
of older generations are deleted after it. A process killed at any instant therefore leaves a
``state.json`` that names a complete generation: epoch k or epoch k+1, never the model of one
with the state of the other, so a resumed run trains no epoch twice and loses none that was
committed. What a kill leaves behind (the temporary files of atomic writes, the files of a
generation never committed) is removed when the run is next trained (:func:`clean`, under the
folder's lock). ``history.csv`` is a view of ``state.json``, written after each commit and on
every start, so it can only lag behind, and is repaired.

Nothing outside this module names the checkpoint's files: :func:`read` resolves the committed
ones. Run folders written before generations (``state.json`` without ``files``) name
``last.keras`` and ``best.weights.h5``; they are read as such, and the next commit moves them to
generation files.
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cnnstudio.core.errors import RecordError
from cnnstudio.core.io.atomic import atomic_save_model, atomic_write_json, read_json
from cnnstudio.core.runs.folder import RunPaths, best_row, write_history
from cnnstudio.core.runs.records import CHECKPOINT_FILE, read_train_state

LEGACY_LAST = "last.keras"
LEGACY_BEST = "best.weights.h5"
# What tempfile.mkstemp names an atomic write's temporary file beside its target:
# ".{name}.{8 random characters}{suffix}" (see cnnstudio.core.io.atomic).
TEMP_FILE = re.compile(r"\..+\.[a-z0-9_]{8}(\.tmp|\.keras|\.weights\.h5|\.[A-Za-z0-9]+)")


class CheckpointError(RecordError):
    """A file of the committed checkpoint is missing or damaged; the message names it, says what
    is wrong and what the user can do. ``path`` and ``reason`` are kept apart, and ``fallbacks``
    lists the ways on (:meth:`Trainer.run`'s ``fallback``: "best", "last", "fresh"), so the
    window can offer them as choices."""

    def __init__(self, message: str, path: Path, reason: str, fallbacks: tuple[str, ...] = ("fresh",)):
        super().__init__(message)
        self.path = path
        self.reason = reason
        self.fallbacks = tuple(fallbacks)


@dataclass(frozen=True)
class Saved:
    """The committed checkpoint of a run: its state, the files it names, and what is wrong with
    them (``problems``: "last" or "best" to a reason; empty when both are intact)."""

    state: dict  # state.json as checked by records.read_train_state
    last: Path  # the model after epoch state["epochs_done"]
    best: Path | None  # the best epoch's weights, when an epoch had a finite monitored value
    best_epoch: int | None
    problems: dict = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return int(self.state["epochs_done"])

    def path(self, which: str) -> Path | None:
        return self.last if which == "last" else self.best


def _between(step: str) -> None:
    """Called after each step of a commit ("best", "last", "state", "prune", "history"); tests
    replace it to stop the process there, as a kill would."""


# ----------------------------------------------------------------------------- reading


def read(p: RunPaths) -> Saved | None:
    """The committed checkpoint (None when no epoch was saved), its files checked: there, of
    the sizes the commit recorded, the best weights an HDF5 file. A damaged ``state.json``
    raises :class:`RecordError` in one line ("PATH: what is wrong"); a damaged file is listed in
    ``problems`` (:func:`damaged` words it)."""
    state = read_train_state(p.root)
    if state is None:
        return None
    files = _files(p, state)
    problems = {}
    for key in ("last", "best"):
        entry = files.get(key)
        if entry is None:
            continue
        path = p.checkpoints / entry["name"]
        if not path.is_file():
            problems[key] = "missing"
            continue
        size = path.stat().st_size
        if entry.get("size") is not None and size != entry["size"]:
            problems[key] = f"{size:,} bytes, the checkpoint recorded {entry['size']:,}"
        elif key == "best":
            problems.update({key: reason} if (reason := _hdf5_problem(path)) else {})
    last = p.checkpoints / files["last"]["name"]
    best = p.checkpoints / files["best"]["name"] if files.get("best") else None
    return Saved(state, last, best, (files.get("best") or {}).get("epoch"), problems)


def best_weights(p: RunPaths) -> Path | None:
    """The committed best epoch's weights file, None when there is none (or no checkpoint)."""
    state = _raw_state(p)
    if state is None:
        return None
    entry = _files(p, state).get("best")
    return p.checkpoints / entry["name"] if entry else None


def damaged(saved: Saved, which: str, reason: str | None = None) -> CheckpointError:
    """The one line for a damaged file of ``saved`` (``which``: "last" or "best"), with what the
    user can do: resume from the other file where it is intact, or start over."""
    reason = reason or saved.problems.get(which, "damaged")
    options, fallbacks = [], []
    if which == "last" and "best" not in saved.problems and resumable_from_best(saved):
        options.append(f"resume from the best epoch's weights (epoch {saved.best_epoch}) with --resume-from best")
        fallbacks.append("best")
    if which == "best" and "last" not in saved.problems:
        options.append("resume from the last epoch without the best epoch's weights with --resume-from last")
        fallbacks.append("last")
    options.append("start over from epoch 1 with --fresh")
    fallbacks.append("fresh")
    path = saved.path(which)
    return CheckpointError(f"{path}: damaged ({reason}); " + ", or ".join(options), path, reason, tuple(fallbacks))


def resumable(p: RunPaths, fallback: str | None = None) -> Saved | None:
    """The checkpoint a resume goes on from (None when no epoch was saved), refused with a
    :class:`CheckpointError` when ``state.json`` or a file it names is damaged and ``fallback``
    ("best": the last model is damaged, go on from the best weights; "last": the best weights
    are damaged, go on without them) does not get round it."""
    try:
        saved = read(p)
    except RecordError as exc:
        reason = str(exc).removeprefix(f"{p.train_state}: ")
        raise CheckpointError(f"{exc}; start over from epoch 1 with --fresh", p.train_state, reason) from None
    if saved is not None:
        for which, around in (("last", "best"), ("best", "last")):
            if which in saved.problems and fallback != around:
                raise damaged(saved, which)
    return saved


def resumable_from_best(saved: Saved) -> bool:
    """Whether the run can go on from its best weights: a plain run (not the phases of a
    transfer, whose best weights are of another model) whose best epoch is known."""
    return saved.best is not None and saved.best_epoch is not None \
        and saved.state.get("phase", "train") == "train" and saved.state.get("best_of") is None


def _hdf5_problem(path: Path) -> str | None:
    try:
        import h5py

        with h5py.File(path, "r"):
            return None
    except Exception as exc:  # noqa: BLE001 - whatever h5py says, the file cannot be used
        return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# ----------------------------------------------------------------------------- writing


def commit(p: RunPaths, state: dict, last=None, best=None, best_epoch: int | None = None) -> dict:
    """Commit a generation: ``last`` (a Keras model) becomes the last model, ``best`` (a model)
    the best weights of ``best_epoch``; None keeps the committed file. ``state`` is the rest of
    ``state.json``. Returns the record written."""
    before = _raw_state(p) or {}
    generation = int(before.get("generation") or 0) + 1
    files = dict(_files(p, before)) if before else {}
    if best is not None:
        files["best"] = _save(p, best, f"best-{generation:04d}.weights.h5", best_epoch)
        _between("best")
    if last is not None:
        files["last"] = _save(p, last, f"last-{generation:04d}.keras")
        _between("last")
    if "last" not in files:
        raise ValueError("the first checkpoint needs the last model")
    record = {**state, "generation": generation, "files": files}
    atomic_write_json(p.train_state, record)
    _sync_folder(p.checkpoints)
    _between("state")
    prune(p, files)
    _between("prune")
    write_history_view(p, record["history"])
    _between("history")
    return record


def rewrite(p: RunPaths, **changes) -> dict:
    """Commit the checkpoint again with ``changes`` to its state (``best=None`` with
    ``drop_best=True`` forgets the best file)."""
    state = dict(_raw_state(p) or {})
    drop_best = changes.pop("drop_best", False)
    state.update(changes)
    files = dict(_files(p, state))
    if drop_best:
        files.pop("best", None)
    record = {**state, "generation": int(state.get("generation") or 0) + 1, "files": files}
    atomic_write_json(p.train_state, record)
    _sync_folder(p.checkpoints)
    prune(p, files)
    write_history_view(p, record["history"])
    return record


def write_history_view(p: RunPaths, history: list[dict]) -> None:
    """``history.csv`` from the committed history (none before the first epoch)."""
    if history:
        write_history(p, history)
    else:
        with contextlib.suppress(FileNotFoundError):
            p.history.unlink()


def discard(p: RunPaths) -> None:
    """Forget the checkpoint (training starts over from epoch 1): state.json goes first, so a
    kill half-way leaves files that :func:`clean` removes."""
    with contextlib.suppress(FileNotFoundError):
        p.train_state.unlink()
    prune(p, {})
    write_history_view(p, [])


# ----------------------------------------------------------------------------- tidying up


def clean(p: RunPaths) -> list[Path]:
    """Remove what an interrupted write left in the run folder: temporary files of atomic
    writes (in the folder, ``checkpoints/`` and the bundle) and the files of a generation that
    was never committed. Call it holding the folder's lock. A damaged ``state.json`` keeps every
    generation file (one of them may be what the user resumes from). Returns what was removed."""
    removed = []
    # Beside a run's records only: a new run's folder may be one the user keeps other files in.
    folders = (p.root, p.checkpoints, p.bundle) if p.config.is_file() else (p.checkpoints,)
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            if TEMP_FILE.fullmatch(entry.name) and entry.is_file() and not entry.is_symlink():
                removed += _remove(entry)
    try:
        state = read_train_state(p.root)
    except RecordError:
        return removed
    removed += prune(p, {} if state is None else _files(p, state))
    return removed


def prune(p: RunPaths, files: dict) -> list[Path]:
    """Delete the checkpoint files not named by ``files`` (the committed generation's)."""
    keep = {entry["name"] for entry in files.values() if isinstance(entry, dict) and "name" in entry}
    removed = []
    if not p.checkpoints.is_dir():
        return removed
    for entry in p.checkpoints.iterdir():
        name = entry.name
        if name in keep or not (CHECKPOINT_FILE.fullmatch(name) or name in (LEGACY_LAST, LEGACY_BEST)):
            continue
        removed += _remove(entry)
    return removed


# ----------------------------------------------------------------------------- helpers


def _raw_state(p: RunPaths) -> dict | None:
    if not p.train_state.exists():
        return None
    return read_json(p.train_state)


def _files(p: RunPaths, state: dict) -> dict:
    """The files ``state`` names; those of the layout before generations when it names none."""
    if "files" in state:
        return {k: v for k, v in state["files"].items() if v}
    files = {"last": {"name": LEGACY_LAST, "size": None}}
    if (p.checkpoints / LEGACY_BEST).is_file():
        row = best_row(state.get("history") or [], state.get("monitor") or "val_loss")
        files["best"] = {"name": LEGACY_BEST, "size": None, "epoch": None if row is None else row.get("epoch")}
    return files


def _save(p: RunPaths, model, name: str, epoch: int | None = None) -> dict:
    path = p.checkpoints / name
    atomic_save_model(model, path)
    entry = {"name": name, "size": path.stat().st_size}
    if epoch is not None:
        entry["epoch"] = int(epoch)
    return entry


def _remove(path: Path) -> list[Path]:
    try:
        path.unlink()
    except FileNotFoundError:
        return []
    except OSError:
        return []  # left for the next start; it names no committed file
    return [path]


def _sync_folder(folder: Path) -> None:
    """Make the folder's new names durable (a power cut, not only a kill); POSIX only."""
    if os.name != "posix":
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
