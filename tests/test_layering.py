"""The core, the plugins and the command line never import Qt; ``--help`` does not load TensorFlow."""

import subprocess
import sys

CHECK = """
import sys
import {modules}
bad = sorted(m for m in ("PySide6", "pyqtgraph") if m in sys.modules)
print(",".join(bad))
"""


def test_core_plugins_and_cli_import_no_qt():
    modules = ", ".join([
        "cnnstudio.cli", "cnnstudio.plugins", "cnnstudio.builtins", "cnnstudio.core.dataset", "cnnstudio.core.training",
        "cnnstudio.core.callbacks", "cnnstudio.core.bundle", "cnnstudio.core.models", "cnnstudio.core.pipeline",
        "cnnstudio.core.evaluation", "cnnstudio.core.sample", "cnnstudio.core.runs",
    ])
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
