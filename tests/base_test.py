"""Shared loss machinery: a softmax output is read from its logits inside TensorFlow graphs, and
bad labels or predictions are refused with an error that names the problem, for every loss."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tests import loss_helpers
from tfrobust import losses


def test_softmax_outputs_are_read_from_their_logits_in_graphs():
    logits = tf.constant([[50.0, 0.0, -50.0], [0.1, 0.2, 0.3], [-3.0, 4.0, 0.5]])
    labels = np.array([2, 0, 1])  # the first example is confidently wrong
    for loss in (
        losses.TaylorLoss.pretrained(),
        losses.GeneralizedCrossEntropy(),
        losses.SymmetricCrossEntropy(),
        losses.FocalLoss(),
        losses.NCEandRCE(),
        losses.BiTemperedLogisticLoss(),
    ):
        graph = tf.function(lambda values, loss=loss: loss(labels, tf.nn.softmax(values)))(logits)
        config = {**loss.get_config(), "from_logits": True}
        from_logits = type(loss).from_config(config)(labels, logits)
        np.testing.assert_allclose(float(graph), float(from_logits), rtol=1e-5, err_msg=loss.name)
        assert np.isfinite(float(graph))
        # Away from saturation the graph and eager (probability) paths agree too.
        probabilities = tf.nn.softmax(logits[1:])
        eager = loss(labels[1:], probabilities)
        graph = tf.function(lambda values, loss=loss: loss(labels[1:], tf.nn.softmax(values)))(logits[1:])
        np.testing.assert_allclose(float(graph), float(eager), rtol=1e-5, err_msg=loss.name)


@pytest.mark.parametrize("name", sorted(loss_helpers.EVERY_LOSS))
def test_label_batch_of_another_size_names_both_shapes(name):
    loss = loss_helpers.make_loss(name)
    probs = np.full((3, 4), 0.25, dtype="float32")
    expected = r"different numbers of examples: labels of shape \(2,\), predictions of shape \(3, 4\)"
    with pytest.raises(ValueError, match=expected):
        loss(np.array([0, 1]), probs)
    with pytest.raises(ValueError, match=r"labels of shape \(4, 4\), predictions of shape \(3, 4\)"):
        loss(np.eye(4, dtype="float32"), probs)


@pytest.mark.parametrize("name", sorted(loss_helpers.EVERY_LOSS))
def test_fractional_labels_are_refused_and_whole_floats_accepted(name):
    loss = loss_helpers.make_loss(name, reduction=None)
    probs = loss_helpers.random_batch(batch=3)[1]
    with pytest.raises(ValueError, match=r"whole class indices in \[0, 4\); got 1.7\. .*not truncated"):
        loss(np.array([0.0, 1.7, 2.0]), probs)
    with pytest.raises(ValueError, match="got nan"):
        loss(np.array([0.0, np.nan, 2.0]), probs)
    np.testing.assert_array_equal(
        np.asarray(loss(np.array([0.0, 1.0, 2.0]), probs)), np.asarray(loss(np.array([0, 1, 2]), probs))
    )


@pytest.mark.parametrize("name", sorted(loss_helpers.EVERY_LOSS))
def test_predictions_that_are_not_probabilities_are_refused_eagerly(name):
    loss = loss_helpers.make_loss(name)
    labels, probs, logits = loss_helpers.random_batch()
    with pytest.raises(ValueError, match=r"must be class probabilities .* range over .*from_logits=True"):
        loss(labels, logits)
    unnormalised = probs * 2.0 / 3.0
    with pytest.raises(ValueError, match=r"row \d sums to 0.66"):
        loss(labels, unnormalised)
    # A float32 softmax row is off by a few ulps, and exact 0 / 1 rows are probabilities.
    loss(labels, probs * (1 + 1e-6))
    loss(labels, np.eye(4, dtype="float32")[labels])
    # With from_logits=True anything finite goes.
    loss_helpers.make_loss(name, from_logits=True)(labels, logits * 100)


def test_label_checks_run_inside_graphs():
    loss = losses.TaylorLoss.pretrained()
    graph = tf.function(
        lambda labels, probs: loss(labels, probs),
        input_signature=[tf.TensorSpec([None]), tf.TensorSpec([None, 3])],
    )
    probs = np.full((3, 3), 1 / 3, dtype="float32")
    assert np.isfinite(float(graph(np.array([0.0, 1.0, 2.0], "float32"), probs)))
    for labels in ([0.0, 1.7, 2.0], [0.0, 1.0, 3.0], [-1.0, 1.0, 2.0]):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"not a whole number.*\[0, 3\)"):
            graph(np.array(labels, "float32"), probs)


def test_fractional_labels_fail_inside_fit():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=losses.GeneralizedCrossEntropy())
    with pytest.raises(tf.errors.InvalidArgumentError, match="not a whole number"):
        model.fit(np.zeros((4, 2)), np.array([0.0, 1.0, 2.0, 1.5]), verbose=0)
