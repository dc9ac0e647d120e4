"""A folder of images, one sub-folder per class, checked once and described as a :class:`DatasetIndex`.

Every file is decoded during the scan (with the same loader training uses), so a corrupt photo
is reported up front with its name and reason instead of stopping a training run at epoch 7.
The split into train / validation / test is stratified and seeded, and saved as file paths so a
run can be reproduced on the same folder later.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from cnnstudio.core.errors import DatasetError, ImageError
from cnnstudio.core.io import images
from cnnstudio.core.tasks import TaskState, check_stop, quiet

# A class with fewer images than this gets a warning: it cannot be learned or measured well.
MIN_IMAGES_ADVISED = 10

# The largest class having more than this many times the images of the smallest is flagged.
IMBALANCE_RATIO = 3.0

# Files operating systems leave in folders; never images, never worth a warning.
JUNK_FILES = frozenset({"thumbs.db", "desktop.ini", ".ds_store"})

# The scan reports progress at most this often (seconds between calls), plus once at the end.
_PROGRESS_INTERVAL = 0.05

# The task the scan reports progress as.
SCAN_TASK = "scanning"

# Most files one scan task decodes; small enough that progress still moves smoothly.
_BATCH = 32

_LEVELS = ("error", "warning")
_SCOPES = ("file", "class", "dataset")


@dataclass(frozen=True)
class Problem:
    """Something wrong with a file, a class folder or the whole dataset.

    ``path`` is the file's path relative to the dataset root (posix), the class folder's name
    for class scope, and ``""`` for dataset scope.
    """

    path: str
    reason: str
    level: str  # "error" | "warning"
    scope: str  # "file" | "class" | "dataset"

    def __post_init__(self):
        if self.level not in _LEVELS:
            raise ValueError(f"Problem.level must be one of {_LEVELS}, not {self.level!r}")
        if self.scope not in _SCOPES:
            raise ValueError(f"Problem.scope must be one of {_SCOPES}, not {self.scope!r}")

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}" if self.path else self.reason

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Problem:
        return cls(path=d["path"], reason=d["reason"], level=d["level"], scope=d["scope"])


@dataclass(frozen=True)
class ImageItem:
    """One usable image: its posix path relative to the dataset root, class index and upright size.

    ``kind`` and ``nbytes`` say how the training pipeline decodes it
    (:func:`cnnstudio.core.io.images.probe`); ``nbytes`` is -1 where that is not known.
    """

    path: str
    label: int
    width: int
    height: int
    kind: int = 0
    nbytes: int = -1


@dataclass
class DatasetIndex:
    """The usable images of a dataset folder, their classes, and what was wrong with the rest."""

    root: Path
    class_names: list[str]
    items: list[ImageItem]  # sorted by (label, path)
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> list[int]:
        """Images per class, in the order of :attr:`class_names`."""
        counts = [0] * len(self.class_names)
        for item in self.items:
            counts[item.label] += 1
        return counts

    def abspath(self, item_or_index: ImageItem | int) -> Path:
        item = item_or_index if isinstance(item_or_index, ImageItem) else self.items[item_or_index]
        return self.root.joinpath(*item.path.split("/"))

    def paths(self, indices: Iterable[int] | None = None) -> list[str]:
        """Absolute paths (as strings, ready for a data pipeline) of ``indices``, or of every item."""
        chosen = self.items if indices is None else [self.items[i] for i in indices]
        return [str(self.abspath(item)) for item in chosen]

    def file_kinds(self) -> dict[str, tuple[int, int, int, int]]:
        """How each image is decoded, by absolute path, for :class:`cnnstudio.core.data.pipeline.ImagePipeline`:
        ``(kind, bytes, width, height)``."""
        return {str(self.abspath(item)): (item.kind, item.nbytes, item.width, item.height)
                for item in self.items if item.nbytes >= 0}

    def labels(self, indices: Iterable[int] | None = None) -> list[int]:
        chosen = self.items if indices is None else [self.items[i] for i in indices]
        return [item.label for item in chosen]

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.level == "warning"]

    def raise_for_errors(self) -> None:
        """Raise :class:`DatasetError` when the dataset cannot be trained on.

        Only class and dataset errors block; a file that failed to decode is left out and
        stays listed in :attr:`errors`, so one bad photo among thousands does not stop a run.
        """
        for problem in self.errors:
            if problem.scope != "file":
                where = self.root / problem.path if problem.path else self.root
                raise DatasetError(f"{where}: {problem.reason}")

    def to_dict(self) -> dict:
        return {
            "root": str(self.root),
            "class_names": list(self.class_names),
            "items": [asdict(item) for item in self.items],
            "problems": [p.to_dict() for p in self.problems],
        }

    @classmethod
    def from_dict(cls, d: dict) -> DatasetIndex:
        return cls(
            root=Path(d["root"]),
            class_names=list(d["class_names"]),
            items=[ImageItem(**item) for item in d["items"]],
            problems=[Problem.from_dict(p) for p in d.get("problems", [])],
        )

    def summary(self) -> str:
        """A few lines for a person: the folder, each class with its count, and the problems."""
        counts = self.counts()
        lines = [f"{self.root}", f"{len(self.class_names)} classes, {len(self.items)} images"]
        width = max((len(name) for name in self.class_names), default=0)
        lines += [
            f"  {name:<{width}}  {n}" for name, n in zip(self.class_names, counts, strict=True)
        ]
        n_err, n_warn = len(self.errors), len(self.warnings)
        if n_err or n_warn:
            lines.append(f"{_plural(n_err, 'error')}, {_plural(n_warn, 'warning')}")
        else:
            lines.append("no problems found")
        return "\n".join(lines)


def scan_dataset(
    root: str | os.PathLike,
    *,
    state: TaskState | None = None,
    workers: int | None = None,
) -> DatasetIndex:
    """Find and decode every image under ``root`` (one sub-folder per class).

    Files are decoded in a thread pool (Pillow releases the GIL while decoding); progress goes to
    ``state.on_progress("scanning", done, total)`` on the caller's thread, throttled, and always
    once with ``done == total``. ``state.should_stop()`` is checked as each
    batch of files is decoded: the scan then raises :class:`Cancelled` (it has no partial result).
    What each file gave is remembered (:class:`ScanMemory`), so a file whose size and
    modification time did not change since the last scan is not decoded again.
    Raises :class:`DatasetError` only when ``root`` is not a folder; everything else is recorded
    in :attr:`DatasetIndex.problems`.
    """
    root = Path(root).expanduser().absolute()
    if not root.exists():
        raise DatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise DatasetError(f"{root}: is not a folder")

    problems: list[Problem] = []
    class_dirs: list[tuple[str, Path]] = []
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as exc:
        raise DatasetError(f"{root}: cannot be read ({exc.strerror or exc})") from exc
    for entry in entries:
        if _skipped(entry.name):
            continue
        if _is_dir(entry):
            class_dirs.append((entry.name, Path(entry.path)))
        else:
            problems.append(
                Problem(entry.name, "not in a class folder; ignored", "warning", "file")
            )

    # A link from one class folder to the root or another class must not pull in their images.
    outside = {_identity(root)} | {_identity(path) for _, path in class_dirs}
    candidates: list[tuple[str, str, Path]] = []  # (class name, relative path, absolute path)
    for name, path in class_dirs:
        found, walk_problems = _walk_class(root, name, path, outside - {_identity(path)})
        candidates += [(name, rel, abs_) for rel, abs_ in found]
        problems += walk_problems

    memory = ScanMemory(root)
    sizes, file_problems = _verify_all(candidates, quiet(state), workers, memory)
    problems += file_problems
    memory.save()

    per_class: dict[str, list[tuple]] = {name: [] for name, _ in class_dirs}
    for (name, rel, _), size in zip(candidates, sizes, strict=True):
        if size is not None:
            per_class[name].append((rel, *size))
    class_names = []
    for name, _ in class_dirs:
        n = len(per_class[name])
        if n == 0:
            problems.append(
                Problem(name, "no usable images; the class is left out", "warning", "class")
            )
            continue
        if n < MIN_IMAGES_ADVISED:
            problems.append(
                Problem(
                    name,
                    f"only {_plural(n, 'image')}; at least {MIN_IMAGES_ADVISED} are advised",
                    "warning",
                    "class",
                )
            )
        class_names.append(name)

    items = [
        ImageItem(rel, label, width, height, kind, nbytes)
        for label, name in enumerate(class_names)
        for rel, width, height, kind, nbytes in sorted(per_class[name])
    ]
    index = DatasetIndex(root, class_names, items, [])
    index.problems = _dataset_problems(index) + _ordered(problems)
    return index


def unusable_reason(index: DatasetIndex) -> str:
    """Why no run can train on ``index``, in one line a person acts on ("" when one can).

    No class sub-folders, class folders without a usable image, one class only, or a class or
    dataset error (an unreadable class folder); a file that failed to decode does not count
    (:meth:`DatasetIndex.raise_for_errors` leaves it out too).
    """
    folders = sorted({p.path for p in index.problems if p.scope == "class"} | set(index.class_names))
    if not folders:
        return "No class sub-folders: put each class's images in its own folder"
    if not index.class_names:
        unreadable = [p for p in index.problems if p.scope == "class" and p.level == "error"]
        if unreadable:
            return f"{unreadable[0].path}: {unreadable[0].reason}"
        return (f"No images: {_plural(len(folders), 'class folder')} but none holds an image "
                "that can be read")
    if len(index.class_names) < 2:
        return (f"One class only ({index.class_names[0]}): a classifier needs at least two, "
                "each in its own folder")
    for problem in index.errors:
        if problem.scope != "file":
            return str(problem)
    return ""


def _dataset_problems(index: DatasetIndex) -> list[Problem]:
    if len(index.class_names) < 2:
        found = ", ".join(index.class_names)
        return [
            Problem(
                "",
                f"needs at least two class folders with images; found {len(index.class_names)}"
                + (f" ({found})" if found else ""),
                "error",
                "dataset",
            )
        ]
    counts = index.counts()
    big, small = int(np.argmax(counts)), int(np.argmin(counts))
    if counts[big] > IMBALANCE_RATIO * counts[small]:
        return [
            Problem(
                "",
                f"classes are imbalanced: '{index.class_names[big]}' has {counts[big]} images, "
                f"'{index.class_names[small]}' has {counts[small]} "
                f"({counts[big] / counts[small]:.1f}x); accuracy alone will flatter the model",
                "warning",
                "dataset",
            )
        ]
    return []


def _ordered(problems: list[Problem]) -> list[Problem]:
    """Class problems before file problems, each by path: stable across runs and easy to read."""
    return sorted(problems, key=lambda p: (p.scope != "class", p.path, p.reason))


def _skipped(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_FILES


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir(follow_symlinks=True)
    except OSError:
        return False


def _identity(path: Path | os.DirEntry) -> tuple[int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino


def _walk_class(
    root: Path, name: str, top: Path, outside: set[tuple[int, int]]
) -> tuple[list[tuple[str, Path]], list[Problem]]:
    """Every candidate file under ``top``, following links but entering each real folder once."""
    found: list[tuple[str, Path]] = []
    problems: list[Problem] = []
    visited = set(outside)
    stack = [(top, name)]
    while stack:
        folder, rel = stack.pop()
        try:
            identity = _identity(folder)
            if identity in visited:
                continue
            visited.add(identity)
            entries = sorted(os.scandir(folder), key=lambda e: e.name)
        except OSError as exc:
            scope = "class" if rel == name else "file"
            problems.append(
                Problem(rel, f"unreadable folder ({exc.strerror or exc})", "error", scope)
            )
            continue
        subfolders = []
        for entry in entries:
            if _skipped(entry.name):
                continue
            entry_rel = f"{rel}/{entry.name}"
            if _is_dir(entry):
                subfolders.append((Path(entry.path), entry_rel))
            else:
                found.append((entry_rel, Path(entry.path)))
        stack.extend(reversed(subfolders))
    return found, problems


class ScanMemory:
    """What the last scans of one folder found, file by file, keyed by path, size and mtime.

    Kept in the user's cache folder, one JSON file per dataset folder, written atomically and
    checked when read: an entry that is not exactly what this version writes is ignored (and
    its file decoded again), as is a file that cannot be read.
    """

    VERSION = 2  # 2: a JPEG or PNG that does not end as one is decoded by Pillow

    def __init__(self, root: Path):
        from cnnstudio.core.io.paths import cache_dir

        self.root = root
        digest = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:24]
        self.file = cache_dir() / "scans" / f"{digest}.json"
        self.entries: dict[str, list] = {}
        self.fresh: dict[str, list] = {}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
            if data.get("version") == self.VERSION and data.get("root") == str(root):
                self.entries = {k: v for k, v in data["files"].items() if self._valid(v)}
        except (OSError, ValueError, AttributeError, KeyError, TypeError):
            self.entries = {}

    @staticmethod
    def _valid(entry) -> bool:
        if not isinstance(entry, list) or len(entry) != 3 or not all(isinstance(v, int) for v in entry[:2]):
            return False
        result = entry[2]
        if isinstance(result, str):
            return True
        return (isinstance(result, list) and len(result) == 4 and all(isinstance(v, int) for v in result)
                and result[0] > 0 and result[1] > 0)

    @staticmethod
    def stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = os.stat(path)
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def recall(self, rel: str, stamp) -> tuple[int, int, int, int] | ImageError | None:
        """What ``rel`` gave last time if its stamp is unchanged: its inspection, or its error."""
        entry = self.entries.get(rel)
        if stamp is None or entry is None or (entry[0], entry[1]) != stamp:
            return None
        self.fresh[rel] = entry
        return entry[2] if isinstance(entry[2], str) else tuple(entry[2])

    def remember(self, rel: str, stamp, result) -> None:
        if stamp is not None:
            value = result.reason if isinstance(result, ImageError) else list(result)
            self.fresh[rel] = [stamp[0], stamp[1], value]

    def save(self) -> None:
        """Write what this scan saw (files gone since are forgotten); a failure only costs speed."""
        if self.fresh == self.entries:
            return
        from cnnstudio.core.io.atomic import atomic_write_json

        try:
            self.file.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.file, {"version": self.VERSION, "root": str(self.root), "files": self.fresh})
        except OSError:
            pass


def _verify_all(
    candidates: Sequence[tuple[str, str, Path]],
    state: TaskState,
    workers: int | None,
    memory: ScanMemory,
) -> tuple[list[tuple[int, int, int, int] | None], list[Problem]]:
    """Decode every candidate not remembered, in parallel; return each one's inspection (None when unusable)."""
    total = len(candidates)
    sizes: list[tuple[int, int, int, int] | None] = [None] * total
    problems: list[Problem] = []
    stamps = [memory.stamp(abs_) for _, _, abs_ in candidates]
    todo = []
    for i, (_, rel, _) in enumerate(candidates):
        known = memory.recall(rel, stamps[i])
        if known is None:
            todo.append(i)
        elif isinstance(known, str):
            problems.append(Problem(rel, known, "error", "file"))
        else:
            sizes[i] = known
    workers = workers or min(8, (os.cpu_count() or 1) * 2)
    # Files go to the threads in batches: one future per small image costs more in hand-offs
    # between threads than decoding it does.
    step = max(1, min(_BATCH, len(todo) // (workers * 4)))
    batches = [todo[start:start + step] for start in range(0, len(todo), step)]

    def check(batch: list[int]) -> list[tuple[int, tuple[int, int, int, int] | ImageError, list[str]]]:
        results = []
        for i in batch:
            with images.file_notes() as notes:  # what Pillow warned about, in the studio's words
                try:
                    results.append((i, images.inspect(candidates[i][2]), notes))
                except ImageError as exc:
                    results.append((i, exc, notes))
        return results

    done = total - len(todo)
    last_report = time.monotonic()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="scan") as pool:
        futures = [pool.submit(check, batch) for batch in batches]
        try:
            for future in as_completed(futures):
                results = future.result()
                for i, result, notes in results:
                    if notes:  # not remembered: the next scan says them again
                        problems.extend(Problem(candidates[i][1], note, "warning", "file") for note in notes)
                    else:
                        memory.remember(candidates[i][1], stamps[i], result)
                    if isinstance(result, ImageError):
                        problems.append(Problem(candidates[i][1], result.reason, "error", "file"))
                    else:
                        sizes[i] = result
                done += len(results)
                now = time.monotonic()
                if done < total and now - last_report >= _PROGRESS_INTERVAL:
                    last_report = now
                    state.on_progress(SCAN_TASK, done, total)
                check_stop(state, "stopped while scanning the dataset")
        except BaseException:
            # An interrupted scan (a stop, Ctrl+C, a raising state) should not wait for every file.
            for future in futures:
                future.cancel()
            raise
    state.on_progress(SCAN_TASK, total, total)
    return sizes, problems


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- splits ---------------------------------------------------------------------------------


@dataclass
class Split:
    """Which items train, validate and test a model; indices into ``index.items``, each sorted."""

    seed: int
    val_fraction: float
    test_fraction: float
    train: list[int]
    val: list[int]
    test: list[int]

    def to_dict(self, index: DatasetIndex) -> dict:
        """The split as relative file paths, so it survives files being added to the folder."""
        return {
            "seed": self.seed,
            "val_fraction": self.val_fraction,
            "test_fraction": self.test_fraction,
            "train": [index.items[i].path for i in self.train],
            "val": [index.items[i].path for i in self.val],
            "test": [index.items[i].path for i in self.test],
        }

    @classmethod
    def from_dict(cls, d: dict, index: DatasetIndex) -> Split:
        """The saved split mapped onto ``index``; a file that is gone raises :class:`DatasetError`.

        Images added to the folder since the split was saved are in none of the three parts.
        """
        position = {item.path: i for i, item in enumerate(index.items)}

        def indices(part: str) -> list[int]:
            out = []
            for path in d[part]:
                if path not in position:
                    raise DatasetError(
                        f"{index.root / path}: used by the saved split ({part}) but no longer "
                        "a usable image in the dataset"
                    )
                out.append(position[path])
            return sorted(out)

        return cls(
            seed=int(d["seed"]),
            val_fraction=float(d["val_fraction"]),
            test_fraction=float(d["test_fraction"]),
            train=indices("train"),
            val=indices("val"),
            test=indices("test"),
        )


def make_split(
    index: DatasetIndex, val_fraction: float = 0.15, test_fraction: float = 0.15, seed: int = 0
) -> Split:
    """Split each class on its own (stratified), rounding per class.

    A class of three or more images gives at least one image to validation and to test (when
    their fraction is not zero) and always keeps one for training.
    """
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value <= 0.9:
            raise ValueError(f"{name} must be between 0 and 0.9, not {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be below 1 (got {val_fraction + test_fraction:g}), "
            "or nothing is left to train on"
        )
    rng = np.random.default_rng(seed)
    train: list[int] = []
    val: list[int] = []
    test: list[int] = []
    for members in _by_class(index):
        n = len(members)
        n_val, n_test = round(n * val_fraction), round(n * test_fraction)
        if n >= 3:
            n_val = max(n_val, 1) if val_fraction > 0 else 0
            n_test = max(n_test, 1) if test_fraction > 0 else 0
        while n_val + n_test > max(n - 1, 0):
            if n_test >= n_val:
                n_test -= 1
            else:
                n_val -= 1
        order = rng.permutation(members).tolist()
        val += order[:n_val]
        test += order[n_val : n_val + n_test]
        train += order[n_val + n_test :]
    return Split(seed, val_fraction, test_fraction, sorted(train), sorted(val), sorted(test))


def kfold_splits(
    index: DatasetIndex, k: int = 5, seed: int = 0
) -> list[tuple[list[int], list[int]]]:
    """``k`` stratified (train, val) folds; each item is validated on in exactly one fold."""
    if k < 2:
        raise ValueError(f"k-fold cross-validation needs k >= 2, not {k}")
    groups = _by_class(index)
    for name, members in zip(index.class_names, groups, strict=True):
        if len(members) < k:
            raise ValueError(
                f"class '{name}' has {_plural(len(members), 'image')}; {k}-fold cross-validation "
                f"needs at least {k} per class"
            )
    everything = set(range(len(index.items)))
    return [(sorted(everything - set(fold)), fold) for fold in deal_folds(groups, k, seed)]


def deal_folds(groups: list[list[int]], k: int, seed: int) -> list[list[int]]:
    """Deal each group (a class's items) into ``k`` folds after a seeded shuffle; each fold sorted.

    Shared by :func:`kfold_splits` and cross-validation, so the same seed gives the same folds.
    """
    rng = np.random.default_rng(seed)
    folds: list[list[int]] = [[] for _ in range(k)]
    offset = 0
    for members in groups:
        # array_split makes the first parts one larger; rotating the start spreads them evenly.
        for j, part in enumerate(np.array_split(rng.permutation(members), k)):
            folds[(j + offset) % k] += part.tolist()
        offset += len(members) % k
    return [sorted(fold) for fold in folds]


def _by_class(index: DatasetIndex) -> list[list[int]]:
    groups: list[list[int]] = [[] for _ in index.class_names]
    for i, item in enumerate(index.items):
        groups[item.label].append(i)
    return groups
