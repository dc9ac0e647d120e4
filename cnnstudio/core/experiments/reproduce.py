"""Run again: train a recorded run's spec, hyper-parameters, seeds and split into a new folder.

A result worth reporting is one that comes out again. The rerun uses the recorded file lists
(not a new split of whatever the folder holds now) and refuses when the files differ from the
fingerprint the run recorded, naming them, since a rerun on other data proves nothing. On the
CPU, training with the same seeds gives the same losses; the new ``config.json`` records
``"reproduces"`` so the pair can be found and compared (``cnnstudio diff``).
"""

from __future__ import annotations

from pathlib import Path

from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.atomic import atomic_write_json
from cnnstudio.core.runs import folder as runs
from cnnstudio.core.runs.records import read_config
from cnnstudio.core.runs.restore import read_record, restore
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.trainer import RunResult, Trainer


def rerun(run_dir, out_dir, registry, *, data_dir=None, state=None) -> RunResult:
    """Train the run in ``run_dir`` again into ``out_dir`` on the files it recorded.

    ``data_dir`` is the dataset folder if it moved (default: the one recorded). Raises
    :class:`StudioError` when the run's record is unreadable, ``out_dir`` holds a run, or a
    file of the split is missing or changed. ``state`` (a :class:`TrainState`) hears the
    dataset's scan, then the training; a stop during the scan raises :class:`Cancelled`.
    """
    run_dir, out_dir = Path(run_dir), Path(out_dir)
    read_record(run_dir)  # an unreadable record is named before anything else
    out_paths = runs.RunPaths(out_dir)
    if out_dir.resolve() == run_dir.resolve() or out_paths.config.exists():
        raise StudioError(f"{out_dir}: already holds a run; choose a new folder for the rerun")
    restored = restore(run_dir, data_dir, purpose="the rerun", new_classes="ignore", state=state)
    try:
        config = TrainConfig.from_dict(restored.train)
    except (ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{runs.RunPaths(run_dir).config}: unreadable training settings ({exc})") from None
    spec, index, split, fingerprint = restored.spec, restored.index, restored.split, restored.fingerprint
    p = runs.RunPaths(run_dir)
    trainer = Trainer(index, split, spec, config, out_dir, registry, state=state)
    if not fingerprint:
        trainer.state.on_status(f"{p.config} records no fingerprint: file contents cannot be checked")
    try:
        return trainer.run()
    finally:
        if out_paths.config.exists():
            record = read_config(out_dir)
            record["reproduces"] = str(run_dir.resolve())
            atomic_write_json(out_paths.config, record)
