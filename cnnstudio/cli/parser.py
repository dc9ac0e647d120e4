"""The command line's parser: every command, its options and its help.

Command names and options are a public contract; each command's code is its own module.
"""

from __future__ import annotations

import argparse

from cnnstudio import __version__
from cnnstudio.cli.cv import cmd_cv
from cnnstudio.cli.diff import cmd_diff
from cnnstudio.cli.evaluate import cmd_evaluate
from cnnstudio.cli.export import cmd_export
from cnnstudio.cli.models import cmd_models
from cnnstudio.cli.plugins import cmd_plugins
from cnnstudio.cli.predict import cmd_predict
from cnnstudio.cli.report import cmd_report
from cnnstudio.cli.rerun import cmd_rerun
from cnnstudio.cli.runs import cmd_runs
from cnnstudio.cli.scan import cmd_scan
from cnnstudio.cli.train import cmd_train
from cnnstudio.cli.tune import cmd_tune
from cnnstudio.core.data import CACHE_MODES
from cnnstudio.core.training.config import CLASS_WEIGHTS, MODES, MONITORS, OPTIMIZERS, TrainConfig
from cnnstudio.core.training.devices import JIT_MODES, PRECISIONS


def add_sharing_options(p, what: str) -> None:
    """--storage, --study and --heartbeat: one search or cross-validation shared by many processes."""
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"share the {what} among every process given the same URL and --study: each takes the "
                        "next trial; sqlite:///FILE (one machine), postgresql://USER:PASSWORD@HOST/DB or "
                        "mysql://... (several machines; pip install \"cnnstudio[cluster]\"), journal:FILE "
                        "(a file on a shared file system). Default: OUT/study.db, this process alone")
    p.add_argument("--study", default=None, metavar="NAME",
                   help="the study in the storage (default: cnnstudio for tune, cnnstudio-cv for cv)")
    p.add_argument("--heartbeat", type=float, default=60.0, metavar="S",
                   help="with --storage: a running trial beats every S seconds; one silent for 2*S (its process "
                        "died) is run again by another process (default: %(default)s)")


def add_training_options(p: argparse.ArgumentParser) -> None:
    """The model, hyper-parameter and split options of 'train', shared by 'tune' and 'cv'. The
    hyper-parameters' defaults and choices are :class:`TrainConfig`'s, which also checks them."""
    d = TrainConfig()
    p.add_argument("--model", default="scratch", metavar="ID_OR_PRESET",
                   help="a backbone id or preset name (see 'cnnstudio models'; default: %(default)s)")
    p.add_argument("--epochs", type=int, default=None, help=f"number of epochs (default: {d.epochs})")
    p.add_argument("--batch-size", type=int, default=d.batch_size, help="default: %(default)s")
    p.add_argument("--image-size", type=int, default=None, metavar="N",
                   help="input size in pixels (default: the model's)")
    p.add_argument("--lr", type=float, default=d.learning_rate, help="learning rate (default: %(default)s)")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default=d.optimizer, help="default: %(default)s")
    p.add_argument("--momentum", type=float, default=d.momentum, metavar="M",
                   help="momentum of SGD, from 0 to below 1 (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d.seed, help="seed for the split, initialisation and shuffling")
    p.add_argument("--val-split", type=float, default=0.15, metavar="F",
                   help="validation fraction (default: %(default)s)")
    p.add_argument("--test-split", type=float, default=0.15, metavar="F", help="test fraction (default: %(default)s)")
    p.add_argument("--patience", type=int, default=d.patience,
                   help="early-stopping patience in epochs, 0 for off (default: %(default)s)")
    p.add_argument("--monitor", choices=MONITORS, default=d.monitor,
                   help="what picks the best epoch (the weights kept) and stops early (default: %(default)s)")
    p.add_argument("--weights", default=None, metavar="imagenet|none|PATH",
                   help="weights of a pretrained backbone: ImageNet (downloaded once), none (random), or a local file")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="a backbone parameter, e.g. alpha=0.35 for a plugin's MobileNetV2 or "
                        "blocks='[{\"type\": \"conv\", \"filters\": 16}]' for a scratch stack (repeatable; "
                        "'cnnstudio models' lists each backbone's parameters)")
    p.add_argument("--class-weights", choices=CLASS_WEIGHTS, default=d.class_weight,
                   help="'auto' weights classes by inverse frequency (for imbalanced data; default: %(default)s)")
    p.add_argument("--cache", choices=CACHE_MODES, default=d.cache,
                   help="cache of decoded images between epochs (default: %(default)s)")
    p.add_argument("--mode", choices=MODES, default=d.mode,
                   help="pretrained backbones: 'scratch' (architecture only, random weights), 'extract' (frozen "
                        "base, new head; the default) or 'finetune' (head first, then the top blocks)")
    p.add_argument("--finetune-blocks", type=int, default=d.finetune_blocks, metavar="N",
                   help="fine-tuning: top blocks of the base to unfreeze (default: %(default)s)")
    p.add_argument("--finetune-from", default=d.finetune_from, metavar="LAYER",
                   help="fine-tuning: unfreeze every base layer from LAYER up (instead of --finetune-blocks)")
    p.add_argument("--finetune-epochs", type=int, default=d.finetune_epochs, metavar="N",
                   help="fine-tuning: epochs of the second phase (default: %(default)s)")
    p.add_argument("--finetune-lr", type=float, default=d.finetune_learning_rate, metavar="X",
                   help=f"fine-tuning: {d.finetune_optimizer.upper()} (with --momentum) learning rate of the second "
                        "phase (default: %(default)s)")
    p.add_argument("--bottleneck", action="store_true", default=d.bottleneck,
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
    parser.add_argument("--verbose", action="store_true",
                        help="let TensorFlow's own log lines (oneDNN, CUDA, XLA) through to the terminal")
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
    p.add_argument("--resume-from", choices=("best", "last"), default=None,
                   help="with --resume, when a checkpoint file is damaged: go on from the best epoch's weights "
                        "(the epochs after it are trained again), or from the last epoch without the best weights")
    p.add_argument("--fresh", action="store_true",
                   help="with --resume: discard the run's checkpoint and train it from epoch 1 with its settings")
    p.add_argument("--cluster", default=None, metavar="FILE",
                   help="train on several machines: a TF_CONFIG JSON file for this machine (TF_CONFIG in the "
                        "environment works too); every machine runs the same command, the chief writes RUN_DIR "
                        "(see docs/cluster.md)")
    g = p.add_argument_group("devices and precision")
    g.add_argument("--devices", default=None, metavar="auto|cpu|N|LIST",
                   help="auto: every GPU, else the CPU (the default); cpu; N: the first N GPUs (without a GPU, N > 1 "
                        "splits the CPU into N devices, for trying it out); LIST: those GPUs, e.g. 0,2 (one: gpu:1). "
                        "Several devices train under MirroredStrategy; --batch-size is the global batch")
    g.add_argument("--precision", choices=PRECISIONS, default=None,
                   help="auto: mixed float16 on GPUs of compute capability 7.0 and above, float32 elsewhere "
                        "(the default); the output layer stays float32")
    g.add_argument("--jit", choices=JIT_MODES, default=None,
                   help="XLA compilation of the training step: auto (Keras' default), on or off")
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
    p.set_defaults(func=cmd_plugins, plugins_action=None)
    actions = p.add_subparsers(dest="plugins_action", metavar="{install,uninstall}",
                               description="without one: list the plugins")
    q = actions.add_parser("install", help="unpack a pure-Python plugin wheel into the plugins folder (no pip; "
                                           "the one-folder app's way to add a plugin)",
                           description="Unpacks FILE.whl into the plugins folder in the user's data folder, where "
                                       "the window and the command line find it. Only a pure-Python wheel "
                                       "(py3-none-any) whose requirements this app already has is installed.")
    q.add_argument("wheel", metavar="FILE.whl", help="the plugin's wheel")
    q.add_argument("--json", action="store_true", help="machine-readable output")
    q = actions.add_parser("uninstall", help="remove a plugin installed into the plugins folder",
                           description="Removes the distribution's folder from the plugins folder "
                                       "(a plugin installed with pip is uninstalled with pip).")
    q.add_argument("name", metavar="DISTRIBUTION", help="the plugin's distribution name, e.g. cnnstudio-mobilenet")
    q.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("models", help="list backbones and presets with their parameters")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_models)

    p = sub.add_parser(
        "cv", help="k-fold cross-validation: one run per fold, then each metric's mean ± std",
        description="Stratified k-fold cross-validation: fold i validates, the other folds train, every fold is a "
                    "normal run folder (DIR/fold-1 ... DIR/fold-K) and DIR/cv.json holds the folds and the summary "
                    "(mean ± sample standard deviation, ddof=1). Here --test-split defaults to 0: every image is "
                    "validated on once; give it to hold out one test split, the same for every fold. --val-split "
                    "does not apply. Ctrl-C stops after the current batch; the same command again resumes. With "
                    "--storage, every process given the same storage and --study takes the next fold not yet "
                    "taken, and each prints the summary of all folds.",
    )
    p.add_argument("data_dir", metavar="DATA_DIR", nargs="?", help="folder with one sub-folder per class")
    p.add_argument("--sample", action="store_true", help="use the built-in sample dataset instead of DATA_DIR")
    p.add_argument("--folds", type=int, default=5, metavar="K", help="number of folds (default: %(default)s)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for cv.json and the fold runs")
    add_sharing_options(p, "cross-validation")
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
                    "epoch; the same command again resumes the search. With --storage, every process given the "
                    "same storage and --study shares the search: each takes the next trial, the count stops at "
                    "--trials, and a trial whose process died is run again by another.",
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
    add_sharing_options(p, "search")
    add_training_options(p)
    p.set_defaults(func=cmd_tune)
    return parser
