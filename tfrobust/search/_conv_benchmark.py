"""Micro-benchmark of the population convolution implementations, per layer shape.

`time_conv_variants` times one training step's worth of work (forward, and
the gradients with respect to the kernel and, past the first layer, the
input) of each implementation in `_population_conv`, compiled with XLA as the
population trainer compiles it. Variants run round-robin and the median is
kept, so load on a shared machine hits all of them alike. `search.throughput
--conv_variants` prints the table; `_population_conv.FASTEST` records which
won (figures in the README section of issue 10's population work).
`time_pool_variants` does the same for the population model's poolings
(`population.POOLINGS`), on whole training steps (`search.throughput
--pool_variants`).
"""

import statistics
import time

import numpy as np

from tfrobust import models
from tfrobust.search import _population_conv


def conv_layer_shapes(architecture, input_shape):
    """`[(height, width, channels, filters, kernel_size, shared_input)]` of each convolution of `architecture`."""
    height, width, channels = input_shape
    shared = True
    shapes = []
    for spec in models.architecture(architecture):
        if spec[0] == "conv":
            shapes.append((height, width, channels, spec[1], spec[2], shared))
            channels, shared = spec[1], False
        elif spec[0] == "maxpool":
            height, width = height // spec[1], width // spec[1]
        elif spec[0] == "dense":
            shared = False
    return shapes


def _step_function(implementation, shared, jit_compile):
    import tensorflow as tf

    def step(inputs, kernel):
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            outputs = _population_conv.population_conv(inputs, kernel, implementation)
            loss = tf.reduce_sum(outputs * outputs)
        # The first layer needs no input gradient (its input is the data).
        return tape.gradient(loss, [kernel] if shared else [inputs, kernel])

    return tf.function(step, jit_compile=jit_compile)


def time_conv_variants(shape, population_size, batch_size=64, repeats=5, implementations=None, jit_compile=True,
                       printer=print):
    """Milliseconds per training step of each implementation on one layer shape (medians of round-robin runs).

    Returns `{implementation: {"ms": ..., "gflops": ..., "compile_s": ...}}`;
    `implementations` defaults to every one that can run the shape.
    """
    import tensorflow as tf

    height, width, channels, filters, kernel_size, shared = shape
    if implementations is None:
        implementations = [name for name in _population_conv.IMPLEMENTATIONS if shared or name != "concat_filters"]
    rng = np.random.default_rng(0)
    input_shape = (batch_size, height, width) + (() if shared else (population_size,)) + (channels,)
    inputs = tf.constant(rng.normal(size=input_shape).astype("float32"))
    kernel = tf.Variable(0.1 * rng.normal(size=(population_size, kernel_size, kernel_size, channels, filters))
                         .astype("float32"))
    passes = 2 if shared else 3  # forward, kernel gradient, input gradient
    flops = passes * 2 * batch_size * height * width * kernel_size**2 * channels * filters * population_size
    steps, compile_s, times = {}, {}, {name: [] for name in implementations}
    for name in implementations:
        steps[name] = _step_function(name, shared, jit_compile)
        start = time.perf_counter()
        [g.numpy() for g in steps[name](inputs, kernel)]
        compile_s[name] = time.perf_counter() - start
    for _ in range(repeats):
        for name in implementations:
            start = time.perf_counter()
            [g.numpy() for g in steps[name](inputs, kernel)]
            times[name].append(time.perf_counter() - start)
    result = {}
    for name in implementations:
        seconds = statistics.median(times[name])
        result[name] = {"ms": seconds * 1e3, "gflops": flops / seconds / 1e9, "compile_s": compile_s[name]}
    printer(f"  conv {height}x{width}x{channels}->{filters} k{kernel_size} {'shared' if shared else 'per-member'} "
            f"P={population_size}: " + ", ".join(f"{name} {r['ms']:.1f} ms" for name, r in result.items()))
    return result


def benchmark_architectures(architectures, input_shape, populations, batch_size=64, repeats=5,
                            max_grouped_population=16, printer=print):
    """Rows `{architecture, layer, shape, population, implementation, ms, gflops, compile_s}` for every conv layer.

    The grouped convolution is timed only up to `max_grouped_population`
    members: XLA's CPU backend runs it as a dense convolution over all P x C
    channels, so its cost grows with P squared.
    """
    rows = []
    for architecture in architectures:
        for layer, shape in enumerate(conv_layer_shapes(architecture, input_shape)):
            for population_size in populations:
                implementations = [name for name in _population_conv.IMPLEMENTATIONS
                                   if (shape[5] or name != "concat_filters")
                                   and (name != "grouped" or population_size <= max_grouped_population)]
                timed = time_conv_variants(shape, population_size, batch_size, repeats, implementations,
                                           printer=printer)
                for name, figures in timed.items():
                    rows.append({"architecture": architecture, "layer": layer, "shape": list(shape),
                                 "population": population_size, "implementation": name, **figures})
    return rows


def format_conv_table(rows, peak_gflops):
    """A Markdown table of `benchmark_architectures` rows, the fastest per shape marked."""
    lines = [
        "| architecture | conv layer (H x W x C -> F, k) | input | population | implementation | ms per step | "
        "GFLOP/s | of peak | compile s |",
        "|---|---|---|---:|---|---:|---:|---:|---:|",
    ]
    fastest = {}
    for row in rows:
        key = (row["architecture"], row["layer"], row["population"])
        if key not in fastest or row["ms"] < fastest[key]:
            fastest[key] = row["ms"]
    for row in rows:
        height, width, channels, filters, kernel_size, shared = row["shape"]
        best = row["ms"] == fastest[(row["architecture"], row["layer"], row["population"])]
        name = f"**{row['implementation']}**" if best else row["implementation"]
        lines.append(
            f"| {row['architecture']} | {height}x{width}x{channels} -> {filters}, {kernel_size} | "
            f"{'shared' if shared else 'per member'} | {row['population']} | {name} | {row['ms']:.1f} | "
            f"{row['gflops']:.1f} | {row['gflops'] / peak_gflops:.0%} | {row['compile_s']:.1f} |"
        )
    return "\n".join(lines) + "\n"


def time_pool_variants(architecture, input_shape, population_size, num_classes=10, batch_size=64, repeats=7,
                       printer=print):
    """Milliseconds per whole population training step (forward, gradients, SGD update under XLA) with each
    of `population.POOLINGS`, round-robin, medians of `repeats`.

    Returns `{implementation: ms}`. Whole steps rather than the layer alone:
    how XLA fuses the pooling's gradient with its neighbours is the point.
    """
    import keras
    import tensorflow as tf

    from tfrobust.losses import taylor
    from tfrobust.search import population, population_loss

    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(batch_size,) + tuple(input_shape)).astype("float32"))
    y = tf.constant(rng.integers(0, num_classes, size=batch_size))
    steps = {}
    for implementation in population.POOLINGS:
        model = population.build_population_model(architecture, input_shape, num_classes, population_size, seed=0,
                                                  pooling=implementation)
        coefficients = np.full((population_size, taylor.num_coefficients(3)), 0.1, "float32")
        loss = population_loss.PopulationTaylorLoss(coefficients, order=3)
        optimizer = keras.optimizers.SGD(0.01)
        optimizer.build(model.trainable_variables)
        steps[implementation] = _train_step(model, loss, optimizer)
        steps[implementation](x, y).numpy()  # compile
    times = {name: [] for name in steps}
    for _ in range(repeats):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(10):
                value = step(x, y)
            value.numpy()
            times[name].append((time.perf_counter() - start) / 10)
    result = {name: statistics.median(values) * 1e3 for name, values in times.items()}
    printer(f"  {architecture} population {population_size}: "
            + ", ".join(f"{name} {ms:.1f} ms" for name, ms in result.items()))
    return result


def _train_step(model, loss, optimizer):
    import tensorflow as tf

    variables = model.trainable_variables

    @tf.function(jit_compile=True)
    def step(x, y):
        with tf.GradientTape() as tape:
            value = tf.reduce_mean(loss(y, model(x, training=True)))
        optimizer.apply(tape.gradient(value, variables), variables)
        return value

    return step


def benchmark_pooling(architectures, input_shape, populations, batch_size=64, repeats=7, printer=print):
    """Rows `{architecture, population, implementation, ms}` of `time_pool_variants` for every architecture
    that max-pools after its first layer with weights."""
    rows = []
    for architecture in architectures:
        specs = models.architecture(architecture)
        first_weights = next(i for i, spec in enumerate(specs) if spec[0] in ("conv", "dense"))
        if not any(spec[0] == "maxpool" for spec in specs[first_weights:]):
            continue
        for population_size in populations:
            timed = time_pool_variants(architecture, input_shape, population_size, batch_size=batch_size,
                                       repeats=repeats, printer=printer)
            rows += [{"architecture": architecture, "population": population_size, "implementation": name,
                      "ms": ms} for name, ms in timed.items()]
    return rows


def format_pool_table(rows):
    """A Markdown table of `benchmark_pooling` rows: one line per architecture and population, with each
    implementation's time over the first's."""
    names = list(dict.fromkeys(row["implementation"] for row in rows))
    lines = ["| architecture | population | " + " | ".join(f"{name} ms" for name in names) + " | "
             + " | ".join(f"{name} / {names[0]}" for name in names[1:]) + " |",
             "|---|---:|" + "---:|" * (2 * len(names) - 1)]
    grouped = {}
    for row in rows:
        grouped.setdefault((row["architecture"], row["population"]), {})[row["implementation"]] = row["ms"]
    for (architecture, population_size), times in grouped.items():
        lines.append(f"| {architecture} | {population_size} | " + " | ".join(f"{times[n]:.1f}" for n in names)
                     + " | " + " | ".join(f"{times[n] / times[names[0]]:.2f}x" for n in names[1:]) + " |")
    return "\n".join(lines) + "\n"
