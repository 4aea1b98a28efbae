"""Throughput of fitness evaluation: per-candidate `model.fit` against population training.

The library behind `python -m search.throughput`. Everything is measured in
one process on one machine, medians of several repetitions, and reported as
ratios: absolute seconds on a shared machine are noisy, ratios measured side
by side much less so.
"""

import dataclasses
import functools
import os
import resource
import statistics
import time

import numpy as np

from tfrobust import _io, models
from tfrobust.search import _conv_benchmark, tasks, training


@dataclasses.dataclass
class ThroughputConfig:
    dataset: str = "digits"
    architectures: tuple = ("mlp", "cnn")
    populations: tuple = (1, 4, 16, 64)
    steps: int = 300
    batch_size: int = 64
    repeats: int = 3
    per_candidate_fits: int = 12  # fits timed per architecture for the per-candidate path
    loss_step_repeats: int = 9
    loss_step_epochs: int = 3  # each timed run fits loss_step_epochs x steps steps
    # Population-convolution implementations (past the first layer) to time
    # the conv architectures with, side by side; "auto" is the library's choice.
    conv_implementations: tuple = ("auto",)
    conv_variants: bool = False  # also time each implementation per conv layer shape
    pool_variants: bool = False  # also time each max-pooling implementation on whole training steps
    diagnostics: bool = True  # the loss-step timing, the step split and the profile
    output_dir: str = ""


def _candidates(population_size, seed):
    """Candidates around the search's usual starting point, as a CMA-ES generation would draw them."""
    from tfrobust.losses import TaylorLoss

    base = np.array(TaylorLoss.preset_info("cross_entropy_taylor3")["coefficients"])
    return base + 0.2 * np.random.default_rng(seed).normal(size=(population_size, base.size))


def _mlp_arrays(config, steps):
    """The noisy digits (or `config.dataset`) training stream of `steps` batches, for the loss-step timings."""
    from tfrobust import datasets

    data = datasets.load(config.dataset, noise="symmetric:0.4", seed=0)
    index = np.resize(np.arange(len(data.y_train)), steps * config.batch_size)
    return data, data.x_train[index], data.y_train[index]


def _compiled_mlp(data, loss, jit_compile="auto"):
    import keras

    model = models.build_model("mlp", data.input_shape, data.num_classes, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss=loss, jit_compile=jit_compile)
    return model


def peak_matmul_gflops(size=2048, repeats=5):
    """GFLOP/s of a large float32 matmul: what this machine's BLAS really reaches (the FLOP limit)."""
    import tensorflow as tf

    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))
    matmul = tf.function(lambda x, y: tf.reduce_sum(tf.matmul(x, y)), jit_compile=True)
    matmul(a, b).numpy()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).numpy()
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def measure_architecture(config, architecture, printer):
    task = tasks.Task(config.dataset, architecture, "symmetric:0.4", steps=config.steps, batch_size=config.batch_size)
    data = training.prepare_task(tasks.TaskInstance(task, 0))
    flops = models.training_flops_per_example(architecture, data.input_shape, data.num_classes)
    work = config.steps * config.batch_size * flops  # FLOPs of one candidate evaluation

    # Per-candidate path: a real search builds, compiles and fits a new model per
    # candidate, so each timed fit includes all of that.
    training.train_single(data, _candidates(1, 99)[0])  # process-wide TensorFlow warm-up
    fit_times = []
    for index, row in enumerate(_candidates(config.per_candidate_fits, 1)):
        start = time.perf_counter()
        training.train_single(data, row)
        fit_times.append(time.perf_counter() - start)
        printer(f"  {architecture}: per-candidate fit {index + 1}/{config.per_candidate_fits} {fit_times[-1]:.2f}s")
    per_candidate_rate = 1.0 / statistics.median(fit_times)

    rows = []
    has_conv = any(spec[0] == "conv" for spec in models.architecture(architecture))
    for implementation in config.conv_implementations if has_conv else ("auto",):
        for population_size in config.populations:
            rows.append(_time_population(config, data, architecture, implementation, population_size, work,
                                         per_candidate_rate))
            printer(f"  {architecture} ({implementation} convolutions): population {population_size}: "
                    f"{rows[-1]['vectorized_evals_per_s']:.1f} evals/s ({rows[-1]['speedup']:.1f}x), "
                    f"{rows[-1]['gflops']:.1f} GFLOP/s")
    return rows, flops, data.input_shape


def _time_population(config, data, architecture, implementation, population_size, work, per_candidate_rate):
    train = functools.partial(training.train_population, data, conv_implementation=implementation)
    start = time.perf_counter()
    train(_candidates(population_size, 2))  # build + trace + XLA compile
    first_call = time.perf_counter() - start
    times = []
    for repeat in range(config.repeats):
        coefficients = _candidates(population_size, 10 + repeat)
        start = time.perf_counter()
        train(coefficients)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    rate = population_size / median
    return {
        "architecture": architecture,
        "conv_implementation": implementation,
        "population": population_size,
        "per_candidate_evals_per_s": per_candidate_rate,
        "vectorized_evals_per_s": rate,
        "speedup": rate / per_candidate_rate,
        "vectorized_first_call_s": first_call,
        "vectorized_median_s": median,
        "gflops": population_size * work / median / 1e9,
        "peak_rss_gib": _peak_rss_gib(),
    }


def loss_step_times(config, printer):
    """Training-step time of one model compiled with TaylorLoss vs SparseCategoricalCrossentropy.

    Measured twice: with Keras's default compilation (`jit_compile="auto"`)
    and with XLA (`jit_compile=True`), which fuses the loss's element-wise
    operations, so the comparison shows how much of any gap is per-operation
    dispatch rather than arithmetic. Runs alternate between the two losses so
    that drift in machine load hits both equally.
    """
    import keras

    from tfrobust.losses import TaylorLoss

    data, x, y = _mlp_arrays(config, config.loss_step_epochs * config.steps)
    times = {}
    # Each compilation is built, warmed up and timed on its own, the two losses
    # alternating: interleaved with XLA runs, whichever run followed one
    # measured slower, whatever its loss.
    for suffix, jit in (("", "auto"), ("_xla", True)):
        compiled = {}
        for name, make_loss in (("cross_entropy", keras.losses.SparseCategoricalCrossentropy),
                                ("taylor", TaylorLoss.pretrained)):
            model = _compiled_mlp(data, make_loss(), jit)
            model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)  # compile, warm up
            compiled[name + suffix] = model
            times[name + suffix] = []
        for _ in range(config.loss_step_repeats):
            for name, model in compiled.items():
                start = time.perf_counter()
                model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
                times[name].append((time.perf_counter() - start) / (config.loss_step_epochs * config.steps) * 1e3)
    result = {name: statistics.median(values) for name, values in times.items()}
    result["ratio"] = result["taylor"] / result["cross_entropy"]
    result["ratio_xla"] = result["taylor_xla"] / result["cross_entropy_xla"]
    printer(f"  step time: CE {result['cross_entropy']:.3f} ms, TaylorLoss {result['taylor']:.3f} ms "
            f"(ratio {result['ratio']:.3f}); with XLA: CE {result['cross_entropy_xla']:.3f} ms, "
            f"TaylorLoss {result['taylor_xla']:.3f} ms (ratio {result['ratio_xla']:.3f})")
    return result


def step_breakdown(architecture="mlp", population_size=64, dataset="digits", steps=300, batch_size=64,
                   repeats=3, printer=print):
    """Milliseconds per population training step with Adam, with plain SGD, and forward only.

    Splits the cost of a vectorised step: if SGD is as slow as Adam the
    optimiser is not the bottleneck; the forward share bounds what faster
    backward kernels could gain.

        python -c "from tfrobust.search import throughput; throughput.step_breakdown('cnn')"
    """
    import tensorflow as tf

    base = tasks.Task(dataset, architecture, "symmetric:0.4", steps=steps, batch_size=batch_size)
    data = training.prepare_task(tasks.TaskInstance(base, 0))
    coefficients = _candidates(population_size, 3)
    result = {}
    for optimizer in ("adam", "sgd"):
        task = dataclasses.replace(base, optimizer=optimizer)
        trainer = training.PopulationTrainer(task, data.input_shape, data.num_classes, population_size, 3)
        trainer.train(data, coefficients)  # compile
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            trainer.model.fit(data.batches(), epochs=1, shuffle=False, verbose=0)
            times.append((time.perf_counter() - start) / steps * 1e3)
        result[f"train_{optimizer}_ms"] = statistics.median(times)
    forward = tf.function(lambda x: trainer.model(x, training=False), jit_compile=True)
    batch = tf.constant(data.x_stream[:batch_size])
    forward(batch)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(100):
            output = forward(batch)
        np.asarray(output)
        times.append((time.perf_counter() - start) / 100 * 1e3)
    result["forward_ms"] = statistics.median(times)
    printer(f"  {architecture} population {population_size}: "
            + ", ".join(f"{key} {value:.3f}" for key, value in result.items()))
    return result


def profile_op_types(fit, logdir, top=8):
    """Runs `fit()` under the TensorFlow profiler; returns [(op type, self-time ms, share)].

    Reads the profile with TensorFlow's own converter (the "framework_op_stats"
    tool of TensorBoard's profiler), so no plugin is needed. Ops inside an XLA
    cluster are not broken down: profile a step compiled without XLA.
    """
    import collections
    import glob
    import json

    import tensorflow as tf
    from tensorflow.python.profiler.internal import _pywrap_profiler_plugin

    tf.profiler.experimental.start(logdir)
    try:
        fit()
    finally:
        tf.profiler.experimental.stop()
    paths = sorted(glob.glob(os.path.join(logdir, "**", "*.xplane.pb"), recursive=True))
    table = json.loads(_pywrap_profiler_plugin.xspace_to_tools_data(paths[-1:], "framework_op_stats", {})[0])[0]
    columns = [column["id"] for column in table["cols"]]
    self_time = collections.Counter()
    for row in table["rows"]:
        cells = dict(zip(columns, [cell["v"] if cell else None for cell in row["c"]]))
        if cells["type"] != "IDLE":
            self_time[cells["type"]] += cells["total_self_time"]
    total = sum(self_time.values())
    return [(op, us / 1e3, us / total) for op, us in self_time.most_common(top)], total / 1e3


def profile_loss_step(config, logdir, printer=print):
    """Profiles `steps` training steps of the mlp with each loss (default compilation): where the time goes."""
    import keras

    from tfrobust.losses import TaylorLoss

    data, x, y = _mlp_arrays(config, config.steps)
    report = {}
    for name, loss in (("cross_entropy", keras.losses.SparseCategoricalCrossentropy()),
                       ("taylor", TaylorLoss.pretrained())):
        model = _compiled_mlp(data, loss)
        model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0)
        ops_by_time, total = profile_op_types(
            lambda: model.fit(x, y, batch_size=config.batch_size, epochs=1, shuffle=False, verbose=0),
            os.path.join(logdir, name),
        )
        report[name] = {"total_ms": total, "op_types": ops_by_time}
        printer(f"  {name}: {total:.0f} ms of op self-time over {config.steps} steps; top op types: "
                + ", ".join(f"{op} {ms:.0f} ms ({share:.0%})" for op, ms, share in ops_by_time))
    return report


def _diagnostics(config, printer):
    printer("Measuring TaylorLoss vs cross-entropy step time ...")
    steps = loss_step_times(config, printer)
    printer(f"Splitting the population-{max(config.populations)} step (Adam, SGD, forward only) ...")
    breakdown = {architecture: step_breakdown(architecture, max(config.populations), config.dataset, config.steps,
                                              config.batch_size, config.repeats, printer)
                 for architecture in config.architectures}
    printer("Profiling the loss step (TensorFlow profiler) ...")
    import tempfile

    with tempfile.TemporaryDirectory() as logdir:
        profile = profile_loss_step(config, logdir, printer)
    return {"loss_step_ms": steps, "loss_step_profile": profile, "step_breakdown": breakdown}


def run_throughput(config, printer=print):
    """Measures everything; returns a dict and prints the Markdown table."""
    started = time.perf_counter()
    printer("Measuring the machine's matmul peak ...")
    peak = peak_matmul_gflops()
    rows, flops = [], {}
    for architecture in config.architectures:
        printer(f"Measuring {architecture} on {config.dataset} ({config.steps} steps, batch {config.batch_size}) ...")
        arch_rows, flops[architecture], input_shape = measure_architecture(config, architecture, printer)
        rows.extend(arch_rows)
    conv_rows = []
    if config.conv_variants:
        printer("Timing each population-convolution implementation per layer shape (XLA, forward + backward) ...")
        conv_architectures = [a for a in config.architectures
                              if any(spec[0] == "conv" for spec in models.architecture(a))]
        conv_rows = _conv_benchmark.benchmark_architectures(
            conv_architectures, input_shape, config.populations, config.batch_size, config.repeats, printer=printer)
    pool_rows = []
    if config.pool_variants:
        printer("Timing each population max-pooling implementation (whole XLA training steps, SGD) ...")
        pool_rows = _conv_benchmark.benchmark_pooling(config.architectures, input_shape, config.populations,
                                                      config.batch_size, printer=printer)
    diagnostics = {}
    if config.diagnostics:
        diagnostics = _diagnostics(config, printer)
    result = {
        "config": dataclasses.asdict(config),
        "peak_matmul_gflops": peak,
        "training_flops_per_example": flops,
        "rows": rows,
        "conv_variants": conv_rows,
        "pool_variants": pool_rows,
        **diagnostics,
        "wall_time_s": time.perf_counter() - started,
    }
    table = format_table(result)
    printer(table)
    if config.output_dir:
        os.makedirs(config.output_dir, exist_ok=True)
        _io.write_json(os.path.join(config.output_dir, "throughput.json"), result)
        _io.write_text(os.path.join(config.output_dir, "throughput.md"), table)
        plot_throughput(result, os.path.join(config.output_dir, "throughput.png"))
        printer(f"Wrote {config.output_dir}/throughput.{{json,md,png}}")
    return result


def format_table(result):
    peak = result["peak_matmul_gflops"]
    config = result["config"]
    lines = [
        f"Fitness-evaluation throughput on {config['dataset']}, {config['steps']} steps of batch "
        f"{config['batch_size']} per candidate (medians of {config['repeats']} repetitions; per-candidate: "
        f"median of {config['per_candidate_fits']} fits). Matmul peak measured here: {peak:.1f} GFLOP/s.",
        "",
        "| architecture | convolutions | population | per-candidate evals/s | vectorized evals/s | speed-up | "
        "vectorized GFLOP/s | of peak | first call (compile) s | peak RSS GiB |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in result["rows"]:
        lines.append(
            f"| {row['architecture']} | {row['conv_implementation']} | {row['population']} | "
            f"{row['per_candidate_evals_per_s']:.2f} | "
            f"{row['vectorized_evals_per_s']:.1f} | {row['speedup']:.1f}x | {row['gflops']:.1f} | "
            f"{row['gflops'] / peak:.0%} | {row['vectorized_first_call_s']:.1f} | {row['peak_rss_gib']:.2f} |"
        )
    if result["conv_variants"]:
        lines += ["", "Population convolution per layer shape: milliseconds per training step (forward, kernel "
                  "gradient, and input gradient past the first layer) under XLA, batch "
                  f"{config['batch_size']}, medians of {config['repeats']} round-robin runs; fastest in bold.", "",
                  _conv_benchmark.format_conv_table(result["conv_variants"], peak)]
    if result.get("pool_variants"):
        lines += ["", "Population max pooling: milliseconds per whole training step (forward, gradients, SGD "
                  f"update) under XLA, batch {config['batch_size']}, medians of 7 round-robin runs, and each "
                  "pooling's time over the first's.", "",
                  _conv_benchmark.format_pool_table(result["pool_variants"])]
    if "loss_step_ms" in result:
        lines += _diagnostic_lines(result)
    lines += [
        f"Total time: {result['wall_time_s']:.0f} s.",
    ]
    return "\n".join(lines) + "\n"


def _diagnostic_lines(result):
    config = result["config"]
    steps = result["loss_step_ms"]
    return [
        "",
        f"Training step of the mlp model, Keras's default compilation: SparseCategoricalCrossentropy "
        f"{steps['cross_entropy']:.3f} ms, TaylorLoss {steps['taylor']:.3f} ms, ratio {steps['ratio']:.3f}; "
        f"with jit_compile=True: {steps['cross_entropy_xla']:.3f} ms vs {steps['taylor_xla']:.3f} ms, ratio "
        f"{steps['ratio_xla']:.3f} (medians of {config['loss_step_repeats']} alternating runs of "
        f"{config['loss_step_epochs'] * config['steps']} steps).",
        f"Population-{max(config['populations'])} training step split (ms per step): "
        + "; ".join(f"{arch}: Adam {b['train_adam_ms']:.2f}, plain SGD {b['train_sgd_ms']:.2f}, forward only "
                    f"{b['forward_ms']:.2f}" for arch, b in result["step_breakdown"].items()) + ".",
        "Op self-time over one epoch of that training, by op type (TensorFlow profiler): "
        + "; ".join(
            f"{name}: " + ", ".join(f"{op} {ms:.0f} ms" for op, ms, _ in entry["op_types"][:5])
            for name, entry in result["loss_step_profile"].items()
        ) + ".",
    ]


def plot_throughput(result, path):
    figure, axis = _io.new_figure()
    for architecture in result["config"]["architectures"]:
        rows = [r for r in result["rows"] if r["architecture"] == architecture]
        implementations = sorted({r["conv_implementation"] for r in rows})
        for implementation in implementations:
            own = [r for r in rows if r["conv_implementation"] == implementation]
            label = f"{architecture} vectorized" + (f" ({implementation})" if len(implementations) > 1 else "")
            axis.plot([r["population"] for r in own], [r["vectorized_evals_per_s"] for r in own], marker="o",
                      label=label)
        own = [r for r in rows if r["conv_implementation"] == implementations[0]]
        axis.plot([r["population"] for r in own], [r["per_candidate_evals_per_s"] for r in own], marker="x",
                  linestyle="--", label=f"{architecture} per candidate")
    axis.set_xscale("log", base=2)
    axis.set_yscale("log")
    axis.set_xlabel("population size")
    axis.set_ylabel("candidate evaluations per second")
    axis.set_title("Fitness-evaluation throughput")
    axis.grid(alpha=0.3, which="both")
    axis.legend()
    figure.tight_layout()
    _io.save_figure(figure, path)
