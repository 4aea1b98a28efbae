import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust.losses import MeanAbsoluteError


def test_value_by_hand():
    # |1 - 0.8| + |0 - 0.2| = 0.4; |0 - 0.4| + |1 - 0.6| = 0.8.
    loss = MeanAbsoluteError(reduction=None)
    np.testing.assert_allclose(np.asarray(loss([0, 1], [[0.8, 0.2], [0.4, 0.6]])), [0.4, 0.8], rtol=1e-6)


def test_value_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=5, seed=2)
    true_prob = probs.astype("float64")[np.arange(len(labels)), labels]
    expected = 2.0 * (1.0 - true_prob)  # for a one-hot label, sum_c |y_c - p_c| = 2 (1 - p_y)
    loss_helpers.check_value(MeanAbsoluteError, {}, labels, probs, logits, expected)


def test_is_keras_mae_times_classes_on_one_hot_rows():
    # Keras's MeanAbsoluteError averages over the classes where ours sums.
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, seed=6)
    onehot = np.eye(4, dtype="float32")[labels]
    theirs = float(keras.losses.MeanAbsoluteError()(onehot, probs))
    np.testing.assert_allclose(float(MeanAbsoluteError()(onehot, probs)), 4 * theirs, rtol=1e-5)


def test_is_distinct_from_keras_class_when_serialised():
    config = keras.losses.serialize(MeanAbsoluteError())
    assert config["registered_name"] == "tfrobust>MeanAbsoluteError"
    assert type(keras.losses.deserialize(config)) is MeanAbsoluteError


def test_standard_loss_checks(tmp_path):
    config = {"from_logits": True, "reduction": "sum", "name": "l1"}
    loss_helpers.check_standard(MeanAbsoluteError, {}, tmp_path, config)


def test_bad_labels_raise():
    with pytest.raises(ValueError, match="do not match predictions"):
        MeanAbsoluteError()(np.zeros((2, 3)), np.full((2, 4), 0.25))
