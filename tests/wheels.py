"""Plugin wheels written the way a build backend writes them, for the plugins-folder tests."""

from __future__ import annotations

import textwrap
import zipfile
from pathlib import Path

TINY = """
from cnnstudio.plugins import BackboneProvider, hookimpl

def build(params, input_size, registry):
    raise RuntimeError("not built in these tests")

@hookimpl
def cnnstudio_register_backbones(registry):
    registry.add_backbone(BackboneProvider(id="{id}", display_name="{id}", build=build,
                                           default_input_size=16, min_input_size=8))
"""


def make_wheel(folder: Path, name: str, version: str = "0.1", *, module_source: str | None = None,
               tag: str = "py3-none-any", purelib: bool = True, requires: tuple[str, ...] = (),
               entry_name: str | None = None, extra: dict[str, str] | None = None) -> Path:
    """A wheel written the way a build backend writes one: a module, ``*.dist-info`` with WHEEL,
    METADATA and entry points; ``extra`` adds members under any name (a zip-slip one too)."""
    module = name.replace("-", "_")
    dist_info = f"{module}-{version}.dist-info"
    entry_name = entry_name or name.split("-")[-1]
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {
        f"{module}/__init__.py": "",
        f"{module}/plugin.py": textwrap.dedent(module_source or TINY.format(id=module.replace("_", ""))),
        f"{dist_info}/METADATA": metadata,
        f"{dist_info}/WHEEL": (f"Wheel-Version: 1.0\nGenerator: handmade\n"
                               f"Root-Is-Purelib: {'true' if purelib else 'false'}\nTag: {tag}\n"),
        f"{dist_info}/entry_points.txt": f"[cnnstudio.plugins]\n{entry_name} = {module}.plugin\n",
        **(extra or {}),
    }
    path = folder / f"{module}-{version}-{tag}.whl"
    folder.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as zf:
        for member, text in members.items():
            zf.writestr(member, text)
    return path
