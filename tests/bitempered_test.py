import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import BiTemperedLogisticLoss
from tfrobust.losses import bitempered


# ---- an independent float64 implementation: the normaliser by bisection ------


def _exp_t(u, t):
    return np.exp(u) if t == 1.0 else np.maximum(1.0 + (1.0 - t) * u, 0.0) ** (1.0 / (1.0 - t))


def _log_t(u, t):
    return np.log(u) if t == 1.0 else (u ** (1.0 - t) - 1.0) / (1.0 - t)


def _tempered_softmax_bisection(activations, t):
    """exp_t(a - lam, t) with sum 1; sum_c exp_t(a_c - lam) falls in lam, from >= 1 at lam = max(a)."""
    low = activations.max(axis=1, keepdims=True)
    high = low + 1e4
    for _ in range(200):
        middle = 0.5 * (low + high)
        above = _exp_t(activations - middle, t).sum(axis=1, keepdims=True) > 1.0
        low, high = np.where(above, middle, low), np.where(above, high, middle)
    return _exp_t(activations - 0.5 * (low + high), t)


def _bi_tempered_numpy(labels, activations, t1, t2, label_smoothing=0.0):
    num_classes = activations.shape[1]
    y = np.eye(num_classes)[labels]
    if label_smoothing:
        y = np.where(y == 1.0, 1.0 - label_smoothing, label_smoothing / (num_classes - 1))
    p = _tempered_softmax_bisection(activations.astype("float64"), t2)
    y_log_y = np.where(y > 0, y * _log_t(np.where(y > 0, y, 1.0), t1), 0.0)
    return (y_log_y - y * _log_t(p, t1) - (y ** (2 - t1) - p ** (2 - t1)) / (2 - t1)).sum(axis=1)


# ---- tests ---------------------------------------------------------------------


def test_value_by_hand_at_unit_temperatures():
    # t1 = t2 = 1 is cross-entropy: -log softmax([2, 0])_0 = log(1 + e^-2).
    loss = BiTemperedLogisticLoss(t1=1.0, t2=1.0, from_logits=True)
    np.testing.assert_allclose(float(loss([0], [[2.0, 0.0]])), math.log(1 + math.exp(-2)), rtol=1e-6)


@pytest.mark.parametrize("from_logits", [False, True])
def test_unit_temperatures_are_cross_entropy(from_logits):
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    y_pred = logits if from_logits else probs
    loss = BiTemperedLogisticLoss(t1=1.0, t2=1.0, from_logits=from_logits)
    expected = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)(labels, y_pred)
    np.testing.assert_allclose(float(loss(labels, y_pred)), float(expected), rtol=1e-5)


@pytest.mark.parametrize(
    "t1, t2, label_smoothing", [(0.8, 1.2, 0.0), (0.5, 1.5, 0.0), (0.2, 2.0, 0.1), (1.0, 1.0, 0.2)]
)
def test_value_against_numpy(t1, t2, label_smoothing):
    labels, _, logits = loss_helpers.random_batch(num_classes=5, seed=4)
    expected = _bi_tempered_numpy(labels, logits, t1, t2, label_smoothing)
    # Enough fixed-point iterations to converge in float32 ...
    converged = BiTemperedLogisticLoss(t1, t2, label_smoothing, num_iters=30, from_logits=True, reduction=None)
    np.testing.assert_allclose(np.asarray(converged(labels, logits)), expected, rtol=2e-5, atol=1e-6)
    # ... and the default 5, as the reference code, close to it.
    default = BiTemperedLogisticLoss(t1, t2, label_smoothing, from_logits=True, reduction=None)
    np.testing.assert_allclose(np.asarray(default(labels, logits)), expected, rtol=2e-3, atol=1e-4)


# Published values: the tests of the authors' reference implementation (google/bi-tempered-loss,
# tensorflow/loss_test.py), computed there with the default 5 fixed-point iterations.
REFERENCE_ACTIVATIONS = [[-0.5, 0.1, 2.0], [0.1, 1.5, -5.0], [4.0, -3.0, -6.0]]


def test_values_published_with_the_reference_implementation():
    soft_labels = np.array([[0.2, 0.3, 0.5], [0.6, 0.3, 0.1], [0.2, 0.8, 0.0]], dtype="float32")
    loss = BiTemperedLogisticLoss(t1=0.5, t2=1.5, from_logits=True, reduction=None)
    np.testing.assert_allclose(
        np.asarray(loss(soft_labels, REFERENCE_ACTIVATIONS)), [0.02301914, 0.18972909, 0.93874922], atol=1e-5
    )
    smoothed = BiTemperedLogisticLoss(t1=0.5, t2=1.5, label_smoothing=0.1, from_logits=True, reduction=None)
    np.testing.assert_allclose(
        np.asarray(smoothed([0, 1, 2], REFERENCE_ACTIVATIONS)), [0.76652711, 0.08627685, 1.35443510], atol=1e-5
    )
    # (The reference also lists t1 = t2 = 1: there it returns cross-entropy, which for this soft
    # label exceeds the Bregman divergence, KL(y || p), by the constant entropy of y.)
    for (t1, t2), expected in zip([(0.9, 1.1), (0.8, 1.2), (0.7, 1.3)], [0.45677936, 0.34298314, 0.26295574]):
        loss = BiTemperedLogisticLoss(t1=t1, t2=t2, from_logits=True, reduction=None)
        np.testing.assert_allclose(np.asarray(loss([[0.2, 0.5, 0.3]], [[-0.5, 0.1, 2.0]])), [expected], atol=1e-5)
    np.testing.assert_allclose(
        np.asarray(bitempered.tempered_softmax(np.array(REFERENCE_ACTIVATIONS, "float32"), 4.0, num_iters=5)),
        [[0.3205458, 0.32714278, 0.3523402], [0.3430056, 0.36491093, 0.29220778],
         [0.41369352, 0.30534995, 0.28299212]],
        atol=1e-6,
    )


def test_softmax_output_is_read_from_its_logits_in_graphs():
    # Logit gaps of 50 put p far below EPSILON: clipped probabilities would lose them, logits keep them.
    import tensorflow as tf

    logits = tf.constant([[50.0, 0.0, -50.0], [-3.0, 4.0, 0.5]])
    labels = np.array([2, 1])
    loss = BiTemperedLogisticLoss(t1=0.5, t2=1.5, reduction=None)
    in_graph = tf.function(lambda values: loss(labels, tf.nn.softmax(values)))(logits)
    expected = _bi_tempered_numpy(labels, logits.numpy(), 0.5, 1.5)
    np.testing.assert_allclose(np.asarray(in_graph), expected, rtol=2e-3)
    # Eagerly the same probabilities are clipped: the activation -50 is read as log(EPSILON) = -16.1.
    eager = np.asarray(loss(labels, tf.nn.softmax(logits)))
    assert abs(eager[0] - expected[0]) > 1e-3
    np.testing.assert_allclose(eager[1], expected[1], rtol=2e-3)


def test_probabilities_are_read_as_log_activations():
    # log p differs from the logits by a per-example shift, to which the tempered softmax is blind.
    labels, probs, logits = loss_helpers.random_batch(num_classes=4, seed=5)
    from_probs = BiTemperedLogisticLoss(reduction=None)(labels, probs)
    from_logits = BiTemperedLogisticLoss(from_logits=True, reduction=None)(labels, logits)
    np.testing.assert_allclose(np.asarray(from_probs), np.asarray(from_logits), rtol=1e-5, atol=1e-6)


def test_tempered_softmax_sums_to_one():
    _, _, logits = loss_helpers.random_batch(num_classes=10, seed=6)
    for t in (1.0, 1.2, 2.0):
        probs = np.asarray(bitempered.tempered_softmax(logits * 3, t, num_iters=30))
        np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(probs, _tempered_softmax_bisection(logits.astype("float64") * 3, t), atol=1e-6)


def test_bounded_for_t1_below_one():
    # One-hot: L = -log_t1 p_y - (1 - sum_c p_c^(2 - t1)) / (2 - t1) <= -log_t1 0 = 1 / (1 - t1).
    loss = BiTemperedLogisticLoss(t1=0.5, t2=1.5, from_logits=True)
    value = float(loss([0], [[-1e4, 1e4]]))
    assert 1.0 < value <= 1 / (1 - 0.5) + 1e-6


@pytest.mark.parametrize(
    "kwargs", [{"t1": 0.8, "t2": 1.2}, {"t1": 1.0, "t2": 1.0}, {"t1": 0.2, "t2": 4.0, "label_smoothing": 0.1}]
)
def test_standard_loss_checks(tmp_path, kwargs):
    config = {"t1": 0.6, "t2": 1.7, "label_smoothing": 0.05, "num_iters": 8, "from_logits": True}
    loss_helpers.check_standard(BiTemperedLogisticLoss, kwargs, tmp_path, config)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"t1": 1.5}, r"`t1` must be a finite number in \[0, 1\]"),
        ({"t1": -0.1}, r"`t1` must be a finite number in \[0, 1\]"),
        ({"t2": 0.8}, r"`t2` must be a finite number in \[1, inf\); got 0.8. \(t2 < 1 needs a binary-search"),
        ({"label_smoothing": 1.0}, r"`label_smoothing` must be a finite number in \[0, 1\)"),
        ({"num_iters": 0}, r"`num_iters` must be an integer of at least 1"),
        ({"num_iters": 2.5}, r"`num_iters` must be an integer"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match="BiTemperedLogisticLoss argument " + message):
        BiTemperedLogisticLoss(**kwargs)
