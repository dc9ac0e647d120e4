"""``cnnstudio diff``: what differs between two runs."""

from __future__ import annotations

from cnnstudio.cli.terminal import print_json


def cmd_diff(args) -> int:
    from cnnstudio.core.runs.compare import diff_runs, format_diff

    diff = diff_runs(args.run_a, args.run_b)
    if args.json:
        print_json(diff.to_dict())
    else:
        print(format_diff(diff))
    return 0
