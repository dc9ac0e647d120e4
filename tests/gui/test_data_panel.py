"""The Data panel: scanning, classes, problems, thumbnails, split and the augmentation preview."""

from pathlib import Path

import pytest
from helpers import drop_paths
from PySide6.QtCore import QSize, Qt

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.data.dataset import DatasetIndex, ImageItem
from cnnstudio.core.model.spec import AugmentSpec
from cnnstudio.gui.panels.data import DataPanel
from cnnstudio.gui.session import Session
from cnnstudio.gui.widgets import common as widgets

TIMEOUT = 60_000


@pytest.fixture
def panel(qtbot, shown_errors, wait_for_workers):
    panel = DataPanel(Session(load_registry()))
    qtbot.addWidget(panel)
    panel.resize(1200, 760)
    panel.show()
    yield panel
    panel.loader.forget_pending()
    assert panel.loader.wait()
    wait_for_workers()


def load(qtbot, panel, folder):
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        panel.load_folder(folder)


def test_loading_a_folder_shows_classes_counts_chart_and_problems(qtbot, panel, tiny_dataset):
    load(qtbot, panel, tiny_dataset)
    session = panel.session
    assert session.dataset_root == tiny_dataset and len(session.index.items) == 15
    assert panel.class_rows() == [("blue", 4), ("green", 5), ("red", 6)]
    assert "15 images in 3 classes" in panel.summary_label.text()
    assert not panel.progress.isVisible() and session.activity() == ""

    problems = panel.problem_rows()
    broken = [p for p in problems if p[1] == "red/broken.png"]
    assert broken and broken[0][0] == "error"
    assert {p[1] for p in problems if p[0] == "warning"} >= {"blue", "green", "red"}  # fewer than 10 images
    assert panel.tabs.tabText(panel.problems_tab) == f"Problems ({len(problems)})"

    bars = [i for i in panel.chart.getPlotItem().items if type(i).__name__ == "BarGraphItem"]
    assert len(bars) == 1 and list(bars[0].opts["height"]) == [4, 5, 6]


def test_dropping_a_folder_on_the_panel_scans_it(qtbot, panel, tiny_dataset):
    with qtbot.waitSignal(panel.scanFinished, timeout=TIMEOUT):
        assert drop_paths(panel, [tiny_dataset])
    assert [name for name, _ in panel.class_rows()] == ["blue", "green", "red"]


def test_show_in_folder_opens_the_problem_files_folder(qtbot, panel, tiny_dataset, monkeypatch):
    load(qtbot, panel, tiny_dataset)
    opened = []
    monkeypatch.setattr(widgets, "show_in_folder", opened.append)
    for i in range(panel.problems.topLevelItemCount()):
        if panel.problems.topLevelItem(i).text(1) == "red/broken.png":
            panel.problems.setCurrentItem(panel.problems.topLevelItem(i))
    panel.show_button.click()
    assert opened == [tiny_dataset / "red" / "broken.png"]


def test_split_controls_set_the_session_split_and_the_per_class_counts(qtbot, panel, tiny_dataset):
    load(qtbot, panel, tiny_dataset)
    session = panel.session
    with qtbot.waitSignal(session.splitChanged):
        panel.val_slider.setValue(20)
    panel.test_spin.setValue(0)
    panel.seed_spin.setValue(3)
    assert (session.val_fraction, session.test_fraction, session.seed) == (0.2, 0.0, 3)
    assert panel.val_spin.value() == 20
    table = panel.class_table
    for row in range(table.rowCount()):
        images, train, val, test = (int(table.item(row, c).text()) for c in range(1, 5))
        assert train + val + test == images and test == 0
    assert panel.split_label.text().startswith("Train ")
    session.set_split(0.1, 0.3, 5)  # e.g. a project was opened
    assert (panel.val_spin.value(), panel.test_slider.value(), panel.seed_spin.value()) == (10, 30, 5)


def test_thumbnails_load_lazily_per_class(qtbot, panel, tiny_dataset):
    load(qtbot, panel, tiny_dataset)
    model = panel.thumbnails
    assert model.rowCount() == 15
    panel.class_table.selectRow(2)  # red
    assert panel.class_combo.currentText() == "red (6)"
    assert model.rowCount() == 6
    first = model.path(0)
    assert Path(first).parent.name == "red"
    qtbot.waitUntil(lambda: first in panel.loader._cache, timeout=10_000)
    pixmap = model.data(model.index(0), Qt.ItemDataRole.DecorationRole)
    assert pixmap.size() == QSize(96, 96)  # 16 px images are enlarged to be seen


def test_thousands_of_images_only_load_what_is_visible(qtbot, panel, tmp_path, monkeypatch):
    index = DatasetIndex(tmp_path, ["a", "b"], [ImageItem(f"a/{i:05d}.png", i % 2, 16, 16) for i in range(5000)])
    requested = set()
    real_get = panel.loader.get
    monkeypatch.setattr(panel.loader, "get", lambda path: requested.add(path) or real_get(path))
    panel.session.set_dataset(tmp_path, index)
    assert panel.thumbnails.rowCount() == 5000
    qtbot.waitUntil(lambda: len(requested) > 0, timeout=10_000)
    qtbot.wait(200)  # every visible thumbnail asked for, on a slow machine too
    assert 0 < len(requested) < 500
    panel.grid.verticalScrollBar().setValue(panel.grid.verticalScrollBar().maximum())
    qtbot.waitUntil(lambda: str(tmp_path / "a" / "04999.png") in requested, timeout=10_000)


def test_augmentation_preview_shows_the_image_several_times(qtbot, panel, tiny_dataset):
    load(qtbot, panel, tiny_dataset)
    spec = panel.session.spec
    spec.augmentation = AugmentSpec(flip="horizontal", rotation=0.1)
    panel.session.set_spec(spec)
    with qtbot.waitSignal(panel.previewReady, timeout=TIMEOUT):
        panel.tabs.setCurrentIndex(panel.preview_tab)
    assert all(not cell.pixmap().isNull() for cell in panel.preview_cells)
    assert "blue_00.png" in panel.preview_label.text() and "64 px" in panel.preview_label.text()


def _bars(panel):
    return [i for i in panel.chart.getPlotItem().items if type(i).__name__ == "BarGraphItem"]


def write_png(path, colour, seed=0):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (16, 16), tuple(c + seed for c in colour)).save(path)


def _loose_images(root):
    for i in range(3):
        write_png(root / f"photo_{i}.png", (200, 30, 30), seed=i)
    return root


def _one_class(root):
    for i in range(3):
        write_png(root / "cats" / f"cat_{i}.png", (200, 30, 30), seed=i)
    return root


def _empty_classes(root):
    (root / "cats").mkdir(parents=True)
    (root / "dogs").mkdir()
    (root / "dogs" / "notes.txt").write_text("not an image")
    return root


@pytest.mark.parametrize("make, reason", [
    (_loose_images, "No class sub-folders: put each class's images in its own folder"),
    (_one_class, "One class only (cats)"),
    (_empty_classes, "No images: 2 class folders but none holds an image"),
])
def test_an_invalid_dataset_shows_why_in_place_of_the_previous_ones_classes(qtbot, panel, tiny_dataset, tmp_path,
                                                                            make, reason, shown_errors):
    load(qtbot, panel, tiny_dataset)
    assert panel.error.isHidden() and len(_bars(panel)) == 1 and "Train" in panel.split_label.text()

    load(qtbot, panel, make(tmp_path / "bad"))
    assert not panel.error.isHidden() and panel.error.text().startswith(reason)
    assert "\n" not in panel.error.text()
    # Nothing of the previous dataset stays: no classes, no bars, no split counts.
    assert panel.class_rows() == [] and _bars(panel) == [] and panel.chart.isHidden()
    assert panel.split_label.text() == "" and panel.summary_label.text() == ""
    assert panel.session.dataset_refusal() == panel.error.text() and shown_errors == []

    load(qtbot, panel, tiny_dataset)  # a valid one again: the banner goes
    assert panel.error.isHidden() and len(panel.class_rows()) == 3 and len(_bars(panel)) == 1
    assert not panel.chart.isHidden()


def test_an_unreadable_folder_replaces_the_previous_dataset_with_the_reason(qtbot, panel, tiny_dataset, tmp_path,
                                                                           monkeypatch, shown_errors):
    import cnnstudio.core.data.dataset as dataset

    load(qtbot, panel, tiny_dataset)
    locked = tmp_path / "locked"
    locked.mkdir()
    real_scandir = dataset.os.scandir

    def scandir(path="."):
        if Path(path) == locked:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(dataset.os, "scandir", scandir)
    with qtbot.waitSignal(panel.scanFailed, timeout=TIMEOUT):
        panel.load_folder(locked)
    assert panel.error.text() == f"{locked}: cannot be read (Permission denied)"
    assert panel.session.index is None and panel.session.dataset_root == locked
    assert panel.class_rows() == [] and _bars(panel) == [] and panel.split_label.text() == ""
    assert panel.session.dataset_refusal() == panel.error.text() and shown_errors == []
