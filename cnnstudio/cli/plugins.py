"""``cnnstudio plugins``: the plugins, what each provides and what failed; enabling and disabling one;
``plugins install FILE.whl`` and ``plugins uninstall NAME`` for the plugins folder (no pip)."""

from __future__ import annotations

import logging
import sys

from cnnstudio.cli.terminal import print_json


def cmd_plugins(args) -> int:
    if args.plugins_action == "install":
        return _install(args)
    if args.plugins_action == "uninstall":
        return _uninstall(args)
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
             "status": i.status, "provides": i.provides, "warnings": i.warnings, "folder": i.folder,
             "unavailable": i.unavailable,
             "errors": [{"cause": e.cause, "traceback": e.traceback} for e in i.errors]}
            for i in infos
        ])
        return 0
    for i in infos:
        version = f" {i.version}" if i.version else ""
        print(f"{i.name}{version} [{i.origin}] {i.status}")
        if i.provides:
            print("  provides: " + ", ".join(i.provides))
        if i.folder:
            print(f"  folder: {i.folder}")
        for line in i.unavailable:
            print(f"  unavailable: {line}")
        for e in i.errors:
            print(f"  error: {e.cause}")
        for w in i.warnings:
            print(f"  warning: {w}")
    return 0


def _install(args) -> int:
    from cnnstudio.plugins.folder import install_wheel

    installed = install_wheel(args.wheel)
    if args.json:
        print_json({"name": installed.name, "version": installed.version, "folder": str(installed.folder),
                    "plugins": installed.plugins, "replaced": installed.replaced, "notes": installed.notes})
    else:
        print(installed.summary())
    return 0


def _uninstall(args) -> int:
    from cnnstudio.plugins.folder import uninstall

    removed = uninstall(args.name)
    if args.json:
        print_json({"name": args.name, "removed": str(removed)})
    else:
        print(f"removed {args.name} from the plugins folder ({removed})")
    return 0
