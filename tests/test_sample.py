"""The built-in sample dataset: generated once, atomically, the same pictures every time."""

from __future__ import annotations

import numpy as np
import pytest
from taskstates import Callbacks, Recording

from cnnstudio.core.data import sample
from cnnstudio.core.data.dataset import scan_dataset
from cnnstudio.core.io import images


@pytest.fixture
def small_sample(monkeypatch):
    """A 3-per-class sample: enough for the tests of where and when it is written."""
    real = sample.generate_sample
    monkeypatch.setattr(
        sample, "generate_sample", lambda out, **kw: real(out, **{**kw, "per_class": 3})
    )


def test_sample_is_generated_into_the_data_folder_and_scans_clean(data_dir):
    calls = []
    path = sample.sample_dataset_path(state=Callbacks(progress=lambda d, t: calls.append((d, t))))
    assert path == data_dir / "samples" / sample.SAMPLE_NAME
    assert calls[-1][0] == calls[-1][1] == sample.PER_CLASS * len(sample.CLASSES)

    index = scan_dataset(path)
    assert index.problems == []
    assert len(index.class_names) >= 4
    assert index.class_names == sorted(sample.CLASSES)
    assert all(name == name.lower() for name in index.class_names)
    assert min(index.counts()) >= 150
    assert {(it.width, it.height) for it in index.items} == {(64, 64)}
    # Only the finished sample is left behind: no temporary folders.
    assert [p.name for p in (data_dir / "samples").iterdir()] == [sample.SAMPLE_NAME]


def test_second_call_reuses_the_sample(data_dir, small_sample):
    path = sample.sample_dataset_path()
    some_file = next((path / "circle").iterdir())
    before = some_file.stat().st_mtime_ns

    def must_not_run(*args, **kwargs):
        raise AssertionError("the sample was generated again")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sample, "generate_sample", must_not_run)
        assert sample.sample_dataset_path() == path
    assert some_file.stat().st_mtime_ns == before


def test_another_process_finishing_first_is_kept(data_dir, monkeypatch):
    real = sample.generate_sample
    target = data_dir / "samples" / sample.SAMPLE_NAME

    def racing(out_dir, **kwargs):
        real(target, per_class=2)  # the other process, done while we were generating
        (target / "theirs").write_text("")
        real(out_dir, per_class=2)

    monkeypatch.setattr(sample, "generate_sample", racing)
    assert sample.sample_dataset_path() == target
    assert (target / "theirs").exists()
    assert [p.name for p in (data_dir / "samples").iterdir()] == [sample.SAMPLE_NAME]


def test_an_unfinished_folder_is_replaced(data_dir, small_sample):
    target = data_dir / "samples" / sample.SAMPLE_NAME
    (target / "circle").mkdir(parents=True)
    (target / "circle" / "half-written.jpg").write_bytes(b"\xff\xd8")
    path = sample.sample_dataset_path()
    assert not (path / "circle" / "half-written.jpg").exists()
    assert scan_dataset(path).errors == []
    assert (path / sample.MARKER).is_file()


def test_generation_is_deterministic(tmp_path):
    sample.generate_sample(tmp_path / "one", per_class=4)
    sample.generate_sample(tmp_path / "two", per_class=4)
    sample.generate_sample(tmp_path / "other-seed", per_class=4, seed=1)
    files = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*.jpg"))
    assert len(files) == 4 * len(sample.CLASSES)
    for rel in files:
        one = np.asarray(images.load_rgb(tmp_path / "one" / rel))
        two = np.asarray(images.load_rgb(tmp_path / "two" / rel))
        other = np.asarray(images.load_rgb(tmp_path / "other-seed" / rel))
        assert np.array_equal(one, two)
        assert not np.array_equal(one, other)


def test_images_vary_within_a_class(tmp_path):
    # Nearly identical pictures would make the sample too easy to be a fair demonstration.
    sample.generate_sample(tmp_path, per_class=6, size=32)
    arrays = [
        np.asarray(images.load_rgb(p), dtype=float) for p in sorted((tmp_path / "star").iterdir())
    ]
    means = [a.mean(axis=(0, 1)) for a in arrays]
    spread = np.std(means, axis=0).mean()
    assert spread > 15
    assert all(a.shape == (32, 32, 3) for a in arrays)


def test_generation_reports_its_task_and_ends_at_the_total(tmp_path):
    state = Recording()
    sample.generate_sample(tmp_path, per_class=30, size=16, state=state)
    total = 30 * len(sample.CLASSES)
    assert {task for task, _, _ in state.progress} == {sample.SAMPLE_TASK}
    assert [d for _, d, _ in state.progress] == [50, 100, total] and state.progress[-1][2] == total


def test_a_stop_part_way_leaves_no_sample_and_raises_cancelled(data_dir, small_sample):
    from cnnstudio.core.errors import Cancelled

    state = Recording(stop_at_ask=5)
    with pytest.raises(Cancelled, match="stopped while generating the sample"):
        sample.sample_dataset_path(state=state)
    assert state.asked == 5 and not state.progress  # 5 of the 12 images, before the first report
    # Nothing half-written is left, and the next call generates the whole sample.
    assert list((data_dir / "samples").iterdir()) == []
    path = sample.sample_dataset_path()
    assert (path / sample.MARKER).is_file() and len(scan_dataset(path).items) == 3 * len(sample.CLASSES)
