import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import FocalLoss


def test_value_by_hand():
    # -(1 - 0.5)^2 log 0.5; with alpha = [0.25, 1]: the label-1 example weighs 1.
    np.testing.assert_allclose(float(FocalLoss(gamma=2.0)([0], [[0.5, 0.5]])), 0.25 * math.log(2), rtol=1e-6)
    loss = FocalLoss(gamma=1.0, alpha=[0.25, 1.0], reduction=None)
    expected = [0.25 * 0.2 * -math.log(0.8), 1.0 * 0.7 * -math.log(0.3)]
    np.testing.assert_allclose(np.asarray(loss([0, 1], [[0.8, 0.2], [0.7, 0.3]])), expected, rtol=1e-6)


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=4, seed=2)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    class_weights = np.array([0.1, 0.5, 1.0, 2.0])
    cases = [(0.0, None, 1.0), (0.5, 0.25, 0.25), (2.0, class_weights.tolist(), class_weights[labels])]
    for gamma, alpha, weight in cases:
        expected = -weight * (1 - true_prob) ** gamma * np.log(true_prob)
        loss_helpers.check_value(FocalLoss, {"gamma": gamma, "alpha": alpha}, labels, probs, logits, expected)


@pytest.mark.parametrize("from_logits", [False, True])
def test_agrees_with_keras_categorical_focal_crossentropy(from_logits):
    labels, probs, logits = loss_helpers.random_batch(num_classes=4, batch=8, seed=6)
    y_pred = logits if from_logits else probs
    onehot = np.eye(4, dtype="float32")[labels]
    soft = 0.8 * onehot + 0.05  # Keras's form is linear in y, so soft labels agree too
    for y_true in (onehot, soft):
        kwargs = {"alpha": 0.25, "gamma": 1.5, "from_logits": from_logits, "reduction": None}
        theirs = keras.losses.CategoricalFocalCrossentropy(**kwargs)
        ours = FocalLoss(**kwargs)
        np.testing.assert_allclose(np.asarray(ours(y_true, y_pred)), np.asarray(theirs(y_true, y_pred)), rtol=1e-5)


def test_gamma_zero_is_cross_entropy():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, seed=3)
    cross_entropy = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    np.testing.assert_allclose(float(FocalLoss(gamma=0.0)(labels, probs)), cross_entropy, rtol=1e-5)


@pytest.mark.parametrize("kwargs", [{"gamma": 2.0}, {"gamma": 0.5, "alpha": [0.2, 0.4, 0.6, 0.8]}, {"gamma": 0.0}])
def test_standard_loss_checks(tmp_path, kwargs):
    loss_helpers.check_standard(FocalLoss, kwargs, tmp_path, {"from_logits": True, **kwargs})


def test_alpha_is_stored_as_plain_numbers():
    assert FocalLoss(alpha=np.array([1, 2])).get_config()["alpha"] == [1.0, 2.0]
    assert FocalLoss(alpha=np.float32(0.5)).alpha == 0.5
    assert FocalLoss().alpha is None


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"gamma": -1.0}, r"FocalLoss argument `gamma` must be a finite number in \[0, inf\)"),
        ({"alpha": -0.25}, r"FocalLoss argument `alpha` must be None, one non-negative number, or a list"),
        ({"alpha": [0.5, -1.0]}, r"`alpha` must be None"),
        ({"alpha": [[0.5, 1.0]]}, r"`alpha` must be None"),
        ({"alpha": []}, r"`alpha` must be None"),
        ({"alpha": "balanced"}, r"`alpha` must be None"),
    ],
)
def test_bad_hyperparameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FocalLoss(**kwargs)


def test_class_weights_must_match_the_classes():
    with pytest.raises(ValueError, match="FocalLoss has 2 class weights `alpha` but the predictions have 3 classes"):
        FocalLoss(alpha=[1.0, 2.0])([0], [[0.2, 0.3, 0.5]])
