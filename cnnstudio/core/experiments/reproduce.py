"""Run again: train a recorded run's spec, hyper-parameters, seeds and split into a new folder.

A result worth reporting is one that comes out again. The rerun uses the recorded file lists
(not a new split of whatever the folder holds now) and refuses when the files differ from the
fingerprint the run recorded, naming them, since a rerun on other data proves nothing. On the
CPU, training with the same seeds gives the same losses; the new ``config.json`` records
``"reproduces"`` so the pair can be found and compared (``cnnstudio diff``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from cnnstudio.core.data.dataset import DatasetIndex, Split, scan_dataset
from cnnstudio.core.data.fingerprint import fingerprint_changes
from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import atomic_write_json, read_json
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.trainer import RunResult, Trainer

# Changed files named in the refusal; the rest are counted.
SHOWN_CHANGES = 5


def rerun(run_dir, out_dir, registry, *, data_dir=None, state=None) -> RunResult:
    """Train the run in ``run_dir`` again into ``out_dir`` on the files it recorded.

    ``data_dir`` is the dataset folder if it moved (default: the one recorded). Raises
    :class:`StudioError` when the run's record is unreadable, ``out_dir`` holds a run, or a
    file of the split is missing or changed.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    p = runs.RunPaths(run_dir)
    if not p.config.exists():
        raise StudioError(f"{run_dir}: not a run folder (no config.json)")
    try:
        saved = read_json(p.config)
        spec = ModelSpec.from_dict(saved["spec"])
        config = TrainConfig.from_dict(saved["train"])
        recorded_split = saved["split"]
        class_names = list(saved["dataset"]["class_names"])
        root = data_dir or saved["dataset"]["root"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{p.config}: unreadable run record ({exc})") from exc
    out_paths = runs.RunPaths(out_dir)
    if out_dir.resolve() == run_dir.resolve() or out_paths.config.exists():
        raise StudioError(f"{out_dir}: already holds a run; choose a new folder for the rerun")

    index = _with_classes(scan_dataset(root), class_names)
    fingerprint = saved.get("fingerprint")
    if fingerprint and fingerprint.get("contents"):
        _refuse_changes(fingerprint_changes(fingerprint, index), fingerprint["files"], index.root)
    split = Split.from_dict(recorded_split, index)
    trainer = Trainer(index, split, spec, config, out_dir, registry, state=state)
    if not fingerprint:
        trainer.state.on_status(f"{p.config} records no fingerprint: file contents cannot be checked")
    try:
        return trainer.run()
    finally:
        if out_paths.config.exists():
            record = read_json(out_paths.config)
            record["reproduces"] = str(run_dir.resolve())
            atomic_write_json(out_paths.config, record)


def _with_classes(index: DatasetIndex, class_names: list[str]) -> DatasetIndex:
    """``index`` restricted to the run's classes with the run's labels, so a class folder added
    since does not shift the labels; a recorded class that is gone is left empty (its files are
    then reported missing)."""
    if index.class_names == class_names:
        return index
    label = {name: i for i, name in enumerate(class_names)}
    items = [replace(item, label=label[index.class_names[item.label]])
             for item in index.items if index.class_names[item.label] in label]
    items.sort(key=lambda item: (item.label, item.path))
    return DatasetIndex(index.root, class_names, items, [p for p in index.problems if p.scope == "file"])


def _refuse_changes(changes: list[tuple[str, str]], total: int, root: Path) -> None:
    if not changes:
        return
    shown = "; ".join(f"{path} ({what})" for path, what in changes[:SHOWN_CHANGES])
    more = f" and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
    raise StudioError(
        f"{root}: {len(changes)} of the run's {total} files differ from when it was trained: {shown}{more}; "
        "the rerun would train on other data"
    )
