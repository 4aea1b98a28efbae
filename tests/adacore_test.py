"""tfrobust.selection: greedy facility location, AdaCore's curvature and coresets, and training on them."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import datasets, models
from tfrobust.selection import AdaCore, CurvatureAverage, RandomSubset, class_budgets, facility_location
from tfrobust.selection import logit_gradients, logit_hessian_diagonal


def _similarity(vectors):
    distances = np.array([[np.linalg.norm(a - b) for b in vectors] for a in vectors])
    return distances.max() - distances, distances


def test_greedy_first_pick_is_the_exhaustive_best_single_element_and_clusters_cover_everything():
    vectors = np.random.default_rng(0).normal(size=(9, 2))
    similarity, distances = _similarity(vectors)
    selected, sizes = facility_location.greedy_facility_location(vectors, 3)
    values = [facility_location.facility_location_value(similarity, [j]) for j in range(9)]
    assert selected[0] == int(np.argmax(values))
    # Each later pick has the largest marginal gain given the earlier ones (checked over every candidate).
    for step in (1, 2):
        before = facility_location.facility_location_value(similarity, selected[:step])
        gains = [facility_location.facility_location_value(similarity, [*selected[:step], j]) - before
                 if j not in selected[:step] else -1 for j in range(9)]
        assert selected[step] == int(np.argmax(gains))
    # The best set of three, by brute force: greedy is within 1 - 1/e of it (here it is the optimum or close).
    best = max(facility_location.facility_location_value(similarity, s) for s in itertools.combinations(range(9), 3))
    assert facility_location.facility_location_value(similarity, selected) >= (1 - 1 / np.e) * best
    # Cluster sizes: every point goes to its nearest chosen point.
    nearest = np.argmin(distances[:, selected], axis=1)
    np.testing.assert_array_equal(sizes, np.bincount(nearest, minlength=3))
    assert sizes.sum() == 9


def test_greedy_picks_one_centre_per_cluster_on_a_hand_worked_case():
    # Three tight groups of 4, 2 and 1 points on a line: the best set of size 3 takes one point of each,
    # and the weights are the group sizes.
    vectors = np.array([[0.0], [0.1], [-0.1], [0.05], [10.0], [10.1], [20.0]])
    selected, sizes = facility_location.greedy_facility_location(vectors, 3)
    groups = [set(range(4)), {4, 5}, {6}]
    assert [next(i for i, g in enumerate(groups) if s in g) for s in selected] == [0, 1, 2]
    np.testing.assert_array_equal(sizes, [4, 2, 1])
    similarity, _ = _similarity(vectors)
    best = max(facility_location.facility_location_value(similarity, s) for s in itertools.combinations(range(7), 3))
    # Greedy's first pick is the centre of all seven points, not of its group, so it is a hair short of the best.
    assert best * (1 - 1e-3) <= facility_location.facility_location_value(similarity, selected) <= best


def test_greedy_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="k must be in"):
        facility_location.greedy_facility_location(np.zeros((3, 2)), 4)
    with pytest.raises(ValueError, match="k must be in"):
        facility_location.greedy_facility_location(np.zeros((3, 2)), 0)


def test_logit_gradient_and_hessian_diagonal_match_gradient_tape():
    logits = tf.constant(np.random.default_rng(1).normal(size=(5, 4)))
    labels = np.array([0, 3, 1, 1, 2])
    with tf.GradientTape(persistent=True) as outer:
        outer.watch(logits)
        with tf.GradientTape() as inner:
            inner.watch(logits)
            loss = tf.reduce_sum(tf.nn.sparse_softmax_cross_entropy_with_logits(labels, logits))
        gradient = inner.gradient(loss, logits)  # row i depends on example i only
    hessian = outer.batch_jacobian(gradient, logits).numpy()  # (5, 4, 4), per example
    probabilities = tf.nn.softmax(logits).numpy()
    assert np.all(np.isfinite(gradient.numpy()))
    np.testing.assert_allclose(logit_gradients(probabilities, labels), gradient.numpy(), atol=1e-10)
    np.testing.assert_allclose(logit_hessian_diagonal(probabilities),
                               np.stack([np.diag(h) for h in hessian]), atol=1e-10)


def test_curvature_average_matches_numpy_bias_corrected_moments():
    rng = np.random.default_rng(2)
    average = CurvatureAverage((3, 2), hessian_decay=0.8, gradient_decay=0.5, epsilon=1e-3)
    gradients, diagonals = rng.normal(size=(3, 3, 2)), rng.uniform(0.01, 0.25, size=(3, 3, 2))
    for step in range(3):
        preconditioned = average.update(gradients[step], diagonals[step])
    # Written out: v_t = sum_s (1 - b) b^(t - s) D_s^2, H = sqrt(v_t / (1 - b^t)); likewise m_t with a.
    b, a = 0.8, 0.5
    v = sum((1 - b) * b ** (2 - s) * diagonals[s] ** 2 for s in range(3)) / (1 - b ** 3)
    m = sum((1 - a) * a ** (2 - s) * gradients[s] for s in range(3)) / (1 - a ** 3)
    np.testing.assert_allclose(average.hessian(), np.sqrt(v))
    np.testing.assert_allclose(preconditioned, m / (np.sqrt(v) + 1e-3))
    # One step with gradient_decay 0 is the current gradient over the current diagonal.
    first = CurvatureAverage((3, 2), hessian_decay=0.9, epsilon=1e-3).update(gradients[0], diagonals[0])
    np.testing.assert_allclose(first, gradients[0] / (diagonals[0] + 1e-3))


def test_class_budgets_are_proportional_sum_to_the_size_and_keep_every_class():
    labels = np.repeat([0, 1, 2], [60, 30, 10])
    np.testing.assert_array_equal(class_budgets(labels, 10), [6, 3, 1])
    budgets = class_budgets(labels, 4)
    assert budgets.sum() == 4 and budgets.min() >= 1
    np.testing.assert_array_equal(class_budgets(labels, 100), [60, 30, 10])


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", seed=0)


def _model(digits, output="softmax"):
    return models.build_model("mlp", digits.input_shape, digits.num_classes, output=output, seed=0)


def test_adacore_coreset_is_per_class_facility_location_on_preconditioned_gradients(digits):
    model = _model(digits)
    coreset = AdaCore(digits.x_train, digits.y_train, fraction=0.1, hessian_decay=0.9)
    indices, weights = coreset.select(model)
    assert len(indices) == coreset.size == round(0.1 * len(digits.y_train)) and len(set(indices)) == len(indices)
    np.testing.assert_array_equal(np.bincount(digits.y_train[indices], minlength=10), coreset.budgets)
    np.testing.assert_allclose(weights, coreset.cluster_sizes * coreset.size / len(digits.y_train), rtol=1e-6)
    assert weights.mean() == pytest.approx(1.0, rel=1e-5)
    # Independently: the same greedy per class on p - onehot over p (1 - p) (first selection, no averaging yet).
    probabilities = keras.ops.convert_to_numpy(model(digits.x_train, training=False)).astype(np.float64)
    features = (probabilities - np.eye(10)[digits.y_train]) / (probabilities * (1 - probabilities) + 1e-4)
    start = 0
    for label in range(10):
        members = np.flatnonzero(digits.y_train == label)
        budget = coreset.budgets[label]
        chosen, sizes = facility_location.greedy_facility_location(features[members], budget)
        np.testing.assert_array_equal(indices[start:start + budget], members[chosen])
        assert coreset.cluster_sizes[start:start + budget].sum() == len(members)  # clusters cover the class
        start += budget


def test_adacore_trains_above_chance_with_fit_and_reselects_every_epochs(digits):
    keras.utils.set_random_seed(0)
    model = _model(digits, output="logits")
    coreset = AdaCore(digits.x_train, digits.y_train, fraction=0.2, every=2, from_logits=True, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), jit_compile=False)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(coreset.indices.copy()))
    history = model.fit(coreset.dataset(32), epochs=5, callbacks=[coreset, record], shuffle=False, verbose=0)
    assert coreset.selections == 3  # epochs 0, 2, 4
    assert len(history.history["loss"]) == 5 and np.all(np.isfinite(history.history["loss"]))
    np.testing.assert_array_equal(seen[0], seen[1])  # kept between selections
    accuracy = np.mean(np.argmax(model.predict(digits.x_test, verbose=0), axis=-1) == digits.y_test)
    assert accuracy > 0.5, accuracy  # chance is 0.1; 5 epochs on 20% of digits


def test_dataset_yields_the_current_subset_with_its_weights(digits):
    subset = RandomSubset(digits.x_train, digits.y_train, size=50, seed=3)
    x, y, w = (np.concatenate(parts) for parts in zip(*[(b[0].numpy(), b[1].numpy(), b[2].numpy())
                                                        for b in subset.dataset(16)]))
    assert len(y) == 50 and np.all(w == 1.0)
    order = np.lexsort(x.reshape(50, -1).T)
    expected = digits.x_train[subset.indices]
    np.testing.assert_array_equal(x[order], expected[np.lexsort(expected.reshape(50, -1).T)])
    before = subset.indices.copy()
    subset.select()
    assert not np.array_equal(before, subset.indices)
    _, y_after, _ = next(iter(subset.dataset(50, seed=0)))
    np.testing.assert_array_equal(np.sort(y_after.numpy()), np.sort(digits.y_train[subset.indices]))


def test_named_errors_on_bad_input(digits):
    x, y = digits.x_train, digits.y_train
    with pytest.raises(ValueError, match="larger than the data"):
        AdaCore(x, y, size=len(y) + 1)
    for fraction in (0, 1.5, -0.1, True):
        with pytest.raises(ValueError, match=r"fraction must be a number in \(0, 1\]"):
            AdaCore(x, y, fraction=fraction)
    with pytest.raises(ValueError, match="exactly one of"):
        AdaCore(x, y)
    with pytest.raises(ValueError, match="one example of each"):
        AdaCore(x, y, size=5)
    with pytest.raises(ValueError, match="every must be"):
        AdaCore(x, y, fraction=0.5, every=0)
    with pytest.raises(ValueError, match="hessian_decay"):
        AdaCore(x, y, fraction=0.5, hessian_decay=1.0)
    with pytest.raises(ValueError, match="one-hot labels"):
        AdaCore(x, np.eye(10)[y], fraction=0.5)
    with pytest.raises(ValueError, match="one row per example"):
        AdaCore(x[:-1], y, fraction=0.5)
    with pytest.raises(ValueError, match="from_logits=True"):
        AdaCore(x, y, fraction=0.5).select(_model(digits, output="logits"))
    assert AdaCore(x, y, fraction=1.0).size == len(y)
