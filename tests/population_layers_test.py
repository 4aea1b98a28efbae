"""Population batch normalisation, pooling and residual addition equal their Keras layers per member."""

import keras
import numpy as np
import pytest

from tfrobust.search import population

POPULATION = 3


def _member_inputs(shape, seed):
    rng = np.random.default_rng(seed)
    # Members on different scales and offsets, so per-member statistics matter.
    scales = np.array([0.5, 2.0, 7.0], "float32")[:POPULATION]
    inputs = rng.normal(size=shape).astype("float32") * scales[:, None] + np.arange(POPULATION)[:, None]
    return inputs.astype("float32")


@pytest.mark.parametrize("spatial", [(), (3, 4)])
def test_batch_normalization_matches_keras_per_member_in_training_and_inference(spatial):
    channels = 5
    inputs = _member_inputs((6,) + spatial + (POPULATION, channels), 0)
    layer = population.PopulationBatchNormalization()
    layer.build(inputs.shape)
    rng = np.random.default_rng(1)
    stacked = [rng.normal(size=(POPULATION, channels)).astype("float32") for _ in range(3)]
    stacked.append(rng.uniform(0.5, 2.0, size=(POPULATION, channels)).astype("float32"))
    layer.set_weights(stacked)
    singles = []
    for member in range(POPULATION):
        single = keras.layers.BatchNormalization()
        single.build(inputs[..., member, :].shape)
        single.set_weights([w[member] for w in stacked])
        singles.append(single)
    for training in (True, False, True):  # training updates the moving statistics that inference then reads
        got = np.asarray(layer(inputs, training=training))
        assert np.isfinite(got).all() and got.std() > 0.1
        for member, single in enumerate(singles):
            expected = np.asarray(single(inputs[..., member, :], training=training))
            np.testing.assert_allclose(got[..., member, :], expected, rtol=1e-5, atol=1e-5)
    for member, single in enumerate(singles):  # gamma, beta, moving mean, moving variance
        for a, b in zip(layer.get_weights(), single.get_weights()):
            np.testing.assert_allclose(a[member], b, rtol=1e-6, atol=1e-6)
    # In training each member's output is standardised with its own batch moments (worked out with numpy).
    out = np.asarray(population.PopulationBatchNormalization(epsilon=0.0)(inputs, training=True))
    axes = tuple(range(out.ndim - 2))
    np.testing.assert_allclose(out.mean(axis=axes), 0.0, atol=1e-4)
    np.testing.assert_allclose(out.std(axis=axes), 1.0, atol=1e-4)


def test_batch_normalization_gradients_match_keras_per_member():
    import tensorflow as tf

    inputs = tf.constant(_member_inputs((6, 2, 2, POPULATION, 4), 2))
    layer = population.PopulationBatchNormalization()
    with tf.GradientTape() as tape:
        tape.watch(inputs)
        loss = tf.reduce_sum(tf.sin(layer(inputs, training=True)))
    got = tape.gradient(loss, [inputs, layer.gamma.value, layer.beta.value])
    for member in range(POPULATION):
        single = keras.layers.BatchNormalization()
        member_input = inputs[..., member, :]
        with tf.GradientTape() as tape:
            tape.watch(member_input)
            loss = tf.reduce_sum(tf.sin(single(member_input, training=True)))
        expected = tape.gradient(loss, [member_input, single.gamma.value, single.beta.value])
        assert np.abs(expected[0].numpy()).max() > 1e-3
        np.testing.assert_allclose(got[0].numpy()[..., member, :], expected[0].numpy(), rtol=1e-4, atol=1e-5)
        for a, b in zip(got[1:], expected[1:]):
            np.testing.assert_allclose(a.numpy()[member], b.numpy(), rtol=1e-4, atol=1e-5)


def test_global_average_pooling_and_residual_addition_match_keras_per_member():
    inputs = _member_inputs((4, 3, 5, POPULATION, 2), 3)
    residual = _member_inputs((4, 3, 5, POPULATION, 2), 4)
    pooled = np.asarray(population.PopulationGlobalAveragePooling2D()(inputs))
    added = np.asarray(keras.layers.Add()([inputs, residual]))
    assert pooled.shape == (4, POPULATION, 2) and np.isfinite(pooled).all()
    for member in range(POPULATION):
        expected = np.asarray(keras.layers.GlobalAveragePooling2D()(inputs[..., member, :]))
        np.testing.assert_allclose(pooled[:, member], expected, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(pooled[:, member], inputs[..., member, :].mean(axis=(1, 2)), rtol=1e-5)
        expected = np.asarray(keras.layers.Add()([inputs[..., member, :], residual[..., member, :]]))
        np.testing.assert_array_equal(added[..., member, :], expected)


@pytest.mark.parametrize("implementation", population.PopulationMaxPool2D.IMPLEMENTATIONS)
@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("spatial, pool_size", [((8, 8), 2), ((7, 5), 2), ((6, 9), 3)])
def test_max_pooling_matches_keras_per_member_with_gradients(spatial, pool_size, jit_compile, implementation):
    """Forward and input gradient equal `MaxPooling2D`'s, including sizes the pool does not divide
    (the ragged edge is dropped, as 'valid' padding does) and ReLU inputs whose windows tie at zero."""
    import tensorflow as tf

    raw = _member_inputs((4,) + spatial + (POPULATION, 3), 5)
    layer = population.PopulationMaxPool2D(pool_size, implementation=implementation)

    def pooled_loss(inputs, pool):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = pool(tf.nn.relu(inputs))
            loss = tf.reduce_sum(tf.sin(outputs) * tf.range(1.0, 1.0 + outputs.shape[-1]))
        return outputs, tape.gradient(loss, inputs)

    got_outputs, got_gradient = tf.function(lambda x: pooled_loss(x, layer), jit_compile=jit_compile)(
        tf.constant(raw))
    rows, columns = spatial[0] // pool_size, spatial[1] // pool_size
    assert got_outputs.shape == (4, rows, columns, POPULATION, 3)
    for member in range(POPULATION):
        member_input = tf.constant(raw[..., member, :])
        # Some windows are all zeros after the ReLU (tied maxima) and some are not.
        relu_windows = np.maximum(raw[:, : rows * pool_size, : columns * pool_size, member], 0)
        assert (relu_windows == 0).any() and (relu_windows > 0).any()
        outputs, gradient = pooled_loss(member_input, keras.layers.MaxPooling2D(pool_size))
        assert np.abs(gradient.numpy()).max() > 1e-2
        np.testing.assert_array_equal(got_outputs.numpy()[..., member, :], outputs.numpy())
        np.testing.assert_allclose(got_gradient.numpy()[..., member, :], gradient.numpy(), rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_first_max_gradient_goes_to_the_first_tied_maximum_as_keras_does(jit_compile):
    """Inputs on three levels, so most windows tie at a positive maximum: "first_max" gives each window's
    gradient to its first maximum in row-major order, exactly as `MaxPooling2D` does, while "reshape_max"
    shares it among the tied maxima."""
    import tensorflow as tf

    raw = np.random.default_rng(6).integers(0, 3, size=(4, 6, 6, POPULATION, 3)).astype("float32")

    def pooled_gradient(inputs, pool):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = tf.reduce_sum(pool(inputs) * tf.range(1.0, 4.0))
        return tape.gradient(loss, inputs)

    got = {name: tf.function(lambda x, name=name: pooled_gradient(x, population.PopulationMaxPool2D(2, name)),
                             jit_compile=jit_compile)(tf.constant(raw)).numpy()
           for name in ("first_max", "reshape_max")}
    windows = raw.reshape(4, 3, 2, 3, 2, POPULATION, 3)
    ties = (windows == windows.max(axis=(2, 4), keepdims=True)).sum(axis=(2, 4))
    assert (ties > 1).mean() > 0.5 and (ties == 1).any()
    for member in range(POPULATION):
        expected = tf.function(lambda x: pooled_gradient(x, keras.layers.MaxPooling2D(2)), jit_compile=jit_compile)(
            tf.constant(raw[..., member, :])).numpy()
        # One nonzero entry (1, 2 or 3: the channel's weight) per window, at its first maximum.
        assert (expected != 0).sum() == 4 * 3 * 3 * 3
        np.testing.assert_array_equal(got["first_max"][..., member, :], expected)
        # Sharing puts a fraction of the gradient on every tied maximum instead; the totals agree.
        assert not np.array_equal(got["reshape_max"][..., member, :], expected)
        np.testing.assert_allclose(got["reshape_max"][..., member, :].sum(), expected.sum(), rtol=1e-6)


def test_max_pooling_rejects_an_unknown_implementation_naming_the_choices():
    with pytest.raises(ValueError, match="reshape_max"):
        population.PopulationMaxPool2D(2, implementation="avg")
