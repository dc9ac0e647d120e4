"""Restoring a recorded run: its settings, its split and its dataset, checked against the record.

One way in for everything that trains a recorded run again (``cnnstudio train --resume``, Run
Again, ``cnnstudio rerun``): the run's ``config.json`` is read and validated, the dataset folder
is scanned, and the folder's classes and the split's files are compared with what the run
recorded. A resumed search and a resumed cross-validation make the same two checks
(:func:`match_classes`, :func:`check_contents`) against their own records. What changed is named in one line and the restore refuses, since training a run's
weights on other data or other labels gives a result that belongs to neither.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from cnnstudio.core.data.dataset import DatasetIndex, Split, scan_dataset
from cnnstudio.core.data.fingerprint import fingerprint_changes
from cnnstudio.core.errors import RecordError, StudioError
from cnnstudio.core.model.spec import ModelSpec
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.core.runs.records import read_config
from cnnstudio.core.tasks import TaskState

# Changed files named in a refusal; the rest are counted.
SHOWN_CHANGES = 5


@dataclass
class Restored:
    record: dict  # config.json as read
    spec: ModelSpec
    train: dict  # the recorded training settings (TrainConfig.from_dict takes them)
    index: DatasetIndex  # the folder now, with the run's labels
    split: Split  # the run's split over it
    fingerprint: dict | None


def read_record(run_dir) -> dict:
    """A run's ``config.json`` (see :func:`~cnnstudio.core.runs.records.read_config`), checked
    for what a restore needs too; one line naming the file otherwise."""
    saved = read_config(run_dir)
    path = RunPaths(Path(run_dir)).config
    for key in ("spec", "train", "split", "dataset"):
        if not isinstance(saved.get(key), dict):
            raise RecordError(f"{path}: unreadable run record (no '{key}' section)")
    if not saved["dataset"].get("class_names"):
        raise RecordError(f"{path}: unreadable run record (no class names)")
    if not isinstance(saved["dataset"].get("root"), str):
        raise RecordError(f"{path}: unreadable run record (no dataset folder)")
    return saved


def restore(run_dir, data_dir=None, *, purpose: str = "the resumed run", new_classes: str = "refuse",
            state: TaskState | None = None) -> Restored:
    """The recorded run in ``run_dir`` over its dataset as the folder holds it now.

    ``data_dir`` is the dataset folder if it moved (default: the one recorded). A class folder
    added since is refused (``new_classes="refuse"``) or left out (``"ignore"``: the run's own
    file lists are used, so it changes nothing); a recorded class whose folder is gone, and
    files of the split that are missing or changed (when the run recorded their contents), are
    always refused. ``purpose`` ends the refusal ("... would train on other data"). ``state``
    hears the dataset's scan and may stop it (:class:`~cnnstudio.core.errors.Cancelled`).
    """
    saved = read_record(run_dir)
    try:
        spec = ModelSpec.from_dict(saved["spec"])
    except (ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{RunPaths(Path(run_dir)).config}: unreadable model spec ({exc})") from None
    index = scan_dataset(data_dir or saved["dataset"]["root"], state=state)
    index = match_classes(index, list(saved["dataset"]["class_names"]), purpose=purpose, new_classes=new_classes)
    fingerprint = saved.get("fingerprint") if isinstance(saved.get("fingerprint"), dict) else None
    check_contents(fingerprint, index, purpose)
    try:
        split = Split.from_dict(saved["split"], index)
    except (ValueError, KeyError, TypeError) as exc:
        raise StudioError(f"{RunPaths(Path(run_dir)).config}: the recorded split does not fit {index.root} "
                          f"({exc})") from None
    return Restored(saved, spec, dict(saved["train"]), index, split, fingerprint)


def match_classes(index: DatasetIndex, class_names: list[str], *, purpose: str, new_classes: str = "refuse",
                  since: str = "the run was trained") -> DatasetIndex:
    """``index`` with the recorded classes and labels (:func:`with_classes`), or a refusal in one
    line naming the class folders removed (always) or added (when ``new_classes="refuse"``)
    ``since`` the record was made. What a resumed run, search or cross-validation checks first."""
    added = [c for c in index.class_names if c not in class_names]
    gone = [c for c in class_names if c not in index.class_names]
    if gone:
        raise StudioError(f"{index.root}: {_folders(gone)} {'was' if len(gone) == 1 else 'were'} removed since "
                          f"{since}; {purpose} would train on other labels")
    if added and new_classes == "refuse":
        raise StudioError(f"{index.root}: {_folders(added)} {'was' if len(added) == 1 else 'were'} added since "
                          f"{since}; {purpose} would train on other labels")
    return with_classes(index, class_names)


def check_contents(fingerprint: dict | None, index: DatasetIndex, purpose: str, whose: str = "the run's",
                   since: str = "it was trained") -> None:
    """Refuse, in one line naming the files, when files a record fingerprinted are gone or changed."""
    if isinstance(fingerprint, dict) and fingerprint.get("contents"):
        refuse_changes(fingerprint_changes(fingerprint, index), fingerprint.get("files", 0), index.root, purpose,
                       whose, since)


def _folders(names: list[str]) -> str:
    quoted = ", ".join(f"'{n}'" for n in names[:SHOWN_CHANGES])
    more = f" and {len(names) - SHOWN_CHANGES} more" if len(names) > SHOWN_CHANGES else ""
    return f"class folder{'s' if len(names) > 1 else ''} {quoted}{more}"


def with_classes(index: DatasetIndex, class_names: list[str]) -> DatasetIndex:
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


def refuse_changes(changes: list[tuple[str, str]], total: int, root: Path, purpose: str,
                   whose: str = "the run's", since: str = "it was trained") -> None:
    if not changes:
        return
    shown = "; ".join(f"{path} ({what})" for path, what in changes[:SHOWN_CHANGES])
    more = f" and {len(changes) - SHOWN_CHANGES} more" if len(changes) > SHOWN_CHANGES else ""
    raise StudioError(
        f"{root}: {len(changes)} of {whose} {total} files differ from when {since}: {shown}{more}; "
        f"{purpose} would train on other data"
    )
