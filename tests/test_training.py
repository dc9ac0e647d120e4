import csv
import json

import numpy as np
import pytest
from coretrain import RecordingState, tiny_spec, train
from tinydata import make_dataset, truncate

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.data.dataset import make_split, scan_dataset
from cnnstudio.core.errors import StudioError
from cnnstudio.core.model.bundle import Bundle
from cnnstudio.core.runs.folder import RunPaths
from cnnstudio.core.training.config import TrainConfig
from cnnstudio.core.training.trainer import Trainer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data"), per_class=15)


def test_run_writes_metrics_history_config_and_bundle(data, tmp_path):
    state = RecordingState()
    result = train(data, tmp_path / "run", state=state, epochs=3)
    p = RunPaths(tmp_path / "run")

    assert result.reason == "completed" and result.epochs_run == 3
    metrics = json.loads(p.metrics.read_text())
    for key in ("test_accuracy", "test_loss", "confusion_matrix", "class_names", "per_class", "epochs_run",
                "train_seconds", "macro_avg", "weighted_avg", "device"):
        assert key in metrics, key
    assert metrics["class_names"] == ["blue", "green", "red"]
    cm = np.array(metrics["confusion_matrix"])
    assert cm.shape == (3, 3) and cm.sum() == metrics["test_images"] == 9
    assert metrics["test_accuracy"] == pytest.approx(np.trace(cm) / cm.sum())
    assert metrics["per_class"]["red"]["support"] == cm[2].sum()
    # Colour classes are easy: three epochs learn them.
    assert metrics["test_accuracy"] >= 0.66

    with open(p.history) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(rows[0])

    config = json.loads(p.config.read_text())
    assert config["split"]["seed"] == 0
    assert sum(len(config["split"][k]) for k in ("train", "val", "test")) == 45
    assert config["spec"]["backbone"] == "scratch" and config["train"]["epochs"] == 3

    with open(p.predictions) as f:
        preds = list(csv.DictReader(f))
    assert len(preds) == 9 and all(r["true"] in ("blue", "green", "red") for r in preds)

    # events: one begin, one epoch event per epoch with all metrics, one end
    assert len(state.of("begin")) == 1 and len(state.of("end")) == 1
    epochs = state.of("epoch")
    assert [e.epoch for e in epochs] == [0, 1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(epochs[0].logs)
    assert epochs[-1].eta == pytest.approx(0, abs=1e-6) and epochs[0].eta > 0
    assert all(b.elapsed >= 0 and 1 <= b.batch <= b.steps for b in state.of("batch"))

    bundle = Bundle(p.bundle)
    assert bundle.class_names == ["blue", "green", "red"] and bundle.input_size == 16


def test_cancel_stops_at_next_batch_and_leaves_usable_model(data, tmp_path):
    state = RecordingState(stop_after_batches=1)
    result = train(data, tmp_path / "run", state=state, epochs=50, batch_size=2)
    assert result.reason == "cancelled"
    # Asked after the first batch: the second batch is the last one run.
    assert state.of("batch")[-1].batch == 2 and state.of("batch")[-1].steps == 14
    assert result.epochs_run == 0
    preds = Bundle(tmp_path / "run" / "model").predict_paths([str(next((data / "red").iterdir()))])
    assert preds[0].error is None and len(preds[0].top) == 3
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "cancelled"


def test_early_stopping_ends_before_the_last_epoch(data, tmp_path):
    # A learning rate this high makes the loss blow up, so validation loss stops improving.
    result = train(data, tmp_path / "run", epochs=30, patience=2, learning_rate=9.0, optimizer="sgd")
    assert result.reason == "early_stopped"
    assert result.epochs_run < 30


def test_resume_continues_from_last_checkpoint(data, tmp_path):
    run = tmp_path / "run"
    # Interrupt in the third epoch: two complete epochs are checkpointed.
    first = train(data, run, state=RecordingState(stop_after_epochs=2), epochs=4)
    assert first.reason == "cancelled" and first.epochs_run == 2
    state = json.loads((run / "checkpoints" / "state.json").read_text())
    assert state["epochs_done"] == 2
    early = first.history[:2]

    resumed = RecordingState()
    second = train(data, run, state=resumed, epochs=4, resume=True)
    assert second.reason == "completed" and second.epochs_run == 4
    assert [h["epoch"] for h in second.history] == [1, 2, 3, 4]
    assert second.history[:2] == early  # the first two epochs are kept, not retrained
    assert [e.epoch for e in resumed.of("epoch")] == [2, 3]
    assert json.loads((run / "metrics.json").read_text())["epochs_run"] == 4


def test_resume_without_checkpoint_is_a_clear_error(data, tmp_path):
    with pytest.raises(StudioError, match="nothing to resume"):
        train(data, tmp_path / "empty", resume=True)


def test_bad_file_met_mid_training_is_skipped_and_recorded(tmp_path):
    data = make_dataset(tmp_path / "data", per_class=15, fmt="JPEG")
    registry = load_registry()
    index = scan_dataset(data)
    split = make_split(index, 0.2, 0.2, seed=0)
    # The file was fine when scanned and breaks before training reads it.
    victim = index.abspath(split.train[0])
    truncate(victim, 0.3)
    result = Trainer(index, split, tiny_spec(), TrainConfig(epochs=2, batch_size=4, patience=0), tmp_path / "run",
                     registry).run()
    assert result.reason == "completed" and result.epochs_run == 2
    assert [d["path"] for d in result.skipped_files] == [str(victim)]
    assert "truncated" in result.skipped_files[0]["reason"]
    problems = json.loads((tmp_path / "run" / "problems.json").read_text())
    assert problems["skipped_during_training"][0]["path"] == str(victim)


def test_auto_class_weights_balance_an_imbalanced_split(tmp_path):
    data = make_dataset(tmp_path / "data", classes=("red", "green"), per_class=10)
    for extra in range(10, 30):  # red gets 30 images, green 10
        (data / "red" / f"red_{extra:03d}.png").write_bytes((data / "red" / "red_000.png").read_bytes())
    index = scan_dataset(data)
    split = make_split(index, 0.2, 0.2, seed=0)
    trainer = Trainer(index, split, tiny_spec(), TrainConfig(class_weight="auto"), tmp_path / "run", load_registry())
    weights = trainer._class_weight()
    labels = np.array(index.labels(split.train))
    counts = np.bincount(labels)
    # Each class contributes the same total weight.
    assert weights[0] * counts[0] == pytest.approx(weights[1] * counts[1])
    assert weights[0] > weights[1]  # green (label 0, 10 images) is the rarer class


def test_best_epoch_follows_the_monitored_metric(data, tmp_path):
    """With monitor=val_accuracy, metrics.json names the epoch of the best validation accuracy
    (the weights kept), not the one of the lowest validation loss."""
    result = train(data, tmp_path / "run", epochs=6, monitor="val_accuracy")
    metrics = json.loads(RunPaths(tmp_path / "run").metrics.read_text())
    history = result.history
    best = max(row["val_accuracy"] for row in history)
    expected = next(row["epoch"] for row in history if row["val_accuracy"] == best)  # the first of equals
    assert metrics["monitor"] == "val_accuracy" and metrics["best_epoch"] == expected


def test_the_best_epoch_rule_skips_epochs_that_diverged():
    from cnnstudio.core.runs.folder import best_row, improves

    nan = float("nan")
    history = [{"epoch": 1, "val_loss": nan, "val_accuracy": nan},
               {"epoch": 2, "val_loss": 0.9, "val_accuracy": 0.6},
               {"epoch": 3, "val_loss": 0.5, "val_accuracy": 0.6},
               {"epoch": 4, "val_loss": 0.7, "val_accuracy": 0.8}]
    assert best_row(history, "val_loss")["epoch"] == 3
    assert best_row(history, "val_accuracy")["epoch"] == 4
    assert best_row(history[:1], "val_loss") is None
    # A first epoch that diverged does not stop later ones from being kept as the best.
    assert improves(0.9, nan, "val_loss") and not improves(nan, 0.9, "val_loss")
    assert improves(0.7, 0.6, "val_accuracy") and not improves(0.6, 0.6, "val_accuracy")


@pytest.mark.parametrize("setting, value, says", [
    ("monitor", "val_acc", "monitor must be one of val_loss, val_accuracy, loss, accuracy, not 'val_acc'"),
    ("cache", "ram", "cache must be one of auto, memory, disk, none, not 'ram'"),
    ("momentum", 1.5, "momentum must be at least 0 and below 1, not 1.5"),
])
def test_settings_are_checked_before_a_run_starts(data, tmp_path, setting, value, says):
    """A misspelt monitor would train with nothing to pick the best epoch by: it is refused first."""
    with pytest.raises(StudioError) as exc:
        train(data, tmp_path / "run", **{setting: value})
    assert str(exc.value) == says
    assert not (tmp_path / "run").exists()


def test_a_plugin_reload_during_a_run_does_not_lose_its_results(data, tmp_path):
    """Help > Plugins reloads the registry while a training runs: the run keeps the providers
    it started with and still writes its results (the fine-tuning switch, summaries and the
    weights record all look its backbone up after the first epoch)."""
    from cnnstudio.builtins.manager import PluginManager

    manager = PluginManager(disabled=())
    registry = manager.load()

    class Reloading(RecordingState):
        def on_epoch_end(self, e):
            super().on_epoch_end(e)
            manager.reload()
            assert "scratch" in registry.backbones  # a reload leaves the live registry whole
            registry.clear()  # and a job must not depend on it: here it stays empty

    index = scan_dataset(data)
    split = make_split(index, 0.2, 0.2, seed=0)
    result = Trainer(index, split, tiny_spec(), TrainConfig(epochs=2, batch_size=4, patience=0),
                     tmp_path / "run", registry, state=Reloading()).run()
    assert result.reason == "completed" and RunPaths(tmp_path / "run").metrics.exists()
    assert Bundle(tmp_path / "run" / "model").class_names == index.class_names
