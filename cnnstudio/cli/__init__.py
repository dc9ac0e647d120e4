"""The ``cnnstudio`` command line: everything the window does, for scripts and servers.

Command names and options are a public contract. TensorFlow is imported only by the commands
that need it, so ``cnnstudio --help`` answers at once.

:func:`main` is the console entry point: without a command it opens the window; otherwise
:mod:`~cnnstudio.cli.parser` parses the command and its module (``cnnstudio.cli.<command>``) runs it.
"""

from __future__ import annotations

import sys

from cnnstudio.cli.parser import build_parser
from cnnstudio.core.errors import StudioError

COMMANDS = ("scan", "train", "predict", "plugins", "models", "evaluate", "export", "report", "cv", "rerun", "runs",
            "diff", "tune")


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
