"""tfrobust.metrics.Susceptibility: training untouched bit for bit, zeta against a step done by hand, History,
bad input; select_model's quadrant rule against regions worked out by hand, and its plot."""

import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import metrics

NUM_CLASSES = 4


def _data(count=96, features=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(count, features)).astype("float32")
    y = (x[:, 0] > 0).astype(int) + 2 * (x[:, 1] > 0).astype(int)  # a learnable 4-class rule
    return x, y


def _model(normalisation=True, seed=0):
    layers = [keras.Input((6,)), keras.layers.Dense(16, activation="relu",
                                                    kernel_initializer=keras.initializers.GlorotUniform(seed))]
    if normalisation:  # state a stateless step must not touch: BatchNorm statistics and a dropout RNG
        layers += [keras.layers.BatchNormalization(), keras.layers.Dropout(0.3, seed=seed)]
    layers += [keras.layers.Dense(NUM_CLASSES, activation="softmax",
                                  kernel_initializer=keras.initializers.GlorotUniform(seed + 1))]
    return keras.Sequential(layers)


def _fit(callbacks, optimizer, epochs=2, normalisation=True):
    x, y = _data()
    keras.utils.set_random_seed(7)
    model = _model(normalisation)
    model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", jit_compile=False)
    history = model.fit(x, y, epochs=epochs, batch_size=16, verbose=0, callbacks=callbacks)
    return model, history


def _values(variables):
    return [np.asarray(keras.ops.convert_to_numpy(v)) for v in variables]


def test_training_with_the_callback_is_bit_identical_to_training_without():
    x, _ = _data(seed=1)
    probe = metrics.Susceptibility(x, batch_size=32, seed=3)
    with_probe, history = _fit([probe], keras.optimizers.Adam(0.01))
    without, _ = _fit([], keras.optimizers.Adam(0.01))
    assert len(probe.drops) == 2 and np.isfinite(probe.drops).all()
    assert np.isfinite(history.history["loss"]).all()
    # Every variable: weights, BatchNorm statistics, the dropout seed state; and the optimiser's
    # iteration count, learning rate and Adam moments.
    for pair in ((with_probe.variables, without.variables), (with_probe.optimizer.variables, without.optimizer.variables)):
        first, second = (_values(v) for v in pair)
        assert len(first) == len(second) > 0
        for a, b in zip(first, second):
            np.testing.assert_array_equal(a, b)
    assert int(with_probe.optimizer.iterations) == 2 * 6  # 96 examples / 16 a batch, two epochs


def _cross_entropy(probabilities, labels):
    return float(np.mean(-np.log(probabilities[np.arange(len(labels)), labels])))


@pytest.mark.parametrize("optimizer", ["sgd_momentum", "adam"])
def test_drop_matches_one_step_done_by_hand(optimizer):
    x, _ = _data(count=40, seed=2)
    make = {"sgd_momentum": lambda: keras.optimizers.SGD(0.5, momentum=0.9),
            "adam": lambda: keras.optimizers.Adam(0.05)}[optimizer]
    probe = metrics.Susceptibility(x, batch_size=64, seed=5)  # 40 inputs < 64: the batch is all of them
    model, _ = _fit([probe], make(), epochs=1, normalisation=False)
    before, after = probe.measure()

    # The same step written out: a clone of the model, a tape, and the optimiser's update in numpy
    # from the real optimiser's state (read, never changed).
    labels = probe.random_labels
    assert labels.shape == (40,) and set(labels) <= set(range(NUM_CLASSES))
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        probabilities = clone(x, training=True)
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, probabilities))
    gradients = [g.numpy() for g in tape.gradient(loss, clone.trainable_variables)]
    state = {v.name: np.asarray(v.numpy()) for v in model.optimizer.variables}
    step = float(state["iteration"]) + 1
    new_weights = []
    for variable, gradient in zip(clone.trainable_variables, gradients):
        weight = variable.numpy().astype(np.float64)
        slot = variable.path.replace("/", "_")
        if optimizer == "sgd_momentum":  # Keras SGD: m <- momentum m - lr g; w <- w + m
            momentum = 0.9 * state[f"{slot}_momentum"] - 0.5 * gradient
            new_weights.append(weight + momentum)
        else:  # Adam (Kingma & Ba, 2015) with Keras's epsilon placement
            m = 0.9 * state[f"{slot}_momentum"] + 0.1 * gradient
            v = 0.999 * state[f"{slot}_velocity"] + 0.001 * gradient ** 2
            alpha = 0.05 * np.sqrt(1 - 0.999 ** step) / (1 - 0.9 ** step)
            new_weights.append(weight - alpha * m / (np.sqrt(v) + 1e-7))
    hand_before = _cross_entropy(clone.predict_on_batch(x), labels)
    clone.set_weights([w.astype("float32") for w in new_weights])
    hand_after = _cross_entropy(clone.predict_on_batch(x), labels)

    assert np.isfinite([before, after, hand_before, hand_after]).all()
    assert hand_before - hand_after > 1e-3  # one step on random labels does fit them a little
    np.testing.assert_allclose([before, after], [hand_before, hand_after], rtol=2e-5)
    # zeta is the running mean of the drops (Forouzesh et al., Eq. 1).
    drops = [before - after]
    assert len(probe.drops) == 2 and probe.drops[-1] == pytest.approx(drops[0])
    np.testing.assert_allclose(probe.history, [probe.drops[0], (probe.drops[0] + probe.drops[1]) / 2])


def test_probe_optimizer_steps_from_a_fresh_state_by_hand():
    """A model trained with Adam, probed with a fresh SGD (momentum 0.9): each measured step is
    w - lr * g (the momentum starts at zero every time), whatever Adam's moments hold."""
    x, _ = _data(count=40, seed=2)
    probe = metrics.Susceptibility(x, batch_size=64, seed=5, probe_optimizer=keras.optimizers.SGD(0.5, momentum=0.9))
    model, _ = _fit([probe], keras.optimizers.Adam(0.05), epochs=2, normalisation=False)
    assert float(model.optimizer.iterations) == 2 * 6  # Adam trained (96 examples, batch 16); no probe step applied
    before, after = probe.measure()
    labels = probe.random_labels
    clone = keras.models.clone_model(model)
    clone.set_weights(model.get_weights())
    with tf.GradientTape() as tape:
        loss = tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, clone(x, training=True)))
    gradients = [g.numpy() for g in tape.gradient(loss, clone.trainable_variables)]
    hand_before = _cross_entropy(clone.predict_on_batch(x), labels)
    clone.set_weights([v.numpy() - 0.5 * g for v, g in zip(clone.trainable_variables, gradients)])
    hand_after = _cross_entropy(clone.predict_on_batch(x), labels)
    assert np.isfinite([before, after]).all() and hand_before - hand_after > 1e-3
    np.testing.assert_allclose([before, after], [hand_before, hand_after], rtol=2e-5)
    # Measured three times (two epochs, then by hand): every drop from a fresh state.
    assert len(probe.drops) == 3 and probe.history[-1] == pytest.approx(np.mean(probe.drops))


def test_zeta_goes_into_history_and_the_labels_are_seeded():
    x, _ = _data(seed=1)
    probes = [metrics.Susceptibility(x, batch_size=24, seed=seed) for seed in (11, 11, 12)]
    histories = [_fit([probe], keras.optimizers.SGD(0.1), epochs=3, normalisation=False)[1] for probe in probes]
    assert histories[0].history["susceptibility"] == probes[0].history
    assert len(probes[0].history) == 3 and np.isfinite(probes[0].history).all()
    np.testing.assert_array_equal(probes[0].random_labels, probes[1].random_labels)
    assert probes[0].drops == probes[1].drops
    assert not np.array_equal(probes[0].random_labels, probes[2].random_labels)


def test_bad_input_is_named():
    x, _ = _data()
    with pytest.raises(ValueError, match="at least one example"):
        metrics.Susceptibility(x[:0])
    with pytest.raises(ValueError, match="finite"):
        metrics.Susceptibility(np.full((4, 6), np.nan))
    with pytest.raises(ValueError, match="batch_size"):
        metrics.Susceptibility(x, batch_size=0)
    with pytest.raises(ValueError, match="num_classes"):
        metrics.Susceptibility(x, num_classes=1)
    with pytest.raises(ValueError, match="num_classes=9 but the model outputs 4"):
        _fit([metrics.Susceptibility(x, num_classes=9)], "sgd", epochs=1, normalisation=False)
    with pytest.raises(ValueError, match="not built yet"):
        built = keras.optimizers.SGD(0.1)
        built.build([keras.Variable(np.zeros(2, "float32"))])
        metrics.Susceptibility(x, probe_optimizer=built)
    with pytest.raises(ValueError, match="not both"):
        metrics.Susceptibility(x, optimizer=keras.optimizers.SGD(0.1), probe_optimizer=keras.optimizers.SGD(0.1))
    # An optimiser built on other variables than the probed network's: the wrapper case, named.
    other = _model(normalisation=True)
    with pytest.raises(ValueError, match="pass the wrapped network"):
        _fit([metrics.Susceptibility(x, model=other)], "sgd", epochs=1, normalisation=False)


def test_select_model_quadrant_rule_by_hand(tmp_path):
    # Mean accuracy 0.6, mean zeta 0.25.
    accuracy = [0.9, 0.8, 0.3, 0.4, 0.6, np.nan]
    zeta = [0.4, 0.1, 0.1, 0.4, 0.25, 0.2]
    # Five finite models: mean accuracy (0.9+0.8+0.3+0.4+0.6)/5 = 0.6, mean zeta (0.4+0.1+0.1+0.4+0.25)/5 = 0.25.
    selection = metrics.select_model(accuracy, zeta)
    assert selection.train_accuracy_threshold == pytest.approx(0.6)
    assert selection.susceptibility_threshold == pytest.approx(0.25)
    # 0: high acc, high zeta -> 2; 1: high, low -> 1; 2: low, low -> 3; 3: low, high -> 4; 4: on both lines -> 1.
    assert selection.regions.tolist() == [2, 1, 3, 4, 1, 0]
    assert selection.region_one == (1, 4)
    assert selection.chosen == 1  # the highest training accuracy in Region 1
    path = metrics.plot_model_selection(accuracy, zeta, str(tmp_path / "selection.png"),
                                        labels=["a", "a", "b", "b", "c", "c"], selection=selection)
    assert os.path.getsize(path) > 5000
    with open(path, "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_select_model_bad_input_and_empty_region():
    with pytest.raises(ValueError, match="one susceptibility per model"):
        metrics.select_model([0.5, 0.6], [0.1])
    with pytest.raises(ValueError, match="no model has both"):
        metrics.select_model([np.nan], [0.1])
    # The most accurate models are the most susceptible: Region 1 is empty, nothing is chosen.
    selection = metrics.select_model([0.9, 0.8, 0.2, 0.1], [0.9, 0.8, 0.2, 0.1])
    assert selection.region_one == () and selection.chosen is None
