"""Fixing a mislabelled image: move its file into another class's folder of the dataset, and back.

A dataset is one sub-folder per class, so an image's label is the folder it lies in. Moving it
never overwrites anything (a clashing name gets ``-2``, ``-3``... before the suffix), never leaves
the dataset folder, and only goes into a class folder that already exists. :func:`undo` puts the
file back exactly where it was (same name, same bytes and times: a rename, not a copy), and
:func:`redo` moves it into the class folder again.

No Qt here; the window's undo history holds each :class:`Move` as a step, and the project saves
the list of moves done.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
from dataclasses import dataclass
from pathlib import Path


class RelabelError(ValueError):
    """A move that is refused (outside the dataset, unknown class, missing file, clash on undo)."""


@dataclass(frozen=True)
class Move:
    """One done move: ``source`` and ``target`` are POSIX paths relative to ``root``."""

    root: Path
    source: str
    target: str
    old_class: str
    new_class: str

    def to_dict(self) -> dict:
        return {"root": str(self.root), "source": self.source, "target": self.target,
                "old_class": self.old_class, "new_class": self.new_class}

    @classmethod
    def from_dict(cls, d: dict) -> Move:
        """Raises KeyError or TypeError on an entry that is not a move."""
        return cls(Path(d["root"]), str(d["source"]), str(d["target"]), str(d["old_class"]), str(d["new_class"]))

    @property
    def source_path(self) -> Path:
        return self.root / self.source

    @property
    def target_path(self) -> Path:
        return self.root / self.target


def _inside(root: Path, rel_path) -> Path:
    """``root / rel_path`` resolved; refused when it is not strictly inside ``root``."""
    rel = Path(rel_path)
    if rel.is_absolute():
        raise RelabelError(f"{rel_path}: expected a path relative to the dataset folder")
    full = (root / rel).resolve()
    if full == root or not full.is_relative_to(root):
        raise RelabelError(f"{rel_path}: outside the dataset folder {root}")
    return full


def free_name(folder: Path, name: str) -> Path:
    """``folder / name``, or ``stem-2.ext``, ``stem-3.ext``... when that exists already."""
    candidate = folder / name
    stem, suffix = Path(name).stem, Path(name).suffix
    n = 2
    while candidate.exists() or candidate.is_symlink():
        candidate = folder / f"{stem}-{n}{suffix}"
        n += 1
    return candidate


def _rename(src: Path, dst: Path) -> None:
    """Move without overwriting (the caller checked ``dst`` is free); across file systems too."""
    if dst.exists() or dst.is_symlink():
        raise RelabelError(f"{dst} exists already; nothing was moved")
    try:
        os.rename(src, dst)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        shutil.move(str(src), str(dst))  # copy2 + unlink: times kept


def move_to_class(dataset_root, rel_path, new_class: str) -> Move:
    """Move the image ``rel_path`` (relative to ``dataset_root``) into the class folder
    ``new_class``, keeping its file name unless that is taken there. Returns the :class:`Move`."""
    root = Path(dataset_root).resolve()
    src = _inside(root, rel_path)
    if not src.is_file():
        raise RelabelError(f"{rel_path}: no such image in {root}")
    if not new_class or Path(new_class).name != new_class or new_class in (".", ".."):
        raise RelabelError(f"{new_class!r} is not a class folder name")
    folder = _inside(root, new_class)
    if not folder.is_dir():
        raise RelabelError(f"{new_class}: no such class folder in {root}")
    if src.parent == folder:
        raise RelabelError(f"{rel_path} is in class {new_class} already")
    old_rel = src.relative_to(root)
    dst = free_name(folder, src.name)
    _rename(src, dst)
    return Move(root, old_rel.as_posix(), dst.relative_to(root).as_posix(), old_rel.parts[0], new_class)


def check_move(move: Move, dataset_root=None) -> None:
    """Raise :class:`RelabelError` when ``move`` (read back from a project file, say) would touch
    anything outside its dataset folder, or its folder is not ``dataset_root``: the same
    containment as :func:`move_to_class`, so a hand-made journal cannot move files elsewhere."""
    root = Path(move.root)
    if not root.is_absolute():
        raise RelabelError(f"{move.root}: the dataset folder of a move must be an absolute path")
    if dataset_root is not None and root.resolve() != Path(dataset_root).resolve():
        raise RelabelError(f"{move.source}: moved in {move.root}, not in the dataset folder {dataset_root}")
    for rel, cls in ((move.source, move.old_class), (move.target, move.new_class)):
        path = _inside(root.resolve(), rel)
        if len(path.relative_to(root.resolve()).parts) < 2 or path.relative_to(root.resolve()).parts[0] != cls:
            raise RelabelError(f"{rel}: not a file of class folder {cls!r} in {move.root}")


def check_undo(move: Move) -> None:
    """Raise :class:`RelabelError` when :func:`undo` would refuse ``move`` (nothing is moved)."""
    check_move(move)
    if not move.target_path.is_file():
        raise RelabelError(f"{move.target}: the moved image is no longer there")
    if move.source_path.exists() or move.source_path.is_symlink():
        raise RelabelError(f"{move.source} exists again; move it away first")


def undo(move: Move) -> Path:
    """Put the file of ``move`` back where it was; refused (nothing moved) when that name has been
    taken since, or the moved file is gone. Returns the restored path."""
    check_undo(move)
    move.source_path.parent.mkdir(parents=True, exist_ok=True)
    _rename(move.target_path, move.source_path)
    return move.source_path


def redo(move: Move) -> Move:
    """Move the file of an undone ``move`` into its class folder again, under the same name when
    that is still free (else a free one). Returns the move as done now (its ``target`` may differ);
    refused (nothing moved) when the image or the class folder is gone."""
    check_move(move)
    src = _inside(move.root, move.source)
    if not src.is_file():
        raise RelabelError(f"{move.source}: no such image in {move.root}")
    dst = _inside(move.root, move.target)
    if not dst.parent.is_dir():
        raise RelabelError(f"{move.new_class}: no such class folder in {move.root}")
    dst = free_name(dst.parent, dst.name)
    _rename(src, dst)
    return dataclasses.replace(move, target=dst.relative_to(move.root).as_posix())
