"""Population models: member m of the stacked model computes exactly what single model m computes."""

import numpy as np
import pytest

from tfrobust import models
from tfrobust.search import population


@pytest.mark.parametrize("architecture", ["mlp", "cnn", "cnn_bn", "resnet_tiny"])
def test_forward_pass_matches_single_models(architecture):
    rng = np.random.default_rng(1)
    x = rng.random((9, 8, 8, 1)).astype("float32")
    stacked = population.build_population_model(architecture, (8, 8, 1), 10, 3)
    singles = [models.build_model(architecture, (8, 8, 1), 10, seed=10 * m) for m in range(3)]
    for member, single in enumerate(singles):
        population.set_member_weights(stacked, member, single.get_weights())
    outputs = np.asarray(stacked(x))
    for member, single in enumerate(singles):
        # einsum / one stacked convolution vs Dense / Conv2D: the same sums in another order (float32 rounding).
        np.testing.assert_allclose(outputs[:, member], np.asarray(single(x)), rtol=1e-5, atol=1e-6)
        for a, b in zip(population.member_weights(stacked, member), single.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("pooling", ["fused", "reshape_max"])
@pytest.mark.parametrize("architecture", ["cnn", "cnn_bn", "resnet_tiny"])
def test_training_mode_outputs_gradients_and_statistics_match_single_models(architecture, pooling):
    import tensorflow as tf

    rng = np.random.default_rng(2)
    x = tf.constant(rng.random((6, 8, 8, 1)).astype("float32"))
    stacked = population.build_population_model(architecture, (8, 8, 1), 10, 2, pooling=pooling)
    singles = [models.build_model(architecture, (8, 8, 1), 10, seed=10 * m) for m in range(2)]
    for member, single in enumerate(singles):
        # Random BatchNorm scales, offsets and statistics (not the identity defaults).
        weights = [w if w.ndim > 1 else rng.uniform(0.5, 1.5, w.shape).astype("float32")
                   for w in single.get_weights()]
        single.set_weights(weights)
        population.set_member_weights(stacked, member, weights)
    with tf.GradientTape() as tape:
        outputs = stacked(x, training=True)
        loss = tf.reduce_sum(tf.math.log(outputs[:, :, 0]))
    gradients = tape.gradient(loss, stacked.trainable_variables)
    for member, single in enumerate(singles):
        with tf.GradientTape() as tape:
            expected = single(x, training=True)
            single_loss = tf.reduce_sum(tf.math.log(expected[:, 0]))
        expected_gradients = tape.gradient(single_loss, single.trainable_variables)
        assert np.isfinite(expected.numpy()).all() and np.abs(expected_gradients[0].numpy()).max() > 1e-4
        np.testing.assert_allclose(outputs.numpy()[:, member], expected.numpy(), rtol=1e-4, atol=1e-5)
        for got, want in zip(gradients, expected_gradients):
            np.testing.assert_allclose(got.numpy()[member], want.numpy(), rtol=1e-3, atol=1e-5)
        # Moving statistics updated from each member's own batch moments.
        for a, b in zip(population.member_weights(stacked, member), single.get_weights()):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("architecture", ["cnn", "cnn_bn", "resnet_tiny"])
def test_fused_pooling_computes_the_same_outputs_exactly(architecture):
    """Pooling before the bias and a non-decreasing activation is exact in float arithmetic too: rounding
    is monotone, so max(x_i + b) = max(x_i) + b bit for bit."""
    rng = np.random.default_rng(4)
    x = rng.random((9, 8, 8, 1)).astype("float32")
    fused, in_order = (population.build_population_model(architecture, (8, 8, 1), 10, 3, seed=5, pooling=pooling)
                       for pooling in ("fused", "reshape_max"))
    in_order.set_weights([rng.normal(size=w.shape).astype("float32") for w in fused.get_weights()])
    fused.set_weights(in_order.get_weights())
    outputs = np.asarray(fused(x, training=True))
    assert np.isfinite(outputs).all() and outputs.std() > 1e-3
    np.testing.assert_array_equal(outputs, np.asarray(in_order(x, training=True)))


def test_fused_pooling_rejects_an_activation_that_can_decrease():
    # GELU dips below zero for negative inputs: max(gelu(x)) != gelu(max(x)) there.
    with pytest.raises(ValueError, match="non-decreasing"):
        population.PopulationConv2D(2, 4, 3, activation="gelu", pool_size=2)


def test_an_unknown_pooling_names_the_choices():
    with pytest.raises(ValueError, match="fused"):
        population.build_population_model("cnn", (8, 8, 1), 10, 2, pooling="avg")


def test_every_architecture_is_supported():
    assert all(population.supports(name) for name in models.ARCHITECTURES)


def test_the_evaluator_vectorises_the_new_architectures():
    from tfrobust.search import evaluation

    assert evaluation.supports_vectorized("cnn_bn") and evaluation.supports_vectorized("resnet_tiny")
