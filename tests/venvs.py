"""Fresh virtual environments for install tests, without downloading TensorFlow again.

A new venv gets a ``.pth`` file that appends the running environment's site-packages to its
path: the heavy dependencies (TensorFlow, Keras, Qt) are borrowed, while what a test installs
goes into the new venv's own site-packages, which comes first on its path. ``python -m pip``
works in it through the borrowed pip.

``studio="borrowed"`` processes the running environment's ``.pth`` files too, so the CNN Studio
under test (an editable install) is importable; ``studio="none"`` does not, so a test can
install CNN Studio itself (a wheel) with ``pip install --force-reinstall --no-deps``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path


def make_venv(root: Path, studio: str = "borrowed") -> Path:
    """Create a venv in ``root`` and return the path of its ``python``."""
    if studio not in ("borrowed", "none"):
        raise ValueError(f"studio must be 'borrowed' or 'none', not {studio!r}")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(root)], check=True)
    bindir = "Scripts" if os.name == "nt" else "bin"
    python = root / bindir / ("python.exe" if os.name == "nt" else "python")
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            check=True, capture_output=True, text=True,
        ).stdout.strip()
    )
    borrowed = sorted({sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]})
    if studio == "borrowed":
        lines = [f"import site; site.addsitedir({p!r})" for p in borrowed]
    else:
        lines = borrowed
    (site_packages / "zz_borrowed_packages.pth").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return python


def venv_env(python: Path) -> dict:
    """The environment to run the venv's scripts with: its bin first, no inherited PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")
    env["VIRTUAL_ENV"] = str(python.parent.parent)
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    return env
