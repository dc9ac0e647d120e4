import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest
from helpers import drop_files, make_session, trained_run, write_broken_png

from cnnstudio.core.bundle import Bundle
from cnnstudio.gui import predict_panel
from cnnstudio.gui.predict_panel import PredictPanel

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
