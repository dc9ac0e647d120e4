"""The plugins folder in the user's data folder: plugins installed from a wheel without pip.

The one-folder app has no pip and no site-packages of its own, so a plugin for it is a wheel
unpacked here with :mod:`zipfile`: each distribution in a folder of its own,
``<data folder>/plugins/<normalised name>/``, holding its modules and its ``*.dist-info`` as pip
would have left them in site-packages. The plugin manager reads the entry points of every such
folder (``importlib.metadata.distributions(path=[folder])``) and appends the folder to
``sys.path`` to import it, in the one-folder app and in a Python installation alike.

Only a pure-Python wheel (``Root-Is-Purelib: true``, tag ``py3-none-any``) whose requirements
this app can already import is unpacked; anything else is refused with one line naming the file
and the reason. A wheel is unpacked into a hidden folder beside its destination and renamed into
place, so a half-written plugin is never found; names inside the zip that would land outside
the folder (``..``, absolute paths) refuse the whole wheel.
"""

from __future__ import annotations

import email.parser
import importlib.machinery
import importlib.metadata
import importlib.util
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from cnnstudio.core.errors import StudioError
from cnnstudio.core.io.paths import data_dir

ENTRY_POINT_GROUP = "cnnstudio.plugins"
FOLDER_NAME = "plugins"
# A wheel whose files together unpack to more than this is refused (a zip bomb, or not a plugin).
MAX_UNPACKED_BYTES = 2 * 1024**3

_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?$")
_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?)")


class PluginFolderError(StudioError):
    """A wheel cannot be installed into the plugins folder, or a plugin there cannot be removed."""


class NeedsPip(PluginFolderError):
    """A wheel that is fine, but needs what only pip provides: compiled code, or packages to download."""


@dataclass
class WheelInfo:
    """What a wheel says about itself, checked: its name, version, tags, requirements and entry points."""

    path: Path
    name: str
    version: str
    tags: list[str]
    requires: list[str]  # distribution names of the requirements that apply here
    plugins: list[str]  # its cnnstudio.plugins entry-point names
    dist_info: str  # the *.dist-info folder's name inside the wheel


@dataclass
class Installed:
    """The outcome of :func:`install_wheel`."""

    name: str
    version: str
    folder: Path
    plugins: list[str]
    replaced: str | None = None  # the version it replaced in the folder
    notes: list[str] = field(default_factory=list)  # e.g. that a pip-installed copy wins

    def summary(self) -> str:
        what = f"{self.name} {self.version}"
        line = (f"installed {what} into {self.folder} (plugin{'s' if len(self.plugins) != 1 else ''} "
                f"{', '.join(self.plugins)})")
        if self.replaced is not None:
            line += f", replacing version {self.replaced}"
        return "; ".join([line, *self.notes])


def plugins_dir() -> Path:
    """``<the user's data folder>/plugins`` (``CNNSTUDIO_DATA_DIR`` moves it with the data folder)."""
    return data_dir() / FOLDER_NAME


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them: ``Foo_Bar.baz`` -> ``foo-bar-baz``."""
    return re.sub(r"[-_.]+", "-", name).lower()


# ----------------------------------------------------------------------------- reading a wheel


def read_wheel(path) -> WheelInfo:
    """Check ``path`` is a pure-Python CNN Studio plugin wheel this app can run; raises
    :class:`PluginFolderError` with one line naming the file and the reason."""
    path = Path(path)

    def refuse(reason: str) -> PluginFolderError:
        return PluginFolderError(f"{path}: {reason}")

    if not path.is_file():
        raise refuse("no such file")
    if not path.name.endswith(".whl"):
        raise refuse("not a wheel (expected a .whl file)")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            _check_names(names, refuse)
            total = sum(i.file_size for i in zf.infolist())
            if total > MAX_UNPACKED_BYTES:
                raise refuse(f"unpacks to {total / 1e9:.1f} GB, more than a plugin needs")
            dist_infos = sorted({n.split("/", 1)[0] for n in names
                                 if n.split("/", 1)[0].endswith(".dist-info") and "/" in n})
            if len(dist_infos) != 1:
                raise refuse(f"a wheel has one *.dist-info folder, this one has {len(dist_infos)}")
            dist_info = dist_infos[0]

            def text(member: str) -> str | None:
                try:
                    return zf.read(f"{dist_info}/{member}").decode("utf-8")
                except KeyError:
                    return None

            wheel_text, metadata_text, entry_points_text = text("WHEEL"), text("METADATA"), text("entry_points.txt")
    except zipfile.BadZipFile as exc:
        raise refuse(f"not a readable wheel ({exc})") from None
    except UnicodeDecodeError:
        raise refuse(f"{dist_info}: its metadata is not UTF-8 text") from None
    except OSError as exc:
        raise refuse(f"cannot be read ({exc.strerror or exc})") from None
    if wheel_text is None or metadata_text is None:
        raise refuse(f"{dist_info} has no {'WHEEL' if wheel_text is None else 'METADATA'} file")

    wheel = email.parser.Parser().parsestr(wheel_text)
    tags = [t.strip() for t in wheel.get_all("Tag") or [] if t.strip()]
    compiled = [t for t in tags if not _pure_tag(t)]
    if compiled or not tags:
        raise NeedsPip(f"{path}: needs compiled code the app lacks: tag {compiled[0] if compiled else '(none)'}")
    if (wheel.get("Root-Is-Purelib") or "").strip().lower() != "true":
        raise NeedsPip(f"{path}: needs compiled code the app lacks: its WHEEL file says Root-Is-Purelib is not true")

    metadata = email.parser.Parser().parsestr(metadata_text)
    name, version = (metadata.get("Name") or "").strip(), (metadata.get("Version") or "").strip()
    if not _NAME.match(name) or not version or "/" in version or "\\" in version:
        raise refuse(f"{dist_info}/METADATA has no valid Name and Version")
    requires = _applicable_requirements(metadata.get_all("Requires-Dist") or [], refuse)
    plugins = _plugin_entry_points(entry_points_text)
    if not plugins:
        raise refuse(f"not a CNN Studio plugin ({dist_info} declares no {ENTRY_POINT_GROUP} entry point)")
    return WheelInfo(path, name, version, tags, requires, plugins, dist_info)


def _check_names(names: list[str], refuse) -> None:
    """Every name inside the zip lands inside the folder it is unpacked into."""
    for name in names:
        pure = PurePosixPath(name)
        if (not name or "\\" in name or "\0" in name or pure.is_absolute() or ".." in pure.parts
                or re.match(r"^[A-Za-z]:", name)):
            raise refuse(f"holds a file that would land outside the plugins folder ({name!r}); not installed")


def _pure_tag(tag: str) -> bool:
    parts = tag.split("-")
    if len(parts) != 3:
        return False
    python, abi, platform = parts
    return "py3" in python.split(".") and abi == "none" and platform == "any"


def _applicable_requirements(lines: list[str], refuse) -> list[str]:
    """The distribution names of the requirements that apply in this app (not extras' only)."""
    names = []
    for line in lines:
        requirement, _, marker = line.partition(";")
        match = _REQUIREMENT_NAME.match(requirement)
        if match is None:
            raise refuse(f"unreadable Requires-Dist {line.strip()!r}")
        if marker.strip() and not _marker_applies(marker.strip()):
            continue
        names.append(match.group(1))
    return names


def _marker_applies(marker: str) -> bool:
    """Whether an environment marker holds here; a requirement of an extra never does."""
    if "extra" in marker:
        return False
    try:
        from packaging.markers import Marker
    except ImportError:  # no way to evaluate it: take the requirement as needed
        return True
    try:
        return Marker(marker).evaluate()
    except Exception:
        return True


def _plugin_entry_points(text: str | None) -> list[str]:
    if not text:
        return []
    import configparser

    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str
    try:
        parser.read_string(text)
    except configparser.Error:
        return []
    return sorted(parser[ENTRY_POINT_GROUP]) if parser.has_section(ENTRY_POINT_GROUP) else []


def importable(distribution: str, folder: Path | None = None) -> bool:
    """Whether this app can import what ``distribution`` provides: it is installed in the
    environment, in the plugins folder, or (the one-folder app keeps few ``*.dist-info``) a module
    of its name can be found."""
    try:
        if not from_a_plugin_folder(importlib.metadata.distribution(distribution)):
            return True
    except (importlib.metadata.PackageNotFoundError, ValueError):
        pass
    folder = plugins_dir() if folder is None else folder
    if (folder / normalise(distribution)).is_dir():
        return True
    module = re.sub(r"[-.]+", "_", distribution)
    return any(module_available(m) for m in {module, module.lower()})


def module_available(name: str) -> bool:
    """Whether module ``name`` (``tf2onnx.convert``) can be found, without importing it or its
    packages: a lazily importing package may lack a submodule that a bundler left out."""
    parts = name.split(".")
    try:
        if parts[0] in sys.modules:
            spec = getattr(sys.modules[parts[0]], "__spec__", None) or importlib.util.find_spec(parts[0])
        else:
            spec = importlib.util.find_spec(parts[0])
        for i in range(1, len(parts)):
            if spec is None or spec.submodule_search_locations is None:
                return False
            full = ".".join(parts[: i + 1])
            if full in sys.modules:
                spec = getattr(sys.modules[full], "__spec__", None)
                continue
            spec = importlib.machinery.PathFinder.find_spec(full, list(spec.submodule_search_locations))
    except (ImportError, ValueError):
        return False
    return spec is not None


# ----------------------------------------------------------------------------- installing


def install_wheel(path, folder: Path | None = None) -> Installed:
    """Unpack the plugin wheel at ``path`` into its own folder in the plugins folder (replacing
    an earlier version there); raises :class:`PluginFolderError` with one line."""
    info = read_wheel(path)
    folder = plugins_dir() if folder is None else Path(folder)
    missing = [r for r in info.requires if normalise(r) != normalise(info.name) and not importable(r, folder)]
    if missing:
        raise NeedsPip(f"{info.path}: needs {', '.join(missing)}, which this app does not include; not installed")
    target = folder / normalise(info.name)
    replaced = installed_version(target)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder))
    except OSError as exc:
        raise PluginFolderError(f"{folder}: cannot write there ({exc.strerror or exc})") from None
    try:
        _unpack(info, tmp)
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=folder))
            os.replace(target, old / "previous")
            os.replace(tmp, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise PluginFolderError(f"{target}: cannot unpack {info.path.name} ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    notes = []
    pip_copy = _environment_version(info.name, folder)
    if pip_copy is not None:
        notes.append(f"{info.name} {pip_copy} is also installed with pip, and that copy is the one loaded "
                     "(uninstall it with pip to use this one)")
    return Installed(info.name, info.version, target, info.plugins, replaced, notes)


def _unpack(info: WheelInfo, into: Path) -> None:
    """Extract the wheel into ``into``: the root and ``*.data/purelib`` / ``platlib`` as site-packages
    would get them; scripts, headers and data files are not part of a plugin and stay out."""
    data = info.dist_info[: -len(".dist-info")] + ".data/"
    with zipfile.ZipFile(info.path) as zf:
        for member in zf.infolist():
            name = member.filename
            if name.startswith(data):
                scheme, _, rest = name[len(data):].partition("/")
                if scheme not in ("purelib", "platlib") or not rest:
                    continue
                name = rest
            if name.endswith("/"):
                continue
            destination = into.joinpath(*PurePosixPath(name).parts)
            if into.resolve() not in destination.resolve().parents:
                raise PluginFolderError(f"{info.path}: holds a file that would land outside the plugins folder "
                                        f"({member.filename!r}); not installed")
            destination.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(member) as source, open(destination, "wb") as out:
                shutil.copyfileobj(source, out)
    (into / info.dist_info / "INSTALLER").write_text("cnnstudio\n", encoding="utf-8")


def installed_version(target: Path) -> str | None:
    """The version of the distribution unpacked in ``target``, or None."""
    for dist in _distributions(target):
        return dist.version
    return None


def _environment_version(name: str, folder: Path) -> str | None:
    """The version of ``name`` installed outside the plugins folder (with pip), or None."""
    try:
        dist = importlib.metadata.distribution(name)
    except (importlib.metadata.PackageNotFoundError, ValueError):
        return None
    if from_a_plugin_folder(dist):
        return None
    return dist.version


def uninstall(name: str, folder: Path | None = None) -> Path:
    """Remove distribution ``name`` (its folder) from the plugins folder; returns the folder removed."""
    folder = plugins_dir() if folder is None else Path(folder)
    target = folder / normalise(name)
    if not _NAME.match(name) or not target.is_dir():
        installed = ", ".join(d.name for d, _ in plugin_folders(folder)) or "none"
        raise PluginFolderError(f"{target}: no plugin {name!r} in the plugins folder (installed there: {installed})")
    try:
        trash = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=folder))
        os.replace(target, trash / "removed")
    except OSError as exc:
        raise PluginFolderError(f"{target}: cannot remove it ({exc.strerror or exc})") from None
    shutil.rmtree(trash, ignore_errors=True)
    return target


# ----------------------------------------------------------------------------- discovery


def _distributions(target: Path) -> list:
    try:
        return [d for d in importlib.metadata.distributions(path=[str(target)]) if d.metadata["Name"]]
    except Exception:  # an unreadable dist-info is not a distribution
        return []


def plugin_folders(folder: Path | None = None) -> list[tuple]:
    """``(distribution, folder)`` for each plugin unpacked in the plugins folder, by name; a folder
    being written or removed (a hidden one) and one without a readable ``*.dist-info`` are left out."""
    folder = plugins_dir() if folder is None else Path(folder)
    try:
        children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []
    found = []
    for child in children:
        dists = _distributions(child)
        if len(dists) == 1:
            found.append((dists[0], child))
    return found


def entry_points(folder: Path | None = None) -> list[tuple]:
    """``(entry_point, plugin_folder)`` for every ``cnnstudio.plugins`` entry point in the plugins folder."""
    found = []
    for dist, child in plugin_folders(folder):
        try:
            eps = [ep for ep in dist.entry_points if ep.group == ENTRY_POINT_GROUP]
        except Exception:
            continue
        found += [(ep, child) for ep in eps]
    return found


# The plugin folders this process put on sys.path: importlib.metadata then sees their
# distributions as installed in the environment, which they are not.
_ON_PATH: set[str] = set()


def add_to_path(plugin_folder: Path) -> None:
    """Make a plugin folder importable; appended, so nothing in it shadows the app's own modules."""
    entry = str(plugin_folder)
    _ON_PATH.add(os.path.normcase(os.path.abspath(entry)))
    if entry not in sys.path:
        sys.path.append(entry)
    importlib.invalidate_caches()


def from_a_plugin_folder(dist) -> bool:
    """Whether ``dist`` (found on sys.path) lives in a plugin folder that :func:`add_to_path` added."""
    try:
        where = os.fspath(dist.locate_file(""))
    except Exception:
        return False
    return os.path.normcase(os.path.abspath(where)) in _ON_PATH
