"""``cnnstudio tune``: a hyperparameter search, one line per finished trial."""

from __future__ import annotations

import sys
from pathlib import Path

from cnnstudio.cli.common import dataset_dir, plugin_registry, spec_and_config
from cnnstudio.cli.terminal import TerminalState, printable, scan_folder, stop_on_ctrl_c


class TuneState(TerminalState):
    """The terminal state of 'tune': training progress on stderr, one line per finished trial on stdout."""

    def __init__(self, trials: int | None, objective: str, records=()):
        super().__init__()
        self.trials = trials
        self.objective = objective
        self.records = list(records)  # a resumed search's earlier trials count for the best

    def label(self, number: int) -> str:
        return f"trial {number + 1}/{self.trials}" if self.trials else f"trial {number + 1}"

    def on_trial_start(self, number, params):
        from cnnstudio.core.experiments.search import format_params

        self._say(f"{self.label(number).capitalize()}: {format_params(params)}")

    def on_trial_end(self, record):
        from cnnstudio.core.experiments.search import best_trial, format_params

        self.records.append(record)
        best = best_trial(self.records, self.objective)
        if record.status == "failed":
            outcome = f"{'failed':<8}  {printable(str(record.error))}"
        else:
            value = "-" if record.value is None else f"{record.value:.4f}"
            outcome = f"{record.status:<8}  {self.objective} {value}"
            if record.status == "pruned":
                outcome += f" at epoch {record.epochs}"
        best_text = f"  (best {best.value:.4f}, trial {best.number + 1})" if best else ""
        print(f"{self.label(record.number)}  {outcome}{best_text}  {record.seconds:.1f} s  "
              f"{format_params(record.params)}", flush=True)


def cmd_tune(args) -> int:
    from cnnstudio.core.data.dataset import make_split
    from cnnstudio.core.experiments.search import STUDY_NAME, Search, SearchSpace, format_params
    from cnnstudio.core.io.lock import refuse_if_held

    refuse_if_held(args.out, "searched")  # before reading what another search is writing there
    if args.storage is not None:
        from cnnstudio.core.experiments.storage import kind

        kind(args.storage)  # a malformed URL fails before the scan
    registry = plugin_registry()
    spec, config = spec_and_config(args, registry)  # the settings first: a refused value before the scan
    trials = 10 if args.trials is None and args.timeout is None else args.trials
    state = TuneState(trials, args.objective)
    with stop_on_ctrl_c(state, at="image"):  # generating the sample dataset
        data_dir = dataset_dir(args, state)
    index = scan_folder(data_dir, state)
    index.raise_for_errors()
    split = make_split(index, val_fraction=args.val_split, test_fraction=args.test_split, seed=args.seed)
    space = SearchSpace.load(args.space) if args.space else None
    search = Search(index, split, spec, config, space, args.out, registry, trials=trials, timeout=args.timeout,
                    sampler=args.sampler, prune=not args.no_prune, objective=args.objective, seed=args.seed,
                    state=state, storage=args.storage, study_name=args.study or STUDY_NAME,
                    heartbeat=args.heartbeat)
    state.objective = search.objective  # a resumed search keeps its own
    state.records = [r for r in search.records if r.status != "running"]
    if args.storage is not None:
        from cnnstudio.core.experiments.storage import masked

        print(f"Sharing the search {search.study_name!r} in {masked(args.storage)}: this process takes the next "
              "trial each time", file=sys.stderr)
    elif search.resumed:
        print(f"Resuming the search in {args.out}: {len(state.records)} trial(s) finished", file=sys.stderr)
    print(f"Searching {', '.join(d.describe() for d in search.space.dimensions)}", file=sys.stderr)

    with stop_on_ctrl_c(state, at="epoch"):  # a trial aborted by a second Ctrl-C is run again on resume
        result = search.run()

    out = Path(args.out)
    if result.best is not None:
        b = result.best
        print(f"Best: trial {b.number + 1}, {result.objective} {b.value:.4f}: {format_params(b.params)}")
        data = "--sample" if args.sample else data_dir
        print(f"Search saved in {out}; train the best configuration with: "
              f"cnnstudio train {data} --config {out / 'best.json'} --out RUN_DIR")
    else:
        print(f"Search saved in {out}; no trial has completed yet")
    if result.reason == "timeout":
        print(f"Time limit of {args.timeout:g} s reached")
    if result.reason == "cancelled":
        running = next((r for r in result.trials if r.status == "running"), None)
        where = f" during trial {running.number + 1}" if running else ""
        print(f"Stopped{where}; run the same command again to resume the search"
              + (" (that trial goes on from its last epoch)" if running else ""))
        return 130
    return 0
