"""``cnnstudio runs``: the runs under a folder as a table, sorted and filtered."""

from __future__ import annotations

from cnnstudio.cli.common import CliError
from cnnstudio.cli.terminal import print_json, printable

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
    from cnnstudio.core.runs.compare import find_runs

    found = find_runs(args.folder)
    if args.filter:
        found = [r for r in found if _matches(r, args.filter)]
    if args.sort:
        found = _sorted_runs(found, args.sort)
    if args.json:
        print_json([r.to_dict() for r in found])
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
                       else f"{v:.1f}" if isinstance(v, float) else printable(str(v)))
        table.append(row)
    widths = [max(len(row[i]) for row in table) for i in range(len(RUN_COLUMNS))]
    for row in table:
        print("  ".join(cell.ljust(w) if i in (0, 1, 2, 8) else cell.rjust(w)
                        for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
    for r in found:
        if r.status == "unreadable":
            print(f"{printable(r.name)}: {printable(str(r.reason))}")
    return 0
