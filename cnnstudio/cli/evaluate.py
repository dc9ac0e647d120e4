"""``cnnstudio evaluate``: a run's bundle on its test split again, and its calibration."""

from __future__ import annotations

from pathlib import Path

from cnnstudio.cli.common import CliError
from cnnstudio.cli.terminal import TerminalTask, print_json, printable, stop_on_ctrl_c


def cmd_evaluate(args) -> int:
    """Evaluate a run's bundle on its test split again: every number of the evaluation views, and
    with ``--calibrate`` a temperature fitted on the validation split, stored in the bundle."""
    from cnnstudio.core.evaluation.calibration import apply_temperature
    from cnnstudio.core.evaluation.metrics import evaluation_report, format_evaluation
    from cnnstudio.core.runs.evaluate import calibrate_bundle, evaluate_run

    if args.bins < 1:
        raise CliError("--bins must be at least 1")
    run = Path(args.run_dir)
    state = TerminalTask(quiet=args.json)
    try:
        with stop_on_ctrl_c(state):  # the scan or a batch of predictions; nothing is stored then
            ev = evaluate_run(run, args.data, batch_size=args.batch_size, need_val=args.calibrate, state=state)
            bundle, raw, index = ev.bundle, ev.raw, ev.index

            calibration = None
            if args.uncalibrate:
                from cnnstudio.core.model.bundle import set_temperature

                bundle.temperature = set_temperature(bundle.folder, None)
            if args.calibrate:
                calibration = calibrate_bundle(bundle, index, ev.val_paths, raw, bins=args.bins,
                                               batch_size=args.batch_size, state=state)
    finally:
        state.close()

    probs = apply_temperature(raw.probs, bundle.temperature)
    report = evaluation_report(raw.y_true, probs, bundle.class_names, bins=args.bins)
    out = {
        "run_dir": str(run),
        "bundle": str(bundle.folder),
        "dataset_root": str(index.root),
        "temperature": bundle.temperature,
        "test_files": ev.test_files,
        "missing_files": ev.missing,
        "skipped_files": raw.skipped,
        **report,
    }
    if calibration is not None:
        out["calibrate"] = calibration
    if args.json:
        print_json(out)
    else:  # class and file names escaped: a folder name may hold a newline or a terminal escape
        shown = evaluation_report(raw.y_true, probs, [printable(n) for n in bundle.class_names], bins=args.bins)
        print(format_evaluation({
            **out, **shown,
            "missing_files": [printable(str(p)) for p in ev.missing],
            "skipped_files": [{**d, "path": printable(str(d["path"])), "reason": printable(str(d["reason"]))}
                              for d in raw.skipped],
        }))
    return 0
