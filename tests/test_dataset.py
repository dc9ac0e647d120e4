"""Scanning a folder of class folders, and splitting it reproducibly."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image
from taskstates import Callbacks, Recording

from cnnstudio.core.data import dataset
from cnnstudio.core.data.dataset import (
    DatasetIndex,
    Problem,
    Split,
    kfold_splits,
    make_split,
    scan_dataset,
)
from cnnstudio.core.errors import Cancelled, DatasetError


def problem_for(index: DatasetIndex, path: str) -> Problem:
    found = [p for p in index.problems if p.path == path]
    assert len(found) == 1, f"expected one problem for {path!r}, got {index.problems}"
    return found[0]


# --- scanning -------------------------------------------------------------------------------


def test_scan_finds_sorted_classes_and_counts(make_dataset):
    root = make_dataset({"zebra": 12, "Ant": 11, "bee": 10})
    index = scan_dataset(root)
    assert index.class_names == ["Ant", "bee", "zebra"]  # plain sorted(): upper case first
    assert index.counts() == [11, 10, 12]
    assert index.problems == []
    assert index.items == sorted(index.items, key=lambda it: (it.label, it.path))
    first = index.items[0]
    assert (first.path, first.label, first.width, first.height) == ("Ant/img_000.png", 0, 16, 16)
    assert index.abspath(0) == root / "Ant" / "img_000.png"
    assert index.abspath(np.int64(0)) == index.abspath(first)  # indices often come from numpy
    assert index.paths([0, 11]) == [str(root / "Ant/img_000.png"), str(root / "bee/img_000.png")]
    assert index.labels([0, 11, 21]) == [0, 1, 2]


def test_nested_folders_belong_to_their_class(make_dataset, write_image):
    root = make_dataset({"a": 10, "b": 10})
    write_image(root / "a" / "2023" / "june" / "deep.png")
    index = scan_dataset(root)
    assert index.counts() == [11, 10]
    assert "a/2023/june/deep.png" in [it.path for it in index.items]


def test_hidden_folders_hidden_files_and_os_junk_are_skipped_silently(make_dataset, write_image):
    root = make_dataset({"a": 10, "b": 10})
    write_image(root / ".thumbnails" / "x.png")
    write_image(root / "a" / ".hidden.png")
    write_image(root / "a" / ".cache" / "y.png")
    (root / "a" / "Thumbs.db").write_bytes(b"junk")
    (root / "b" / "desktop.ini").write_text("[.ShellClassInfo]")
    (root / "b" / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")
    index = scan_dataset(root)
    assert index.class_names == ["a", "b"]
    assert index.counts() == [10, 10]
    assert index.problems == []


def test_each_bad_file_is_reported_and_left_out(make_dataset, noise_jpeg):
    root = make_dataset({"a": 10, "b": 10})
    (root / "a" / "empty.jpg").write_bytes(b"")
    (root / "a" / "notes.png").write_text("not pixels")
    data = noise_jpeg(root / "b" / "full.jpg").read_bytes()
    (root / "b" / "half.jpg").write_bytes(data[: len(data) // 2])
    (root / "b" / "gone.jpg").symlink_to(root / "b" / "deleted.jpg")
    (root / "loose.png").write_bytes((root / "a" / "img_000.png").read_bytes())

    index = scan_dataset(root)
    assert index.counts() == [10, 11]  # full.jpg is good
    assert problem_for(index, "a/empty.jpg").reason == "empty file (0 bytes)"
    assert problem_for(index, "a/notes.png").reason.startswith("not an image")
    assert problem_for(index, "b/half.jpg").reason.startswith("truncated or corrupt")
    assert problem_for(index, "b/gone.jpg").reason.startswith("unreadable")
    for path in ("a/empty.jpg", "a/notes.png", "b/half.jpg", "b/gone.jpg"):
        assert (problem_for(index, path).level, problem_for(index, path).scope) == ("error", "file")
    loose = problem_for(index, "loose.png")
    assert (loose.reason, loose.level) == ("not in a class folder; ignored", "warning")
    # One bad file does not make the dataset unusable.
    index.raise_for_errors()
    assert len(index.errors) == 4 and len(index.warnings) == 1


def test_too_large_image_is_reported(make_dataset, write_image, monkeypatch):
    root = make_dataset({"a": 10, "b": 10}, size=(16, 16))
    write_image(root / "a" / "huge.png", size=(40, 40))
    monkeypatch.setattr("cnnstudio.core.io.images.MAX_PIXELS", 1000)
    index = scan_dataset(root)
    assert problem_for(index, "a/huge.png").reason.startswith("image too large")
    assert index.counts() == [10, 10]


def test_extensions_do_not_matter_content_does(tmp_path, write_image, make_dataset):
    root = make_dataset({"a": 10, "b": 10})
    write_image(root / "a" / "photo.JPG", quality=90)
    write_image(root / "a" / "x.jpeg", quality=90)
    write_image(root / "a" / "png-inside.jpg", fmt="PNG")
    write_image(root / "a" / "no_extension", fmt="PNG")
    index = scan_dataset(root)
    assert index.counts() == [14, 10]
    assert index.problems == []


def test_empty_class_is_left_out_with_a_warning(make_dataset, noise_jpeg):
    root = make_dataset({"a": 10, "b": 10, "c": 10})
    (root / "empty").mkdir()
    (root / "broken").mkdir()
    (root / "broken" / "x.jpg").write_bytes(b"")
    index = scan_dataset(root)
    assert index.class_names == ["a", "b", "c"]
    for name in ("empty", "broken"):
        p = problem_for(index, name)
        assert (p.reason, p.level, p.scope) == (
            "no usable images; the class is left out",
            "warning",
            "class",
        )


def test_few_images_warning(make_dataset):
    root = make_dataset({"a": 10, "b": dataset.MIN_IMAGES_ADVISED - 1})
    index = scan_dataset(root)
    p = problem_for(index, "b")
    assert (p.reason, p.level) == ("only 9 images; at least 10 are advised", "warning")
    assert index.class_names == ["a", "b"]  # still used


def test_one_class_is_an_error(make_dataset):
    root = make_dataset({"only": 12})
    index = scan_dataset(root)
    p = problem_for(index, "")
    assert (p.level, p.scope) == ("error", "dataset")
    assert "needs at least two class folders with images; found 1" in p.reason
    with pytest.raises(DatasetError) as info:
        index.raise_for_errors()
    assert str(root) in str(info.value) and "found 1" in str(info.value)


def test_imbalance_warning_names_both_classes(make_dataset):
    root = make_dataset({"many": 40, "few": 10, "mid": 20})
    index = scan_dataset(root)
    p = problem_for(index, "")
    assert (p.level, p.scope) == ("warning", "dataset")
    assert "'many' has 40" in p.reason and "'few' has 10" in p.reason
    index.raise_for_errors()  # a warning never blocks


def test_balanced_enough_is_not_flagged(make_dataset):
    root = make_dataset({"a": 30, "b": 10})  # exactly 3x: the limit, not over it
    assert scan_dataset(root).problems == []


def test_unicode_names(tmp_path, write_image, make_dataset):
    root = make_dataset({"chien": 10}, root=tmp_path / "données")
    for i in range(10):
        write_image(root / "café" / f"猫 {i}.png")
    index = scan_dataset(root)
    assert index.class_names == ["café", "chien"]
    assert "café/猫 1.png" in [it.path for it in index.items]
    assert index.abspath(index.items[1]).is_file()
    back = DatasetIndex.from_dict(json.loads(json.dumps(index.to_dict(), ensure_ascii=False)))
    assert back == index


def test_symlink_loop_finishes_without_duplicates(make_dataset):
    root = make_dataset({"a": 10, "b": 10})
    (root / "a" / "loop").symlink_to(root / "a", target_is_directory=True)
    (root / "a" / "up").symlink_to(root, target_is_directory=True)
    (root / "b" / "sub").mkdir()
    (root / "b" / "sub" / "back").symlink_to(root / "b", target_is_directory=True)
    index = scan_dataset(root)
    assert index.counts() == [10, 10]
    assert index.problems == []


def test_symlinked_folders_are_followed(tmp_path, make_dataset):
    elsewhere = make_dataset({"dogs": 10}, root=tmp_path / "elsewhere")
    root = make_dataset({"cats": 10})
    (root / "dogs").symlink_to(elsewhere / "dogs", target_is_directory=True)
    index = scan_dataset(root)
    assert index.class_names == ["cats", "dogs"] and index.counts() == [10, 10]


def test_progress_reaches_total_on_the_callers_thread(make_dataset):
    import threading

    root = make_dataset({"a": 15, "b": 15})
    calls = []
    scan_dataset(root, state=Callbacks(progress=lambda d, t: calls.append((d, t, threading.get_ident()))), workers=3)
    assert calls[-1][:2] == (30, 30)
    assert all(t == 30 and 0 < d <= 30 for d, t, _ in calls)
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)
    assert {ident for _, _, ident in calls} == {threading.get_ident()}


def test_scan_reports_its_task_and_ends_at_the_total(make_dataset):
    root = make_dataset({"a": 12, "b": 9})
    state = Recording()
    scan_dataset(root, state=state, workers=2)
    assert state.progress and {task for task, _, _ in state.progress} == {"scanning"}
    assert state.progress[-1] == ("scanning", 21, 21)
    assert state.asked >= 1  # asked between batches of files


def test_a_stop_part_way_through_the_scan_raises_cancelled(make_dataset, monkeypatch):
    root = make_dataset({"a": 40, "b": 40})
    import time

    decoded = []
    inspect = dataset.images.inspect

    def slow_inspect(path):  # slow enough that the threads cannot finish before the stop is heard
        decoded.append(path)
        time.sleep(0.005)
        return inspect(path)

    monkeypatch.setattr(dataset.images, "inspect", slow_inspect)
    state = Recording(stop_at_ask=2)  # after the second batch of files
    with pytest.raises(Cancelled, match="stopped while scanning"):
        scan_dataset(root, state=state, workers=2)
    assert state.asked == 2 and 0 < len(decoded) < 80  # the batches not started were dropped
    assert ("scanning", 80, 80) not in state.progress
    assert len(scan_dataset(root).items) == 80  # nothing half-done is remembered wrongly


def test_missing_or_not_a_folder(tmp_path):
    with pytest.raises(DatasetError, match="no such folder"):
        scan_dataset(tmp_path / "nope")
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DatasetError, match="is not a folder"):
        scan_dataset(tmp_path / "file.txt")


def test_empty_root_is_an_error(tmp_path):
    index = scan_dataset(tmp_path)
    assert index.class_names == [] and index.items == []
    with pytest.raises(DatasetError, match="found 0"):
        index.raise_for_errors()


def test_index_round_trips_through_json(make_dataset):
    root = make_dataset({"a": 12, "b": 9})
    (root / "a" / "bad.png").write_text("x")
    index = scan_dataset(root)
    back = DatasetIndex.from_dict(json.loads(json.dumps(index.to_dict())))
    assert back == index
    assert back.root == root and back.problems == index.problems


def test_summary_lists_classes_counts_and_problems(make_dataset):
    root = make_dataset({"cats": 12, "dogs": 9})
    text = scan_dataset(root).summary()
    assert "2 classes, 21 images" in text
    assert any(line.split() == ["cats", "12"] for line in text.splitlines())
    assert any(line.split() == ["dogs", "9"] for line in text.splitlines())
    assert "0 errors, 1 warning" in text


# --- splits ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index(tmp_path_factory) -> DatasetIndex:
    """An in-memory index (no files needed to split): 40, 20 and 7 images."""
    items = [
        dataset.ImageItem(f"{name}/{i:03d}.png", label, 16, 16)
        for label, (name, n) in enumerate([("a", 40), ("b", 20), ("c", 7)])
        for i in range(n)
    ]
    return DatasetIndex(tmp_path_factory.mktemp("ds"), ["a", "b", "c"], items, [])


def test_split_is_stratified_disjoint_and_covering(index):
    split = make_split(index, val_fraction=0.2, test_fraction=0.1, seed=3)
    parts = [split.train, split.val, split.test]
    assert all(part == sorted(part) for part in parts)
    assert sorted(split.train + split.val + split.test) == list(range(len(index.items)))
    per_class = [Counter(index.labels(part)) for part in parts]
    # round(n * fraction) per class; classes of 3 or more get at least one in val and test
    assert [per_class[1][c] for c in range(3)] == [8, 4, 1]
    assert [per_class[2][c] for c in range(3)] == [4, 2, 1]
    assert [per_class[0][c] for c in range(3)] == [28, 14, 5]


def test_split_is_reproducible_and_depends_on_the_seed(index):
    assert make_split(index, seed=7) == make_split(index, seed=7)
    assert make_split(index, seed=7).val != make_split(index, seed=8).val


def test_tiny_classes_keep_something_to_train_on():
    items = [
        dataset.ImageItem(f"{c}/{i}.png", label, 8, 8)
        for label, c in enumerate("xy")
        for i in range(3)
    ]
    idx = DatasetIndex(None, ["x", "y"], items, [])
    split = make_split(idx, val_fraction=0.5, test_fraction=0.45)
    assert Counter(idx.labels(split.train)) == {0: 1, 1: 1}
    assert Counter(idx.labels(split.val)) == {0: 1, 1: 1}


def test_zero_test_fraction_gives_no_test_set(index):
    split = make_split(index, val_fraction=0.2, test_fraction=0.0)
    assert split.test == [] and len(split.val) == 8 + 4 + 1


@pytest.mark.parametrize("val, test", [(-0.1, 0.1), (0.95, 0.0), (0.5, 0.5), (0.1, 0.91)])
def test_split_rejects_bad_fractions(index, val, test):
    with pytest.raises(ValueError, match="fraction"):
        make_split(index, val_fraction=val, test_fraction=test)


def test_split_round_trips_by_file_path(index):
    split = make_split(index, seed=11)
    saved = json.loads(json.dumps(split.to_dict(index)))
    assert saved["val"][0].count("/") == 1  # relative paths, not indices
    assert Split.from_dict(saved, index) == split


def test_split_survives_new_files_and_names_a_missing_one(index):
    split = make_split(index, seed=11)
    saved = split.to_dict(index)
    # A new image added to the folder shifts every index after it.
    grown_items = [dataset.ImageItem("a/000-new.png", 0, 16, 16)] + index.items
    grown = DatasetIndex(index.root, index.class_names, grown_items, [])
    restored = Split.from_dict(saved, grown)
    assert grown.paths(restored.val) == index.paths(split.val)
    assert 0 not in restored.train + restored.val + restored.test

    gone = split.val[0]
    shrunk = DatasetIndex(
        index.root, index.class_names, index.items[:gone] + index.items[gone + 1 :], []
    )
    with pytest.raises(DatasetError, match=index.items[gone].path):
        Split.from_dict(saved, shrunk)


def test_kfold_folds_are_disjoint_covering_stratified_and_reproducible(index):
    folds = kfold_splits(index, k=5, seed=2)
    assert len(folds) == 5
    everything = list(range(len(index.items)))
    vals = [val for _, val in folds]
    assert sorted(i for val in vals for i in val) == everything  # each item validated once
    for train, val in folds:
        assert sorted(train + val) == everything and not set(train) & set(val)
        counts = Counter(index.labels(val))
        assert counts[0] == 8 and counts[1] == 4 and counts[2] in (1, 2)
    assert sorted(len(val) for val in vals) == [13, 13, 13, 14, 14]  # sizes spread evenly
    assert kfold_splits(index, k=5, seed=2) == folds
    assert kfold_splits(index, k=5, seed=3) != folds


def test_kfold_rejects_bad_k(index):
    with pytest.raises(ValueError, match="k >= 2"):
        kfold_splits(index, k=1)
    with pytest.raises(ValueError, match="class 'c' has 7 images"):
        kfold_splits(index, k=8)


def test_item_size_is_the_upright_size(make_dataset):
    root = make_dataset({"a": 10, "b": 10})
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown portrait
    Image.new("RGB", (40, 20), (9, 9, 9)).save(root / "a" / "phone.jpg", exif=exif.tobytes())
    item = next(it for it in scan_dataset(root).items if it.path == "a/phone.jpg")
    assert (item.width, item.height) == (20, 40)


# --- scans remember -------------------------------------------------------------------------


def test_a_second_scan_decodes_only_the_files_that_changed(make_dataset, monkeypatch):
    root = make_dataset({"a": 12, "b": 12})
    first = scan_dataset(root)
    decoded = []
    real = dataset.images.inspect
    monkeypatch.setattr(dataset.images, "inspect", lambda path: (decoded.append(path), real(path))[1])
    again = scan_dataset(root)
    assert decoded == [] and again.items == first.items and again.problems == first.problems

    changed = root / "a" / "img_003.png"
    Image.new("RGB", (30, 20), (5, 5, 5)).save(changed)  # a new size and time
    (root / "b" / "img_000.png").write_bytes(b"broken")  # now unusable
    (root / "b" / "img_011.png").unlink()  # gone
    third = scan_dataset(root)
    assert sorted(p.name for p in decoded) == ["img_000.png", "img_003.png"]
    assert next(it for it in third.items if it.path == "a/img_003.png").width == 30
    assert problem_for(third, "b/img_000.png").reason.startswith("not an image")
    assert len(third.items) == 22

    decoded.clear()  # an unusable file is remembered too: the error comes back without a decode
    fourth = scan_dataset(root)
    assert decoded == [] and problem_for(fourth, "b/img_000.png").reason.startswith("not an image")


def test_a_damaged_scan_memory_is_ignored_not_trusted(make_dataset):
    root = make_dataset({"a": 10, "b": 10})
    first = scan_dataset(root)
    memory = dataset.ScanMemory(root.absolute())
    saved = json.loads(memory.file.read_text())
    entry = saved["files"]["a/img_001.png"]
    entry[2] = [-5, 7, 1, 100]  # a size no image has
    saved["files"]["a/img_002.png"] = "nonsense"
    memory.file.write_text(json.dumps(saved))
    assert scan_dataset(root).items == first.items
    memory.file.write_text("{ not json")
    assert scan_dataset(root).items == first.items


def test_why_a_dataset_cannot_be_trained_on_is_one_line_per_case(make_dataset, tmp_path, write_image):
    assert dataset.unusable_reason(scan_dataset(make_dataset({"a": 3, "b": 3}))) == ""
    loose = tmp_path / "loose"
    write_image(loose / "photo.png")
    assert dataset.unusable_reason(scan_dataset(loose)).startswith("No class sub-folders")
    one = tmp_path / "one"
    write_image(one / "cats" / "cat.png")
    assert dataset.unusable_reason(scan_dataset(one)).startswith("One class only (cats)")
    empty = tmp_path / "empty"
    (empty / "cats").mkdir(parents=True)
    (empty / "dogs").mkdir()
    assert dataset.unusable_reason(scan_dataset(empty)).startswith("No images: 2 class folders")
