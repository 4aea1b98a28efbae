import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import SymmetricCrossEntropy


def test_value_by_hand():
    # alpha * -log 0.8 + beta * 4 * (1 - 0.8) and alpha * -log 0.6 + beta * 4 * 0.4.
    loss = SymmetricCrossEntropy(alpha=0.1, beta=1.0, reduction=None)
    expected = [0.1 * -math.log(0.8) + 0.8, 0.1 * -math.log(0.6) + 1.6]
    np.testing.assert_allclose(np.asarray(loss([0, 1], [[0.8, 0.2], [0.4, 0.6]])), expected, rtol=1e-6)


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    alpha, beta, log_zero = 0.5, 2.0, -6.0
    # With a one-hot label, RCE = -A * (sum of the other probabilities) = -A (1 - p_y).
    expected = alpha * -np.log(true_prob) + beta * -log_zero * (1.0 - true_prob)
    kwargs = {"alpha": alpha, "beta": beta, "log_zero": log_zero}
    loss_helpers.check_value(SymmetricCrossEntropy, kwargs, labels, probs, logits, expected)


def test_cross_entropy_part_is_keras_cross_entropy():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, seed=7)
    ours = SymmetricCrossEntropy(alpha=1.0, beta=0.0)(labels, probs)
    theirs = keras.losses.SparseCategoricalCrossentropy()(labels, probs)
    np.testing.assert_allclose(float(ours), float(theirs), rtol=1e-5)


def test_soft_labels_by_hand():
    # RCE = -(0.5 log 0.7 + 0.3 log 0.3 + 0.2 * A); label 0.0 reads as log 0 = A = -4.
    soft = np.array([[0.7, 0.3, 0.0]], dtype="float32")
    probs = np.array([[0.5, 0.3, 0.2]], dtype="float32")
    reverse = -(0.5 * math.log(0.7) + 0.3 * math.log(0.3) + 0.2 * -4.0)
    forward = -(0.7 * math.log(0.5) + 0.3 * math.log(0.3))
    loss = SymmetricCrossEntropy(alpha=0.1, beta=1.0)
    np.testing.assert_allclose(float(loss(soft, probs)), 0.1 * forward + reverse, rtol=1e-6)


def test_standard_loss_checks(tmp_path):
    config = {"alpha": 0.3, "beta": 0.5, "log_zero": -7.0, "from_logits": True}
    loss_helpers.check_standard(SymmetricCrossEntropy, {"alpha": 0.1, "beta": 1.0}, tmp_path, config)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"alpha": -0.1}, r"`alpha` must be a finite number in \[0, inf\)"),
        ({"beta": float("inf")}, r"`beta` must be a finite number in \[0, inf\)"),
        ({"log_zero": 0.0}, r"`log_zero` must be a finite number in \(-inf, 0\)"),
        ({"log_zero": 4.0}, r"`log_zero` must be a finite number in \(-inf, 0\)"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match="SymmetricCrossEntropy argument " + message):
        SymmetricCrossEntropy(**kwargs)
