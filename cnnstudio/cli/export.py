"""``cnnstudio export``: a run's model in another format, verified on the test images."""

from __future__ import annotations

from cnnstudio.cli.common import plugin_registry
from cnnstudio.cli.terminal import TerminalTask, print_json, printable, stop_on_ctrl_c


def cmd_export(args) -> int:
    from cnnstudio.builtins.export import export_run

    state = TerminalTask(quiet=args.json)
    try:
        # Stops while the test images load; a write that has started runs to its end.
        with stop_on_ctrl_c(state, at="step"):
            report = export_run(args.run_dir, args.format, args.out, data_dir=args.data_dir,
                                exporters=plugin_registry().exporters, state=state)
    finally:
        state.close()
    if args.json:
        print_json(report.to_dict())
        return 0
    print(report.summary())
    print(f"  runtime: {report.runtime}")
    for note in report.notes:
        print(f"  note: {note}")
    if report.skipped:
        print(f"  {len(report.skipped)} test image(s) could not be read and were skipped:")
        for d in report.skipped:
            print(f"    {printable(str(d['path']))}: {printable(str(d['reason']))}")
    return 0
