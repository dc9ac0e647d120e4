"""``cnnstudio diff``: what differs between two runs."""

from __future__ import annotations

import dataclasses

from cnnstudio.cli.terminal import print_json, printable


def cmd_diff(args) -> int:
    from cnnstudio.core.runs.compare import diff_runs, format_diff

    diff = diff_runs(args.run_a, args.run_b)
    if args.json:
        print_json(diff.to_dict())
    else:  # a test image's file and class names may hold a newline or a terminal escape
        shown = [{**p, **{key: printable(str(p[key])) for key in ("path", "true", "a", "b") if key in p}}
                 for p in diff.changed_predictions]
        print(format_diff(dataclasses.replace(diff, changed_predictions=shown)))
    return 0
