import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from helpers import drop_files, make_session, trained_run, write_broken_png

from cnnstudio.core.model.bundle import Bundle
from cnnstudio.gui.panels import predict as predict_panel
from cnnstudio.gui.panels.predict import PredictPanel

TIMEOUT = 60_000


@pytest.fixture
def run(tmp_path_factory):
    return trained_run(tmp_path_factory)


@pytest.fixture
def loads(monkeypatch):
    """Folders the panel loaded a bundle from."""
    seen = []

    class CountingBundle(Bundle):
        def __init__(self, folder):
            seen.append(folder)
            super().__init__(folder)

    monkeypatch.setattr(predict_panel, "Bundle", CountingBundle)
    return seen


def make_panel(qtbot, session):
    panel = PredictPanel(session)
    qtbot.addWidget(panel)
    panel.resize(900, 700)
    return panel


def test_dropped_images_predict_and_bad_files_get_their_own_message(qtbot, run, tmp_path, data_dir, loads):
    data, run_dir = run
    session = make_session(data)
    session.add_run(run_dir)
    panel = make_panel(qtbot, session)
    good = [sorted((data / name).glob("*.png"))[0] for name in ("red", "green", "blue")]
    broken = write_broken_png(tmp_path / "broken.png")
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")

    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        drop_files(panel, [good[0], broken, good[1], text, good[2]])
    cards = blocker.args[0]
    assert [c.path for c in cards] == [str(p) for p in (good[0], broken, good[1], text, good[2])]
    direct = Bundle(run_dir / "model").predict_paths([str(p) for p in good], top_k=3)
    for card, expected in zip([cards[0], cards[2], cards[4]], direct, strict=True):
        assert card.error is None
        assert [name for name, _ in card.top] == [name for name, _ in expected.top]
        assert len(card.bars) == 3 and card.percents[0].text() == f"{expected.top[0][1]:.1%}"
        assert card.thumb.pixmap() is not None and not card.thumb.pixmap().isNull()
    assert "truncated" in cards[1].error or "corrupt" in cards[1].error
    assert "not an image" in cards[3].error
    assert cards[1].top is None and cards[3].top is None

    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        drop_files(panel, [data / "green"])  # a folder: every image in it
    assert len(blocker.args[0]) == 12
    assert all(card.error is None for card in blocker.args[0])
    assert len(panel.cards) == 17 and panel.cards[0].path.startswith(str(data / "green"))
    assert loads == [run_dir / "model"]  # loaded once for both drops


def test_an_opened_bundle_predicts_without_a_run(qtbot, run, data_dir, loads):
    data, run_dir = run
    panel = make_panel(qtbot, make_session(data))
    assert "No model" in panel.model_label.text()
    with qtbot.waitSignal(panel.modelLoaded, timeout=TIMEOUT):
        panel.open_bundle(run_dir / "model" / "model.keras")
    assert "3 classes" in panel.model_label.text()
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([next((data / "red").glob("*.png"))])
    (card,) = blocker.args[0]
    assert card.error is None and len(card.top) == 3
    assert loads == [run_dir / "model"]


def test_without_a_model_or_with_a_bad_one_it_says_so(qtbot, tmp_path, data_dir, shown_errors):
    panel = make_panel(qtbot, make_session(None))
    image = write_broken_png(tmp_path / "x.png")
    assert panel.predict_files([image]) == []
    assert shown_errors and "model" in shown_errors[0][1].lower()

    shown_errors.clear()
    panel.open_bundle(tmp_path)
    qtbot.waitUntil(lambda: bool(shown_errors), timeout=TIMEOUT)
    assert "not a model bundle" in shown_errors[0][1]
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([image])
    (card,) = blocker.args[0]
    assert "not a model bundle" in card.error


def _photo(path):
    import numpy as np
    from PIL import Image

    Image.fromarray(np.random.default_rng(3).integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def imagenet_weights(tmp_path_factory):
    """Weights of the whole VGG16 ImageNet classifier at 32 px (random, logits spread), saved here."""
    import keras

    model = keras.applications.VGG16(include_top=True, weights=None, input_shape=(32, 32, 3))
    kernel, bias = model.get_layer("predictions").get_weights()
    model.get_layer("predictions").set_weights([kernel * 40.0, bias])
    path = tmp_path_factory.mktemp("imagenet") / "vgg16_top_32.weights.h5"
    model.save_weights(path)
    return path


def test_what_imagenet_sees_shows_the_top_5_of_a_dropped_image(qtbot, tmp_path, data_dir, imagenet_weights,
                                                                 shown_errors):
    from cnnstudio.builtins.imagenet import ImageNetClassifier

    image = _photo(tmp_path / "photo.png")
    broken = write_broken_png(tmp_path / "broken.png")
    panel = make_panel(qtbot, make_session(None))
    assert not panel.imagenet_row.isVisibleTo(panel)
    panel.set_imagenet_mode(True)
    assert panel.imagenet_row.isVisibleTo(panel) and not panel.top_k.isVisibleTo(panel)
    panel.imagenet_model.setCurrentIndex(panel.imagenet_model.findData("vgg16"))
    panel.imagenet_size.setValue(32)
    panel.set_imagenet_weights(str(imagenet_weights))
    assert panel.imagenet_choice() == ("vgg16", str(imagenet_weights), 32)
    assert "What ImageNet sees: VGG16, weights file" in panel.model_label.text()

    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        drop_files(panel, [image, broken])
    card, bad = blocker.args[0]
    expected = ImageNetClassifier("vgg16", str(imagenet_weights), input_size=32).predict_paths([str(image)])[0]
    assert card.error is None and [n for n, _ in card.top] == [n for n, _, _ in expected.top]
    assert len(card.bars) == 5 and card.percents[0].text() == f"{expected.top[0][2]:.1%}"
    assert f"VGG16, weights file {imagenet_weights}" in card.detail.text()
    assert bad.error is not None and bad.top is None
    assert not shown_errors

    # Random weights: the shown images are predicted again, labelled not pretrained.
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.set_imagenet_weights("none")
    card = blocker.args[0][0]
    assert card.path == str(image) and len(card.top) == 5 and "not pretrained" in card.detail.text()
    assert "not pretrained" in panel.model_label.text() and len(panel.cards) == 2


def test_what_imagenet_sees_reports_download_progress_and_errors(qtbot, tmp_path, data_dir, shown_errors,
                                                                 monkeypatch):
    import time

    from cnnstudio.core.errors import WeightsError

    class Offline:
        def __init__(self, provider_id, weights, registry=None, state=None, input_size=None):
            assert weights == "imagenet" and input_size == 224
            state.on_progress("downloading VGG19 ImageNet weights (bytes)", 300 * 1024, 1000 * 1024)
            time.sleep(0.2)  # past the worker's progress throttle
            state.on_progress("downloading VGG19 ImageNet weights (bytes)", 600 * 1024, 1000 * 1024)
            raise WeightsError("cannot download the ImageNet classifier of VGG19 (no connection)")

    monkeypatch.setattr(predict_panel, "ImageNetClassifier", Offline)
    panel = make_panel(qtbot, make_session(None))
    values = []
    panel.download_bar.valueChanged.connect(values.append)
    panel.set_imagenet_mode(True)
    assert panel.imagenet_choice() == ("vgg19", "imagenet", 224)
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([_photo(tmp_path / "photo.png")])
    (card,) = blocker.args[0]
    assert "no connection" in card.error
    assert shown_errors and "cannot download" in shown_errors[0][1]
    assert panel.download_bar.maximum() == 1000 and 600 in values
    assert not panel.download_bar.isVisibleTo(panel)


def test_grad_cam_shows_each_cards_overlay_computed_in_the_background(qtbot, run, tmp_path, data_dir, loads):
    from cnnstudio.gui.widgets.plots import load_thumbnail

    data, run_dir = run
    session = make_session(data)
    session.add_run(run_dir)
    panel = make_panel(qtbot, session)
    good = sorted((data / "red").glob("*.png"))[0]
    broken = write_broken_png(tmp_path / "broken.png")
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        drop_files(panel, [good, broken])
    assert [card.gradcam for card in blocker.args[0]] == [None, None]

    # Switching it on predicts the shown images again, with overlays instead of thumbnails.
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.set_gradcam_mode(True)
    card, bad = blocker.args[0]
    assert card.path == str(good) and len(panel.cards) == 2
    assert card.gradcam == "block1_conv1" and card.error is None and len(card.top) == 3
    assert "Grad-CAM of" in card.thumb.toolTip()
    shown = card.thumb.pixmap().toImage().convertToFormat(load_thumbnail(good, 112).format())
    plain = load_thumbnail(good, 112)
    assert shown.size() == plain.size() and shown != plain
    assert bad.error is not None and bad.gradcam is None

    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([sorted((data / "blue").glob("*.png"))[0]])
    assert blocker.args[0][0].gradcam == "block1_conv1"

    panel.clear()  # nothing to predict again with ImageNet's classifier
    panel.set_imagenet_mode(True)
    assert not panel.gradcam_button.isEnabled()
    assert loads == [run_dir / "model"]


def test_a_temperature_stored_after_loading_is_used_and_shown(qtbot, run, tmp_path, loads):
    import shutil

    from cnnstudio.core.evaluation.calibration import apply_temperature
    from cnnstudio.core.model.bundle import set_temperature

    data, shared = run
    run_dir = shutil.copytree(shared, tmp_path / "run")  # the temperature is written into the bundle
    session = make_session(data)
    session.add_run(run_dir)
    panel = make_panel(qtbot, session)
    image = sorted((data / "red").glob("*.png"))[0]
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([image])
    (before,) = blocker.args[0]
    assert "calibrated" not in panel.model_label.text()

    set_temperature(run_dir / "model", 2.5)  # as the Evaluate page's Fit Temperature does
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.predict_files([image])
    (after,) = blocker.args[0]
    assert "calibrated (temperature 2.5)" in panel.model_label.text()
    from cnnstudio.core.io.images import load_array

    bundle = Bundle(run_dir / "model")  # the model's own probabilities, scaled by hand
    probs = bundle.predict_arrays(load_array(str(image), bundle.input_size)[None], calibrated=False)
    expected = apply_temperature(probs, 2.5)[0]
    names = bundle.class_names
    assert [n for n, _ in after.top] == [n for n, _ in before.top]  # the winner never changes
    for name, p in after.top:
        assert abs(p - expected[names.index(name)]) < 1e-5
    assert after.top[0][1] < before.top[0][1]  # a temperature above 1 makes it less sure
    assert loads == [run_dir / "model"]  # the panel read the temperature again, not the whole bundle

    set_temperature(run_dir / "model", None)  # removed while another page was on show
    panel.hide()
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        panel.show()  # the cards on show are predicted again
    assert "calibrated" not in panel.model_label.text()
    (again,) = blocker.args[0]
    assert again.top == before.top and len(panel.cards) == 1


@pytest.fixture(scope="module")
def two_class_run(tmp_path_factory):
    from coretrain import train
    from tinydata import make_dataset

    root = tmp_path_factory.mktemp("two-classes")
    data = make_dataset(root / "data", classes=("red", "blue"), per_class=6)
    train(data, root / "run", epochs=1)
    return data, root / "run"


def test_a_batch_shows_at_most_its_models_classes_a_summary_and_saves_as_csv(qtbot, run, two_class_run, tmp_path,
                                                                            data_dir):
    import csv

    data, run_dir = two_class_run
    panel = make_panel(qtbot, make_session(data))
    panel.show()
    assert panel.top_k.value() == 3
    with qtbot.waitSignal(panel.modelLoaded, timeout=TIMEOUT):
        panel.open_bundle(run_dir / "model")
    assert panel.top_k.value() == panel.top_k.maximum() == 2  # a 2-class model: top-2, not top-3
    images = sorted((data / "red").glob("*.png"))[:2] + sorted((data / "blue").glob("*.png"))[:1]
    broken = write_broken_png(tmp_path / "broken.png")
    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT) as blocker:
        drop_files(panel, [*images, broken])
    cards = blocker.args[0]
    assert all(len(c.bars) == 2 for c in cards[:3]) and cards[3].error is not None
    assert panel.hint.isVisible()  # the drop zone stays for the next drop
    counts = {}
    for card in cards[:3]:
        counts[card.top[0][0]] = counts.get(card.top[0][0], 0) + 1
    summary = panel.summary.text()
    assert summary.startswith("4 images: ") and summary.endswith("\u00b7 1 unreadable")
    assert all(f"{name} {n}" in summary for name, n in counts.items())

    with qtbot.waitSignal(panel.predicted, timeout=TIMEOUT):  # the next batch: its own line
        drop_files(panel, images[:1])
    assert panel.summary.text() == f"1 image: {panel.cards[0].top[0][0]} 1" and panel.hint.isVisible()
    panel.resize(1400, 800)  # a wide window: the cards fill it in columns, newest first
    qtbot.waitUntil(lambda: panel.columns >= 2)
    wide = panel.columns

    def spots():
        return [panel.cards_layout.getItemPosition(panel.cards_layout.indexOf(c))[:2] for c in panel.cards]

    assert spots() == [(i // wide, i % wide) for i in range(len(panel.cards))]
    panel.resize(panel.minimumSizeHint().width(), 800)  # narrower: fewer columns, the same order
    qtbot.waitUntil(lambda: panel.columns < wide)
    assert spots() == [(i // panel.columns, i % panel.columns) for i in range(len(panel.cards))]
    assert panel.save_button.isEnabled()
    out = tmp_path / "results.csv"
    panel.save_csv(out)
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows] == [c.path for c in panel.cards]  # newest first, as on show
    first = panel.cards[0]
    assert rows[0]["top_class"] == first.top[0][0] and float(rows[0]["probability"]) == pytest.approx(first.top[0][1])
    assert len(rows[0]["top_k"].split("; ")) == 2
    assert rows[-1]["top_class"] == "" and rows[-1]["error"] == cards[3].error
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith("results")] == ["results.csv"]  # no leftovers

    _, three = run
    with qtbot.waitSignal(panel.modelLoaded, timeout=TIMEOUT):
        panel.open_bundle(three / "model")
    assert panel.top_k.value() == 3  # what the user chose comes back with more classes
    panel.clear()
    assert panel.hint.isVisible() and not panel.summary.isVisible() and not panel.save_button.isEnabled()
