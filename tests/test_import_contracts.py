"""Imports go one way: the contracts under ``[tool.importlinter]`` in pyproject.toml hold.

import-linter builds the graph of every import in the package (those inside functions too) and
checks each contract; a broken one fails this test with the import chain that breaks it.
"""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

LINT = """
import sys
from importlinter.cli import lint_imports
sys.exit(lint_imports(config_filename="pyproject.toml", no_cache=True, no_logo=True))
"""


def test_every_import_contract_is_kept():
    out = subprocess.run([sys.executable, "-c", LINT], cwd=REPO, capture_output=True, text=True)
    report = out.stdout + out.stderr
    assert out.returncode == 0, report
    assert "0 broken" in report
