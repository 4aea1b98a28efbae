"""Every population convolution implementation equals each member's own Conv2D, forward and gradient."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust.search import _conv_benchmark, _population_conv, population

POPULATION, BATCH, HEIGHT, WIDTH, CHANNELS, FILTERS = 3, 4, 5, 6, 2, 3
CASES = [(name, shared, k) for name in _population_conv.IMPLEMENTATIONS for shared in (True, False) for k in (2, 3)
         if shared or name != "concat_filters"]


def _reference(inputs, kernel, weights):
    """Per member: Keras Conv2D output and the gradients of sum(output * weights[:, :, :, m])."""
    outputs, kernel_grads, input_grads = [], [], []
    for member in range(POPULATION):
        layer = keras.layers.Conv2D(FILTERS, kernel.shape[1], padding="same")
        member_input = tf.constant(inputs if inputs.ndim == 4 else inputs[:, :, :, member])
        layer.build(member_input.shape)
        layer.set_weights([kernel[member], np.zeros(FILTERS, "float32")])
        with tf.GradientTape() as tape:
            tape.watch(member_input)
            output = layer(member_input)
            loss = tf.reduce_sum(output * weights[:, :, :, member])
        kernel_grad, input_grad = tape.gradient(loss, [layer.kernel.value, member_input])
        outputs.append(output.numpy())
        kernel_grads.append(kernel_grad.numpy())
        input_grads.append(input_grad.numpy())
    return np.stack(outputs, 3), np.stack(kernel_grads), np.stack(input_grads, 3)


@pytest.mark.parametrize("implementation,shared,kernel_size", CASES)
def test_implementation_matches_single_conv2d(implementation, shared, kernel_size):
    rng = np.random.default_rng(kernel_size)
    shape = (BATCH, HEIGHT, WIDTH) + (() if shared else (POPULATION,)) + (CHANNELS,)
    inputs = rng.normal(size=shape).astype("float32")
    kernel = rng.normal(size=(POPULATION, kernel_size, kernel_size, CHANNELS, FILTERS)).astype("float32")
    weights = rng.normal(size=(BATCH, HEIGHT, WIDTH, POPULATION, FILTERS)).astype("float32")

    # Compiled with XLA, as the population trainer runs it (the grouped one runs only there).
    @tf.function(jit_compile=True)
    def forward_and_gradients(x, w):
        with tf.GradientTape() as tape:
            tape.watch([x, w])
            output = _population_conv.population_conv(x, w, implementation)
            loss = tf.reduce_sum(output * weights)
        return (output,) + tuple(tape.gradient(loss, [w, x]))

    got = [g.numpy() for g in forward_and_gradients(tf.constant(inputs), tf.constant(kernel))]
    expected = _reference(inputs, kernel, weights)
    assert all(np.isfinite(a).all() and np.abs(a).max() > 0.1 for a in got[:2] + list(expected[:2]))
    # Same sums in another order: float32 rounding of sums of up to k*k*C*B*H*W terms of size ~1.
    for a, b in zip(got[:2], expected[:2]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
    if shared:  # the input gradient of a shared input sums the members'
        np.testing.assert_allclose(got[2], expected[2].sum(axis=3), rtol=1e-4, atol=1e-4)
    else:
        np.testing.assert_allclose(got[2], expected[2], rtol=1e-4, atol=1e-4)


def test_bad_implementation_names_the_choices():
    with pytest.raises(ValueError, match="patch_einsum"):
        population.PopulationConv2D(2, 3, 3, implementation="fft").build((None, 4, 4, 2))
    with pytest.raises(ValueError, match="shared"):
        population.PopulationConv2D(2, 3, 3, implementation="concat_filters").build((None, 4, 4, 2, 2))


@pytest.mark.parametrize("population_size", [2, 16, 17, 64])
def test_auto_picks_the_recorded_fastest(population_size):
    layer = population.PopulationConv2D(population_size, 3, 3)
    layer.build((None, 4, 4, population_size, 2))
    first = population.PopulationConv2D(population_size, 3, 3)
    first.build((None, 4, 4, 2))
    assert first.implementation == "concat_filters"
    assert layer.implementation == ("member_loop" if population_size <= 16 else "patch_einsum")


def test_benchmark_times_every_variant_and_finds_the_cnn_layers():
    assert _conv_benchmark.conv_layer_shapes("cnn", (8, 8, 1)) == [(8, 8, 1, 16, 3, True), (4, 4, 16, 32, 3, False)]
    rows = _conv_benchmark.benchmark_architectures(["cnn"], (4, 4, 1), [2], batch_size=2, repeats=1,
                                                   printer=lambda line: None)
    assert {(r["layer"], r["implementation"]) for r in rows} == (
        {(0, name) for name in _population_conv.IMPLEMENTATIONS}
        | {(1, name) for name in _population_conv.IMPLEMENTATIONS if name != "concat_filters"})
    assert all(r["ms"] > 0 and r["gflops"] > 0 for r in rows)
    assert "**" in _conv_benchmark.format_conv_table(rows, 100.0)


def test_pool_benchmark_times_every_pooling_of_architectures_that_pool():
    rows = _conv_benchmark.benchmark_pooling(["mlp", "cnn"], (4, 4, 1), [2], batch_size=2, repeats=1,
                                             printer=lambda line: None)
    # The mlp has no pooling: only the cnn is timed, once per pooling.
    assert [(r["architecture"], r["implementation"]) for r in rows] == [("cnn", name) for name in population.POOLINGS]
    assert all(r["ms"] > 0 for r in rows)
    table = _conv_benchmark.format_pool_table(rows)
    ms = [row["ms"] for row in rows]
    assert (f"| cnn | 2 | {ms[0]:.1f} | {ms[1]:.1f} | {ms[2]:.1f} | {ms[1] / ms[0]:.2f}x | {ms[2] / ms[0]:.2f}x |"
            in table)