import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from helpers import make_session
from PySide6.QtCore import Qt
from tinydata import make_dataset

from cnnstudio.core.errors import StudioError
from cnnstudio.core.model.bundle import Bundle
from cnnstudio.core.training.trainer import Trainer
from cnnstudio.gui.panels.train import TrainPanel
from cnnstudio.gui.qthreading import TrainWorker

TIMEOUT = 180_000  # ms; the first run in a process also imports TensorFlow


@pytest.fixture
def panel(qtbot, tmp_path, data_dir):
    session = make_session(make_dataset(tmp_path / "data"))
    panel = TrainPanel(session)
    qtbot.addWidget(panel)
    yield panel
    panel.stop()
    assert panel.wait(60_000)


def test_form_follows_and_sets_the_session_config(panel):
    session = panel.session
    panel.epochs.setValue(7)
    panel.optimizer.setCurrentText("sgd")
    panel.class_weight.setCurrentIndex(panel.class_weight.findData("auto"))
    assert (session.train_config.epochs, session.train_config.optimizer) == (7, "sgd")
    assert session.train_config.class_weight == "auto"
    session.set_train_config(dataclasses.replace(session.train_config, batch_size=8, patience=0))
    assert panel.batch_size.value() == 8
    assert panel.patience.text() == "off"


def test_training_draws_one_point_per_epoch_and_saves_the_run(qtbot, panel):
    session = panel.session
    progress = []
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT) as blocker:
        worker = panel.start()
        assert worker is not None and panel.is_training()
        assert not panel.start_button.isEnabled()
        worker.progress.connect(lambda *args: progress.append((args, panel.progress_label.text())))
    run_dir = Path(blocker.args[0])

    # Training started at once: images are decoded as the first epoch goes, with no step before it.
    assert progress == [] and "Decoding images" not in panel.log.toPlainText()

    epochs = session.train_config.epochs
    for curves in panel.curves.values():
        assert curves.train.n == epochs and curves.val.n == epochs
        assert list(curves.train.x) == [1.0, 2.0, 3.0]
        x, _ = curves.train.item.getData()
        assert len(x) == epochs
        assert curves.current.n == 0  # the dotted trace is only for the epoch under way
    assert (run_dir / "metrics.json").is_file()
    assert (run_dir / "model" / "model.keras").is_file()
    assert run_dir.parent == session.runs_folder()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed"
    assert session.runs[-1]["path"] == str(run_dir)
    assert session.runs[-1]["metrics"]["test_accuracy"] == metrics["test_accuracy"]
    assert session.current_run == str(run_dir)
    assert not panel.is_training() and panel.start_button.isEnabled()
    assert "Test accuracy" in panel.log.toPlainText()
    assert "accuracy" in panel.result_label.text().lower()
    assert session.job == ""


def test_stop_mid_epoch_ends_within_a_few_batches_and_keeps_a_usable_model(qtbot, panel, monkeypatch):
    session = panel.session
    session.set_train_config(dataclasses.replace(session.train_config, epochs=200, batch_size=2))
    checks = []  # one should_stop() call per training batch, on the training thread
    real = TrainWorker.should_stop

    def counting(self):
        checks.append(1)
        return real(self)

    monkeypatch.setattr(TrainWorker, "should_stop", counting)
    worker = panel.start()
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT) as blocker:
        qtbot.waitUntil(lambda: panel._batch > 0, timeout=TIMEOUT)  # the first batch event
        at_stop = len(checks)
        qtbot.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    result = blocker.args[0]
    assert result.reason == "cancelled"
    assert len(checks) - at_stop <= 3
    assert result.epochs_run < 200
    qtbot.waitUntil(lambda: not panel.is_training())
    assert panel.start_button.isEnabled()

    bundle = Bundle(Path(result.run_dir) / "model")
    image = next(session.index.root.rglob("*.png"))
    (prediction,) = bundle.predict_paths([image], top_k=2)
    assert prediction.error is None and len(prediction.top) == 2


def test_an_exception_in_the_worker_shows_an_error_and_the_panel_starts_again(qtbot, panel, monkeypatch, shown_errors,
                                                                             tmp_path):
    def boom(self, resume=False, fallback=None):
        raise RuntimeError("boom in the trainer")

    with monkeypatch.context() as patch:  # undoes this patch alone, not the private folders of the test
        patch.setattr(Trainer, "run", boom)
        # The trainer fails at once, possibly before a waitSignal could connect: wait for what the user sees.
        assert panel.start() is not None
        qtbot.waitUntil(lambda: bool(shown_errors), timeout=TIMEOUT)
        title, message, details = shown_errors[0]
        assert "boom in the trainer" in message
        assert "Traceback" in details and "RuntimeError" in details
        assert not panel.is_training() and panel.start_button.isEnabled()
        assert panel.session.job == ""

    panel.session.set_train_config(dataclasses.replace(panel.session.train_config, epochs=1))
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT):
        panel.start()
    assert len(panel.session.runs) == 1
    assert Path(panel.session.runs[0]["path"]).is_relative_to(tmp_path)  # in the test's folders, not the user's


def test_a_studio_error_reads_as_is(qtbot, panel, monkeypatch):
    def refuse(self, resume=False, fallback=None):
        raise StudioError("data: the training split is empty")

    monkeypatch.setattr(Trainer, "run", refuse)
    s = panel.session
    worker = TrainWorker(s.index, s.make_split(), s.spec, s.train_config, panel.session.runs_folder() / "r", s.registry)
    with qtbot.waitSignal(worker.errored, timeout=TIMEOUT) as blocker:
        worker.start()
    assert blocker.args == ["data: the training split is empty", ""]
    assert worker.wait(10)


def test_start_without_a_dataset_explains_why(qtbot, data_dir, shown_errors):
    panel = TrainPanel(make_session(None))
    qtbot.addWidget(panel)
    assert not panel.start_button.isEnabled()
    assert panel.start() is None
    assert shown_errors and "dataset" in shown_errors[0][1].lower()
    assert not panel.is_training()


def test_fine_tuning_draws_one_continuous_curve_with_a_marker_where_the_second_phase_begins(
        qtbot, tmp_path, data_dir):
    from cnnstudio.core.model.spec import HeadSpec, ModelSpec

    session = make_session(make_dataset(tmp_path / "data", size=32), mode="finetune", epochs=2,
                           finetune_epochs=1)
    session.set_spec(ModelSpec("vgg16", {"weights": "none"}, HeadSpec("avg", [8], 0.0), input_size=32))
    panel = TrainPanel(session)
    qtbot.addWidget(panel)
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT):
        panel.start()
    for curves in panel.curves.values():
        assert list(curves.train.x) == [1.0, 2.0, 3.0]  # two head epochs, then one of fine-tuning
        assert [line.value() for line in curves.markers] == [2.5]
    assert "Fine-tuning from epoch 3" in panel.log.toPlainText()

    # Reopened later (a new window on the same project): the run's curves and results come from its folder.
    again = TrainPanel(session)
    qtbot.addWidget(again)
    assert again.progress_label.text() == f"Showing run {panel.run_dir.name}"
    for key, curves in again.curves.items():
        live = panel.curves[key]
        assert list(curves.train.x) == list(live.train.x) and list(curves.val.x) == list(live.val.x)
        np.testing.assert_allclose(curves.train.y, live.train.y, rtol=1e-5)
        np.testing.assert_allclose(curves.val.y, live.val.y, rtol=1e-5)
        assert [line.value() for line in curves.markers] == [2.5]
    assert again.result_label.text() == panel.result_label.text()
    assert "Accuracy" in again.result_label.text()
    session.select_run("")  # nothing selected: what is on show stays
    assert list(again.curves["loss"].train.x) == [1.0, 2.0, 3.0]


def test_the_epoch_axis_has_whole_numbers_only(panel):
    axis = panel.loss_plot.getAxis("bottom")
    for low, high, pixels in ((0, 4, 400), (0, 1, 400), (0.98, 3.02, 800), (0, 300, 500)):
        ticks = [v for _spacing, values in axis.tickValues(low, high, pixels) for v in values]
        assert ticks and all(float(v).is_integer() for v in ticks), (low, high, ticks)
    assert {1.0, 2.0, 3.0, 4.0} <= {v for _s, values in axis.tickValues(0, 4, 400) for v in values}


def test_a_full_disk_ends_the_run_with_a_one_line_error(qtbot, panel, monkeypatch, shown_errors):
    """The run's folder fills up at the first checkpoint: one line naming the file and the cause
    (no details to unfold, no crash), and the panel is ready to start again."""
    import re

    from faultdisk import small_disk

    panel.session.set_train_config(dataclasses.replace(panel.session.train_config, epochs=2))
    with small_disk(panel.session.runs_folder(), "3m", monkeypatch) as disk:
        disk.fill(room=16 << 10)  # the run folder and its config.json, not a model
        assert panel.start() is not None
        qtbot.waitUntil(lambda: bool(shown_errors), timeout=TIMEOUT)
        (title, message, details), = shown_errors
        assert title == "Training failed" and details == ""
        assert re.fullmatch(re.escape(str(panel.run_dir / "checkpoints")) + r"/[\w.-]+: no space left on device",
                            message), message
        qtbot.waitUntil(lambda: not panel.is_training(), timeout=TIMEOUT)
        assert panel.start_button.isEnabled() and panel.session.job == ""


class Killed(BaseException):
    """What the process dies of, at a chosen step of a checkpoint's write."""


def killed_run(session, monkeypatch, epochs: int = 4) -> Path:
    """A run that crashed while its third epoch was saved: two epochs committed, nothing finished."""
    from coretrain import train

    from cnnstudio.core.runs import checkpoint

    run_dir = session.runs_folder() / "interrupted"
    state = run_dir / "checkpoints" / "state.json"

    def kill_in_the_third_epoch(step):
        if step == "last" and state.exists() and json.loads(state.read_text())["epochs_done"] == 2:
            raise Killed  # the third epoch's model is written, its state never is

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "_between", kill_in_the_third_epoch)
        with pytest.raises(Killed):
            train(session.index.root, run_dir, epochs=epochs, batch_size=4)
    assert checkpoint.read(checkpoint.RunPaths(run_dir)).epochs_done == 2 and not (run_dir / "metrics.json").exists()
    return run_dir


def test_resume_continues_an_interrupted_run_from_its_last_saved_epoch(qtbot, panel, monkeypatch, shown_errors):
    session = panel.session
    run_dir = killed_run(session, monkeypatch)

    session.select_run(str(run_dir))
    assert panel.progress_label.text() == "Run interrupted did not finish; Resume\u2026 continues it"
    assert panel.resume_button.isEnabled()
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT) as blocker:
        worker = panel.resume(run_dir)
        assert worker is not None and worker.resume and panel.is_training()
        assert not panel.resume_button.isEnabled() and not panel.start_button.isEnabled()
        assert session.job_refusal()  # the session's one job slot is taken
    assert blocker.args == [str(run_dir)]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_run"] == 4
    assert "Resuming from epoch 3" in panel.log.toPlainText()
    for curves in panel.curves.values():
        assert list(curves.train.x) == [1.0, 2.0, 3.0, 4.0]  # the saved epochs, then the two trained now
    assert session.job == "" and panel.resume_button.isEnabled()

    assert panel.resume(run_dir) is None  # finished: nothing to resume
    assert shown_errors[-1][:2] == ("Cannot resume the run",
                                    f"{run_dir}: the run finished; Run Again (Experiments) trains it anew")


def test_resume_of_a_damaged_checkpoint_asks_how_to_go_on(qtbot, panel, monkeypatch, shown_errors):
    from tinydata import truncate

    from cnnstudio.core.runs import checkpoint
    from cnnstudio.gui.panels import train

    run_dir = killed_run(panel.session, monkeypatch)
    last = checkpoint.read(checkpoint.RunPaths(run_dir)).last
    truncate(last, 0.5)
    kept = {f.name: f.read_bytes() for f in (run_dir / "checkpoints").iterdir()}
    asked = []
    answer = {"choice": None}

    def ask(parent, error):
        asked.append(error)
        return answer["choice"]

    monkeypatch.setattr(train, "ask_fallback", ask)
    assert panel.resume(run_dir) is None  # cancelled: nothing changes
    (error,) = asked
    assert error.path == last and "the checkpoint recorded" in error.reason and error.fallbacks == ("best", "fresh")
    assert {f.name: f.read_bytes() for f in (run_dir / "checkpoints").iterdir()} == kept
    assert not panel.is_training() and not shown_errors

    answer["choice"] = "best"
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT):
        worker = panel.resume(run_dir)
        assert worker is not None and worker.fallback == "best"
    assert json.loads((run_dir / "metrics.json").read_text())["epochs_run"] == 4
    assert "Going on from the best epoch" in panel.log.toPlainText()


def test_device_precision_and_xla_choices_survive_a_restart_and_reach_the_run(qtbot, panel, tmp_path):
    from helpers import registry

    from cnnstudio.core.project import PROJECT_SUFFIX
    from cnnstudio.gui.session import Session

    panel.set_gpus(["Tesla T4", "Tesla T4"])  # as a machine with two GPUs offers them
    assert [panel.devices.itemText(i) for i in range(panel.devices.count())] == [
        "CPU", "GPU 0 (Tesla T4)", "GPU 1 (Tesla T4)", "All GPUs (2)"]
    panel.devices.setCurrentIndex(2)
    panel.precision.setCurrentIndex(panel.precision.findData("mixed"))
    panel.jit.setCurrentIndex(panel.jit.findData("off"))
    c = panel.session.train_config
    assert (c.devices, c.precision, c.jit) == ("gpu:1", "mixed", "off")

    path = tmp_path / f"devices{PROJECT_SUFFIX}"
    panel.session.save_project(path)
    again = Session(registry())
    again.load_project(path)
    reopened = TrainPanel(again)
    qtbot.addWidget(reopened)
    reopened.set_gpus(["Tesla T4", "Tesla T4"])
    assert reopened.devices.currentText() == "GPU 1 (Tesla T4)"
    assert (reopened.precision.currentData(), reopened.jit.currentData()) == ("mixed", "off")
    reopened.set_gpus([])  # a machine without that GPU: the choice is kept and shown as the settings' own
    assert reopened.devices.currentText() == "gpu:1 (from the settings)"

    panel.set_gpus([])  # this machine: the CPU alone
    assert [panel.devices.itemText(i) for i in range(panel.devices.count())] in (["CPU"], ["CPU", "gpu:1 (from the settings)"])
    panel.devices.setCurrentIndex(0)
    panel.precision.setCurrentIndex(panel.precision.findData("float32"))
    with qtbot.waitSignal(panel.trainingFinished, timeout=TIMEOUT) as blocker:
        assert panel.start() is not None
    run = Path(blocker.args[0])
    config = json.loads((run / "config.json").read_text())
    assert (config["train"]["devices"], config["train"]["precision"], config["train"]["jit"]) == ("auto", "float32", "off")
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["compute"]["jit"] is False and metrics["compute"]["replicas"] == 1
    assert "float32 \u00b7 XLA off" in panel.result_label.text()


def test_small_losses_read_as_they_are_with_no_scaled_axis(qtbot):
    """A loss of 0.0007 is written 0.0007 on its axis, not 0.7 under a "(x0.001)" label."""
    from cnnstudio.gui.widgets.plots import counted_plot, style_plot

    plot = counted_plot()
    qtbot.addWidget(plot)
    style_plot(plot)
    plot.setLabel("left", "loss")
    plot.plot([1, 2, 3], [0.0007, 0.0008, 0.0009])
    plot.resize(400, 300)
    plot.show()
    qtbot.waitExposed(plot)
    qtbot.wait(50)
    axis = plot.getAxis("left")
    assert "x0.001" not in axis.labelString() and "×" not in axis.labelString()
    assert axis.autoSIPrefixScale == 1.0


def test_the_legends_sit_out_of_the_data_and_the_reliability_diagram_is_square(qtbot, panel):
    """Curves near 1.0 are not hidden under a legend; the calibration diagonal runs at 45 degrees."""
    from cnnstudio.gui.widgets.plots import ReliabilityPlot

    panel.show()
    qtbot.waitExposed(panel)
    for plot in (panel.loss_plot, panel.acc_plot):
        assert plot.getPlotItem().legend is None  # nothing drawn over the curves
    text = panel.legend_label.text()
    assert all(name in text for name in ("training", "validation", "current epoch"))
    assert panel.legend_label.isVisible()

    diagram = ReliabilityPlot()
    qtbot.addWidget(diagram)
    diagram.resize(600, 300)
    diagram.show()
    qtbot.waitExposed(diagram)
    box = diagram.getPlotItem().getViewBox()
    (x0, x1), (y0, y1) = box.viewRange()
    width, height = box.width(), box.height()
    assert abs((x1 - x0) / width - (y1 - y0) / height) < 1e-6 * (x1 - x0) / width  # one unit is as long both ways


def test_a_dataset_without_class_folders_disables_start_with_the_reason_and_makes_no_run_folder(
        qtbot, tmp_path, data_dir, shown_errors):
    from PIL import Image

    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(3):
        Image.new("RGB", (16, 16), (10 * i, 0, 0)).save(loose / f"photo_{i}.png")
    panel = TrainPanel(make_session(loose))
    qtbot.addWidget(panel)
    reason = "No class sub-folders: put each class's images in its own folder"
    assert not panel.start_button.isEnabled()
    assert panel.start_button.toolTip() == f"Cannot start: {reason}"
    assert panel.ready_label.text() == reason + "."
    assert panel.start() is None and not panel.is_training()
    assert shown_errors == [("Cannot start training", reason, "")]
    runs = panel.session.runs_folder()
    assert not runs.exists() or not any(runs.iterdir())  # no empty run folder left behind


def test_after_a_failed_run_a_valid_dataset_brings_the_status_back_to_idle(qtbot, panel, monkeypatch, shown_errors,
                                                                         tmp_path):
    from cnnstudio.core.data.dataset import scan_dataset

    def boom(self, resume=False, fallback=None):
        raise RuntimeError("boom in the trainer")

    monkeypatch.setattr(Trainer, "run", boom)
    assert panel.start() is not None
    qtbot.waitUntil(lambda: bool(shown_errors) and not panel.is_training(), timeout=TIMEOUT)
    assert panel.progress_label.text() == "Training failed"
    other = make_dataset(tmp_path / "other")
    panel.session.set_dataset(other, scan_dataset(other))
    assert panel.progress_label.text() == "Idle" and panel.start_button.isEnabled()
