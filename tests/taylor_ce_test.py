import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import TaylorCrossEntropy


def test_value_by_hand():
    # p_y = 0.6: 0.4 + 0.4^2 / 2 = 0.48; p_y = 0.9 at order 3: 0.1 + 0.01 / 2 + 0.001 / 3.
    np.testing.assert_allclose(float(TaylorCrossEntropy(order=2)([0], [[0.6, 0.4]])), 0.48, rtol=1e-6)
    np.testing.assert_allclose(
        float(TaylorCrossEntropy(order=3)([1], [[0.1, 0.9]])), 0.1 + 0.005 + 0.001 / 3, rtol=1e-6
    )


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    miss = 1.0 - probs.astype("float64")[np.arange(len(labels)), labels]
    for order in (1, 2, 4):
        expected = sum(miss**k / k for k in range(1, order + 1))
        loss_helpers.check_value(TaylorCrossEntropy, {"order": order}, labels, probs, logits, expected)


def test_high_order_approaches_cross_entropy():
    labels, probs, _ = loss_helpers.random_batch(num_classes=3, seed=9)
    probs = 0.5 + 0.5 * probs  # p_y >= 0.5 so the series converges fast
    probs /= probs.sum(axis=1, keepdims=True)
    cross_entropy = -np.log(probs[np.arange(len(labels)), labels])
    loss = TaylorCrossEntropy(order=40, reduction=None)
    np.testing.assert_allclose(np.asarray(loss(labels, probs)), cross_entropy, rtol=1e-4)


def test_standard_loss_checks(tmp_path):
    loss_helpers.check_standard(TaylorCrossEntropy, {"order": 3}, tmp_path, {"order": 4, "from_logits": True})


@pytest.mark.parametrize("order", [0, -1, 2.0, 2.5, "2", True, None])
def test_bad_order_raises(order):
    with pytest.raises(ValueError, match="TaylorCrossEntropy argument `order` must be an integer"):
        TaylorCrossEntropy(order=order)
