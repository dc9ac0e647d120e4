"""``cnnstudio cv``: k-fold cross-validation, one line per fold, then each metric's mean ± std."""

from __future__ import annotations

from cnnstudio.cli.common import CliError, dataset_dir, plugin_registry, spec_and_config
from cnnstudio.cli.terminal import TerminalState, print_json, scan_folder, stop_on_ctrl_c


def _fold_line(fold: int, k: int, m: dict) -> str:
    parts = [f"{key} {m[key]:.4f}" for key in ("val_accuracy", "val_loss", "test_accuracy", "test_loss")
             if m.get(key) is not None]
    seconds = f", {m['seconds']:.1f}s" if m.get("seconds") is not None else ""
    status = "" if m.get("status") in ("completed", "early_stopped") else f" [{m.get('status')}]"
    return f"Fold {fold}/{k}: " + ", ".join(parts) + f" (best of {m.get('epochs')} epochs{seconds}){status}"


class CrossValidationState(TerminalState):
    """The terminal state of 'cv': training progress per fold on stderr, one line per fold on stdout."""

    def on_fold_start(self, fold, k):
        self.k = k
        self._say(f"Fold {fold} of {k}")

    def on_fold_end(self, fold, metrics):
        if not self.quiet:
            print(_fold_line(fold, self.k, metrics), flush=True)


def cmd_cv(args) -> int:
    from cnnstudio.core.experiments.crossval import CV_STUDY, CrossValidation
    from cnnstudio.core.io.lock import refuse_if_held

    if args.val_split is not None:
        raise CliError("--val-split does not apply to cv: each fold validates on 1/K of the images")
    refuse_if_held(args.out, "cross-validated")  # before reading what another one is writing there
    registry = plugin_registry()
    spec, config = spec_and_config(args, registry)  # the settings first: a refused value before the scan
    state = CrossValidationState(quiet=args.json)
    with stop_on_ctrl_c(state, at="image"):  # generating the sample dataset
        data_dir = dataset_dir(args, state)
    index = scan_folder(data_dir, state)
    index.raise_for_errors()
    with stop_on_ctrl_c(state):
        result = CrossValidation(index, spec, config, args.folds, args.out, registry, seed=args.seed,
                                 test_fraction=args.test_split, state=state, storage=args.storage,
                                 study_name=args.study or CV_STUDY, heartbeat=args.heartbeat).run()
    if args.json:
        print_json({"out_dir": str(result.out_dir), "k": result.k, "status": result.reason,
                     "folds": result.folds, "summary": result.summary,
                     "std": "sample standard deviation (ddof=1)"})
    else:
        for line in result.summary_lines():
            print(line)
        if result.reason == "cancelled":
            print(f"Stopped; repeat the same command to resume (finished folds are kept) in {args.out}")
        else:
            print(f"Cross-validation saved in {args.out} (cv.json, fold-1 ... fold-{result.k})")
    return 130 if result.reason == "cancelled" else 0
