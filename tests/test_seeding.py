"""Randomness per run: a run's weights depend on its seed alone, and a run leaves the process's
generators as it found them (another run's, a preview's, a plugin's draws are not changed)."""

from __future__ import annotations

import random
import threading

import numpy as np

from cnnstudio.builtins.manager import load_registry
from cnnstudio.core.model.models import build_model
from cnnstudio.core.model.spec import AugmentSpec
from cnnstudio.core.tf.seeding import fresh_seed, seeded
from tests.coretrain import tiny_spec, train
from tests.tinydata import make_dataset


def _weights(model):
    return [w.copy() for w in model.get_weights()]


def test_a_seeded_build_gives_the_same_weights_while_other_models_are_built_meanwhile():
    registry = load_registry()
    spec = tiny_spec(16)
    other = tiny_spec(16)
    other.augmentation = AugmentSpec(flip="horizontal", rotation=0.1)
    with seeded(7):
        alone = _weights(build_model(spec, 3, registry))

    stop = threading.Event()

    def build_others():  # what a summary or a preview does on another thread meanwhile
        while not stop.is_set():
            with seeded(fresh_seed()):
                build_model(other, 3, registry)
            build_model(other, 3, registry)

    thread = threading.Thread(target=build_others)
    thread.start()
    try:
        builds = []
        for _ in range(3):
            with seeded(7):
                builds.append(_weights(build_model(spec, 3, registry)))
    finally:
        stop.set()
        thread.join()
    for weights in builds:
        assert all(np.array_equal(a, b) for a, b in zip(alone, weights))
    with seeded(8):
        assert not all(np.array_equal(a, b) for a, b in zip(alone, _weights(build_model(spec, 3, registry))))


def test_seeding_puts_the_process_generators_back():
    random.seed(123)
    np.random.seed(123)
    expected = (random.random(), float(np.random.random()))
    random.seed(123)
    np.random.seed(123)
    with seeded(5):
        random.random()
        np.random.random()
    assert (random.random(), float(np.random.random())) == expected


def test_a_run_neither_changes_nor_depends_on_the_process_randomness(tmp_path):
    data = make_dataset(tmp_path / "data")
    random.seed(99)
    np.random.seed(99)
    expected = (random.random(), float(np.random.random()))
    random.seed(99)
    np.random.seed(99)
    first = train(data, tmp_path / "a", epochs=2)
    assert (random.random(), float(np.random.random())) == expected  # the run left them as they were

    random.seed(4242)  # something else in the process drew and seeded meanwhile
    second = train(data, tmp_path / "b", epochs=2)
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]
