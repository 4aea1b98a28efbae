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
