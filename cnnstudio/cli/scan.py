"""``cnnstudio scan``: a dataset folder's classes, counts and problem files."""

from __future__ import annotations

from cnnstudio.cli.terminal import TerminalTask, print_json, printable, scan_folder


def cmd_scan(args) -> int:
    index = scan_folder(args.data_dir, TerminalTask(quiet=args.json))
    if args.json:
        print_json(
            {
                "root": str(index.root),
                "classes": [{"name": n, "images": c} for n, c in zip(index.class_names, index.counts())],
                "images": len(index.items),
                "problems": [p.to_dict() for p in index.problems],
            }
        )
    else:
        names = [printable(n) for n in index.class_names]  # folder names may hold terminal escapes
        width = max([len(n) for n in names] + [5])
        print(f"{printable(str(index.root))}: {len(index.items)} images in {len(names)} classes")
        for name, count in zip(names, index.counts()):
            print(f"  {name:<{width}}  {count:>6}")
        if index.problems:
            print(f"{len(index.problems)} problem(s):")
            for p in index.problems:
                where = p.path or str(index.root)
                print(f"  {p.level}: {printable(where)}: {printable(p.reason)}")
    # Bad files are listed but do not make the dataset unusable; missing classes do.
    return 1 if any(p.scope != "file" for p in index.errors) else 0
