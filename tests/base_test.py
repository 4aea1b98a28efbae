"""Shared loss machinery: a softmax output is read from its logits inside TensorFlow graphs."""

import numpy as np
import tensorflow as tf

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
