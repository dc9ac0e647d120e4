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


@pytest.mark.parametrize("code, reason", [
    (28, "no space left on device"),
    (30, "read-only file system"),
    (13, "permission denied"),
])
def test_a_failed_write_is_one_line_naming_the_file_and_the_cause(tmp_path, monkeypatch, code, reason):
    import errno
    import os

    from cnnstudio.core.errors import StudioError, WriteFailed

    assert code == {28: errno.ENOSPC, 30: errno.EROFS, 13: errno.EACCES}[code]
    target = tmp_path / "report.html"
    target.write_text("the good report")
    real_open = open

    def failing_open(path, mode="r", *a, **k):
        f = real_open(path, mode, *a, **k)
        if "w" in mode:
            f.write(b"<html>half")
            f.flush()
            raise OSError(code, os.strerror(code))
        return f

    monkeypatch.setattr("builtins.open", failing_open)
    with pytest.raises(WriteFailed) as caught:
        atomic.atomic_write_text(target, "<html>the new report</html>")
    assert str(caught.value) == f"{target}: {reason}"
    assert isinstance(caught.value, StudioError) and isinstance(caught.value, OSError)
    assert caught.value.errno == code
    monkeypatch.undo()
    assert target.read_text() == "the good report"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_a_folder_that_cannot_be_made_or_written_is_one_line(tmp_path, monkeypatch):
    import errno
    import tempfile

    from cnnstudio.core.errors import WriteFailed

    def refused(*a, **k):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refused)
    with pytest.raises(WriteFailed, match=r"^.*metrics\.json: read-only file system$"):
        atomic.atomic_write_json(tmp_path / "metrics.json", {})
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(WriteFailed, match="a-file/run: "):
        atomic.make_folder(blocker / "run")


def test_a_short_write_is_caught_before_it_replaces_anything(tmp_path, monkeypatch):
    """A writer that loses bytes without an error (some do on a full disk) leaves a file of the
    wrong size: refused, the previous file kept."""
    from cnnstudio.core.errors import WriteFailed

    target = tmp_path / "history.csv"
    target.write_text("epoch\n1\n")
    real_open = open

    class Lossy:
        def __init__(self, f):
            self.f = f

        def write(self, data):
            return self.f.write(data[: len(data) // 2])

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    monkeypatch.setattr("builtins.open", lambda p, mode="r", *a, **k: Lossy(real_open(p, mode, *a, **k))
                        if "w" in mode else real_open(p, mode, *a, **k))
    with pytest.raises(WriteFailed, match=r"history\.csv: the written file is incomplete \(\d+ of \d+ bytes\)"):
        atomic.atomic_write_text(target, "epoch\n1\n2\n3\n")
    monkeypatch.undo()
    assert target.read_text() == "epoch\n1\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]


def test_the_file_and_its_folder_are_synced(tmp_path, monkeypatch):
    import os
    import stat

    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(stat.S_ISDIR(os.fstat(fd).st_mode)), real_fsync(fd)))
    atomic.atomic_write_bytes(tmp_path / "a.bin", b"123")
    assert synced == [False, True]  # the temp file, then the folder after the rename


def test_a_keras_archive_without_its_config_or_weights_is_refused(tmp_path):
    import zipfile

    from cnnstudio.core.errors import WriteFailed

    target = tmp_path / "last.keras"
    target.write_bytes(b"the previous checkpoint")

    class Model:
        def __init__(self, names):
            self.names = names

        def save(self, path, overwrite=True):
            with zipfile.ZipFile(path, "w") as z:
                for name in self.names:
                    z.writestr(name, "{}")

    for names, problem in ((["metadata.json", "model.weights.h5"], "no config.json"),
                           (["config.json"], "no weights"),
                           ([], "no config.json")):
        with pytest.raises(WriteFailed, match=f"last.keras: the written file is incomplete \\({problem}"):
            atomic.atomic_save_model(Model(names), target)
        assert target.read_bytes() == b"the previous checkpoint"
    atomic.atomic_save_model(Model(["config.json", "metadata.json", "model.weights.h5"]), target)
    assert zipfile.is_zipfile(target) and [p.name for p in tmp_path.iterdir()] == ["last.keras"]


def test_a_pdf_is_complete_only_with_its_end_marker():
    assert atomic.pdf_problem(b"%PDF-1.4\n...\n%%EOF\n") is None
    assert atomic.pdf_problem(b"%PDF-1.4\n..." + b"\0" * 10) == "no %%EOF at its end"


def test_weights_built_in_memory_load_back_into_the_model(tmp_path):
    """Weights files no longer go through HDF5's own writes (a full disk crashed the process at
    exit); the bytes written instead are a weights file Keras loads, HDF5 signature first."""
    import numpy as np

    from cnnstudio.core.tf import keras

    K = keras()
    model = K.Sequential([K.Input((4,)), K.layers.Dense(3)])
    target = tmp_path / "best.weights.h5"
    atomic.atomic_save_model(model, target)
    assert target.read_bytes().startswith(atomic.HDF5_SIGNATURE)
    other = K.Sequential([K.Input((4,)), K.layers.Dense(3)])
    other.load_weights(target)
    for a, b in zip(model.get_weights(), other.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("message, reason", [
    ("/run/.cache/x: No space left on device", "no space left on device"),
    ("Read-only file system", "read-only file system"),
])
def test_tensorflow_errors_of_a_full_or_read_only_disk_are_failed_writes(tmp_path, message, reason):
    from cnnstudio.core.errors import DatasetError
    from cnnstudio.core.tf import tf

    error = tf().errors.ResourceExhaustedError(None, None, message)
    assert str(atomic.disk_failure(tmp_path, error)) == f"{tmp_path}: {reason}"
    # a file TensorFlow could not read is no failed write, nor is the studio's own refusal
    assert atomic.disk_failure(tmp_path, tf().errors.PermissionDeniedError(None, None, "Permission denied")) is None
    assert atomic.disk_failure(tmp_path, DatasetError("x: No space left on device")) is None


def test_weights_built_in_memory_restore_exactly_what_keras_saves(tmp_path):
    """The best epoch's weights are written from bytes built in memory (a full disk cannot crash
    HDF5 then): they load back into the same weights, through Keras' private saving API and
    through the public save_weights that stands in when that API changes."""
    import numpy as np

    from cnnstudio.core.tf import keras, savefile

    K = keras()
    inputs = K.Input((4,))
    model = K.Model(inputs, K.layers.Dense(3)(K.layers.Dense(5, activation="relu")(inputs)))
    assert any(np.any(w != 0) for w in model.get_weights())
    for name, build in (("memory", savefile.weights_h5_bytes), ("file", savefile._through_a_file)):
        path = tmp_path / f"{name}.weights.h5"
        path.write_bytes(build(model))
        other = K.models.clone_model(model)
        other.load_weights(path)
        for a, b in zip(model.get_weights(), other.get_weights()):
            np.testing.assert_array_equal(a, b)
