"""tfrobust.benchmark._reweighting_methods: the issue 11 / 12 methods on the method axis, through `run_one`."""

import os

import keras
import numpy as np
import pytest

from tfrobust import benchmark, datasets, imbalance, layers, losses, reweighting
from tfrobust.benchmark import _reweighting_methods as methods_lib

NEW_METHODS = ("l2rw", "mwn", "warpi", "advisor", "forml", "absgd", "absgd_imbalance", "bare", "mentornet_pd", "ldam_drw")
CLEAN_DATA = {"l2rw", "mwn", "warpi", "advisor", "forml"}
PROVENANCE = {"revision": "unknown", "dirty": ""}


def _run(method, imbalance_spec="none", epochs=3, architecture="mlp", seed=0):
    return benchmark.RunSpec("digits", architecture, "symmetric:0.2", method, seed, epochs, 64, "adam", 1e-3, None,
                             imbalance_spec)


@pytest.fixture(scope="module")
def noisy_digits():
    return datasets.load("digits", noise="symmetric:0.2", seed=0)


@pytest.mark.parametrize("method", NEW_METHODS)
def test_each_method_trains_above_chance_and_says_whether_it_used_clean_data(method, noisy_digits):
    row, curves = benchmark.run_one(_run(method), noisy_digits, provenance=PROVENANCE)
    assert row["epochs_trained"] == 3 and row["finite"]
    assert row["final_test_accuracy"] > 0.3, row  # chance is 0.1; 3 epochs of an MLP on noisy digits
    assert row["balanced_test_accuracy"] == pytest.approx(row["final_test_accuracy"], abs=0.02)  # balanced test split
    if method in CLEAN_DATA:
        assert row["clean_examples"] == 10 * methods_lib.META_PER_CLASS == 100
        assert row["num_train"] == len(noisy_digits.y_train) - 100  # the meta set is not trained on
    else:
        assert row["clean_examples"] == 0 and row["num_train"] == len(noisy_digits.y_train)
    assert benchmark.is_whole_row({key: benchmark._results._csv_value(value) for key, value in row.items()})


def test_new_methods_stay_out_of_the_default_grid():
    assert set(NEW_METHODS) <= set(benchmark.method_names())
    assert not set(NEW_METHODS) & set(benchmark.default_methods())


def test_forml_groups_are_the_meta_sets_classes(noisy_digits):
    run = _run("forml", epochs=1)
    method = benchmark.get_method("forml")
    model = method.build_model(run, noisy_digits)
    trainer, _, _ = method.trainer(model, noisy_digits, run)
    assert isinstance(trainer, reweighting.FORML) and trainer.objective == "worst_group"
    meta, _ = method.split_data(noisy_digits, run)
    x_given, y_given, groups = method.meta_data(meta, noisy_digits)
    np.testing.assert_array_equal(x_given, meta[0])
    np.testing.assert_array_equal(y_given, meta[1])
    np.testing.assert_array_equal(groups, meta[1])  # worst group = worst class of the clean meta batch
    assert len(trainer.meta_data[0]) == 100


def test_meta_set_is_seeded_clean_balanced_and_removed_from_training(noisy_digits):
    method = benchmark.get_method("l2rw")
    (x_meta, y_meta), train = method.split_data(noisy_digits, _run("l2rw", seed=0))
    (x_again, _), _ = method.split_data(noisy_digits, _run("l2rw", seed=0))
    (x_other, _), _ = method.split_data(noisy_digits, _run("l2rw", seed=1))
    np.testing.assert_array_equal(x_meta, x_again)
    assert not np.array_equal(x_meta, x_other)
    np.testing.assert_array_equal(np.bincount(y_meta, minlength=10), np.full(10, 10))
    expected_meta, expected_train = noisy_digits.meta_split(per_class=10, seed=0)
    np.testing.assert_array_equal(x_meta, expected_meta[0])
    np.testing.assert_array_equal(y_meta, expected_meta[1])  # the clean labels
    np.testing.assert_array_equal(train.x_train, expected_train.x_train)


def test_imbalanced_meta_set_is_balanced_and_comes_from_what_the_imbalance_left_out():
    data = datasets.load("digits", noise="symmetric:0.2", seed=0, imbalance="longtail:100")
    (x_meta, y_meta), train = methods_lib.meta_set(data, seed=0)
    np.testing.assert_array_equal(np.bincount(y_meta, minlength=10), np.full(10, 10))
    trained = {row.tobytes() for row in train.x_train}
    assert not any(row.tobytes() in trained for row in x_meta)
    # The rarest class (a single training example at ratio 100) keeps it.
    np.testing.assert_array_equal(np.bincount(train.y_train_clean, minlength=10)[1:],
                                  np.bincount(data.y_train_clean, minlength=10)[1:])
    left_out = {row.tobytes() for row in data.imbalance_left_out[0]}
    from_training = [row for row in x_meta if row.tobytes() not in left_out]
    assert len(train.y_train) == len(data.y_train) - len(from_training)  # only the head class may give some


def test_ldam_drw_trains_a_cosine_head_with_drw_at_the_official_fraction(tmp_path, noisy_digits):
    method = benchmark.get_method("ldam_drw")
    run = _run("ldam_drw", epochs=5)
    model = method.build_model(run, noisy_digits)
    assert isinstance(model.layers[-1], layers.CosineClassifier)
    plain = benchmark.get_method("ce").build_model(run, noisy_digits)
    for ours, theirs in zip(model.layers[:-1], plain.layers[:-2]):  # same hidden layers and initial weights
        for a, b in zip(ours.get_weights(), theirs.get_weights()):
            np.testing.assert_array_equal(a, b)
    fit_model, _, schedule = method.trainer(model, noisy_digits, run)
    assert isinstance(fit_model.loss, losses.LDAMLoss)
    np.testing.assert_array_equal(fit_model.loss.class_counts, imbalance.class_counts(noisy_digits.y_train, 10))
    assert schedule[0].start_epoch == 4  # floor(160 / 200 * 5)
    assert methods_lib.scaled_epoch(methods_lib.DRW_START_FRACTION, 200) == 160
    assert methods_lib.scaled_epoch(methods_lib.ABSGD_NOISE_START_FRACTION, 120) == 80
    path = str(tmp_path / "ldam.keras")
    row, _ = benchmark.run_one(run, noisy_digits, model_path=path, provenance=PROVENANCE)
    loaded = keras.saving.load_model(path, compile=False)
    predicted = np.argmax(loaded.predict(noisy_digits.x_test, verbose=0), axis=-1)
    assert row["final_test_accuracy"] == pytest.approx(np.mean(predicted == noisy_digits.y_test))


def test_absgd_settings_follow_the_official_scripts(noisy_digits):
    noise_loss = benchmark.get_method("absgd").loss(noisy_digits)
    imbalance_loss = benchmark.get_method("absgd_imbalance").loss(noisy_digits)
    assert noise_loss.temperature < 0 < imbalance_loss.temperature  # min-min for noise, min-max for imbalance
    assert (noise_loss.temperature, noise_loss.gamma, noise_loss.alpha) == (-1.0, 0.9, 0.5)
    assert (imbalance_loss.temperature, imbalance_loss.gamma, imbalance_loss.alpha) == (5.0, 0.7, 0.5)
    _, _, schedule = benchmark.get_method("absgd").trainer(
        benchmark.get_method("absgd").build_model(_run("absgd", epochs=30), noisy_digits), noisy_digits,
        _run("absgd", epochs=30),
    )
    assert schedule[0].start_epoch == 20  # 80 / 120 of the run


def test_mwn_trains_the_benchmark_model_in_place(noisy_digits):
    method = benchmark.get_method("mwn")
    run = _run("mwn", epochs=1)
    model = method.build_model(run, noisy_digits)
    trainer, batches, schedule = method.trainer(model, noisy_digits, run)
    assert isinstance(trainer, reweighting.MetaWeightNet) and trainer.model is model and schedule == []
    assert trainer.meta_data[0].shape[0] == 100


@pytest.mark.parametrize("architecture, feature_dim", [("mlp", 128), ("mlp2", 128), ("cnn", 32 * 2 * 2),
                                                       ("linear", 64)])
def test_advisor_splits_the_benchmark_architectures_before_their_classifier(architecture, feature_dim, noisy_digits):
    run = _run("advisor", architecture=architecture, epochs=1)
    method = benchmark.get_method("advisor")
    model = method.build_model(run, noisy_digits)
    trainer, _, _ = method.trainer(model, noisy_digits, run)
    assert isinstance(trainer, reweighting.AdvisorNetwork) and trainer.model is model
    # The head is the last Dense and the softmax: the advisor re-weights what the classifier reads.
    assert [type(layer) for layer in trainer.parts.head.layers] == [keras.layers.Dense, keras.layers.Activation]
    assert trainer.parts.feature_dim == feature_dim  # digits are 8 x 8 x 1; cnn pools twice to 2 x 2 x 32
    assert trainer.split == methods_lib.advisor_split(model)


def test_warpi_and_advisor_are_in_the_reweighting_preset_within_its_budget():
    config = benchmark.BenchmarkConfig.from_preset("reweighting")
    assert {"l2rw", "mwn", "warpi", "advisor"} <= set(config.method_list())
    assert benchmark.get_method("advisor").relative_step_cost > benchmark.get_method("l2rw").relative_step_cost
    assert benchmark.estimate_seconds(config.runs()) < 30 * 60


def test_balanced_accuracy_on_an_imbalanced_run_matches_numpy_on_the_saved_model(tmp_path):
    data = datasets.load("digits", noise="none", seed=0, imbalance="longtail:10")
    run = benchmark.RunSpec("digits", "mlp", "none", "ce", 0, 2, 64, "adam", 1e-3, None, "longtail:10")
    path = str(tmp_path / "model.keras")
    row, _ = benchmark.run_one(run, data, model_path=path, provenance=PROVENANCE)
    predicted = np.argmax(keras.saving.load_model(path, compile=False).predict(data.x_test, verbose=0), axis=-1)
    per_class = np.array([np.mean(predicted[data.y_test == c] == c) for c in range(10)])
    assert row["balanced_test_accuracy"] == pytest.approx(per_class.mean())
    counts = np.bincount(data.y_train_clean, minlength=10)
    rarest = np.argsort(counts, kind="stable")[:2]  # longtail: classes 9 and 8 have the fewest
    assert set(rarest) == {8, 9}
    assert row["rarest_classes_test_accuracy"] == pytest.approx(per_class[[8, 9]].mean())
    assert row["imbalance"] == "longtail:10" and row["num_train"] == len(data.y_train) < 1000
    assert os.path.exists(path)
