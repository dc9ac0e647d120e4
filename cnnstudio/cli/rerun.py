"""``cnnstudio rerun``: a recorded run trained again on the same files, and compared."""

from __future__ import annotations

from pathlib import Path

from cnnstudio.cli.common import plugin_registry
from cnnstudio.cli.terminal import TerminalState, print_json, stop_on_ctrl_c


def cmd_rerun(args) -> int:
    from cnnstudio.core.experiments.reproduce import rerun
    from cnnstudio.core.runs.compare import diff_runs
    from cnnstudio.core.runs.records import read_history

    original = Path(args.run_dir)
    state = TerminalState(quiet=args.json)
    with stop_on_ctrl_c(state):  # a stop during the scan ends in Cancelled (exit 130)
        result = rerun(original, args.out, plugin_registry(), data_dir=args.data, state=state)
    history = read_history(original)
    pairs = [(a.get("loss"), b.get("loss")) for a, b in zip(history, result.history)]
    loss_gap = max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=None)
    diff = diff_runs(original, args.out)
    shown = ("test_accuracy", "test_loss", "val_accuracy", "val_loss")
    rows = [(key, a, b) for key, a, b in diff.metrics if key in shown]
    if args.json:
        print_json({"original": str(original), "rerun": str(args.out), "status": result.reason,
                     **{key: {"original": a, "rerun": b} for key, a, b in rows},
                     "largest_epoch_loss_difference": loss_gap, "epochs_compared": len(pairs),
                     "changed_predictions": diff.changed_predictions})
    else:
        print(f"{'':<14}  {'original':>10}  {'rerun':>10}")
        for key, a, b in rows:
            print(f"{key:<14}  {_number(a):>10}  {_number(b):>10}")
        if loss_gap is not None:
            print(f"Largest difference of the training loss over {len(pairs)} epoch(s): {loss_gap:.3g}")
        if diff.compared_predictions:
            print(f"Test predictions that changed: {len(diff.changed_predictions)} of {diff.compared_predictions}")
        print(f"Rerun saved in {args.out}")
    return 130 if result.reason == "cancelled" else 0


def _number(v) -> str:
    return "-" if v is None else f"{v:.4f}"
