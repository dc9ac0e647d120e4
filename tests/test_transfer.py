"""Transfer learning: the three modes, fine-tuning's unfreezing, bottleneck features and their cache,
weights sources. Offline and small: random or locally saved weights at 32 px."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from coretrain import RecordingState, train
from taskstates import Callbacks, Recording
from tinydata import make_dataset

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.errors import SpecError, WeightsError
from cnnstudio.core.model import transfer, weights
from cnnstudio.core.model.bundle import Bundle
from cnnstudio.core.model.models import build_model
from cnnstudio.core.model.spec import AugmentSpec, HeadSpec, ModelSpec, resolve_spec
from cnnstudio.core.report import parameter_counts, run_report_html

BACKBONES = ("vgg16", "vgg19", "resnet50")


@pytest.fixture(scope="module")
def registry():
    return load_registry()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("transfer") / "data", per_class=8, size=32)


@pytest.fixture(autouse=True)
def private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("CNNSTUDIO_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))


def pretrained_spec(backbone, weights="none", augment=False, size=32):
    return ModelSpec(
        backbone, {"weights": weights}, HeadSpec("avg", [16], 0.0),
        AugmentSpec(flip="horizontal") if augment else AugmentSpec(), input_size=size,
    )


class ProgressState(RecordingState):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.statuses = []
        self.progress = []

    def on_status(self, message):
        self.statuses.append(message)

    def on_progress(self, task, done, total):
        self.progress.append((task, done, total))


@pytest.mark.parametrize("backbone", BACKBONES)
@pytest.mark.parametrize("mode", ["scratch", "extract", "finetune"])
def test_each_pretrained_backbone_trains_in_each_mode(data, tmp_path, backbone, mode):
    state = ProgressState()
    result = train(data, tmp_path / "run", state=state, spec=pretrained_spec(backbone), epochs=1,
                   mode=mode, finetune_epochs=1, batch_size=8)
    phases = [row.get("phase") for row in result.history]
    assert phases == (["head", "finetune"] if mode == "finetune" else ["train"])
    assert [e.epoch for e in state.of("epoch")] == list(range(len(phases)))  # one continuous curve
    begins = state.of("begin")
    summary = {r["block"]: r for r in begins[-1].summary}
    if mode == "scratch":
        assert all(r["state"] == "trainable" or r["trainable"] == 0 for r in summary.values())
    elif mode == "extract":
        assert all(r["state"] == "frozen" for b, r in summary.items() if b != "head")
    else:
        assert [b.phase for b in begins] == ["head", "finetune"] and begins[1].initial_epoch == 1
        top = "block5" if backbone.startswith("vgg") else "conv5_block3"
        assert summary[top]["state"] == "trainable"
        assert all(r["state"] == "frozen" for b, r in summary.items() if b not in (top, "head"))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["weights"]["kind"] == "random" and metrics["weights"]["pretrained"] is False
    assert "not pretrained" in metrics["weights"]["label"]
    assert metrics["mode"] == mode
    assert metrics["blocks"] == {b.phase: b.summary for b in begins}  # what trained, kept for the report
    split = metrics["parameters"]
    if mode == "extract":
        assert split["trainable"] == summary["head"]["trainable"] and split["frozen"] > 0
    if mode == "finetune" and backbone == "vgg16":  # the report says it (once: reading a model file is slow)
        total, _ = parameter_counts(tmp_path / "run" / "model" / "model.keras")
        assert split["trainable"] + split["frozen"] == total["total"]
        html = run_report_html(tmp_path / "run")
        assert f"<td>{split['trainable']:,}</td>" in html and "trainable parameters (at the end)" in html
        phase2 = html.index("Phase 2 (fine-tuning the top of the base)")
        assert html.index("Phase 1 (the head on the frozen base)") < phase2
        assert f">{summary['block5']['trainable']:,}</td>" in html[phase2:]
    bundle = json.loads((tmp_path / "run" / "model" / "bundle.json").read_text())
    assert bundle["weights"]["pretrained"] is False


def test_fine_tuning_unfreezes_exactly_the_requested_layers_and_keeps_batch_norm_frozen(registry):
    vgg = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 3, registry)
    unfrozen = transfer.unfreeze_top(vgg, registry.backbones["vgg16"], blocks=2)
    assert unfrozen == [f"block{b}_conv{i}" for b in (4, 5) for i in (1, 2, 3)]
    vgg = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 3, registry)
    assert transfer.unfreeze_top(vgg, registry.backbones["vgg16"], from_layer="block5_conv2") == [
        "block5_conv2", "block5_conv3"]

    resnet = build_model(resolve_spec(registry, "resnet50", input_size=32, weights="none"), 3, registry)
    unfrozen = transfer.unfreeze_top(resnet, registry.backbones["resnet50"], blocks=1)
    assert unfrozen and all(name.startswith("conv5_block3_") for name in unfrozen)
    base = resnet.get_layer("backbone")
    bn = [layer for layer in base.layers if layer.name.startswith("conv5_block3_") and "_bn" in layer.name]
    assert bn and not any(layer.trainable for layer in bn) and not any(n.endswith("_bn") for n in unfrozen)
    # Batch norm in inference mode: a training step leaves its statistics where they were.
    before = [w.numpy().copy() for w in bn[0].non_trainable_weights]
    resnet.compile("sgd", "sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    resnet.fit(rng.uniform(0, 255, (8, 32, 32, 3)).astype("float32"), np.arange(8) % 3, epochs=1, verbose=0)
    for a, w in zip(before, bn[0].non_trainable_weights):
        np.testing.assert_array_equal(a, w.numpy())

    with pytest.raises(SpecError, match="has 5 blocks with weights; cannot unfreeze 6"):
        transfer.unfreeze_top(vgg, registry.backbones["vgg16"], blocks=6)


def test_block_summary_counts_frozen_and_trainable_per_block(registry):
    model = build_model(resolve_spec(registry, "vgg16", input_size=32, weights="none"), 3, registry)
    rows = transfer.block_summary(model, registry.backbones["vgg16"])
    assert [r["block"] for r in rows] == ["block1", "block2", "block3", "block4", "block5", "head"]
    assert rows[0] == {"block": "block1", "trainable": 0, "frozen": 3 * 3 * 3 * 64 + 64 + 3 * 3 * 64 * 64 + 64,
                       "state": "frozen"}
    assert rows[-1]["state"] == "trainable" and rows[-1]["frozen"] == 0
    assert sum(r["trainable"] + r["frozen"] for r in rows) == model.count_params()


def test_modes_need_a_pretrained_backbone_and_recommendation_follows_dataset_size(registry):
    from cnnstudio.core.model.transfer import apply_mode, recommend_mode

    scratch = resolve_spec(registry, "scratch")
    with pytest.raises(SpecError, match="needs a pretrained backbone"):
        apply_mode(scratch, "finetune", registry.backbones["scratch"])
    spec = apply_mode(resolve_spec(registry, "vgg16", weights="imagenet"), "scratch", registry.backbones["vgg16"])
    assert spec.params == {"weights": "none", "trainable": True}
    assert recommend_mode(300, 3)[0] == "extract"
    assert recommend_mode(8000, 4)[0] == "finetune"


def test_the_bottleneck_cache_drops_the_least_recently_used_features_first(tmp_path, monkeypatch):
    import os

    root = tmp_path / "bottleneck"
    features = transfer.Features(np.zeros((10, 1000), np.float32), np.zeros(10, np.int32), np.arange(10, dtype=np.int32))
    caches = [transfer.BottleneckCache(root, {"n": i}) for i in range(4)]
    for age, cache in zip((400, 300, 200, 100), caches):
        cache.save("train", features)
        os.utime(cache.folder, (0, 1_000_000 - age))  # 0 the oldest, 3 the newest
    size = sum(f.stat().st_size for f in caches[0].folder.iterdir())
    caches[1].load("train")  # used just now: the newest
    assert caches[0].prune(10**12) == []
    assert caches[2].prune(2 * size) == [caches[0].key, caches[3].key]
    assert sorted(p.name for p in root.iterdir()) == sorted([caches[1].key, caches[2].key])
    assert caches[2].prune(0) == [caches[1].key]  # the one in use stays, whatever the limit
    assert caches[2].complete(["train"]) and not caches[1].complete(["train"])

    monkeypatch.setenv("CNNSTUDIO_FEATURE_CACHE_MB", "1.5")
    assert transfer.cache_limit() == 1536 * 1024
    monkeypatch.setenv("CNNSTUDIO_FEATURE_CACHE_MB", "lots")
    assert transfer.cache_limit() == transfer.DEFAULT_CACHE_LIMIT_MB * 2**20


def test_bottleneck_features_are_reused_and_rebuilt_when_split_or_size_change(data, tmp_path, monkeypatch):
    def run(name, **kwargs):
        state = ProgressState()
        spec_kwargs = {k: kwargs.pop(k) for k in ("size", "augment") if k in kwargs}
        result = train(data, tmp_path / name, state=state, spec=pretrained_spec("vgg16", **spec_kwargs),
                       epochs=2, mode="extract", bottleneck=True, batch_size=8, **kwargs)
        metrics = json.loads((tmp_path / name / "metrics.json").read_text())
        return result, state, metrics.get("bottleneck")

    first, state, info = run("a")
    assert info["cache"] == "built" and any(t.startswith("computing train bottleneck") for t, _, _ in state.progress)
    assert len(first.history) == 2
    _, state, again = run("b")
    assert again == {"cache": "reused", "key": info["key"]}
    assert not any("bottleneck" in t for t, _, _ in state.progress)
    _, _, other_split = run("c", split_seed=5)
    assert other_split["cache"] == "built" and other_split["key"] != info["key"]
    _, _, other_size = run("d", size=48)
    assert other_size["cache"] == "built" and other_size["key"] not in (info["key"], other_split["key"])
    _, state, off = run("e", augment=True)
    assert off is None and any("augmentation changes every image" in s for s in state.statuses)
    monkeypatch.setenv("CNNSTUDIO_FEATURE_CACHE_MB", "0")  # a full cache keeps only the newest features
    _, state, newest = run("f", split_seed=7)
    assert newest["cache"] == "built"
    assert any("dropped 3 least recently used" in s for s in state.statuses)
    assert [p.name for p in (tmp_path / "cache" / "bottleneck").iterdir()] == [newest["key"]]

    # The bundle is the whole image-to-class model: its predictions are the head's on the base's features.
    bundle = Bundle(tmp_path / "a" / "model")
    images = sorted(str(p) for p in Path(data).rglob("*.png"))[:4]
    from cnnstudio.core.io.images import load_array

    x = np.stack([load_array(p, 32) for p in images]).astype("float32")
    probs = np.stack([r.probs for r in bundle.predict_paths(images, top_k=3)])
    features = transfer.feature_extractor(bundle.model).predict_on_batch(x)
    head = transfer.head_model(bundle.model)
    np.testing.assert_allclose(probs, head.predict_on_batch(features), atol=1e-5)


def test_fine_tuned_bundle_predicts_identically_in_a_fresh_process(data, tmp_path):
    train(data, tmp_path / "run", spec=pretrained_spec("vgg16"), epochs=1, mode="finetune", finetune_epochs=1,
          batch_size=8, bottleneck=True)
    folder = tmp_path / "run" / "model"
    images = sorted(str(p) for p in Path(data).rglob("*.png"))[:5]
    here = Bundle(folder).predict_paths(images, top_k=3)
    out = subprocess.run(
        [sys.executable, "-m", "cnnstudio", "predict", str(folder), *images, "--top-k", "3", "--json"],
        capture_output=True, text=True, check=True,
    )
    for a, b in zip(here, json.loads(out.stdout)):
        assert [c for c, _ in a.top] == [t["class"] for t in b["top"]]
        np.testing.assert_allclose([p for _, p in a.top], [t["probability"] for t in b["top"]], atol=1e-6)


def test_an_interrupted_fine_tuning_resumes_in_its_second_phase(data, tmp_path):
    run = tmp_path / "run"
    state = RecordingState(stop_after_epochs=2)
    first = train(data, run, state=state, spec=pretrained_spec("vgg16"), epochs=1, mode="finetune",
                  finetune_epochs=3, batch_size=8)
    assert first.reason == "cancelled" and [r["phase"] for r in first.history] == ["head", "finetune"]
    state = RecordingState()
    done = train(data, run, state=state, spec=pretrained_spec("vgg16"), epochs=1, mode="finetune",
                 finetune_epochs=3, batch_size=8, resume=True)
    assert done.reason == "completed"
    assert [r["phase"] for r in done.history] == ["head", "finetune", "finetune", "finetune"]
    assert [b.phase for b in state.of("begin")] == ["finetune"]
    blocks = json.loads((run / "metrics.json").read_text())["blocks"]  # the phase before the resume too
    assert {r["block"]: r["state"] for r in blocks["head"]}["block5"] == "frozen"
    assert {r["block"]: r["state"] for r in blocks["finetune"]}["block5"] == "trainable"


def test_imagenet_files_fetch_with_progress_and_a_truncated_cache_is_fetched_again(tmp_path):
    source = tmp_path / "served.h5"
    source.write_bytes(np.random.default_rng(0).bytes(300_000))
    wf = weights.WeightsFile("served.h5", source.as_uri(), weights.file_digest(source), 300_000)
    seen, said = [], []
    path = weights.fetch(wf, "Served", state=Callbacks(progress=lambda d, t: seen.append((d, t)), status=said.append))
    assert path == weights.cached_path(wf) and path.read_bytes() == source.read_bytes()
    assert seen[-1] == (300_000, 300_000) and "downloading Served ImageNet weights" in said[0]
    assert weights.cache_state(wf) == "ok"
    said.clear()
    weights.fetch(wf, "Served", state=Callbacks(status=said.append))
    assert said == []  # cached: nothing to do
    path.write_bytes(source.read_bytes()[:1000])  # an interrupted download
    assert weights.cache_state(wf) == "corrupt"
    weights.fetch(wf, "Served", state=Callbacks(status=said.append))
    assert "incomplete or corrupted" in said[0] and path.read_bytes() == source.read_bytes()


def test_a_failing_imagenet_download_ends_in_the_clear_message(data, tmp_path, monkeypatch):
    import keras
    from keras.src.utils import file_utils

    def offline(fname, origin, **kwargs):
        raise Exception(f"URL fetch failure on {origin}: None -- [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(WeightsError) as caught:
        train(data, tmp_path / "run", spec=pretrained_spec("resnet50", weights="imagenet"), epochs=1)
    message = str(caught.value)
    assert message.startswith("cannot download the ImageNet weights of ResNet50 (no connection: URL fetch failure")
    # The window shows it too: it names the other sources, not the command line's options for them.
    assert "local weights file" in message and "random initialisation" in message and "--weights" not in message


def test_stop_while_features_are_computed_ends_quietly_and_saves_nothing(data, tmp_path):
    class StopAtOnce(ProgressState):
        def should_stop(self):
            return bool(self.progress)  # as soon as feature extraction reports progress

    state = StopAtOnce()
    result = train(data, tmp_path / "run", state=state, spec=pretrained_spec("vgg16"), epochs=2, mode="extract",
                   bottleneck=True, batch_size=8, cache="none")
    assert result.reason == "cancelled" and result.epochs_run == 0 and result.metrics is None
    assert [e.reason for e in state.of("end")] == ["cancelled"]
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_feature_extraction_reports_its_task_to_the_total_and_a_stop_raises_cancelled(tmp_path):
    from cnnstudio.core.data.dataset import scan_dataset
    from cnnstudio.core.data.pipeline import ImagePipeline
    from cnnstudio.core.errors import Cancelled
    from cnnstudio.core.tf import keras

    K = keras()
    inputs = K.Input((16, 16, 3))
    extractor = K.Model(inputs, K.layers.GlobalAveragePooling2D()(inputs))
    index = scan_dataset(make_dataset(tmp_path / "data", per_class=6, size=16))
    items = list(range(len(index.items)))
    paths, labels = index.paths(items), index.labels(items)
    task = "computing train bottleneck features"
    pipe = ImagePipeline(16, cache="none")
    try:
        state = Recording()
        features = transfer.extract_features(extractor, pipe, paths, labels, 4, state=state, task=task)
        assert len(features.labels) == 18 and {t for t, _, _ in state.progress} == {task}
        assert state.progress[-1] == (task, 18, 18)
        assert [d for _, d, _ in state.progress] == sorted(d for _, d, _ in state.progress)

        stopping = Recording(stop_at_ask=2)
        with pytest.raises(Cancelled, match="stopped while computing bottleneck features"):
            transfer.extract_features(extractor, pipe, paths, labels, 4, state=stopping, task=task)
        assert len(stopping.progress) == 2 and stopping.progress[-1][1] < 18
    finally:
        pipe.close()


def test_a_weights_download_reports_its_task_in_bytes_to_the_total(tmp_path):
    source = tmp_path / "served.h5"
    source.write_bytes(np.random.default_rng(1).bytes(200_000))
    wf = weights.WeightsFile("served-2.h5", source.as_uri(), weights.file_digest(source), 200_000)
    state = Recording()
    weights.fetch(wf, "Served", state=state)
    task = "downloading Served ImageNet weights (bytes)"
    assert {t for t, _, _ in state.progress} == {task} and state.progress[-1] == (task, 200_000, 200_000)
    assert len(state.statuses) == 1 and state.statuses[0].startswith("downloading Served ImageNet weights into")


def test_a_kill_after_the_bottleneck_head_phase_resumes_with_the_whole_models_best_weights(data, tmp_path,
                                                                                          monkeypatch):
    """The head's best weights become the whole model's in a commit of their own: a kill right
    after it resumes into fine-tuning without training the head again."""
    from cnnstudio.core.runs import checkpoint
    from cnnstudio.core.runs.folder import RunPaths

    class Killed(BaseException):
        pass

    run = tmp_path / "run"
    p = RunPaths(run)

    def kill_after_the_head_phase(step):
        if step == "history" and json.loads(p.train_state.read_text()).get("best_of") == "model":
            raise Killed

    settings = dict(spec=pretrained_spec("vgg16"), epochs=2, mode="finetune", finetune_epochs=2, batch_size=8,
                    bottleneck=True)
    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "_between", kill_after_the_head_phase)
        with pytest.raises(Killed):
            train(data, run, **settings)
    saved = checkpoint.read(p)
    assert saved.epochs_done == 2 and saved.state["best_of"] == "model" and not saved.problems

    state = RecordingState()
    done = train(data, run, state=state, resume=True, **settings)
    assert done.reason == "completed"
    assert [r["phase"] for r in done.history] == ["head", "head", "finetune", "finetune"]
    assert [e.epoch for e in state.of("epoch")] == [2, 3]  # the head's epochs were not trained again
    assert json.loads(p.metrics.read_text())["epochs_run"] == 4
