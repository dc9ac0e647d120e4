"""``cnnstudio plugins``: the plugins, what each provides and what failed; enabling and disabling one."""

from __future__ import annotations

import logging
import sys

from cnnstudio.cli.terminal import print_json


def cmd_plugins(args) -> int:
    from cnnstudio.builtins.manager import default_manager
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
        print_json([
            {"name": i.name, "origin": i.origin, "distribution": i.distribution, "version": i.version,
             "status": i.status, "provides": i.provides, "warnings": i.warnings,
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
        for w in i.warnings:
            print(f"  warning: {w}")
    return 0
