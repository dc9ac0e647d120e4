"""The project file the window saves and opens (``NAME.cnnstudio.json``): plain data, no Qt.

A project names the dataset folder and holds the split (validation and test fractions, seed),
the model spec, the training settings, the runs made for it with their headline numbers, the
selected run, and the journal of images moved to another class (so they can still be moved
back). The dataset itself is not in it: opening a project scans the folder again.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from cnnstudio.core.data.relabel import Move, RelabelError, check_move
from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.training.config import TrainConfig

PROJECT_FORMAT = 1
PROJECT_SUFFIX = ".cnnstudio.json"


@dataclass
class Project:
    """What a project file holds; ``runs`` are ``{"path", "name", "metrics"}`` mappings."""

    spec: ModelSpec
    dataset: Path | None = None
    val_fraction: float = 0.15
    test_fraction: float = 0.15
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)
    runs: list[dict] = field(default_factory=list)
    current_run: str = ""
    moves: list[Move] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # what reading the file left out, one line each

    def to_dict(self) -> dict:
        return {
            "format": PROJECT_FORMAT,
            "dataset": str(self.dataset) if self.dataset else None,
            "split": {"val_fraction": self.val_fraction, "test_fraction": self.test_fraction, "seed": self.seed},
            "spec": self.spec.to_dict(),
            "train": self.train.to_dict(),
            "runs": self.runs,
            "current_run": self.current_run,
            "moves": [move.to_dict() for move in self.moves],
        }


def write_project(path, project: Project) -> None:
    atomic_write_json(Path(path), project.to_dict())


def read_project(path, registry) -> tuple[Project, dict]:
    """The project in ``path`` (its spec validated against ``registry``) and the file's data.

    Raises :class:`StudioError` naming the file when it cannot be read or is not a project (or
    one made by a newer version), and the spec's :class:`~cnnstudio.core.errors.SpecError` when
    its model is not available.
    """
    path = Path(path)
    try:
        data = read_json(path)
    except (OSError, ValueError) as exc:
        raise StudioError(f"{path}: cannot read the project ({exc})") from exc
    if not isinstance(data, dict) or data.get("format", 0) > PROJECT_FORMAT:
        raise StudioError(f"{path}: not a CNN Studio project, or made by a newer version")
    split = data.get("split", {})
    val_fraction = float(split.get("val_fraction", 0.15))
    test_fraction = float(split.get("test_fraction", 0.15))
    seed = int(split.get("seed", 0))
    spec = ModelSpec.from_dict(data["spec"]).validate(registry)
    train = TrainConfig.from_dict(data.get("train", {}))
    runs = [r for r in data.get("runs", []) if isinstance(r, dict) and "path" in r]
    current_run = data.get("current_run", "") or ""
    dataset = Path(data["dataset"]) if data.get("dataset") else None
    folders = _dataset_folders(dataset, runs)
    moves, dropped = [], 0
    for entry in data.get("moves") or []:
        try:
            move = Move.from_dict(entry)
            # a journal may only move files within the project's dataset, or the dataset of one
            # of its runs (the Evaluate page moves the images of the run it shows)
            if not any(_within(move, folder) for folder in folders):
                raise RelabelError(f"{move.source}: not in a dataset folder of the project")
        except (KeyError, TypeError, ValueError):
            dropped += 1  # an entry edited by hand: the others still undo
            continue
        moves.append(move)
    warnings = [f"{path}: {dropped} of the image moves could not be undone from here (outside the project's "
                "dataset folder, or not a move) and were left out"] if dropped else []
    project = Project(spec, dataset, val_fraction, test_fraction, seed, train, runs, current_run, moves, warnings)
    return project, data


def _dataset_folders(dataset: Path | None, runs: list[dict]) -> list[Path]:
    """The project's dataset folder and those its runs recorded (unreadable runs add none)."""
    from cnnstudio.core.errors import StudioError
    from cnnstudio.core.runs.records import read_config

    folders = [dataset] if dataset is not None else []
    for run in runs:
        try:
            root = (read_config(run["path"]).get("dataset") or {}).get("root")
        except (StudioError, OSError, TypeError, ValueError):
            continue
        if isinstance(root, str) and root:
            folders.append(Path(root))
    return folders


def _within(move: Move, folder: Path) -> bool:
    try:
        check_move(move, folder)
    except (RelabelError, OSError, ValueError):
        return False
    return True

