import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import loss_helpers
from tfrobust.losses import BootstrapHard
from tfrobust.losses import BootstrapSoft


def test_values_by_hand():
    # Soft, beta = 0.5: target [0.75, 0.25] against p = [0.5, 0.5]: log 2.
    np.testing.assert_allclose(float(BootstrapSoft(beta=0.5)([0], [[0.5, 0.5]])), math.log(2), rtol=1e-6)
    # Hard, beta = 0.8, label 1, argmax 0: target [0.2, 0.8]: -(0.2 log 0.8 + 0.8 log 0.2).
    expected = -(0.2 * math.log(0.8) + 0.8 * math.log(0.2))
    np.testing.assert_allclose(float(BootstrapHard(beta=0.8)([1], [[0.8, 0.2]])), expected, rtol=1e-6)


def test_values_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    p = probs.astype("float64")
    onehot = np.eye(5)[labels]
    predicted_class = np.eye(5)[np.argmax(p, axis=1)]
    for beta in (0.0, 0.6, 0.95):
        soft = -((beta * onehot + (1 - beta) * p) * np.log(p)).sum(axis=1)
        hard = -((beta * onehot + (1 - beta) * predicted_class) * np.log(p)).sum(axis=1)
        loss_helpers.check_value(BootstrapSoft, {"beta": beta}, labels, probs, logits, soft)
        loss_helpers.check_value(BootstrapHard, {"beta": beta}, labels, probs, logits, hard)


def test_beta_one_is_cross_entropy():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, seed=3)
    cross_entropy = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    np.testing.assert_allclose(float(BootstrapSoft(beta=1.0)(labels, probs)), cross_entropy, rtol=1e-5)
    np.testing.assert_allclose(float(BootstrapHard(beta=1.0)(labels, probs)), cross_entropy, rtol=1e-5)


@pytest.mark.parametrize("loss_class", [BootstrapSoft, BootstrapHard])
def test_prediction_in_target_is_constant(loss_class):
    # With the target held constant, d loss / d logits = p - target (summed over the batch).
    labels, probs, logits = loss_helpers.random_batch(num_classes=4, seed=5)
    beta = 0.7
    onehot = np.eye(4)[labels]
    predicted = probs if loss_class is BootstrapSoft else np.eye(4)[np.argmax(probs, axis=1)]
    target = beta * onehot + (1 - beta) * predicted
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        value = loss_class(beta=beta, from_logits=True, reduction="sum")(labels, variable)
    np.testing.assert_allclose(tape.gradient(value, variable).numpy(), probs - target, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("loss_class, kwargs", [(BootstrapSoft, {"beta": 0.95}), (BootstrapHard, {"beta": 0.8})])
def test_standard_loss_checks(tmp_path, loss_class, kwargs):
    loss_helpers.check_standard(loss_class, kwargs, tmp_path, {"beta": 0.5, "from_logits": True, "reduction": "sum"})


def test_defaults_are_the_papers():
    assert BootstrapSoft().beta == 0.95
    assert BootstrapHard().beta == 0.8


@pytest.mark.parametrize("loss_class", [BootstrapSoft, BootstrapHard])
@pytest.mark.parametrize("beta", [-0.1, 1.1, float("nan"), None])
def test_bad_beta_raises(loss_class, beta):
    with pytest.raises(ValueError, match=rf"{loss_class.__name__} argument `beta` must be a finite number in \[0, 1\]"):
        loss_class(beta=beta)
