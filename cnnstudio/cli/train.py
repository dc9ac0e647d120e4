"""``cnnstudio train``: one run, from options, from a search's best.json or a run's config.json, or resumed."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from cnnstudio.cli.common import (
    CONFIG_OPTIONS,
    CliError,
    backbone_params,
    dataset_dir,
    plugin_registry,
    spec_and_config,
)
from cnnstudio.cli.terminal import TerminalState, print_json, printable, say_left_out, scan_folder, stop_on_ctrl_c


def _given_options(parser: argparse.ArgumentParser, argv: list[str], dests) -> set[str]:
    """The options typed on the command line, as opposed to left at their defaults (an option
    typed with its default value still counts): a second parse with every default replaced by
    a marker leaves the marker wherever nothing was typed. (A non-string marker, because argparse
    converts string defaults with the option's type.)"""
    untyped = object()
    saved = {d: parser.get_default(d) for d in dests}
    parser.set_defaults(**dict.fromkeys(dests, untyped))
    try:
        given = parser.parse_args(argv)
    finally:
        parser.set_defaults(**saved)
    return {k for k, v in vars(given).items() if v is not untyped}


def configured_spec_and_config(args, registry):
    """'train --config FILE': the spec and settings of a search's best.json or a run's config.json,
    with the options typed on the command line winning over the file's values."""
    import dataclasses

    from cnnstudio.core.experiments.search import load_configuration
    from cnnstudio.core.model.spec import resolve_spec

    given = _given_options(args.train_parser, args.argv[1:], [k for k in vars(args) if k != "argv"])
    spec, config = load_configuration(args.config)
    if "model" in given:
        spec = resolve_spec(registry, args.model, input_size=args.image_size, weights=args.weights,
                            params=backbone_params(args.param))
    else:
        if "image_size" in given:
            spec.input_size = args.image_size
        if "weights" in given:
            spec.params["weights"] = args.weights
        if "param" in given:
            spec.params.update(backbone_params(args.param))
            spec = spec.validate(registry)
    typed = {field: getattr(args, dest) for dest, field in CONFIG_OPTIONS.items() if dest in given}
    return spec, dataclasses.replace(config, **typed).validate()


def cmd_train(args) -> int:
    from cnnstudio.core.data.dataset import make_split
    from cnnstudio.core.io.lock import refuse_if_held
    from cnnstudio.core.runs.folder import RunPaths
    from cnnstudio.core.runs.restore import restore
    from cnnstudio.core.training.config import TrainConfig
    from cnnstudio.core.training.trainer import Trainer

    out = Path(args.out)
    paths = RunPaths(out)
    if (args.cluster or os.environ.get("TF_CONFIG")) and args.devices not in (None, "auto"):
        raise CliError(f"--devices {args.devices}: a cluster trains on every GPU of each machine; "
                       "leave --devices out with --cluster")
    cluster, strategy = join_cluster(args)
    if cluster is None:
        prepare_devices(args, paths)  # before anything else starts TensorFlow: the CPU may be split
    worker = cluster is not None and not cluster.is_chief  # writes nothing in RUN_DIR, the chief does
    if not worker:
        refuse_if_held(out, "trained")  # before reading what another process is writing there
    registry = plugin_registry()
    state = TerminalState(quiet=args.json)  # the scan's and the training's

    if (args.fresh or args.resume_from) and not args.resume:
        raise CliError(f"{'--fresh' if args.fresh else '--resume-from'} goes with --resume")
    if args.fresh and args.resume_from:
        raise CliError("--fresh starts over; --resume-from goes on from a checkpoint file: choose one")
    if args.resume:
        if args.config:
            raise CliError("--config starts a new run; --resume continues a run with its own settings")
        if not paths.config.exists():
            raise CliError(f"{out}: nothing to resume (no config.json)")
        # The run's classes and files are checked against its record: a class folder added since
        # would shift the labels under the checkpoint's weights.
        try:
            with stop_on_ctrl_c(state, at="batch of files"):
                restored = restore(out, args.data_dir, purpose="the resumed run", new_classes="refuse", state=state)
        finally:
            state.close()
        index, split, spec = restored.index, restored.split, restored.spec
        index.raise_for_errors()
        config = TrainConfig.from_dict(restored.train)
        if args.epochs is not None:
            config.epochs = args.epochs
        if args.precision is not None and args.precision != config.precision:
            raise CliError(f"--precision {args.precision}: the run trains in precision {config.precision}; "
                           "a resume keeps it")
        for name in ("devices", "jit"):  # where it computes may change from one session to the next
            if getattr(args, name) is not None:
                setattr(config, name, getattr(args, name))
        config.validate()
    else:
        if paths.config.exists() and not worker:
            raise CliError(_held_run(out))
        # the settings first: a value TrainConfig refuses is named before the dataset is scanned
        spec, config = configured_spec_and_config(args, registry) if args.config else spec_and_config(args, registry)
        with stop_on_ctrl_c(state, at="image"):  # generating the sample dataset
            data_dir = dataset_dir(args, state)
        index = scan_folder(data_dir, state)
        index.raise_for_errors()
        split = make_split(index, val_fraction=args.val_split, test_fraction=args.test_split, seed=config.seed)

    trainer = Trainer(index, split, spec, config, out, registry, state=state,  # refuses bad settings first
                      cluster=cluster, strategy=strategy)
    say_left_out(index, state, f"{paths.config} (dataset.problems)")
    fallback = "fresh" if args.fresh else args.resume_from
    with stop_on_ctrl_c(state):
        result = trainer.run(resume=args.resume, fallback=fallback)

    if worker:
        if args.json:
            print_json({"run_dir": str(out), "status": result.reason, "epochs_run": result.epochs_run,
                         "train_seconds": result.train_seconds, "saved": "nothing", "worker": cluster.rank})
        else:
            print(f"Trained {result.epochs_run} epoch(s) as {cluster.name()}; the chief saves the run in {out}")
        return 130 if result.reason == "cancelled" else 0
    metrics = result.metrics or {}
    saved = "bundle" if result.bundle else "checkpoint" if result.history else "nothing"
    if args.json:
        print_json({"run_dir": str(out), "status": result.reason, "epochs_run": result.epochs_run,
                     "train_seconds": result.train_seconds, "saved": saved, **metrics})
    else:
        if metrics.get("test_accuracy") is not None:
            print(f"Test accuracy {metrics['test_accuracy']:.4f}, loss {metrics['test_loss']:.4f} "
                  f"on {metrics['test_images']} images")
        if result.skipped_files:
            print(f"{len(result.skipped_files)} file(s) could not be read and were skipped:")
            for d in result.skipped_files:
                print(f"  {printable(d['path'])}: {printable(d['reason'])}")
        print(saved_line(out, result, cluster=cluster is not None))
    return 130 if result.reason == "cancelled" else 0


def prepare_devices(args, paths) -> None:
    """Split the CPU into the devices ``--devices N`` asks for on a machine without GPUs (only
    possible before TensorFlow starts); the devices of a resumed run or of --config FILE are
    theirs unless --devices is given."""
    from cnnstudio.core.training import devices

    choice = args.devices
    if choice is None:
        recorded = paths.config if args.resume else (Path(args.config) if args.config else None)
        try:
            choice = json.loads(recorded.read_text(encoding="utf-8"))["train"]["devices"] if recorded else None
        except (OSError, ValueError, KeyError, TypeError):
            choice = None  # a missing or unreadable record is named where it is read
    devices.prepare(choice or "auto")


def join_cluster(args):
    """``(cluster, strategy)`` of ``--cluster FILE`` or ``TF_CONFIG``, joined before anything
    else starts TensorFlow in this process; ``(None, None)`` on one machine."""
    from cnnstudio.core.training import cluster as clusters

    cluster = clusters.read_cluster(args.cluster)
    if cluster is None:
        return None, None
    if cluster.size > 1:
        print(f"joining a cluster of {cluster.size} machines as {cluster.name()}", file=sys.stderr, flush=True)
    return cluster, clusters.start(cluster)


def _resume_on(out: Path, cluster: bool = False) -> str:
    if cluster:
        return f"`cnnstudio train --resume --out {out} --cluster FILE` on every machine"
    return f"`cnnstudio train --resume --out {out}`"


def saved_line(out: Path, result, cluster: bool = False) -> str:
    """The last line of `cnnstudio train`: what is on disk now, and how to go on where it can."""
    from cnnstudio.core.runs.folder import RunPaths


    n = len(result.history)
    epochs = f"{n} epoch{'s' if n != 1 else ''}"
    if result.bundle and result.reason != "cancelled":
        return f"Run saved in {out}; model bundle in {RunPaths(out).bundle}"
    if result.bundle and n:
        return (f"Stopped after {epochs}: the model so far is in {RunPaths(out).bundle}; "
                f"resume with {_resume_on(out, cluster)}")
    if result.bundle:
        return (f"Stopped before the first epoch ended: no epoch was saved (the bundle in {RunPaths(out).bundle} "
                f"is the untrained model); {_resume_on(out, cluster)} trains the run from epoch 1")
    if n:
        return f"{epochs} checkpointed in {out}; resume with {_resume_on(out, cluster)}"
    return (f"Nothing was saved: no epoch ended; {_resume_on(out, cluster)} trains the run from epoch 1")


def _held_run(out: Path) -> str:
    """The refusal of a new run into a folder that holds one, saying how to continue it."""
    from cnnstudio.core.errors import StudioError
    from cnnstudio.core.runs import checkpoint
    from cnnstudio.core.runs.folder import RunPaths
    from cnnstudio.core.runs.records import read_metrics

    paths = RunPaths(out)
    try:
        status = (read_metrics(out) or {}).get("status")
    except StudioError:
        status = "unreadable"
    if status in ("completed", "early_stopped", "unreadable"):
        return f"{out} already holds a run; choose another --out"
    try:
        saved = checkpoint.read(paths)
        done = f"{saved.epochs_done} epoch(s) saved" if saved else "no epoch saved"
    except StudioError:
        done = "its checkpoint is damaged"
    what = "was stopped" if status == "cancelled" else "did not finish"
    return f"{out} already holds a run that {what} ({done}); continue it with --resume, or choose another --out"
