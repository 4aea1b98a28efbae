"""L2RW against the explicit look-ahead of Ren et al. (ICML 2018), written out here."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import reweighting
from tfrobust.reweighting import l2rw


def _model(batch_norm, seed=0):
    layers = [keras.Input((4,)), keras.layers.Dense(6, kernel_initializer=keras.initializers.GlorotUniform(seed))]
    if batch_norm:
        layers.append(keras.layers.BatchNormalization())
    layers += [
        keras.layers.Activation("tanh"),
        keras.layers.Dense(3, activation="softmax", kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
    ]
    return keras.Sequential(layers)


def _data(seed=0, n=12, meta=8):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype("float32")
    y = rng.integers(0, 3, size=n)
    x_meta = rng.normal(size=(meta, 4)).astype("float32")
    y_meta = rng.integers(0, 3, size=meta)
    return x, y, x_meta, y_meta


def reference_scores(model, x, y, x_meta, y_meta, step_size=1.0, meta_objective=tf.reduce_mean):
    """u_i = -d L_meta(theta_hat(eps)) / d eps_i at eps = 0, by nested tapes (Ren et al., Algorithm 1).

    L_meta = meta_objective(per-example meta losses); FORML's tests pass a group objective.
    """
    loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    state = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
    eps = tf.zeros(len(y))
    with tf.GradientTape() as outer:
        outer.watch(eps)
        with tf.GradientTape() as inner:
            inner.watch(theta)
            predictions, _ = model.stateless_call(theta, state, x, training=True)
            weighted = tf.reduce_sum(eps * loss(y, predictions))
        step = inner.gradient(weighted, theta)
        theta_hat = [t - step_size * g for t, g in zip(theta, step)]
        meta_predictions, _ = model.stateless_call(theta_hat, state, x_meta, training=True)
        meta_loss = meta_objective(loss(y_meta, meta_predictions))
    return -outer.gradient(meta_loss, eps).numpy()


def reference_weights(scores):
    positive = np.maximum(scores, 0.0)
    total = positive.sum()
    return positive / total if total > 0 else positive


@pytest.mark.parametrize("batch_norm", [False, True])
def test_weights_equal_nested_tape_lookahead(batch_norm):
    x, y, x_meta, y_meta = _data()
    model = _model(batch_norm)
    trainer = reweighting.L2RW(model, meta_data=(x_meta, y_meta))
    scores = reference_scores(model, x, y, x_meta, y_meta)
    expected = reference_weights(scores)
    got = trainer.example_weights(x, y)
    np.testing.assert_allclose(got, expected, atol=1e-6)
    # Not a degenerate batch: some examples help the meta loss, some would hurt it.
    assert (scores > 0).any() and (scores < 0).any()
    np.testing.assert_allclose(got.sum(), 1.0, rtol=1e-6)


def test_hand_worked_case():
    # A linear softmax classifier with a zero kernel predicts (1/2, 1/2), so
    # grad_W l(x, y) = x (p - e_y)^T. The meta example x = (1, 0), y = 0 has
    # gradient g = (1, 0)(-1/2, 1/2)^T, and <grad l_i, g> = (x_i . (1, 0)) (p - e_yi) . (-1/2, 1/2):
    #   x=(1,0) y=0 -> +1/2; x=(1,0) y=1 -> -1/2 (clipped); x=(0,1) y=0 -> 0; x=(2,0) y=0 -> +1.
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, use_bias=False, activation="softmax", kernel_initializer="zeros")]
    )
    trainer = reweighting.L2RW(model, meta_data=(np.array([[1.0, 0.0]], "float32"), np.array([0])))
    x = np.array([[1, 0], [1, 0], [0, 1], [2, 0]], "float32")
    np.testing.assert_allclose(trainer.example_weights(x, np.array([0, 1, 0, 0])), [1 / 3, 0, 0, 2 / 3], atol=1e-7)
    # No example agrees with the meta gradient: every weight is zero, not NaN.
    np.testing.assert_array_equal(trainer.example_weights(x[1:2], np.array([1])), [0.0])


def test_normalized_weights_clip_and_normalise():
    np.testing.assert_allclose(l2rw.normalized_weights(tf.constant([2.0, -1.0, 6.0])).numpy(), [0.25, 0.0, 0.75])
    np.testing.assert_array_equal(l2rw.normalized_weights(tf.constant([-2.0, 0.0])).numpy(), [0.0, 0.0])


def test_train_step_matches_manual_update():
    x, y, x_meta, y_meta = _data(seed=1)
    model = _model(batch_norm=False)
    before = [v.numpy() for v in model.trainable_variables]
    weights = reference_weights(reference_scores(model, x, y, x_meta, y_meta))
    loss = keras.losses.SparseCategoricalCrossentropy(reduction=None)
    with tf.GradientTape() as tape:
        objective = tf.reduce_sum(weights * loss(y, model(x, training=True)))
    gradients = tape.gradient(objective, model.trainable_variables)
    learning_rate = 0.5
    expected = [b - learning_rate * g.numpy() for b, g in zip(before, gradients)]

    # The meta batch is the whole meta set (meta_batch_size >= its size), so
    # the step is deterministic.
    trainer = reweighting.L2RW(model, meta_data=(x_meta, y_meta), meta_batch_size=100)
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    history = trainer.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    for after, want in zip(model.trainable_variables, expected):
        np.testing.assert_allclose(after.numpy(), want, atol=1e-6)
    # The logged loss is the weighted objective that was minimised.
    np.testing.assert_allclose(history.history["loss"][0], float(objective), rtol=1e-5)
