import math

import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import Poly1CrossEntropy


def test_value_by_hand():
    # -log 0.5 + 1 * (1 - 0.5); with epsilon = -1 the (1 - p) term cancels CE's first term.
    np.testing.assert_allclose(float(Poly1CrossEntropy()([0], [[0.5, 0.5]])), math.log(2) + 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        float(Poly1CrossEntropy(epsilon=-1.0)([1], [[0.2, 0.8]])), -math.log(0.8) - 0.2, rtol=1e-6
    )


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    for epsilon in (-1.0, 0.0, 2.5):
        expected = -np.log(true_prob) + epsilon * (1.0 - true_prob)
        # atol: at epsilon = -1 the two terms cancel to O(1e-3) where p_y is near 1.
        loss_helpers.check_value(Poly1CrossEntropy, {"epsilon": epsilon}, labels, probs, logits, expected, atol=1e-6)


def test_smoothed_labels_as_in_the_paper_code():
    # Leng et al.'s code: pt = sum(labels * softmax(logits)); CE against the smoothed labels.
    smoothed = np.array([[0.9, 0.05, 0.05]], dtype="float32")
    probs = np.array([[0.6, 0.3, 0.1]], dtype="float32")
    cross_entropy = -(0.9 * math.log(0.6) + 0.05 * math.log(0.3) + 0.05 * math.log(0.1))
    pt = 0.9 * 0.6 + 0.05 * 0.3 + 0.05 * 0.1
    value = float(Poly1CrossEntropy(epsilon=2.0)(smoothed, probs))
    np.testing.assert_allclose(value, cross_entropy + 2 * (1 - pt), rtol=1e-6)


def test_standard_loss_checks(tmp_path):
    loss_helpers.check_standard(Poly1CrossEntropy, {"epsilon": 2.0}, tmp_path, {"epsilon": -0.5, "from_logits": True})


@pytest.mark.parametrize("epsilon", [-1.5, float("nan"), float("inf"), [1.0]])
def test_bad_epsilon_raises(epsilon):
    message = r"Poly1CrossEntropy argument `epsilon` must be a finite number in \[-1, inf\)"
    with pytest.raises(ValueError, match=message):
        Poly1CrossEntropy(epsilon=epsilon)
