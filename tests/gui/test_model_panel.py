"""The Model panel: presets and backbones, generated forms, the block editor, validation, summary."""

import pytest
from PySide6.QtWidgets import QCheckBox, QComboBox, QDoubleSpinBox, QLineEdit, QSpinBox

from cnnstudio.builtins.manager import PluginManager, load_registry
from cnnstudio.gui.panels.model import BlockEditor, ModelPanel
from cnnstudio.gui.session import Session
from cnnstudio.plugins import BackboneProvider, Param

TIMEOUT = 120_000  # ms; the first summary in a process also imports TensorFlow


@pytest.fixture
def panel(qtbot, shown_errors, wait_for_workers):
    panel = ModelPanel(Session(load_registry()))
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    yield panel
    wait_for_workers()


def summary_after(qtbot, panel, change):
    """Make ``change`` and return the summary of the spec it leads to."""
    with qtbot.waitSignal(panel.summaryReady, timeout=TIMEOUT) as blocker:
        change()
    return blocker.args[0]


def test_the_session_spec_is_shown_and_summarized(qtbot, panel):
    summary = summary_after(qtbot, panel, panel.build_summary)
    assert panel.chooser.currentData() == "backbone:scratch"
    assert panel.block_editor is not None and len(panel.block_editor.value()) == 2
    names = [row["name"] for row in summary["layers"]]
    assert names[0] == "image" and "backbone" in names and names[-1] == "predictions"
    backbone = summary["layers"][names.index("backbone")]
    assert any(child["type"] == "Conv2D" for child in backbone["children"])
    counts = summary["counts"]
    assert counts["total"] == counts["trainable"] + counts["frozen"] > 0
    assert panel.count_labels["total"].text() == f"{counts['total']:,}"
    assert panel.layers.topLevelItemCount() == len(summary["layers"])


def test_changing_a_block_parameter_changes_the_parameter_count(qtbot, panel):
    before = summary_after(qtbot, panel, lambda: panel.select_model("seed-model-1"))["counts"]["total"]
    editor = panel.block_editor.editor(0, "filters")
    assert isinstance(editor.spin, QSpinBox)
    after = summary_after(qtbot, panel, lambda: editor.spin.setValue(48))["counts"]["total"]
    assert after != before
    assert panel.session.spec.params["blocks"][0]["filters"] == 48
    assert panel.session.spec.preset == "seed-model-1"


def test_block_editor_adds_removes_and_reorders_blocks(qtbot, panel):
    panel.select_model("seed-model-2")  # blocks of 32, 64 and 128 filters
    editor = panel.block_editor
    blocks = editor.value()
    editor.table.setCurrentCell(0, 0)
    editor.add_button.click()  # a copy of block 1 after it
    assert [b["filters"] for b in panel.session.spec.params["blocks"]] == [32, 32, 64, 128]
    editor.table.setCurrentCell(3, 0)
    editor.up_button.click()
    assert [b["filters"] for b in panel.session.spec.params["blocks"]] == [32, 32, 128, 64]
    assert editor.table.currentRow() == 2
    editor.remove_button.click()
    editor.table.setCurrentCell(0, 0)
    editor.remove_button.click()
    assert panel.session.spec.params["blocks"] == blocks[:2]  # [32, 64]
    editor.editor(0, "batch_norm").check.setChecked(True)
    assert panel.session.spec.params["blocks"][0]["batch_norm"] is True


def test_choosing_a_pretrained_backbone_shows_its_form_mode_and_frozen_counts(qtbot, panel):
    panel.select_model("vgg16")
    assert set(panel.param_editors) == {"weights"}  # the mode, not a checkbox, decides what trains
    assert panel.block_editor is None
    assert panel.transfer_box.isVisible()
    assert panel.param_editors["weights"].value() == "imagenet"
    assert "ImageNet (pretrained)" in panel.weights_note.text()
    combo = panel.param_editors["weights"].combo
    combo.setCurrentIndex(combo.findData("none"))  # as the user picks it
    # Random weights train the whole network: a frozen random base would learn nothing.
    assert panel.session.train_config.mode == "scratch" and panel.mode_combo.currentData() == "scratch"
    assert panel.session.undo_text() == "Random Weights"
    panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("extract"))  # the user may still freeze it
    summary = summary_after(qtbot, panel, lambda: panel.input_size.setValue(32))  # small: fast to build
    assert "not pretrained" in panel.weights_note.text()
    assert panel.session.spec.input_size == 32
    assert summary["counts"]["frozen"] == 14_714_688  # VGG16's convolutional base
    assert [r["state"] for r in summary["blocks"]] == ["frozen"] * 5 + ["trainable"]
    assert panel.blocks.topLevelItemCount() == 6 and panel.blocks.topLevelItem(0).text(3) == "frozen"

    scratch = summary_after(
        qtbot, panel, lambda: panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("scratch")))
    assert panel.session.train_config.mode == "scratch"
    assert scratch["counts"]["frozen"] == 0 and scratch["counts"]["total"] == summary["counts"]["total"]
    assert not panel.param_editors["weights"].isEnabled()

    fine = summary_after(
        qtbot, panel, lambda: panel.mode_combo.setCurrentIndex(panel.mode_combo.findData("finetune")))
    assert panel.ft_blocks.isVisible()
    states = {r["block"]: r["state"] for r in fine["blocks"]}
    assert states["block5"] == "frozen, then trainable" and states["block4"] == "frozen"
    two = summary_after(qtbot, panel, lambda: panel.ft_blocks.setValue(2))
    assert panel.session.train_config.finetune_blocks == 2
    assert {r["block"]: r["state"] for r in two["blocks"]}["block4"] == "frozen, then trainable"
    assert two["finetune_counts"]["trainable"] > fine["finetune_counts"]["trainable"]
    assert "fine-tuning then trains" in panel.summary_status.text()


def test_the_mode_suggestion_follows_the_dataset_and_augmentation_turns_the_bottleneck_off(
        qtbot, panel, tiny_dataset):
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.model.spec import AugmentSpec

    panel.select_model("vgg16")
    assert panel.mode_hint.text() == "Open a dataset for a suggestion."
    panel.session.set_dataset(tiny_dataset, scan_dataset(tiny_dataset), touch=False)
    assert panel.mode_hint.text().startswith("Suggested for this dataset: Feature extraction. 15 images")
    panel.bottleneck.setChecked(True)
    assert panel.session.train_config.bottleneck is True
    spec = panel.session.spec
    spec.augmentation = AugmentSpec(flip="horizontal")
    panel.session.set_spec(spec)
    assert not panel.bottleneck.isEnabled() and "augmentation is on" in panel.bottleneck_note.text()


def test_an_invalid_spec_shows_the_message_in_place_and_is_not_applied(qtbot, panel):
    before = panel.session.spec
    panel.input_size.setValue(4)
    assert panel.error_text() == "input size 4 is smaller than scratch's minimum of 8 px"
    assert panel.session.spec == before
    panel.input_size.setValue(64)
    assert panel.error_text() == ""

    panel.dense_edit.setText("128, lots")
    panel.dense_edit.setModified(True)
    panel.dense_edit.editingFinished.emit()
    assert "whole numbers" in panel.error_text() and panel.session.spec == before
    panel.dense_edit.setText("256, 64")
    panel.dense_edit.setModified(True)
    panel.dense_edit.editingFinished.emit()
    assert panel.error_text() == "" and panel.session.spec.head.dense == [256, 64]


def test_head_and_augmentation_editors_set_the_spec(panel):
    panel.head_editors["pooling"].set_value("avg")
    panel.head_editors["pooling"].changed.emit()
    panel.aug_editors["flip"].combo.setCurrentIndex(panel.aug_editors["flip"].combo.findData("horizontal"))
    panel.aug_editors["zoom"].spin.setValue(0.1)
    spec = panel.session.spec
    assert (spec.head.pooling, spec.augmentation.flip, spec.augmentation.zoom) == ("avg", "horizontal", 0.1)


def test_a_plugin_backbone_gets_a_generated_form(qtbot, shown_errors, wait_for_workers):
    def build(params, input_size, registry):
        from cnnstudio.core.tf import keras

        K = keras()
        inputs = K.Input((input_size, input_size, 3))
        x = K.layers.Conv2D(params["width"], 3, name="conv")(inputs)
        return K.Model(inputs, x, name="backbone")

    manager = PluginManager(autoload=False)
    registry = manager.load()
    registry.add_backbone(BackboneProvider(
        id="toy", display_name="Toy", build=build, default_input_size=16, min_input_size=8,
        params=(
            Param("width", "int", 4, minimum=1, maximum=64),
            Param("gain", "float", 0.5, minimum=0.0, maximum=1.0, step=0.05),
            Param("fancy", "bool", False),
            Param("mode", "choice", "a", choices=("a", "b")),
            Param("note", "str", "hi"),
            Param("weights", "weights", "none"),
        ),
    ))
    panel = ModelPanel(Session(registry))
    qtbot.addWidget(panel)
    panel.select_model("toy")
    kinds = {name: type(e.findChild(QSpinBox) or e.findChild(QDoubleSpinBox) or e.findChild(QCheckBox)
                        or e.findChild(QComboBox) or e.findChild(QLineEdit)).__name__
             for name, e in panel.param_editors.items()}
    assert kinds == {"width": "QSpinBox", "gain": "QDoubleSpinBox", "fancy": "QCheckBox", "mode": "QComboBox",
                     "note": "QLineEdit", "weights": "QComboBox"}
    assert panel.input_size.value() == 16
    small = summary_after(qtbot, panel, panel.build_summary)["counts"]["total"]
    bigger = summary_after(qtbot, panel, lambda: panel.param_editors["width"].spin.setValue(8))
    assert bigger["counts"]["total"] > small
    panel.param_editors["mode"].combo.setCurrentIndex(1)
    assert panel.session.spec.params["mode"] == "b"
    wait_for_workers()


def test_block_editor_columns_come_from_the_block_schemas():
    editor = BlockEditor(load_registry())
    headers = [editor.table.horizontalHeaderItem(c).text() for c in range(editor.table.columnCount())]
    assert headers[0] == "Block"
    assert {"Filters", "Convolutions", "Kernel size", "Batch norm", "Pooling", "Dropout"} <= set(headers)


# -- where a pretrained backbone's weights come from, settled on the page ------------------------


@pytest.fixture
def served_weights(tmp_path, monkeypatch):
    """VGG16's ImageNet weights served from a ``file://`` origin (a small file saved here from a
    tiny model with random weights), Keras' cache a private folder: (registry, served file)."""
    import dataclasses
    import hashlib

    import keras

    from cnnstudio.core.model.weights import VGG16_FILES, WeightsFile

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    tiny = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    served = tmp_path / "origin" / VGG16_FILES[0].fname
    served.parent.mkdir()
    tiny.save_weights(tmp_path / "tiny.weights.h5")
    served.write_bytes((tmp_path / "tiny.weights.h5").read_bytes())
    digest = hashlib.md5(served.read_bytes()).hexdigest()
    registry = load_registry()
    vgg16 = registry.backbones["vgg16"]
    wf = WeightsFile(VGG16_FILES[0].fname, served.as_uri(), digest, served.stat().st_size)
    monkeypatch.setitem(registry.backbones, "vgg16", dataclasses.replace(vgg16, imagenet_weights=wf))
    return registry, served


def weights_panel(qtbot, registry):
    panel = ModelPanel(Session(registry))
    qtbot.addWidget(panel)
    panel.resize(1200, 800)
    panel.show()
    panel.select_model("vgg16")
    return panel


def test_a_backbone_says_its_weights_are_not_downloaded_and_downloads_them_in_place(
        qtbot, served_weights, shown_errors, wait_for_workers):
    from cnnstudio.core.model.weights import keras_cache_dir

    registry, served = served_weights
    panel = weights_panel(qtbot, registry)
    assert "not downloaded yet" in panel.weights_note.text()
    assert panel.download_button.isVisible() and panel.file_button.isVisible() and panel.random_button.isVisible()
    with qtbot.waitSignal(panel.weightsReady, timeout=TIMEOUT):
        panel.download_button.click()
        assert panel.weights_progress.isVisible() and not panel.download_button.isEnabled()
    cached = keras_cache_dir() / served.name
    assert cached.read_bytes() == served.read_bytes()  # fetched through Keras' get_file, into its cache
    assert "are in Keras' cache" in panel.weights_note.text() and served.name in panel.weights_note.text()
    assert not panel.download_button.isVisible() and not panel.weights_progress.isVisible()
    assert panel.session.spec.params["weights"] == "imagenet" and shown_errors == []
    wait_for_workers()


def test_a_failed_download_is_one_line_in_place_naming_no_command_line_flag(
        qtbot, served_weights, shown_errors, wait_for_workers):
    registry, served = served_weights
    served.unlink()  # the origin has nothing: as good as offline
    panel = weights_panel(qtbot, registry)
    with qtbot.waitSignal(panel.weightsFailed, timeout=TIMEOUT):
        panel.download_button.click()
    text = panel.weights_error.text()
    assert not panel.weights_error.isHidden() and "\n" not in text and "Traceback" not in text
    assert text.startswith("Cannot download the ImageNet weights of VGG16") and "--weights" not in text
    assert "choose a local weights file" in text and "random" in text
    assert shown_errors == []  # not a modal
    assert panel.download_button.isEnabled() and panel.random_button.isEnabled()
    wait_for_workers()


def test_a_chosen_weights_file_is_checked_before_it_is_used(qtbot, served_weights, tmp_path, monkeypatch,
                                                             shown_errors, wait_for_workers):
    import keras
    from PySide6.QtWidgets import QFileDialog

    registry, _ = served_weights
    panel = weights_panel(qtbot, registry)
    wrong = tmp_path / "tiny.weights.h5"  # a Keras weights file, of another architecture
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(wrong), ""))
    with qtbot.waitSignal(panel.weightsFailed, timeout=TIMEOUT):
        panel.file_button.click()
    assert str(wrong) in panel.weights_error.text() and "\n" not in panel.weights_error.text()
    assert panel.session.spec.params["weights"] == "imagenet"  # not trusted
    with qtbot.waitSignal(panel.weightsFailed, timeout=TIMEOUT):  # the Weights row's File... checks it too
        panel.param_editors["weights"].browse.click()
    assert panel.session.spec.params["weights"] == "imagenet" and panel.param_editors["weights"].value() == "imagenet"

    good = tmp_path / "vgg16_base.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3), name="backbone").save_weights(good)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(good), ""))
    with qtbot.waitSignal(panel.weightsReady, timeout=TIMEOUT):
        panel.file_button.click()
    assert panel.session.spec.params["weights"] == str(good)
    assert panel.weights_error.isHidden() and f"weights file {good}" in panel.weights_note.text()
    assert panel.param_editors["weights"].value() == str(good) and shown_errors == []
    wait_for_workers()


def test_random_weights_switch_to_training_the_whole_network_and_say_so(qtbot, served_weights, wait_for_workers):
    registry, _ = served_weights
    panel = weights_panel(qtbot, registry)
    assert panel.mode_combo.currentData() == "extract"
    panel.random_button.click()
    session = panel.session
    assert session.train_config.mode == "scratch" and session.spec.params["weights"] == "none"
    assert panel.mode_combo.currentText().startswith("From scratch")
    note = panel.weights_note.text()
    assert "not pretrained" in note and "whole network" in note and "ImageNet (pretrained)" not in note
    assert session.undo_text() == "Random Weights"
    wait_for_workers()
