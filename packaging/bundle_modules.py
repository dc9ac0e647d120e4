"""What the one-folder app must collect beyond what PyInstaller finds by following imports.

Imported by packaging/cnnstudio.spec (and by tests/test_packaging.py, which checks the list
covers every exporter the app lists). Two kinds of module escape PyInstaller's analysis:

* the built-in providers, reached through the plugin registry only;
* the modules an exporter's converter imports, each declared in its ``ExporterProvider.modules``
  (ONNX: ``tf2onnx.convert``, ``onnxruntime``), and, for a package that imports its submodules
  lazily (a module-level ``__getattr__``, as tf2onnx does), every submodule of that package:
  "No module named 'tf2onnx.convert'" inside the app otherwise.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable


def converter_modules() -> list[str]:
    """Every module the built-in exporters declare, in order, without repeats."""
    from cnnstudio.builtins.export import BUILTIN_EXPORTERS

    seen: dict[str, None] = {}
    for exporter in BUILTIN_EXPORTERS.values():
        seen.update(dict.fromkeys(exporter.modules))
    return list(seen)


def lazy_packages(modules: Iterable[str]) -> list[str]:
    """The packages among the modules' parents whose ``__init__`` loads submodules on attribute
    access (PEP 562); a package that is not installed is left out (the app is then built without it)."""
    found: dict[str, None] = {}
    for module in modules:
        parts = module.split(".")
        for i in range(1, len(parts)):
            package = ".".join(parts[:i])
            try:
                imported = importlib.import_module(package)
            except ImportError:
                break
            if callable(vars(imported).get("__getattr__")):
                found[package] = None
    return list(found)


def hidden_imports(collect_submodules: Callable[[str], list[str]]) -> list[str]:
    """The spec's ``hiddenimports``; ``collect_submodules`` is PyInstaller's (or the test's stand-in)."""
    modules = collect_submodules("cnnstudio.builtins")
    converters = converter_modules()
    for package in lazy_packages(converters):
        modules += collect_submodules(package)
    modules += converters
    return list(dict.fromkeys(modules))
