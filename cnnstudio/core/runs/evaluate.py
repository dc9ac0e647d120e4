"""A finished run evaluated again: its bundle on its recorded test files, found in a fresh scan.

:func:`evaluate_run` is ``cnnstudio evaluate`` and the window's Evaluate page: the test split's
numbers recomputed from the recorded file lists (wherever the dataset is now), with the
model's own probabilities, so a temperature can be fitted on the validation split
(:func:`calibrate_bundle`) and stored in the bundle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cnnstudio.core.data.dataset import DatasetIndex, ImageItem, scan_dataset
from cnnstudio.core.data.pipeline import ImagePipeline
from cnnstudio.core.errors import StudioError
from cnnstudio.core.evaluation.calibration import (
    apply_temperature,
    expected_calibration_error,
    fit_temperature,
    nll,
    refusal,
)
from cnnstudio.core.evaluation.metrics import EvalResult, evaluate
from cnnstudio.core.model.bundle import META_FILE, Bundle, set_temperature
from cnnstudio.core.runs.folder import dataset_folder, recorded_split
from cnnstudio.core.runs.records import open_finished_run
from cnnstudio.core.tasks import TaskState


def split_subset(index, rel_paths, class_names):
    """The files of one recorded split part that ``index`` (a fresh scan) still holds.

    Returns ``(subset, missing)``: a :class:`~cnnstudio.core.data.dataset.DatasetIndex` of those files
    labelled by ``class_names`` (the bundle's, the model's output order, whatever classes the
    folder holds now), and the recorded paths that are no longer usable images of a known class.
    """
    by_path = {item.path: item for item in index.items}
    label_of = {name: i for i, name in enumerate(class_names)}
    items, missing = [], []
    for path in rel_paths:
        item = by_path.get(path)
        name = index.class_names[item.label] if item is not None else None
        if name not in label_of:
            missing.append(path)
            continue
        items.append(ImageItem(item.path, label_of[name], item.width, item.height, item.kind, item.nbytes))
    return DatasetIndex(index.root, list(class_names), items, []), missing


def evaluate_bundle(bundle, subset, batch_size: int = 32, *, state: TaskState | None = None,
                    task: str = "evaluating") -> EvalResult:
    """Predict every image of ``subset`` (see :func:`split_subset`) with a loaded bundle's model.

    The probabilities are the model's own, without the bundle's temperature, so they can be
    calibrated (or re-calibrated); apply ``bundle.temperature`` to get what the bundle predicts.
    ``state`` hears the progress of ``task`` and may stop it (:class:`~cnnstudio.core.errors.Cancelled`).
    """
    pipe = ImagePipeline(bundle.input_size, cache="none", file_kinds=subset.file_kinds())
    try:
        return evaluate(bundle.model, pipe, subset, list(range(len(subset.items))), batch_size=batch_size,
                        state=state, task=task)
    finally:
        pipe.close()


@dataclass
class RunEvaluation:
    """A finished run's bundle evaluated again on its recorded test split (:func:`evaluate_run`)."""

    run_dir: Path
    bundle: object  # a loaded cnnstudio.core.model.bundle.Bundle
    index: object  # the fresh scan of the dataset the files were found in
    raw: EvalResult  # the model's own test probabilities (no temperature)
    test_files: int  # how many test files the run recorded
    missing: list[str]  # recorded test files no longer in the dataset
    val_paths: list[str]  # the recorded validation files


def evaluate_run(run_dir, data_dir=None, *, batch_size: int = 32, need_val: bool = False,
                 moved_hint: str = "pass --data DIR if it moved", state: TaskState | None = None) -> RunEvaluation:
    """Load ``run_dir``'s bundle and predict its recorded test images, found in ``data_dir`` or
    where the run's dataset was; ``moved_hint`` ends the messages that a moved dataset would
    explain. ``state`` hears the scan (``"scanning"``) and the predictions (``"evaluating the
    test images"``) and may stop either: :class:`~cnnstudio.core.errors.Cancelled`.

    Raises :class:`~cnnstudio.core.errors.StudioError` naming the folder or file and the reason:
    not a finished run, no test split (or, with ``need_val``, no validation split), the dataset
    gone, or none of its test images left.
    """
    run = Path(run_dir)
    paths, config = open_finished_run(run)
    test_paths = recorded_split(paths, config, "test")
    val_paths = (recorded_split(paths, config, "val", why="the temperature is fitted on it") if need_val
                 else list((config.get("split") or {}).get("val") or []))
    data_dir = dataset_folder(paths, config, data_dir, hint=moved_hint)
    index = scan_dataset(data_dir, state=state)
    bundle = Bundle(paths.bundle)
    test, missing = split_subset(index, test_paths, bundle.class_names)
    if not test.items:
        raise StudioError(f"{index.root}: none of the run's {len(test_paths)} test images is there; "
                          f"{moved_hint}")
    raw = evaluate_bundle(bundle, test, batch_size=batch_size, state=state, task="evaluating the test images")
    if not len(raw.y_true):
        raise StudioError(f"{index.root}: none of the run's test images could be read")
    return RunEvaluation(run, bundle, index, raw, len(test_paths), missing, val_paths)


def calibrate_bundle(bundle, index, val_paths, test_raw: EvalResult, *, bins: int = 10,
                     batch_size: int = 32, state: TaskState | None = None) -> dict:
    """Fit a temperature on the recorded validation files ``val_paths`` (found in ``index``, a
    fresh scan), store it in the bundle's folder and in ``bundle.temperature``, and say what it
    changed: ``temperature``, ``previous_temperature``, ``val_images``,
    ``val_missing_files``, the validation NLL and the test ECE (on ``test_raw``, the model's own
    test probabilities) before and after, and ``stored_in``.

    Raises :class:`~cnnstudio.core.errors.StudioError` naming the folder when there is no
    validation image to fit on, and when the fit is refused (:func:`refusal`: a temperature at
    the edge of its range, or one that does not lower the validation NLL); nothing is stored then. ``state`` hears the validation images' predictions
    (``"evaluating the validation images"``) and may stop them before anything is stored
    (:class:`~cnnstudio.core.errors.Cancelled`).
    """
    if not val_paths:
        raise StudioError(f"{bundle.folder}: the run has no validation split to fit the temperature on")
    val, val_missing = split_subset(index, val_paths, bundle.class_names)
    val_raw = (evaluate_bundle(bundle, val, batch_size=batch_size, state=state,
                               task="evaluating the validation images") if val.items else None)
    if val_raw is None or not len(val_raw.y_true):
        raise StudioError(f"{index.root}: none of the run's validation images is there to fit the temperature on")
    T = fit_temperature(val_raw.y_true, val_raw.probs)
    before, after = nll(val_raw.y_true, val_raw.probs), nll(val_raw.y_true, val_raw.probs, T)
    reason = refusal(T, before, after, len(val_raw.y_true))
    if reason:
        raise StudioError(f"{bundle.folder}: {reason}; the bundle is unchanged")
    out = {
        "temperature": T,
        "previous_temperature": bundle.temperature,
        "val_images": len(val_raw.y_true),
        "val_missing_files": val_missing,
        "val_nll_before": before,
        "val_nll_after": after,
        "test_ece_before": expected_calibration_error(test_raw.y_true, test_raw.probs, bins),
        "test_ece_after": expected_calibration_error(test_raw.y_true, apply_temperature(test_raw.probs, T), bins),
        "stored_in": str(bundle.folder / META_FILE),
    }
    bundle.temperature = set_temperature(bundle.folder, T)
    return out
