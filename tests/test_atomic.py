import json

import pytest

from cnnstudio.core.io import atomic


def test_write_json_replaces_whole_file(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.atomic_write_json(target, {"a": 1})
    atomic.atomic_write_json(target, {"b": 2})
    assert json.loads(target.read_text()) == {"b": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temp files left


def test_failed_write_leaves_previous_file_intact(tmp_path, monkeypatch):
    target = tmp_path / "config.json"
    atomic.atomic_write_json(target, {"version": 1})

    class Unserialisable:
        pass

    with pytest.raises(TypeError):
        atomic.atomic_write_json(target, {"version": 2, "bad": Unserialisable()})
    assert json.loads(target.read_text()) == {"version": 1}

    # A crash in the middle of writing the bytes (disk full, killed) behaves the same.
    real_open = open

    def failing_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if "w" in mode and str(path) != str(target):
            f.write(b"{\"half")
            raise OSError(28, "No space left on device")
        return f

    with monkeypatch.context() as patch, pytest.raises(OSError):
        patch.setattr("builtins.open", failing_open)
        atomic.atomic_write_text(target, '{"version": 3}')
    assert json.loads(target.read_text()) == {"version": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["config.json"]


def test_failed_model_save_keeps_previous_model(tmp_path):
    target = tmp_path / "model.keras"
    target.write_bytes(b"previous model")

    class BrokenModel:
        def save(self, path, overwrite=True):
            with open(path, "wb") as f:
                f.write(b"partial")
            raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        atomic.atomic_save_model(BrokenModel(), target)
    assert target.read_bytes() == b"previous model"
    assert [p.name for p in tmp_path.iterdir()] == ["model.keras"]


def test_written_files_get_the_usual_permissions_not_the_temp_files_private_ones(tmp_path):
    import os

    from cnnstudio.core.io.atomic import atomic_write_json

    mask = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "shared.json", {"a": 1})
        assert (tmp_path / "shared.json").stat().st_mode & 0o777 == 0o644
        os.umask(0o077)
        atomic_write_json(tmp_path / "private.json", {"a": 1})
        assert (tmp_path / "private.json").stat().st_mode & 0o777 == 0o600
    finally:
        os.umask(mask)
