"""MirroredStrategy on two logical CPU devices must train exactly like one device.

With a per-example loss, Keras divides each replica's sum by the *global*
batch size, so the summed gradients equal the single-device ones. A loss that
returned a scalar would be averaged per replica and the update would differ.
"""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import distribute
from tfrobust.losses import GeneralizedCrossEntropy
from tfrobust.losses import TaylorLoss

CANDIDATE_LOSSES = {
    "taylor": lambda: TaylorLoss([0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25]),
    "taylor_pretrained_logits": lambda: TaylorLoss.pretrained(from_logits=True),
    "baseline": lambda: GeneralizedCrossEntropy(q=0.7),
}


def _train(strategy, make_loss, from_logits):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 6)).astype("float32")
    y = rng.integers(0, 3, size=64)
    with strategy.scope():
        model = keras.Sequential(
            [
                keras.Input((6,)),
                keras.layers.Dense(8, activation="relu", kernel_initializer=keras.initializers.GlorotUniform(1)),
                keras.layers.Dense(
                    3,
                    activation=None if from_logits else "softmax",
                    kernel_initializer=keras.initializers.GlorotUniform(2),
                ),
            ]
        )
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss=make_loss())
    first = model.evaluate(x, y, batch_size=16, verbose=0)
    history = model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return first, history.history["loss"], [w.numpy() for w in model.weights]


@pytest.mark.parametrize("name", list(CANDIDATE_LOSSES))
def test_mirrored_matches_single_device(name):
    make_loss = CANDIDATE_LOSSES[name]
    from_logits = make_loss().from_logits
    mirrored = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    single = _train(distribute.get_strategy("off"), make_loss, from_logits)
    double = _train(mirrored, make_loss, from_logits)
    # The two runs differ only in the order of float32 sums: each replica sums half the batch and
    # the all-reduce adds the halves. That reordering moves a value by a few float32 ulps (~1e-7
    # relative) per step; over 8 steps of SGD it stays well inside 1e-5 for the losses and 1e-4
    # (with atol for weights near 0) for the weights, while a per-replica-averaged loss (the bug
    # this guards against) is off by a factor of 2 in the update.
    np.testing.assert_allclose(double[0], single[0], rtol=1e-5)
    np.testing.assert_allclose(double[1], single[1], rtol=1e-5)
    for after_mirrored, after_single in zip(double[2], single[2]):
        np.testing.assert_allclose(after_mirrored, after_single, rtol=1e-4, atol=1e-6)
    # And training moved the weights: the comparison is not between two no-ops.
    assert single[1][-1] != single[0]


def test_get_strategy():
    assert distribute.get_strategy("off") is tf.distribute.get_strategy()
    assert distribute.get_strategy("one_device").num_replicas_in_sync == 1
    with pytest.raises(ValueError, match="Unknown distribution strategy 'gpu'"):
        distribute.get_strategy("gpu")
