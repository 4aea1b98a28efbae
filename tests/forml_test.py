"""FORML against the explicit nested-tape look-ahead with a group objective written out here; the grouped task."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import distribute
from tfrobust import groups as groups_lib
from tfrobust import reweighting
from tfrobust.reweighting import forml
from tests.l2rw_test import _data
from tests.l2rw_test import _model
from tests.l2rw_test import reference_scores as l2rw_reference_scores
from tests.l2rw_test import reference_weights


def _meta_groups(meta=8):
    # Imbalanced groups (6 and 2): a group objective then differs from the plain mean.
    return np.array([0, 0, 1, 0, 0, 1, 0, 0][:meta])


def reference_scores(model, x, y, x_meta, y_meta, g_meta, objective, step_size=0.5):
    """-dF(theta_hat(eps))/d eps_i / alpha at eps = 0, F the group objective written here, by nested tapes."""
    def fairness(meta_losses):
        group_means = tf.stack([tf.reduce_mean(tf.boolean_mask(meta_losses, g_meta == g))
                                for g in np.unique(g_meta)])
        return tf.reduce_max(group_means) if objective == "worst_group" else tf.reduce_mean(group_means)

    return l2rw_reference_scores(model, x, y, x_meta, y_meta, step_size, fairness) / step_size


@pytest.mark.parametrize("objective", forml.OBJECTIVES)
@pytest.mark.parametrize("batch_norm", [False, True])
def test_weights_and_scores_equal_the_nested_tape_lookahead(objective, batch_norm):
    x, y, x_meta, y_meta = _data()
    g_meta = _meta_groups()
    model = _model(batch_norm)
    trainer = reweighting.FORML(model, meta_data=(x_meta, y_meta, g_meta), objective=objective)
    expected = reference_scores(model, x, y, x_meta, y_meta, g_meta, objective)
    scores = trainer.example_scores(x, y)
    assert np.all(np.isfinite(scores)) and (expected > 0).any() and (expected < 0).any()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    weights = trainer.example_weights(x, y)
    np.testing.assert_allclose(weights, reference_weights(expected), atol=1e-6)
    np.testing.assert_allclose(weights.sum(), 1.0, rtol=1e-6)
    # The objective matters: L2RW's plain meta mean gives other weights on these groups.
    plain = reweighting.L2RW(model, meta_data=(x_meta, y_meta)).example_weights(x, y)
    assert np.abs(weights - plain).max() > 1e-3


def test_group_coefficients_worked_by_hand():
    losses = tf.constant([1.0, 2.0, 3.0, 10.0])
    groups = tf.constant([0, 0, 0, 1], tf.int64)
    balanced = forml.group_coefficients(groups, losses, 2, "group_balanced").numpy()
    np.testing.assert_allclose(balanced, [1 / 6, 1 / 6, 1 / 6, 1 / 2])  # (mean(1,2,3) + 10) / 2
    worst = forml.group_coefficients(groups, losses, 2, "worst_group").numpy()
    np.testing.assert_allclose(worst, [0, 0, 0, 1])  # group 1's mean 10 > 2
    # A group absent from the batch counts for nothing; the rest are averaged over the groups present.
    absent = forml.group_coefficients(groups, losses, 3, "group_balanced").numpy()
    np.testing.assert_allclose(absent, balanced)


def test_a_training_step_is_the_weighted_sgd_step():
    x, y, x_meta, y_meta = _data()
    model = _model(False)
    trainer = reweighting.FORML(model, meta_data=(x_meta, y_meta, _meta_groups()))
    trainer.compile(optimizer=keras.optimizers.SGD(0.5))
    weights = trainer.example_weights(x, y)
    before = [v.numpy() for v in model.trainable_variables]
    with tf.GradientTape() as tape:
        losses = keras.losses.sparse_categorical_crossentropy(y, model(x, training=True))
        objective = tf.reduce_sum(weights * losses)
    expected = [b - 0.5 * g.numpy() for b, g in zip(before, tape.gradient(objective, model.trainable_variables))]
    trainer.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    assert not np.allclose(before[0], expected[0])
    for got, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)


def test_mirrored_strategy_matches_single_device():
    # Group sums and counts are all-reduced, so two replicas see the objective of the global meta batch.
    def train(strategy):
        x, y, x_meta, y_meta = _data(n=32, meta=8)
        with strategy.scope():
            model = _model(False)
            trainer = reweighting.FORML(model, meta_data=(x_meta, y_meta, _meta_groups()), seed=1)
            trainer.compile(optimizer=keras.optimizers.SGD(0.2, momentum=0.9))
        trainer.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        return [w.numpy() for w in model.weights]

    single = train(distribute.get_strategy("off"))
    double = train(distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"]))
    assert not np.allclose(single[0], _model(False).get_weights()[0]), "training must have moved the weights"
    for a, b in zip(double, single):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_config_round_trip_and_save_load(tmp_path):
    x, y, x_meta, y_meta = _data()
    trainer = reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, _meta_groups()), objective="group_balanced",
                                meta_batch_size=4, seed=3)
    config = trainer.get_config()
    assert set(inspect.signature(reweighting.FORML.__init__).parameters) - {"self", "kwargs", "meta_data"} <= set(config)
    assert config["num_groups"] == 2 and config["objective"] == "group_balanced"
    rebuilt = reweighting.FORML.from_config(config)
    assert (rebuilt.num_groups, rebuilt.objective, rebuilt.meta_batch_size, rebuilt.seed) == (2, "group_balanced", 4, 3)
    assert rebuilt.meta_data is None
    x_back, y_back, g_back = trainer.meta_data
    np.testing.assert_array_equal(y_back, y_meta)
    np.testing.assert_array_equal(g_back, _meta_groups())
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    trainer.fit(x, y, batch_size=6, epochs=2, verbose=0)
    path = str(tmp_path / "classifier.keras")
    trainer.model.save(path)
    loaded = keras.saving.load_model(path)
    before = trainer.model.evaluate(x, y, verbose=0)
    assert np.all(np.isfinite(before))
    np.testing.assert_allclose(loaded.evaluate(x, y, verbose=0), before, rtol=1e-6)


def test_bad_input_is_named():
    x, y, x_meta, y_meta = _data()
    with pytest.raises(ValueError, match="no group labels"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta))
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\).*num_groups"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, np.array([0, 1, 2, 0, 1, 0, 1, 0])), num_groups=2)
    with pytest.raises(ValueError, match=r"must lie in \[0, 2\)"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, np.array([0, 1, -1, 0, 1, 0, 1, 0])))
    with pytest.raises(ValueError, match=r"groups \[2\] have no meta example"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, _meta_groups()), num_groups=3)
    with pytest.raises(ValueError, match="integers of shape"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, np.full(8, 0.5)))
    with pytest.raises(ValueError, match="objective must be one of"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta, _meta_groups()), objective="mean")
    with pytest.raises(ValueError, match=r"meta labels must lie in \[0, 3\)"):
        reweighting.FORML(_model(False), meta_data=(x_meta, y_meta + 3, _meta_groups()))
    unfed = reweighting.FORML(_model(False))
    unfed.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="has no meta set"):
        unfed.fit(x, y, epochs=1, verbose=0)


def test_grouped_task_is_seeded_balanced_where_it_should_be_and_inverts_the_minority():
    task = groups_lib.load_grouped("digits", minority_fraction=0.05, noise="symmetric:0.2", seed=0)
    again = groups_lib.load_grouped("digits", minority_fraction=0.05, noise="symmetric:0.2", seed=0)
    np.testing.assert_array_equal(task.g_train, again.g_train)
    np.testing.assert_array_equal(task.meta[0], again.meta[0])
    assert task.g_train.mean() == pytest.approx(0.05, abs=0.002)
    assert task.g_test.mean() == pytest.approx(0.5, abs=0.002)
    x_meta, y_meta, g_meta = task.meta
    for label in range(10):  # 5 of each class in each group, clean labels
        assert np.bincount(g_meta[y_meta == label], minlength=2).tolist() == [5, 5]
    assert (task.y_train != task.y_train_clean).mean() == pytest.approx(0.2, abs=0.04)
    # A plain digit is mostly dark background (near 0); an inverted one mostly near 1.
    assert np.median(task.x_test[task.g_test == 0]) < 0.1 < 0.9 < np.median(task.x_test[task.g_test == 1])
    assert len(task.y_train) + len(y_meta) + len(task.y_test) == 1797
    with pytest.raises(ValueError, match="minority_fraction"):
        groups_lib.load_grouped("digits", minority_fraction=0.7)


def test_group_accuracies_worked_by_hand():
    y_true = np.array([0, 1, 2, 3, 4, 5])
    y_pred = np.array([0, 1, 0, 3, 0, 0])
    group = np.array([0, 0, 0, 1, 1, 1])
    np.testing.assert_allclose(groups_lib.group_accuracies(y_true, y_pred, group), [2 / 3, 1 / 3])
    assert groups_lib.worst_group_accuracy(y_true, y_pred, group) == pytest.approx(1 / 3)
    assert np.isnan(groups_lib.group_accuracies(y_true, y_pred, group, num_groups=3)[2])
    with pytest.raises(ValueError, match="aligned"):
        groups_lib.group_accuracies(y_true, y_pred[:3], group)


def test_group_balanced_on_a_group_balanced_meta_set_is_l2rw():
    # Equal group counts make the mean of group means the plain mean: FORML's weights must be L2RW's.
    x, y, x_meta, y_meta = _data()
    model = _model(False)
    balanced = np.array([0, 1] * 4)
    weights = reweighting.FORML(model, meta_data=(x_meta, y_meta, balanced),
                                objective="group_balanced").example_weights(x, y)
    plain = reweighting.L2RW(model, meta_data=(x_meta, y_meta)).example_weights(x, y)
    assert np.count_nonzero(plain) > 1
    np.testing.assert_allclose(weights, plain, atol=1e-6)
