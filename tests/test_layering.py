"""The core, the plugins and the command line never import Qt; ``--help`` does not load TensorFlow."""

import importlib
import pkgutil
import subprocess
import sys

CHECK = """
import sys
import {modules}
bad = sorted(m for m in ("PySide6", "pyqtgraph") if m in sys.modules)
print(",".join(bad))
"""


def _modules(package: str) -> list[str]:
    """Every module of ``package``, found on disk, so a new module is checked without being listed."""
    module = importlib.import_module(package)
    return [package] + [info.name for info in pkgutil.walk_packages(module.__path__, f"{package}.")]


def test_core_plugins_and_cli_import_no_qt():
    names = [name for package in ("cnnstudio.cli", "cnnstudio.core", "cnnstudio.plugins", "cnnstudio.builtins")
             for name in _modules(package)]
    assert {"cnnstudio.core.experiments.search", "cnnstudio.core.experiments.crossval",
            "cnnstudio.plugins.settings"} <= set(names)
    modules = ", ".join(names)
    out = subprocess.run([sys.executable, "-c", CHECK.format(modules=modules)], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == ""


def test_help_answers_without_importing_tensorflow():
    code = (
        "import sys\nfrom cnnstudio.cli import main\n"
        "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
        "print('TF' if 'tensorflow' in sys.modules else 'noTF')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "--image-size" in out.stdout
    assert out.stdout.strip().endswith("noTF")
