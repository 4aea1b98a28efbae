import math

import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import NCEandRCE
from tfrobust.losses import NormalizedCrossEntropy
from tfrobust.losses import ReverseCrossEntropy


def _normalized_cross_entropy_numpy(labels, probs):
    log_probs = np.log(probs.astype("float64"))
    return -log_probs[np.arange(len(labels)), labels] / -log_probs.sum(axis=1)


def test_values_by_hand():
    probs = [[0.5, 0.25, 0.25]]
    # NCE: log 2 / (log 2 + 2 log 4) = 1 / 5; RCE: -(0.25 + 0.25) * -4 = 2.
    np.testing.assert_allclose(float(NormalizedCrossEntropy()([0], probs)), 0.2, rtol=1e-6)
    np.testing.assert_allclose(float(ReverseCrossEntropy()([0], probs)), 2.0, rtol=1e-6)
    np.testing.assert_allclose(float(NCEandRCE(alpha=2.0, beta=0.5)([0], probs)), 2 * 0.2 + 0.5 * 2.0, rtol=1e-6)
    # For label 1: NCE = log 4 / (5 log 2) = 2 / 5; RCE = 4 * 0.75.
    np.testing.assert_allclose(float(NCEandRCE()([1], probs)), 0.4 + 3.0, rtol=1e-6)


def test_values_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=6, seed=4)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    nce = _normalized_cross_entropy_numpy(labels, probs)
    rce = 6.0 * (1.0 - true_prob)  # log_zero = -6
    cases = [
        (NormalizedCrossEntropy, {}, nce),
        (ReverseCrossEntropy, {"log_zero": -6.0}, rce),
        (NCEandRCE, {"alpha": 0.7, "beta": 0.2, "log_zero": -6.0}, 0.7 * nce + 0.2 * rce),
    ]
    for loss_class, kwargs, expected in cases:
        loss_helpers.check_value(loss_class, kwargs, labels, probs, logits, expected)


def test_normalized_cross_entropy_is_bounded_and_symmetric():
    # In [0, 1], and its sum over all K labels is exactly 1 (what makes it noise-tolerant).
    _, probs, _ = loss_helpers.random_batch(num_classes=5, seed=8)
    loss = NormalizedCrossEntropy(reduction=None)
    total = sum(np.asarray(loss(np.full(len(probs), k), probs)) for k in range(5))
    np.testing.assert_allclose(total, np.ones(len(probs)), rtol=1e-5)


def test_soft_labels_by_hand():
    soft = np.array([[0.7, 0.3, 0.0]], dtype="float32")
    probs = np.array([[0.5, 0.3, 0.2]], dtype="float32")
    logs = [math.log(0.5), math.log(0.3), math.log(0.2)]
    nce = -(0.7 * logs[0] + 0.3 * logs[1]) / -sum(logs)
    rce = -(0.5 * math.log(0.7) + 0.3 * math.log(0.3) + 0.2 * -4.0)
    np.testing.assert_allclose(float(NCEandRCE()(soft, probs)), nce + rce, rtol=1e-6)


@pytest.mark.parametrize(
    "loss_class, kwargs",
    [(NormalizedCrossEntropy, {}), (ReverseCrossEntropy, {"log_zero": -4.0}), (NCEandRCE, {"alpha": 1.0, "beta": 1.0})],
)
def test_standard_loss_checks(tmp_path, loss_class, kwargs):
    loss_helpers.check_standard(loss_class, kwargs, tmp_path, {"from_logits": True, "name": "renamed", **kwargs})


@pytest.mark.parametrize(
    "loss_class, kwargs, message",
    [
        (NCEandRCE, {"alpha": -1.0}, r"NCEandRCE argument `alpha` must be a finite number in \[0, inf\)"),
        (NCEandRCE, {"beta": "big"}, r"NCEandRCE argument `beta` must be a finite number in \[0, inf\)"),
        (NCEandRCE, {"log_zero": 1.0}, r"NCEandRCE argument `log_zero` must be a finite number in \(-inf, 0\)"),
        (ReverseCrossEntropy, {"log_zero": 0}, r"ReverseCrossEntropy argument `log_zero`"),
    ],
)
def test_bad_hyperparameters_raise(loss_class, kwargs, message):
    with pytest.raises(ValueError, match=message):
        loss_class(**kwargs)
