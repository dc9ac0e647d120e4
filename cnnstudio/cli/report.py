"""``cnnstudio report``: a run's report, or a comparison of several, as HTML (and PDF)."""

from __future__ import annotations

from pathlib import Path

from cnnstudio.cli.common import CliError


def cmd_report(args) -> int:
    from cnnstudio.core.io.atomic import atomic_write_text
    from cnnstudio.core.report import comparison_html, run_report_html
    from cnnstudio.core.runs.records import read_config

    runs = [Path(d) for d in args.run_dirs]
    for d in runs:
        read_config(d)  # "not a run folder", or what is wrong with its record, before anything is written
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
