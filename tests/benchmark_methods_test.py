"""tfrobust.benchmark._methods: the method registry, TaylorLoss names, the noise context, and adding a method."""

import json
import os

import keras
import numpy as np
import pytest

from tests.benchmark_helpers import TINY, rows_of
from tfrobust import benchmark, datasets
from tfrobust import noise as noise_lib
from tfrobust.benchmark import _methods
from tfrobust.losses import TaylorLoss
from tfrobust.optimizers import make_optimizer


def test_every_default_method_builds_a_finite_loss():
    data = datasets.load("digits", noise="pairflip:0.2", seed=0, max_examples=300)
    predictions = keras.ops.softmax(np.random.default_rng(0).normal(size=(8, 10)).astype("float32"))
    assert benchmark.default_methods()[0] == "ce"
    for name in benchmark.default_methods():
        loss = benchmark.get_method(name).loss(data)
        value = float(loss(data.y_train[:8], predictions))
        assert np.isfinite(value), name
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        benchmark.get_method("nope")
    with pytest.raises(ValueError, match="Unknown TaylorLoss preset"):
        benchmark.get_method("taylor:nope")


def test_taylor_names():
    default = "taylor:" + TaylorLoss.preset_info()["name"]
    assert benchmark.canonical_method_name(" taylor ") == default
    assert benchmark.get_method("taylor").name == default
    presets = [name for name in benchmark.default_methods() if name.startswith(benchmark.TAYLOR_PRESET_PREFIX)]
    assert presets == ["taylor:" + preset for preset in TaylorLoss.presets()]
    for preset in TaylorLoss.presets():
        assert preset in benchmark.describe_method_names()


def test_taylor_file_method(tmp_path):
    path = tmp_path / "best_coefficients.json"
    path.write_text(json.dumps(TaylorLoss.preset_info("mae")))
    method = benchmark.get_method(f"taylor_file:{path}")
    data = datasets.load("digits", seed=0, max_examples=300)
    assert method.loss(data).coefficients == TaylorLoss.pretrained("mae").coefficients
    with pytest.raises(FileNotFoundError):
        benchmark.get_method(f"taylor_file:{tmp_path / 'missing.json'}")


def test_noise_context_gives_the_true_matrix_or_the_realised_one(tmp_path):
    def context(noise):
        return benchmark.NoiseContext.from_dataset(datasets.load("digits", noise=noise, seed=0, max_examples=300))

    symmetric = context("symmetric:0.4")
    assert symmetric.transition_matrix_source == "true"
    np.testing.assert_allclose(symmetric.transition_matrix, noise_lib.symmetric_transition_matrix(0.4, 10))
    pairflip = context("pairflip:0.2").transition_matrix
    np.testing.assert_allclose(pairflip, noise_lib.pair_flip_transition_matrix(0.2, 10))
    np.testing.assert_allclose(context("none").transition_matrix, np.eye(10))
    matrix = noise_lib.symmetric_transition_matrix(0.3, 10)
    np.save(tmp_path / "T.npy", matrix)
    np.testing.assert_allclose(context(f"matrix:{tmp_path / 'T.npy'}").transition_matrix, matrix)
    data = datasets.load("digits", noise="instance:0.4", seed=0, max_examples=300)
    instance = benchmark.NoiseContext.from_dataset(data)
    assert instance.transition_matrix_source == "realised"
    np.testing.assert_allclose(instance.transition_matrix, data.noisy_labels.transition_matrix)


def test_register_method_names_what_is_wrong(monkeypatch):
    monkeypatch.setattr(_methods, "_REGISTRY", dict(_methods._REGISTRY))
    method = benchmark.LossMethod("my_ce", lambda num_classes, noise: keras.losses.SparseCategoricalCrossentropy())
    assert benchmark.register_method(method) is method
    assert benchmark.get_method("my_ce") is method and "my_ce" in benchmark.method_names()
    assert "my_ce" in benchmark.default_methods()
    with pytest.raises(ValueError, match="already registered; pass overwrite=True"):
        benchmark.register_method(method)
    benchmark.register_method(method, overwrite=True)
    for bad_name in ("", "a,b", "taylor", "taylor:mine"):
        with pytest.raises(ValueError, match="name"):
            benchmark.register_method(benchmark.LossMethod(bad_name, lambda num_classes, noise: None))
    with pytest.raises(TypeError, match="takes a Method"):
        benchmark.register_method("ce")
    with pytest.raises(NotImplementedError, match="must implement train"):
        benchmark.Method().train(None, None, None, [])


class CleanMetaSetMethod(benchmark.Method):
    """A stand-in for a re-weighting method: its own loop, on a clean meta set carved from the training split."""

    name = "clean_meta_set"

    def train(self, model, data, run, callbacks):
        meta = np.random.default_rng(run.seed).choice(len(data.y_train), 200, replace=False)
        model.compile(optimizer=make_optimizer(run.optimizer, run.learning_rate),
                      loss="sparse_categorical_crossentropy")
        callback_list = keras.callbacks.CallbackList(callbacks, model=model)
        for epoch in range(run.epochs):
            model.train_on_batch(data.x_train[meta], data.y_train_clean[meta])
            callback_list.on_epoch_end(epoch)


def test_a_method_with_its_own_training_loop_joins_the_grid(tmp_path, monkeypatch):
    monkeypatch.setattr(_methods, "_REGISTRY", dict(_methods._REGISTRY))
    benchmark.register_method(CleanMetaSetMethod())
    matrix_path = tmp_path / "T.csv"
    np.savetxt(matrix_path, noise_lib.pair_flip_transition_matrix(0.3, 10), delimiter=",")
    config = benchmark.BenchmarkConfig(
        output_dir=str(tmp_path / "out"),
        **{**TINY, "methods": ("forward", "clean_meta_set"), "noise": (f"matrix:{matrix_path}",)},
    )
    benchmark.run_benchmark(config, printer=lambda line: None)
    rows = {row["method"]: row for row in rows_of(config.output_dir)}
    assert set(rows) == {"forward", "clean_meta_set"}
    assert rows["clean_meta_set"]["epochs_trained"] == "2" and rows["clean_meta_set"]["transition_matrix"] == ""
    assert rows["forward"]["transition_matrix"] == "true"  # the known-T oracle: the file's matrix
    assert rows["forward"]["noise_kind"] == "matrix" and rows["forward"]["noise_rate"] == ""
    assert 0.2 < float(rows["forward"]["realised_noise_rate"]) < 0.4
    assert "clean_meta_set" in open(os.path.join(config.output_dir, benchmark.RESULTS_MD)).read()
