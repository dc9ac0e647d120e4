"""The ``cnnstudio`` command line: everything the window does, for scripts and servers.

Command names and options are a public contract. TensorFlow is imported only by the commands
that need it, so ``cnnstudio --help`` answers at once.

:func:`main` is the console entry point: without a command it opens the window; otherwise
:mod:`~cnnstudio.cli.parser` parses the command and its module (``cnnstudio.cli.<command>``) runs it.
"""

from __future__ import annotations

import os
import sys

from cnnstudio.cli.parser import build_parser
from cnnstudio.cli.terminal import printable
from cnnstudio.core.errors import Cancelled, StudioError, WeightsError
from cnnstudio.core.project import PROJECT_SUFFIX

# The messages of the core name the weights sources, not this command line's options for them.
WEIGHTS_HINT = " (a weights file: --weights PATH; random initialisation: --weights none)"

COMMANDS = ("scan", "train", "predict", "plugins", "models", "evaluate", "export", "report", "cv", "rerun", "runs",
            "diff", "tune")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    verbose, rest = _take_verbose(argv)
    if opens_the_window(rest):
        return _open_window(argv)  # the window takes --verbose itself
    from cnnstudio.core.tf.runtime import native_log

    native_log(verbose)
    parser = build_parser()
    args = parser.parse_args(rest)
    args.verbose = verbose
    args.argv = rest  # 'train --config' tells typed options from defaults by parsing them again
    if args.command is None:
        return _open_window([])
    try:
        return args.func(args)
    except Cancelled as exc:  # the first Ctrl-C stopped work that had produced nothing yet
        print(f"cnnstudio {args.command}: {printable(str(exc))}", file=sys.stderr)
        return 130
    except StudioError as exc:  # one line: a file or class name in it may hold a newline or an escape
        hint = WEIGHTS_HINT if isinstance(exc, WeightsError) and "local weights file" in str(exc) else ""
        print(f"cnnstudio {args.command}: error: {printable(str(exc))}{hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"cnnstudio {args.command}: interrupted", file=sys.stderr)
        return 130


def _take_verbose(argv: list[str]) -> tuple[bool, list[str]]:
    """``--verbose`` is global: wherever it stands before ``--``, it is taken out of ``argv``."""
    end = argv.index("--") if "--" in argv else len(argv)
    head = [a for a in argv[:end] if a != "--verbose"]
    return len(head) < end, head + argv[end:]


def opens_the_window(argv: list[str]) -> bool:
    """``cnnstudio``, ``cnnstudio --sample``, ``cnnstudio PROJECT_FILE``: the window. Any other
    first word is a command, and a misspelt one gets argparse's "invalid choice" and the list of
    commands (exit 2), never a window that a machine without a display would wait on."""
    if not argv:
        return True
    first = argv[0]
    if first in COMMANDS or first in ("-h", "--help", "--version"):
        return False
    return first.startswith("-") or first.endswith(PROJECT_SUFFIX) or os.path.exists(first)


def _open_window(argv: list[str]) -> int:
    try:
        from cnnstudio.gui.app import run
    except ImportError:
        print("cnnstudio: the window is not available in this build; use a command (cnnstudio --help)",
              file=sys.stderr)
        return 2
    return run(argv)
