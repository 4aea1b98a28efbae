"""Meta-Weight-Net against the explicit bilevel look-ahead of Shu et al. (NeurIPS 2019), written out here."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import reweighting
from tests.l2rw_test import _data
from tests.l2rw_test import _model

CE = keras.losses.SparseCategoricalCrossentropy(reduction=None)


def reference_meta_gradient(model, meta_net, x, y, x_meta, y_meta, step_size):
    """grad_Theta L_meta(theta_hat(Theta)), theta_hat = theta - alpha (1/n) grad_theta sum_i V(l_i; Theta) l_i,
    with V fed the detached losses, by nested tapes through a stateless look-ahead."""
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    state = [tf.convert_to_tensor(v) for v in model.non_trainable_variables]
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(theta)
            predictions, _ = model.stateless_call(theta, state, x, training=True)
            losses = CE(y, predictions)
            weights = meta_net(tf.stop_gradient(losses)[:, None])[:, 0]
            virtual = tf.reduce_sum(weights * losses) / len(y)
        step = inner.gradient(virtual, theta)
        theta_hat = [t - step_size * g for t, g in zip(theta, step)]
        meta_predictions, _ = model.stateless_call(theta_hat, state, x_meta, training=True)
        meta_loss = tf.reduce_mean(CE(y_meta, meta_predictions))
    return [g.numpy() for g in outer.gradient(meta_loss, meta_net.trainable_variables)]


@pytest.mark.parametrize("batch_norm", [False, True])
def test_meta_gradient_equals_nested_tape_lookahead(batch_norm):
    x, y, x_meta, y_meta = _data()
    model = _model(batch_norm)
    trainer = reweighting.MetaWeightNet(model, meta_data=(x_meta, y_meta))
    expected = reference_meta_gradient(model, trainer.meta_net, x, y, x_meta, y_meta, step_size=0.3)
    got = trainer.meta_gradient(x, y, learning_rate=0.3)
    assert len(got) == 4
    for value, want in zip(got, expected):
        np.testing.assert_allclose(value, want, atol=1e-6)
    assert max(np.abs(g).max() for g in expected) > 1e-4, "a vanishing meta-gradient would test nothing"


def test_train_step_matches_manual_bilevel_update():
    x, y, x_meta, y_meta = _data(seed=2)
    model = _model(batch_norm=False)
    meta_net = reweighting.build_meta_net(hidden_units=5)
    learning_rate, meta_learning_rate, decay = 0.5, 0.2, 0.01
    theta = [v.numpy() for v in model.trainable_variables]
    big_theta = [v.numpy() for v in meta_net.trainable_variables]

    # Steps 1-2 by hand: the meta-net's SGD step on the look-ahead meta loss, plus coupled L2.
    meta_gradient = reference_meta_gradient(model, meta_net, x, y, x_meta, y_meta, step_size=learning_rate)
    new_big_theta = [t - meta_learning_rate * (g + decay * t) for t, g in zip(big_theta, meta_gradient)]
    reference_net = reweighting.build_meta_net(hidden_units=5)
    reference_net.set_weights(new_big_theta)
    # Steps 3-4: weights from the updated net, the real step on (1/n) sum_i w_i l_i.
    with tf.GradientTape() as tape:
        losses = CE(y, model(x, training=True))
        weights = reference_net(tf.stop_gradient(losses)[:, None])[:, 0]
        objective = tf.reduce_sum(tf.stop_gradient(weights) * losses) / len(y)
    gradients = tape.gradient(objective, model.trainable_variables)
    new_theta = [t - learning_rate * g.numpy() for t, g in zip(theta, gradients)]

    trainer = reweighting.MetaWeightNet(
        model, meta_data=(x_meta, y_meta), meta_net=meta_net,
        meta_optimizer=keras.optimizers.SGD(meta_learning_rate), meta_weight_decay=decay,
    )
    trainer.compile(optimizer=keras.optimizers.SGD(learning_rate))
    history = trainer.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    for after, want in zip(meta_net.trainable_variables, new_big_theta):
        np.testing.assert_allclose(after.numpy(), want, atol=1e-6)
    for after, want in zip(model.trainable_variables, new_theta):
        np.testing.assert_allclose(after.numpy(), want, atol=1e-6)
    np.testing.assert_allclose(history.history["loss"][0], float(objective), rtol=1e-5)


def test_hand_worked_two_example_case():
    # Zero kernel: p = (1/2, 1/2) and l_i = log 2 for both examples, so V gives
    # both the same weight v and the meta-gradient is
    #   -(alpha/2) (d_1 + d_2) grad_Theta V(log 2),  d_i = <grad l_i, g_m>.
    # x_1 = (1, 0) agrees with the meta example, x_2 = (1, 0) with the flipped
    # label has the opposite gradient: d_1 = -d_2 at theta_hat = theta
    # (their gradients cancel, so the virtual step does not move theta). The
    # meta-gradient is zero: equal and opposite examples teach V nothing.
    model = keras.Sequential(
        [keras.Input((2,)), keras.layers.Dense(2, use_bias=False, activation="softmax", kernel_initializer="zeros")]
    )
    trainer = reweighting.MetaWeightNet(model, meta_data=(np.array([[1.0, 0.0]], "float32"), np.array([0])))
    x = np.array([[1, 0], [1, 0]], "float32")
    for value in trainer.meta_gradient(x, np.array([0, 1]), learning_rate=1.0):
        np.testing.assert_allclose(value, 0.0, atol=1e-8)
    # The agreeing example alone (n = 1, l = log 2, v = V(log 2)):
    #   grad l = x (p - e_0)^T = [[-1/2, 1/2], [0, 0]]
    #   theta_hat = -alpha v grad l, so the meta logits are (alpha v / 2, -alpha v / 2),
    #   p_hat_0 = sigmoid(alpha v), and g_m = [[p_hat_0 - 1, 1 - p_hat_0], [0, 0]]
    #   d = <grad l, g_m> = 1 - sigmoid(alpha v)
    #   grad_Theta = -alpha d grad_Theta V(log 2).
    alpha = 0.7
    loss_input = tf.constant([[np.log(2.0)]], tf.float32)
    with tf.GradientTape() as tape:
        v = trainer.meta_net(loss_input)[0, 0]
    dv = tape.gradient(v, trainer.meta_net.trainable_variables)
    d = 1.0 - 1.0 / (1.0 + np.exp(-alpha * float(v)))
    got = trainer.meta_gradient(x[:1], np.array([0]), learning_rate=alpha)
    for value, grad_v in zip(got, dv):
        np.testing.assert_allclose(value, -alpha * d * grad_v.numpy(), rtol=1e-5, atol=1e-8)
    # Descent raises the weight of an example that helps the meta loss.
    assert got[3][0] < 0


def test_meta_net_is_a_keras_model_that_saves(tmp_path):
    x, y, x_meta, y_meta = _data()
    trainer = reweighting.MetaWeightNet(_model(False), meta_data=(x_meta, y_meta), meta_batch_size=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    trainer.fit(x, y, batch_size=6, epochs=1, verbose=0)
    path = str(tmp_path / "meta_net.keras")
    trainer.meta_net.save(path)
    restored = keras.saving.load_model(path)
    losses = np.linspace(0, 5, 7, dtype="float32")[:, None]
    np.testing.assert_allclose(restored(losses), trainer.meta_net(losses), rtol=1e-6)
    architecture = [layer.units for layer in trainer.meta_net.layers]
    assert architecture == [100, 1]
    assert trainer.meta_net.layers[0].activation is keras.activations.relu
    assert trainer.meta_net.layers[1].activation is keras.activations.sigmoid


def test_bad_meta_net_is_named():
    _, _, x_meta, y_meta = _data()
    wrong = keras.Sequential([keras.Input((1,)), keras.layers.Dense(3)])
    with pytest.raises(ValueError, match=r"meta_net.*\(n, 1\)"):
        reweighting.MetaWeightNet(_model(False), meta_data=(x_meta, y_meta), meta_net=wrong)
    with pytest.raises(ValueError, match="meta_weight_decay"):
        reweighting.MetaWeightNet(_model(False), meta_data=(x_meta, y_meta), meta_weight_decay=-1.0)


def test_whole_trainer_saves_and_loads(tmp_path):
    x, y, x_meta, y_meta = _data()
    trainer = reweighting.MetaWeightNet(_model(False), meta_data=(x_meta, y_meta), meta_batch_size=4)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1), metrics=["accuracy"])
    trainer.fit(x, y, batch_size=6, epochs=1, verbose=0)
    path = str(tmp_path / "trainer.keras")
    trainer.save(path)
    restored = keras.saving.load_model(path)
    assert type(restored) is reweighting.MetaWeightNet and restored.meta_data is None
    for got, want in zip(restored.meta_net.get_weights() + restored.model.get_weights(),
                         trainer.meta_net.get_weights() + trainer.model.get_weights()):
        np.testing.assert_array_equal(got, want)
    restored.set_meta_data((x_meta, y_meta))  # meta sets are data: given again to train on
    assert np.isfinite(restored.fit(x, y, batch_size=6, epochs=1, verbose=0).history["loss"][0])
