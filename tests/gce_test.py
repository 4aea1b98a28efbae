import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import GeneralizedCrossEntropy


def test_value_by_hand():
    # p_y = 0.64 and 0.25; q = 0.5: (1 - 0.8) / 0.5 = 0.4 and (1 - 0.5) / 0.5 = 1.0.
    loss = GeneralizedCrossEntropy(q=0.5, reduction=None)
    np.testing.assert_allclose(np.asarray(loss([0, 1], [[0.64, 0.36], [0.75, 0.25]])), [0.4, 1.0], rtol=1e-6)
    np.testing.assert_allclose(float(GeneralizedCrossEntropy(q=0.5)([0, 1], [[0.64, 0.36], [0.75, 0.25]])), 0.7)


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    for q in (0.2, 0.7, 1.0):
        expected = (1.0 - true_prob**q) / q
        loss_helpers.check_value(GeneralizedCrossEntropy, {"q": q}, labels, probs, logits, expected)
    # q = 1 is 1 - p_y, half the absolute error sum_c |y_c - p_c|.
    onehot = np.eye(5)[labels]
    np.testing.assert_allclose(
        np.asarray(GeneralizedCrossEntropy(q=1.0, reduction=None)(labels, probs)),
        0.5 * np.abs(onehot - probs).sum(axis=1),
        rtol=1e-5,
    )


def test_agrees_with_keras_generalized_cross_entropy():
    # Keras's version takes integer labels and q in (0, 1); ours agrees there.
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, batch=8, seed=5)
    for q in (0.3, 0.7):
        ours = GeneralizedCrossEntropy(q=q, reduction=None)(labels, probs)
        theirs = keras.losses.CategoricalGeneralizedCrossEntropy(q=q, reduction=None)(labels, probs)
        np.testing.assert_allclose(np.asarray(ours), np.asarray(theirs), rtol=1e-5, atol=1e-7)
        np.testing.assert_allclose(
            float(GeneralizedCrossEntropy(q=q)(labels, probs)),
            float(keras.losses.CategoricalGeneralizedCrossEntropy(q=q)(labels, probs)),
            rtol=1e-5,
        )


def test_soft_labels_use_label_weighted_probability():
    soft = np.array([[0.7, 0.3, 0.0]], dtype="float32")
    probs = np.array([[0.5, 0.3, 0.2]], dtype="float32")
    true_prob = 0.7 * 0.5 + 0.3 * 0.3
    expected = (1.0 - true_prob**0.7) / 0.7
    np.testing.assert_allclose(float(GeneralizedCrossEntropy()(soft, probs)), expected, rtol=1e-6)


def test_standard_loss_checks(tmp_path):
    config = {"q": 0.3, "from_logits": True, "name": "gce"}
    loss_helpers.check_standard(GeneralizedCrossEntropy, {"q": 0.5}, tmp_path, config)


@pytest.mark.parametrize("q", [0.0, -0.5, 1.5, float("nan"), "0.7x", True, None])
def test_bad_q_raises(q):
    with pytest.raises(ValueError, match=r"GeneralizedCrossEntropy argument `q` must be a finite number in \(0, 1\]"):
        GeneralizedCrossEntropy(q=q)
