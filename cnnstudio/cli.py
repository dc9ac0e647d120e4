"""The ``cnnstudio`` command line: everything the window does, for scripts and servers.

Command names and options are a public contract. TensorFlow is imported only by the commands
that need it, so ``cnnstudio --help`` answers at once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import signal
import sys
import threading
from pathlib import Path

from cnnstudio import __version__
from cnnstudio.core.errors import StudioError


class CliError(StudioError):
    """A usage problem found after parsing (e.g. a folder that does not exist)."""


# ----------------------------------------------------------------------------- helpers


def _print_json(obj) -> None:
    from cnnstudio.core.atomic import _json_default

    print(json.dumps(obj, indent=2, ensure_ascii=False, default=_json_default))


def _progress_bar(desc: str, total: int | None = None, unit: str = "it"):
    """A tqdm bar on an interactive terminal, nothing otherwise (logs stay clean)."""
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, disable=not sys.stderr.isatty(), leave=False)


def _scan(data_dir: str, quiet: bool = False):
    from cnnstudio.core.dataset import scan_dataset

    bar = _progress_bar("Scanning", unit="files") if not quiet else None

    def progress(done, total):
        if bar is not None:
            bar.total = total
            bar.n = done
            bar.refresh()

    try:
        return scan_dataset(data_dir, progress=progress)
    finally:
        if bar is not None:
            bar.close()


def _dataset_dir(args) -> str:
    if getattr(args, "sample", False):
        from cnnstudio.core.sample import sample_dataset_path

        if args.data_dir:
            raise CliError("give either DATA_DIR or --sample, not both")
        print("Using the built-in sample dataset", file=sys.stderr)
        return str(sample_dataset_path())
    if not args.data_dir:
        raise CliError("give a DATA_DIR (a folder with one sub-folder per class) or --sample")
    return args.data_dir


def _registry():
    from cnnstudio.plugins import default_manager

    return default_manager().registry


# ----------------------------------------------------------------------------- scan


def cmd_scan(args) -> int:
    index = _scan(args.data_dir, quiet=args.json)
    if args.json:
        _print_json(
            {
                "root": str(index.root),
                "classes": [{"name": n, "images": c} for n, c in zip(index.class_names, index.counts())],
                "images": len(index.items),
                "problems": [p.to_dict() for p in index.problems],
            }
        )
    else:
        width = max([len(n) for n in index.class_names] + [5])
        print(f"{index.root}: {len(index.items)} images in {len(index.class_names)} classes")
        for name, count in zip(index.class_names, index.counts()):
            print(f"  {name:<{width}}  {count:>6}")
        if index.problems:
            print(f"{len(index.problems)} problem(s):")
            for p in index.problems:
                where = p.path or str(index.root)
                print(f"  {p.level}: {where}: {p.reason}")
    # Bad files are listed but do not make the dataset unusable; missing classes do.
    return 1 if any(p.scope != "file" for p in index.errors) else 0


# ----------------------------------------------------------------------------- train


class TerminalState:
    """Reports training on the terminal; the first Ctrl-C asks training to stop at the next batch."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.stop = threading.Event()
        self.bar = None
        self.bar_task = None  # the task of a progress bar before training (decoding, features...)

    def _say(self, text):
        if not self.quiet:
            if self.bar is not None:
                self.bar.write(text, file=sys.stderr)
            else:
                print(text, file=sys.stderr)

    def on_status(self, message):
        self._say(message)

    def on_progress(self, task, done, total):
        if self.quiet:
            return
        desc = task.replace(" (bytes)", "").capitalize()
        if self.bar is None or self.bar_task != task:
            if self.bar is not None:
                self.bar.close()
            self.bar = _progress_bar(desc, total=total or None, unit="B" if "(bytes)" in task else "img")
            self.bar_task = task
            if "(bytes)" in task:
                self.bar.unit_scale = True
        self.bar.n = done
        self.bar.refresh()
        if done >= total:
            self.bar.close()
            self.bar = None

    def on_begin(self, e):
        self.epochs = e.epochs
        if e.phase == "finetune":
            self._say(f"Fine-tuning from epoch {e.initial_epoch + 1} to {e.epochs}")
        else:
            self._say(f"Training on {e.device}: {e.n_train} training and {e.n_val} validation images, "
                      f"{e.steps_per_epoch} batches per epoch")
        if e.summary:
            self._say(format_block_summary(e.summary))

    def on_batch(self, e):
        if self.quiet:
            return
        if self.bar is None:
            self.bar = _progress_bar(f"Epoch {e.epoch + 1}/{self.epochs}", total=e.steps, unit="batch")
        self.bar.n = e.batch
        post = {k: f"{v:.4f}" for k, v in e.logs.items() if k in ("loss", "accuracy")}
        if e.eta is not None:
            post["eta"] = f"{e.eta:.0f}s"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def on_epoch_end(self, e):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        parts = [f"{k} {v:.4f}" for k, v in e.logs.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")]
        eta = f", eta {e.eta:.0f}s" if e.eta else ""
        self._say(f"Epoch {e.epoch + 1}/{self.epochs}: " + ", ".join(parts) + f" ({e.elapsed:.1f}s{eta})")

    def on_end(self, e):
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        what = {"completed": "finished", "early_stopped": "stopped early", "cancelled": "stopped"}[e.reason]
        self._say(f"Training {what} after {e.epochs_run} epoch(s) in {e.elapsed:.1f}s")

    def should_stop(self):
        return self.stop.is_set()


def format_block_summary(rows: list[dict]) -> str:
    """The per-block table of trainable and frozen parameters."""
    width = max(len(r["block"]) for r in rows)
    lines = [f"  {'block':<{width}}  {'trainable':>11}  {'frozen':>11}  state"]
    for r in rows:
        lines.append(f"  {r['block']:<{width}}  {r['trainable']:>11,}  {r['frozen']:>11,}  {r['state']}")
    return "\n".join(lines)


# 'train' options and the TrainConfig fields they set (and, for 'train --config FILE', override).
_CONFIG_OPTIONS = {
    "epochs": "epochs", "batch_size": "batch_size", "optimizer": "optimizer", "lr": "learning_rate",
    "patience": "patience", "class_weights": "class_weight", "seed": "seed", "cache": "cache", "mode": "mode",
    "finetune_blocks": "finetune_blocks", "finetune_from": "finetune_from", "finetune_epochs": "finetune_epochs",
    "finetune_lr": "finetune_learning_rate", "bottleneck": "bottleneck",
}


def backbone_params(items: list[str]) -> dict:
    """``--param NAME=VALUE`` options as a dict: VALUE as JSON when it is a list or a mapping (a
    scratch stack's blocks), else as typed (the backbone's schema converts numbers and booleans)."""
    params = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise CliError(f"--param {item!r}: expected NAME=VALUE, e.g. alpha=0.35")
        value = value.strip()
        if value[:1] in "[{":
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise CliError(f"--param {name}: not valid JSON ({exc.msg} at character {exc.pos})") from None
        params[name.strip()] = value
    return params


def spec_and_config(args, registry):
    """The model spec and training configuration that the training options describe."""
    from cnnstudio.core.spec import resolve_spec
    from cnnstudio.core.training import TrainConfig

    spec = resolve_spec(registry, args.model, input_size=args.image_size, weights=args.weights,
                        params=backbone_params(args.param))
    options = {field: getattr(args, dest) for dest, field in _CONFIG_OPTIONS.items()}
    if options["epochs"] is None:  # --epochs not given: the TrainConfig default
        del options["epochs"]
    config = TrainConfig(**options)
    return spec, config


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

    from cnnstudio.core.search import load_configuration
    from cnnstudio.core.spec import resolve_spec

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
    typed = {field: getattr(args, dest) for dest, field in _CONFIG_OPTIONS.items() if dest in given}
    return spec, dataclasses.replace(config, **typed).validate()


def cmd_train(args) -> int:
    from cnnstudio.core.dataset import Split, make_split
    from cnnstudio.core.runs import RunPaths, read_config
    from cnnstudio.core.spec import ModelSpec
    from cnnstudio.core.training import TrainConfig, Trainer

    out = Path(args.out)
    paths = RunPaths(out)
    registry = _registry()

    if args.resume:
        if args.config:
            raise CliError("--config starts a new run; --resume continues a run with its own settings")
        if not paths.config.exists():
            raise CliError(f"{out}: nothing to resume (no config.json)")
        saved = read_config(out)
        data_dir = args.data_dir or saved["dataset"]["root"]
        index = _scan(data_dir, quiet=args.json)
        index.raise_for_errors()
        split = Split.from_dict(saved["split"], index)
        spec = ModelSpec.from_dict(saved["spec"])
        config = TrainConfig.from_dict(saved["train"])
        if args.epochs is not None:
            config.epochs = args.epochs
    else:
        if paths.config.exists():
            hint = "pass --resume to continue it" if paths.train_state.exists() and not paths.metrics.exists() else \
                "choose another --out"
            raise CliError(f"{out} already holds a run; {hint}")
        data_dir = _dataset_dir(args)
        index = _scan(data_dir, quiet=args.json)
        index.raise_for_errors()
        spec, config = configured_spec_and_config(args, registry) if args.config else spec_and_config(args, registry)
        split = make_split(index, val_fraction=args.val_split, test_fraction=args.test_split, seed=config.seed)

    state = TerminalState(quiet=args.json)
    with _stop_on_ctrl_c(state):
        result = Trainer(index, split, spec, config, out, registry, state=state).run(resume=args.resume)

    metrics = result.metrics or {}
    if args.json:
        _print_json({"run_dir": str(out), "status": result.reason, "epochs_run": result.epochs_run,
                     "train_seconds": result.train_seconds, **metrics})
    else:
        if metrics.get("test_accuracy") is not None:
            print(f"Test accuracy {metrics['test_accuracy']:.4f}, loss {metrics['test_loss']:.4f} "
                  f"on {metrics['test_images']} images")
        if result.skipped_files:
            print(f"{len(result.skipped_files)} file(s) could not be read and were skipped:")
            for d in result.skipped_files:
                print(f"  {d['path']}: {d['reason']}")
        print(f"Run saved in {out}; model bundle in {paths.bundle}")
    return 130 if result.reason == "cancelled" else 0


# ----------------------------------------------------------------------------- tune


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
        from cnnstudio.core.search import format_params

        self._say(f"{self.label(number).capitalize()}: {format_params(params)}")

    def on_trial_end(self, record):
        from cnnstudio.core.search import best_trial, format_params

        self.records.append(record)
        best = best_trial(self.records, self.objective)
        if record.status == "failed":
            outcome = f"{'failed':<8}  {record.error}"
        else:
            value = "-" if record.value is None else f"{record.value:.4f}"
            outcome = f"{record.status:<8}  {self.objective} {value}"
            if record.status == "pruned":
                outcome += f" at epoch {record.epochs}"
        best_text = f"  (best {best.value:.4f}, trial {best.number + 1})" if best else ""
        print(f"{self.label(record.number)}  {outcome}{best_text}  {record.seconds:.1f} s  "
              f"{format_params(record.params)}", flush=True)


def cmd_tune(args) -> int:
    from cnnstudio.core.dataset import make_split
    from cnnstudio.core.search import Search, SearchSpace, format_params

    registry = _registry()
    data_dir = _dataset_dir(args)
    index = _scan(data_dir)
    index.raise_for_errors()
    spec, config = spec_and_config(args, registry)
    split = make_split(index, val_fraction=args.val_split, test_fraction=args.test_split, seed=args.seed)
    space = SearchSpace.load(args.space) if args.space else None
    trials = 10 if args.trials is None and args.timeout is None else args.trials
    state = TuneState(trials, args.objective)
    search = Search(index, split, spec, config, space, args.out, registry, trials=trials, timeout=args.timeout,
                    sampler=args.sampler, prune=not args.no_prune, objective=args.objective, seed=args.seed,
                    state=state)
    state.objective = search.objective  # a resumed search keeps its own
    state.records = [r for r in search.records if r.status != "running"]
    if search.resumed:
        print(f"Resuming the search in {args.out}: {len(state.records)} trial(s) finished", file=sys.stderr)
    print(f"Searching {', '.join(d.describe() for d in search.space.dimensions)}", file=sys.stderr)

    with _stop_on_ctrl_c(state, at="epoch"):  # a trial aborted by a second Ctrl-C is run again on resume
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


# ----------------------------------------------------------------------------- predict


def cmd_predict(args) -> int:
    from cnnstudio.core.bundle import Bundle
    from cnnstudio.core.images import expand_paths

    if args.imagenet:
        if args.gradcam is not None or args.gradcam_layer is not None:
            args.predict_parser.error("--gradcam goes with a model bundle, not with --imagenet")
        return cmd_predict_imagenet(args)
    if not args.images:
        args.predict_parser.error("the following arguments are required: IMAGE_OR_DIR")
    if args.gradcam_layer is not None and args.gradcam is None:
        args.predict_parser.error("--gradcam-layer goes with --gradcam OUT_DIR")
    extra = [o for o, v in (("--model", args.model), ("--weights", args.weights), ("--image-size", args.image_size))
             if v is not None]
    if extra:
        args.predict_parser.error(f"{', '.join(extra)} only go with --imagenet (a bundle holds its model)")
    files = expand_paths(args.images)
    if not files:
        raise CliError("no image files given")
    bundle = Bundle(args.bundle)
    results = bundle.predict_paths(files, top_k=args.top_k if args.top_k is not None else 3)
    overlays = {}
    if args.gradcam is not None:
        from cnnstudio.core.gradcam import GradCam, gradcam_paths

        cam = GradCam(bundle.model, args.gradcam_layer)  # an unknown layer fails before anything is written
        written = gradcam_paths(bundle, [r.path for r in results if not r.error], args.gradcam, cam=cam)
        overlays = {w.path: w.out for w in written}
        done = sum(1 for w in written if w.out)
        print(f"Grad-CAM overlays (layer {cam.layer}) of {done} images in {args.gradcam}", file=sys.stderr)
    if args.json:
        _print_json([
            {"path": r.path, "top": [{"class": c, "probability": p} for c, p in r.top] if r.top else None,
             "error": r.error, **({"gradcam": overlays.get(r.path)} if args.gradcam is not None else {})}
            for r in results
        ])
    else:
        for r in results:
            if r.error:
                print(f"{r.path}: error: {r.error}")
            else:
                print(f"{r.path}: " + ", ".join(f"{c} {p * 100:.2f}%" for c, p in r.top))
    return 1 if all(r.error for r in results) else 0


def cmd_predict_imagenet(args) -> int:
    """``predict --imagenet``: the top ImageNet classes of each image, by a backbone's whole classifier."""
    from cnnstudio.core.imagenet import DEFAULT_MODEL, TOP_K, ImageNetClassifier
    from cnnstudio.core.images import expand_paths

    files = expand_paths([args.bundle, *args.images])  # with --imagenet every positional is an image
    if not files:
        raise CliError("no image files given")
    k = args.top_k if args.top_k is not None else TOP_K
    if k < 1:
        raise CliError("--top-k must be at least 1")
    bars = []  # the download bar, made at the first progress (none when the file is cached)

    def progress(done, total):
        if args.json:
            return
        if not bars:
            bars.append(_progress_bar("Downloading", total=total, unit="B"))
            bars[0].unit_scale = True
        bars[0].total = total
        bars[0].n = done
        bars[0].refresh()

    def status(message):
        if not args.json:
            print(message[:1].upper() + message[1:], file=sys.stderr)

    try:
        classifier = ImageNetClassifier(args.model or DEFAULT_MODEL, args.weights or "imagenet",
                                        registry=_registry(), progress=progress, status=status,
                                        input_size=args.image_size)
    finally:
        for bar in bars:
            bar.close()
    print(f"{classifier.label}, {classifier.input_size} px", file=sys.stderr)
    results = classifier.predict_paths(files, k=k)
    if args.json:
        _print_json([
            {"path": r.path, "model": classifier.provider.id, "weights": classifier.weights_label,
             "pretrained": classifier.pretrained,
             "top": [{"class": n, "synset": s, "probability": p} for n, s, p in r.top] if r.top else None,
             "error": r.error}
            for r in results
        ])
    else:
        note = "" if classifier.pretrained else " (random weights, not pretrained)"
        for r in results:
            if r.error:
                print(f"{r.path}: error: {r.error}")
            else:
                print(f"{r.path}: " + ", ".join(f"{n} {p * 100:.2f}%" for n, _, p in r.top) + note)
    return 1 if all(r.error for r in results) else 0


# ----------------------------------------------------------------------------- evaluate


def cmd_evaluate(args) -> int:
    """Evaluate a run's bundle on its test split again: every number of the evaluation views, and
    with ``--calibrate`` a temperature fitted on the validation split, stored in the bundle."""
    from cnnstudio.core.calibration import apply_temperature
    from cnnstudio.core.evaluation import (
        calibrate_bundle,
        evaluate_run,
        evaluation_report,
        format_evaluation,
    )

    if args.bins < 1:
        raise CliError("--bins must be at least 1")
    run = Path(args.run_dir)
    ev = evaluate_run(run, args.data, batch_size=args.batch_size, need_val=args.calibrate,
                      scan=lambda folder: _scan(folder, quiet=args.json))
    bundle, raw, index = ev.bundle, ev.raw, ev.index

    calibration = None
    if args.uncalibrate:
        from cnnstudio.core.bundle import set_temperature

        bundle.temperature = set_temperature(bundle.folder, None)
    if args.calibrate:
        calibration = calibrate_bundle(bundle, index, ev.val_paths, raw, bins=args.bins, batch_size=args.batch_size)

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
        _print_json(out)
    else:
        print(format_evaluation(out))
    return 0


# ----------------------------------------------------------------------------- export


def cmd_export(args) -> int:
    from cnnstudio.core.export import export_run

    report = export_run(args.run_dir, args.format, args.out, data_dir=args.data_dir,
                        exporters=_registry().exporters)
    if args.json:
        _print_json(report.to_dict())
        return 0
    print(report.summary())
    print(f"  runtime: {report.runtime}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.skipped:
        print(f"  {len(report.skipped)} test image(s) could not be read and were skipped:")
        for d in report.skipped:
            print(f"    {d['path']}: {d['reason']}")
    return 0


# ----------------------------------------------------------------------------- report


def cmd_report(args) -> int:
    from cnnstudio.core.atomic import atomic_write_text
    from cnnstudio.core.report import comparison_html, run_report_html

    runs = [Path(d) for d in args.run_dirs]
    for d in runs:
        if not (d / "config.json").is_file():
            raise CliError(f"{d}: not a run folder (no config.json)")
    if len(runs) > 1 and not args.out:
        raise CliError("a comparison of several runs needs --out DIR")
    out = Path(args.out) if args.out else runs[0]
    if out.exists() and not out.is_dir():
        raise CliError(f"{out}: not a folder")
    stem = "report" if len(runs) == 1 else "comparison"
    written = []
    html = run_report_html(runs[0]) if len(runs) == 1 else comparison_html(runs)
    atomic_write_text(out / f"{stem}.html", html)
    written.append(out / f"{stem}.html")
    if args.pdf:
        try:
            from cnnstudio.gui.pdf import write_comparison_pdf, write_run_pdf
        except ImportError as exc:
            raise CliError(f"the PDF needs Qt (PySide6), which is not available: {exc}") from exc
        if len(runs) == 1:
            written.append(write_run_pdf(runs[0], out / f"{stem}.pdf"))
        else:
            written.append(write_comparison_pdf(runs, out / f"{stem}.pdf"))
    for path in written:
        print(path)
    return 0


# ----------------------------------------------------------------------------- cross-validation, rerun, runs, diff


@contextlib.contextmanager
def _stop_on_ctrl_c(state, at: str = "batch"):
    """The first Ctrl-C asks ``state`` to stop after this ``at`` (the run stays resumable); a
    second one aborts at once."""
    previous = signal.getsignal(signal.SIGINT)

    def on_sigint(signum, frame):
        if state.stop.is_set():
            signal.signal(signal.SIGINT, previous)
            raise KeyboardInterrupt
        state._say(f"Stopping after this {at} (Ctrl-C again to abort)...")
        state.stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


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
    from cnnstudio.core.crossval import CrossValidation

    if args.val_split is not None:
        raise CliError("--val-split does not apply to cv: each fold validates on 1/K of the images")
    data_dir = _dataset_dir(args)
    index = _scan(data_dir, quiet=args.json)
    index.raise_for_errors()
    registry = _registry()
    spec, config = spec_and_config(args, registry)
    state = CrossValidationState(quiet=args.json)
    with _stop_on_ctrl_c(state):
        result = CrossValidation(index, spec, config, args.folds, args.out, registry, seed=args.seed,
                                 test_fraction=args.test_split, state=state).run()
    if args.json:
        _print_json({"out_dir": str(result.out_dir), "k": result.k, "status": result.reason,
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


def cmd_rerun(args) -> int:
    from cnnstudio.core.compare import diff_runs
    from cnnstudio.core.reproduce import rerun
    from cnnstudio.core.runs import RunPaths, read_history

    original = Path(args.run_dir)
    state = TerminalState(quiet=args.json)
    with _stop_on_ctrl_c(state):
        result = rerun(original, args.out, _registry(), data_dir=args.data, state=state)
    history = read_history(original) if RunPaths(original).history.exists() else []
    pairs = [(a.get("loss"), b.get("loss")) for a, b in zip(history, result.history)]
    loss_gap = max((abs(a - b) for a, b in pairs if a is not None and b is not None), default=None)
    diff = diff_runs(original, args.out)
    shown = ("test_accuracy", "test_loss", "val_accuracy", "val_loss")
    rows = [(key, a, b) for key, a, b in diff.metrics if key in shown]
    if args.json:
        _print_json({"original": str(original), "rerun": str(args.out), "status": result.reason,
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


RUN_COLUMNS = (("name", "run"), ("model", "model"), ("status", "status"), ("epochs", "epochs"),
               ("val_accuracy", "val_acc"), ("val_loss", "val_loss"), ("test_accuracy", "test_acc"),
               ("train_seconds", "seconds"), ("created", "created"))


def _sorted_runs(found: list, sort: str) -> list:
    """Runs sorted by a column or a setting (``-KEY``: descending); runs without it come last."""
    key = sort.lstrip("-")

    def value(run):
        return getattr(run, key) if key in run.__dataclass_fields__ else run.settings.get(key)

    have = [r for r in found if value(r) is not None]
    if found and not have and not any(key in r.settings for r in found) and key not in found[0].__dataclass_fields__:
        raise CliError(f"--sort {key}: no such column or setting (columns: {', '.join(c for c, _ in RUN_COLUMNS)}; "
                       "or a setting such as train.learning_rate)")
    numeric = all(isinstance(value(r), (int, float)) and not isinstance(value(r), bool) for r in have)
    have.sort(key=(lambda r: value(r)) if numeric else (lambda r: str(value(r))), reverse=sort.startswith("-"))
    return have + [r for r in found if value(r) is None]


def _matches(run, text: str) -> bool:
    text = text.lower()
    if "=" in text:
        key, _, wanted = text.partition("=")
        return any(k.lower() == key.strip() and str(v).lower() == wanted.strip() for k, v in run.settings.items())
    return any(text in str(v).lower() for v in (run.name, run.model, run.status) if v)


def cmd_runs(args) -> int:
    from cnnstudio.core.compare import find_runs

    found = find_runs(args.folder)
    if args.filter:
        found = [r for r in found if _matches(r, args.filter)]
    if args.sort:
        found = _sorted_runs(found, args.sort)
    if args.json:
        _print_json([r.to_dict() for r in found])
        return 0
    if not found:
        print(f"No runs under {args.folder}")
        return 0
    table = [[label for _, label in RUN_COLUMNS]]
    for r in found:
        row = []
        for key, _ in RUN_COLUMNS:
            v = getattr(r, key)
            row.append("-" if v is None else f"{v:.4f}" if isinstance(v, float) and key != "train_seconds"
                       else f"{v:.1f}" if isinstance(v, float) else str(v))
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(RUN_COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) if i in (0, 1, 2, 8) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    for r in found:
        if r.status == "unreadable":
            print(f"{r.name}: {r.reason}")
    return 0


def cmd_diff(args) -> int:
    from cnnstudio.core.compare import diff_runs, format_diff

    diff = diff_runs(args.run_a, args.run_b)
    if args.json:
        _print_json(diff.to_dict())
    else:
        print(format_diff(diff))
    return 0


# ----------------------------------------------------------------------------- plugins and models


def cmd_plugins(args) -> int:
    from cnnstudio.plugins import default_manager
    from cnnstudio.plugins.settings import set_enabled

    for name, enabled in [(n, False) for n in args.disable] + [(n, True) for n in args.enable]:
        set_enabled(name, enabled)
        print(f"{name}: {'enabled' if enabled else 'disabled'} (remembered; the window uses the same setting)",
              file=sys.stderr)
    # The listing shows every error; the manager's own warnings would say each one twice.
    manager_log = logging.getLogger("cnnstudio.plugins.manager")
    level = manager_log.level
    manager_log.setLevel(logging.ERROR)
    try:
        manager = default_manager()
    finally:
        manager_log.setLevel(level)
    infos = manager.plugins
    if args.json:
        _print_json([
            {"name": i.name, "origin": i.origin, "distribution": i.distribution, "version": i.version,
             "status": i.status, "provides": i.provides,
             "errors": [{"cause": e.cause, "traceback": e.traceback} for e in i.errors]}
            for i in infos
        ])
        return 0
    for i in infos:
        version = f" {i.version}" if i.version else ""
        print(f"{i.name}{version} [{i.origin}] {i.status}")
        if i.provides:
            print("  provides: " + ", ".join(i.provides))
        for e in i.errors:
            print(f"  error: {e.cause}")
    return 0


def _param_dict(p) -> dict:
    d = {"name": p.name, "kind": p.kind, "default": p.default}
    for key in ("minimum", "maximum", "step"):
        if getattr(p, key) is not None:
            d[key] = getattr(p, key)
    if p.choices:
        d["choices"] = list(p.choices)
    if p.help:
        d["help"] = p.help
    return d


def cmd_models(args) -> int:
    registry = _registry()
    backbones = [
        {"id": b.id, "name": b.display_name, "pretrained": b.pretrained, "default_input_size": b.default_input_size,
         "min_input_size": b.min_input_size, "preprocessing": b.preprocessing,
         "origin": registry.origin("backbone", b.id), "params": [_param_dict(p) for p in b.params],
         "description": b.description}
        for b in registry.backbones.values()
    ]
    presets = [
        {"id": p.id, "name": p.display_name, "backbone": p.spec.get("backbone"), "description": p.description,
         "origin": registry.origin("preset", p.id), "spec": p.spec}
        for p in registry.presets.values()
    ]
    if args.json:
        _print_json({"backbones": backbones, "presets": presets})
        return 0
    print("Backbones:")
    for b in backbones:
        tag = ", pretrained weights available" if b["pretrained"] else ""
        print(f"  {b['id']:<22} {b['name']} (input {b['default_input_size']} px, min {b['min_input_size']}{tag})")
        for p in b["params"]:
            print(f"      {p['name']} = {p['default']!r}" + (f"  {p.get('help')}" if p.get("help") else ""))
    print("Presets:")
    for p in presets:
        print(f"  {p['id']:<22} {p['description'] or p['name']}")
    return 0


# ----------------------------------------------------------------------------- main


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The model, hyper-parameter and split options of 'train', shared by 'tune' and 'cv'."""
    p.add_argument("--model", default="scratch", metavar="ID_OR_PRESET",
                   help="a backbone id or preset name (see 'cnnstudio models'; default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help="number of epochs (default: 10)")
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument("--image-size", type=int, default=None, metavar="N", help="input size in pixels (default: the model's)")
    p.add_argument("--lr", type=float, default=1e-3, help="learning rate (default: %(default)s)")
    p.add_argument("--optimizer", choices=["adam", "sgd"], default="adam", help="default: %(default)s")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, initialisation and shuffling")
    p.add_argument("--val-split", type=float, default=0.15, metavar="F", help="validation fraction (default: %(default)s)")
    p.add_argument("--test-split", type=float, default=0.15, metavar="F", help="test fraction (default: %(default)s)")
    p.add_argument("--patience", type=int, default=5, help="early-stopping patience in epochs, 0 for off (default: %(default)s)")
    p.add_argument("--weights", default=None, metavar="imagenet|none|PATH",
                   help="weights of a pretrained backbone: ImageNet (downloaded once), none (random), or a local file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a backbone parameter, e.g. alpha=0.35 for a plugin's MobileNetV2 or "
                        "blocks='[{\"type\": \"conv\", \"filters\": 16}]' for a scratch stack (repeatable; "
                        "'cnnstudio models' lists each backbone's parameters)")
    p.add_argument("--class-weights", choices=["none", "auto"], default="none",
                   help="'auto' weights classes by inverse frequency (for imbalanced data)")
    p.add_argument("--cache", choices=["auto", "memory", "disk", "none"], default="auto",
                   help="cache of decoded images between epochs (default: %(default)s)")
    p.add_argument("--mode", choices=["scratch", "extract", "finetune"], default=None,
                   help="pretrained backbones: 'scratch' (architecture only, random weights), 'extract' (frozen "
                        "base, new head; the default) or 'finetune' (head first, then the top blocks)")
    p.add_argument("--finetune-blocks", type=int, default=1, metavar="N",
                   help="fine-tuning: top blocks of the base to unfreeze (default: %(default)s)")
    p.add_argument("--finetune-from", default="", metavar="LAYER",
                   help="fine-tuning: unfreeze every base layer from LAYER up (instead of --finetune-blocks)")
    p.add_argument("--finetune-epochs", type=int, default=5, metavar="N",
                   help="fine-tuning: epochs of the second phase (default: %(default)s)")
    p.add_argument("--finetune-lr", type=float, default=1e-4, metavar="X",
                   help="fine-tuning: SGD (momentum 0.9) learning rate of the second phase (default: %(default)s)")
    p.add_argument("--bottleneck", action="store_true",
                   help="feature extraction: compute the base's features once (cached on disk) and train the head "
                        "on them; off with augmentation")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="cnnstudio",
        description="CNN Studio: train image classifiers from a folder of images (one sub-folder per class).",
        epilog="Without a command, cnnstudio opens the window: 'cnnstudio [PROJECT_FILE]', or "
        "'cnnstudio --sample' to start on the built-in sample dataset.",
    )
    parser.add_argument("--version", action="version", version=f"cnnstudio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("scan", help="check a dataset folder: classes, counts and problem files")
    p.add_argument("data_dir", metavar="DATA_DIR")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_scan)

    p = sub.add_parser("train", help="train a model on a dataset folder into a run folder")
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", help="folder with one sub-folder per class")
    p.add_argument("--sample", action="store_true", help="use the built-in sample dataset instead of DATA_DIR")
    p.add_argument("--out", required=True, metavar="RUN_DIR", help="folder for this run (config, history, model)")
    add_training_options(p)
    p.add_argument("--config", default=None, metavar="FILE",
                   help="take the model and training settings from a search's best.json or a run's config.json; "
                        "options given here override the file's values")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.set_defaults(func=cmd_train, train_parser=p)

    p = sub.add_parser(
        "predict", help="classify images with a trained model bundle, or see what ImageNet sees (--imagenet)",
        usage="cnnstudio predict [-h] [--top-k K] [--json] [--gradcam OUT_DIR [--gradcam-layer NAME]] "
              "BUNDLE IMAGE_OR_DIR [IMAGE_OR_DIR ...]\n"
              "       cnnstudio predict --imagenet [--model ID] [--weights imagenet|none|PATH] "
              "[--image-size N] [--top-k K] [--json] IMAGE_OR_DIR [IMAGE_OR_DIR ...]",
        description="Classify images with a trained model bundle; with --imagenet, show the top ImageNet "
                    "classes a pretrained backbone's whole classifier sees in them (every positional is an image).",
    )
    p.add_argument("bundle", metavar="BUNDLE", help="a model bundle folder (RUN_DIR/model); not with --imagenet")
    p.add_argument("images", metavar="IMAGE_OR_DIR", nargs="*")
    p.add_argument("--top-k", type=int, default=None, metavar="K",
                   help="classes to show per image (default: 3, or 5 with --imagenet)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    g = p.add_argument_group("what ImageNet sees")
    g.add_argument("--imagenet", action="store_true",
                   help="classify into the 1,000 ImageNet classes with a backbone's original classifier")
    g.add_argument("--model", default=None, metavar="ID",
                   help="the backbone: vgg16, vgg19 or resnet50 (default: vgg19)")
    g.add_argument("--weights", default=None, metavar="imagenet|none|PATH",
                   help="ImageNet (downloaded once; default), none (random, not pretrained), or a weights "
                        "file of the whole classifier with its top")
    g.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input size for --weights none or PATH (default: 224; ImageNet weights need 224)")
    g = p.add_argument_group("Grad-CAM")
    g.add_argument("--gradcam", default=None, metavar="OUT_DIR",
                   help="also write each image's Grad-CAM heatmap of its predicted class, overlaid on the image, "
                        "as OUT_DIR/<name>.gradcam.png")
    g.add_argument("--gradcam-layer", default=None, metavar="NAME",
                   help="the backbone layer for --gradcam (default: its last convolutional feature map)")
    p.set_defaults(func=cmd_predict, predict_parser=p)

    p = sub.add_parser("evaluate", help="evaluate a run's model on its test split: confusion matrix, per-class "
                                        "scores, top-k, ROC/PR for two classes, calibration")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder made by 'cnnstudio train'")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="the dataset folder, if it moved since training (default: the one the run recorded)")
    calibration = p.add_mutually_exclusive_group()
    calibration.add_argument("--calibrate", action="store_true",
                             help="fit a temperature on the validation split, store it in the bundle and show "
                                  "the test ECE before and after")
    calibration.add_argument("--uncalibrate", action="store_true",
                             help="remove the bundle's temperature: back to the model's own probabilities")
    p.add_argument("--bins", type=int, default=10, metavar="N", help="confidence bins of the reliability table "
                                                                     "(default: %(default)s)")
    p.add_argument("--batch-size", type=int, default=32, help="default: %(default)s")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("export", help="export a run's model (Keras, SavedModel, TFLite, ONNX) and verify it",
                       description="Write the run's model in another format, reload it in the runtime that will "
                                   "use it and compare it with the run's model on the test images.")
    p.add_argument("run_dir", metavar="RUN_DIR", help="a finished training run folder")
    p.add_argument("--format", required=True, metavar="FORMAT",
                   help="keras: the .keras file; savedmodel: a TensorFlow SavedModel folder (TF Serving); "
                        "tflite: float32; tflite-fp16: float16 weights; tflite-int8: int8 inside, float32 "
                        "input and output; onnx: via tf2onnx; or a format a plugin adds ('cnnstudio plugins')")
    p.add_argument("--out", required=True, metavar="PATH",
                   help="the file (or folder for savedmodel) to write; an existing folder gets model.<ext> inside")
    p.add_argument("--data-dir", default=None, metavar="DATA_DIR",
                   help="the dataset folder, if it moved since training (the test images verify the export)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("report", help="write a run's report (HTML, optionally PDF), or compare several runs",
                       description="One run: report.html (and report.pdf) in the run folder, or in --out. "
                                   "Several runs: comparison.html (and comparison.pdf) in --out.")
    p.add_argument("run_dirs", metavar="RUN_DIR", nargs="+", help="run folder(s) made by 'cnnstudio train'")
    p.add_argument("--pdf", action="store_true", help="also write the PDF (Qt's PDF writer)")
    p.add_argument("--out", default=None, metavar="DIR",
                   help="folder for the files (default: the run folder; required for several runs)")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("plugins", help="list plugins with their origin, version, providers and errors; "
                                       "enable or disable one")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--disable", action="append", default=[], metavar="NAME",
                   help="turn an installed plugin off (remembered; the window's Plugins dialog does the same)")
    p.add_argument("--enable", action="append", default=[], metavar="NAME", help="turn a disabled plugin on again")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("models", help="list backbones and presets with their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "cv", help="k-fold cross-validation: one run per fold, then each metric's mean ± std",
        description="Stratified k-fold cross-validation: fold i validates, the other folds train, every fold is a "
                    "normal run folder (DIR/fold-1 ... DIR/fold-K) and DIR/cv.json holds the folds and the summary "
                    "(mean ± sample standard deviation, ddof=1). Here --test-split defaults to 0: every image is "
                    "validated on once; give it to hold out one test split, the same for every fold. --val-split "
                    "does not apply. Ctrl-C stops after the current batch; the same command again resumes.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", help="folder with one sub-folder per class")
    p.add_argument("--sample", action="store_true", help="use the built-in sample dataset instead of DATA_DIR")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for cv.json and the fold runs")
    add_training_options(p)
    p.set_defaults(test_split=0.0, val_split=None)
    p.add_argument("--json", action="store_true", help="print the folds and the summary as JSON")
    p.set_defaults(func=cmd_cv)

    p = sub.add_parser(
        "rerun", help="train a run again with its spec, settings, seeds and files, and compare",
        description="Train RUN_DIR again into NEW_DIR on the files it recorded, after checking them against the "
                    "run's fingerprint (a changed or missing file stops it), and show both test accuracies.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="the run to reproduce")
    p.add_argument("--out", required=True, metavar="NEW_DIR", help="folder for the new run")
    p.add_argument("--data", default=None, metavar="DIR",
                   help="the dataset folder, if it moved since training (default: the one the run recorded)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_rerun)

    p = sub.add_parser("runs", help="list the runs under a folder (folds and trials included) as a table")
    p.add_argument("folder", metavar="FOLDER")
    p.add_argument("--json", action="store_true", help="every run with all its settings, as JSON")
    p.add_argument("--sort", default=None, metavar="KEY",
                   help="a column (test_accuracy, val_loss, created, ...) or a setting (train.learning_rate); "
                        "--sort=-KEY sorts descending; runs without the value come last")
    p.add_argument("--filter", default=None, metavar="TEXT",
                   help="runs whose name, model or status contains TEXT, or with a setting KEY=VALUE "
                        "(e.g. train.optimizer=sgd)")
    p.set_defaults(func=cmd_runs)

    p = sub.add_parser("diff", help="what differs between two runs: settings, results, changed test predictions")
    p.add_argument("run_a", metavar="RUN_A")
    p.add_argument("run_b", metavar="RUN_B")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_diff)
    p = sub.add_parser(
        "tune", help="hyperparameter search: many training runs over a space, the best configuration kept",
        description="Search a space of hyperparameters (Optuna: TPE or random sampling, median pruning after each "
                    "epoch). Every trial is a normal run folder in OUT/trials; OUT/best.json holds the best "
                    "configuration, for 'cnnstudio train --config OUT/best.json'. Ctrl-C stops after the current "
                    "epoch; the same command again resumes the search.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", help="folder with one sub-folder per class")
    p.add_argument("--sample", action="store_true", help="use the built-in sample dataset instead of DATA_DIR")
    p.add_argument("--trials", type=int, default=None, metavar="N",
                   help="trials to finish, pruned and failed ones included (default: 10, or unlimited with --timeout)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the search (search.json, trials, best.json)")
    p.add_argument("--space", default=None, metavar="FILE_OR_PRESET",
                   help="a JSON search space or a preset (seed-report); default: the seed report's space, "
                        "keeping the dimensions that apply to the model")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="stop starting trials after S seconds of trials")
    p.add_argument("--sampler", choices=["tpe", "random"], default="tpe", help="default: %(default)s")
    p.add_argument("--no-prune", action="store_true", help="let every trial run all its epochs")
    p.add_argument("--objective", choices=["val_accuracy", "val_loss"], default="val_accuracy",
                   help="what the best epoch of a trial is judged by (default: %(default)s)")
    add_training_options(p)
    p.set_defaults(func=cmd_tune)
    return parser


COMMANDS = ("scan", "train", "predict", "plugins", "models", "evaluate", "export", "report", "cv", "rerun", "runs", "diff", "tune")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or (argv[0] not in COMMANDS and argv[0] not in ("-h", "--help", "--version")):
        # `cnnstudio`, `cnnstudio PROJECT_FILE`, `cnnstudio --sample`: the window.
        return _open_window(argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = argv  # 'train --config' tells typed options from defaults by parsing them again
    if args.command is None:
        return _open_window([])
    try:
        return args.func(args)
    except StudioError as exc:
        print(f"cnnstudio {args.command}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cnnstudio {args.command}: interrupted", file=sys.stderr)
        return 130


def _open_window(argv: list[str]) -> int:
    try:
        from cnnstudio.gui.app import run
    except ImportError:
        print("cnnstudio: the window is not available in this build; use a command (cnnstudio --help)",
              file=sys.stderr)
        return 2
    return run(argv)
