import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust import datasets
from tfrobust.losses import ABSGD
from tfrobust.losses import ABSGDSchedule
from tfrobust.losses import GeneralizedCrossEntropy


def absgd_reference(batches, temperature, gamma, alpha):
    """Per-example values B p_i l_i of each batch, from the formula of Qi et al. written out in numpy."""
    u = 0.0
    values = []
    for losses in batches:
        e = np.exp(losses / temperature)
        u = (1 - gamma) * u + gamma * alpha * e.mean()
        values.append(e / u * losses)
    return values


def test_two_batches_by_hand():
    # Batch 1: l = -log 0.7 = 0.35667, -log 0.4 = 0.91629; lambda = 2: e = 1.19523, 1.58114.
    # u_1 = 0.5 * 0.5 * mean(e) = 0.34705; B p = e / u_1 = 3.4440, 4.5560; values B p l = 1.22839, 4.17461.
    loss = ABSGD(temperature=2.0, gamma=0.5, alpha=0.5, reduction=None)
    first = np.asarray(loss([0, 1], [[0.7, 0.3], [0.6, 0.4]]))
    np.testing.assert_allclose(first, [1.22839, 4.17461], rtol=1e-4)
    np.testing.assert_allclose(math.exp(float(loss.log_moving_average)), 0.34705, rtol=1e-4)
    # Batch 2: l = -log 0.5 = 0.69315 twice: e = 1.41421; u_2 = 0.5 * 0.34705 + 0.25 * 1.41421 = 0.52708;
    # B p = 1.41421 / 0.52708 = 2.68310; values 1.85980.
    second = np.asarray(loss([0, 1], [[0.5, 0.5], [0.5, 0.5]]))
    np.testing.assert_allclose(second, [1.85980, 1.85980], rtol=1e-4)


def test_many_batches_against_numpy_and_mean_is_weighted_sum():
    rng = np.random.default_rng(0)
    batches = [loss_helpers.random_batch(num_classes=5, batch=7, seed=seed) for seed in range(4)]
    for temperature in (3.0, -5.0):
        loss = ABSGD(temperature=temperature, gamma=0.3, alpha=0.7, reduction=None)
        losses = [-np.log(probs[np.arange(7), labels].astype(np.float64)) for labels, probs, _ in batches]
        expected = absgd_reference(losses, temperature, 0.3, 0.7)
        for (labels, probs, _), want in zip(batches, expected):
            np.testing.assert_allclose(np.asarray(loss(labels, probs)), want, rtol=2e-5)
    del rng
    # The default reduction is sum_i p_i l_i.
    labels, probs, _ = batches[0]
    l = -np.log(probs[np.arange(7), labels].astype(np.float64))
    e = np.exp(l / 3.0)
    p = e / (0.9 * e.mean() * 7)
    np.testing.assert_allclose(float(ABSGD(temperature=3.0)(labels, probs)), np.sum(p * l), rtol=1e-5)


def test_sign_of_temperature_decides_which_examples_gain_weight():
    labels = np.array([0, 0, 0])
    probs = np.array([[0.9, 0.1], [0.5, 0.5], [0.1, 0.9]], dtype="float32")
    ce = -np.log(probs[:, 0])
    for temperature, increasing in ((1.0, True), (-1.0, False)):
        weights = np.asarray(ABSGD(temperature=temperature, reduction=None)(labels, probs)) / ce
        assert np.all(np.diff(weights) > 0) == increasing and np.all(np.diff(weights) < 0) != increasing


def test_no_overflow_for_small_temperature_and_huge_losses():
    import tensorflow as tf

    # exp(l / lambda) overflows float32 above l / lambda = 88; here it reaches 16.1 / 0.05 = 322.
    probs = np.array([[1e-9, 1.0], [0.5, 0.5], [0.9, 0.1]], dtype="float32")
    values = np.asarray(ABSGD(temperature=0.05, gamma=0.5, alpha=0.5, reduction=None)([0, 0, 0], probs))
    ce = -np.log(np.clip(probs[:, 0].astype(np.float64), 1e-7, 1.0))
    # The weights B p_i = e_i / u sum to B / (gamma alpha) at u_0 = 0, and almost all of it is on the hardest.
    np.testing.assert_allclose((values / ce).sum(), 3 / 0.25, rtol=1e-4)  # log u is float32 near 322
    np.testing.assert_allclose(values[0] / ce[0], 3 / 0.25, rtol=1e-4)
    # Huge logits: finite values and gradients.
    loss = ABSGD(temperature=0.01, gamma=0.5, alpha=0.5, from_logits=True, reduction=None)
    logits = tf.Variable(np.array([[1e4, 0.0], [0.0, 0.0], [0.0, 50.0]], dtype="float32"))
    with tf.GradientTape() as tape:
        total = tf.reduce_mean(loss([1, 0, 0], logits))
    assert np.isfinite(float(total)) and np.all(np.isfinite(tape.gradient(total, logits).numpy()))


def test_weights_carry_no_gradient():
    import tensorflow as tf

    logits = tf.Variable(np.array([[2.0, 0.0], [0.0, 1.0]], dtype="float32"))
    with tf.GradientTape() as tape:
        weighted = ABSGD(temperature=1.0, gamma=1.0, from_logits=True, reduction=None)([0, 0], logits)
        total = tf.reduce_sum(weighted)
    ce = -tf.nn.log_softmax(logits)[:, 0]
    weights = (weighted / ce).numpy()
    with tf.GradientTape() as reference_tape:
        reference = tf.reduce_sum(weights * -tf.nn.log_softmax(logits)[:, 0])
    np.testing.assert_allclose(
        tape.gradient(total, logits).numpy(), reference_tape.gradient(reference, logits).numpy(),
        rtol=1e-5,
    )


def test_wraps_any_base_loss():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, batch=6, seed=3)
    base = GeneralizedCrossEntropy(q=0.5, reduction=None)
    base_values = np.asarray(base(labels, probs), dtype=np.float64)
    expected = absgd_reference([base_values], 0.5, 0.9, 1.0)[0]
    np.testing.assert_allclose(np.asarray(ABSGD(base_loss=base, reduction=None)(labels, probs)), expected, rtol=1e-5)


def test_frozen_state_is_read_not_updated():
    loss = ABSGD(temperature=1.0, gamma=0.5, reduction=None)
    loss([0, 1], [[0.7, 0.3], [0.6, 0.4]])
    state = float(loss.log_moving_average)
    loss.frozen.assign(1.0)
    loss([0, 1], [[0.2, 0.8], [0.6, 0.4]])
    assert float(loss.log_moving_average) == state


def test_two_stage_schedule_in_fit():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5)).astype("float32")
    y = rng.integers(0, 3, size=64)
    loss = ABSGD(temperature=1.0, gamma=0.5)
    model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss)
    seen = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: seen.append(float(loss.log_moving_average)))
    model.fit(x, y, epochs=3, batch_size=16, verbose=0, validation_data=(x, y), callbacks=[ABSGDSchedule(2), record])
    assert seen[0] == -math.inf and seen[1] == -math.inf  # stage one: u untouched, even by validation
    assert np.isfinite(seen[2])
    # Stage one is the plain mean cross-entropy.
    loss.weighting.assign(0.0)
    labels, probs, _ = loss_helpers.random_batch(num_classes=3, batch=5)
    np.testing.assert_allclose(float(loss(labels, probs)), -np.mean(np.log(probs[np.arange(5), labels])), rtol=1e-5)


def test_schedule_needs_an_absgd_loss():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    with pytest.raises(ValueError, match="ABSGDSchedule found no ABSGD in model.loss"):
        model.fit(np.zeros((4, 2)), np.zeros(4), epochs=1, verbose=0, callbacks=[ABSGDSchedule(1)])


def test_standard_loss_checks(tmp_path):
    # gamma = 1 keeps no memory across batches, so the shared checks (which call the loss repeatedly) apply.
    config = {"temperature": -3.0, "gamma": 0.4, "alpha": 0.5, "from_logits": True, "name": "ab"}
    loss_helpers.check_standard(ABSGD, {"temperature": 2.0, "gamma": 1.0}, tmp_path, config)
    loss_helpers.check_config_round_trip(ABSGD(base_loss=GeneralizedCrossEntropy(q=0.3), temperature=4.0))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0.0}, r"ABSGD argument `temperature` \(lambda\) must be non-zero"),
        ({"gamma": 0.0}, r"ABSGD argument `gamma` must be a finite number in \(0, 1\]"),
        ({"alpha": -1.0}, r"ABSGD argument `alpha` must be a finite number in \(0, inf\)"),
        ({"base_loss": "mse"}, r"ABSGD argument `base_loss` must be a keras.losses.Loss"),
        ({"base_loss": GeneralizedCrossEntropy(), "from_logits": True}, r"set it on the `base_loss`"),
    ],
)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ABSGD(**kwargs)


def test_trains_above_chance_on_digits():
    data = datasets.load("digits", imbalance="longtail:10", seed=0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(0.2, momentum=0.9), loss=ABSGD(temperature=5.0, gamma=0.7, alpha=0.5),
                  metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=15, batch_size=32, verbose=0, callbacks=[ABSGDSchedule(5)])
    assert model.evaluate(data.x_test, data.y_test, verbose=0)[1] > 0.6  # chance is 0.1
