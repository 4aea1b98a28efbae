"""Benchmark training methods (losses) under label noise: clean test accuracy and memorisation.

    python -m search.benchmark                       # default preset, ~5 min on 2 CPU cores -> runs/benchmark
    python -m search.benchmark --preset=full         # the README grid (~2.5 h) -> runs/benchmark_full
    python -m search.benchmark --preset=heldout      # evolved TaylorLoss, unseen settings -> runs/benchmark_heldout
    python -m search.benchmark --preset=full --dry_run   # print the grid and its estimated time

Explicit flags override the preset's values. Rerunning a command skips the
runs already in <output_dir>/results.csv. The work is done by
`tfrobust.benchmark.run_benchmark`, which notebooks can call directly;
`tfrobust.benchmark.summarize(csv_path)` rebuilds the tables of results.md.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import benchmark  # noqa: E402

_DEFAULTS = benchmark.BenchmarkConfig()
_AXES = ("methods", "datasets", "architectures", "noise", "seeds")
FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "default", sorted(benchmark.PRESETS),
                  "default: every method on digits / mlp, noise none, symmetric:0.4, pairflip:0.4, 3 seeds, "
                  "20 epochs (a smaller grid than full so that it ends within 10 minutes on 2 CPU cores). "
                  "full: every method, digits and mnist5k, mlp and cnn, all noise settings, 3 seeds. "
                  "heldout: the default TaylorLoss against ce, gce, sce, mae on settings the search did not use.")
flags.DEFINE_list("methods", benchmark.default_methods(),
                  "Methods: " + ", ".join(benchmark.method_names()) + ", taylor (the default TaylorLoss preset), "
                  "taylor:<preset>, taylor_file:<coefficient file>. Default: every method and TaylorLoss preset.")
flags.DEFINE_list("datasets", list(_DEFAULTS.datasets), "digits, mnist5k, or any prepared TFDS data set.")
flags.DEFINE_list("architectures", list(_DEFAULTS.architectures), "linear, mlp, mlp2, cnn.")
flags.DEFINE_list("noise", list(_DEFAULTS.noise),
                  "Noise settings: none, symmetric:R, pairflip:R, instance:R, matrix:<.npy/.csv/.json file>. "
                  "The full preset: " + ",".join(benchmark.ALL_NOISE) + ".")
flags.DEFINE_list("seeds", [str(seed) for seed in _DEFAULTS.seeds],
                  "Seeds: each fixes the split, the noise, the initial weights and the batch order for all methods.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, "Training epochs per run (default preset; full 20, heldout 40).")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Examples per training step.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer, "A Keras optimizer name (adam, sgd, rmsprop, adamw, ...).")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "The optimizer's learning rate.")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples per source split (0: all).")
flags.DEFINE_string("output_dir", _DEFAULTS.output_dir,
                    "Folder for results.csv, curves.jsonl, results.md and plots (full: runs/benchmark_full, "
                    "heldout: runs/benchmark_heldout).")
flags.DEFINE_bool("save_models", False, "Also save every trained model as <output_dir>/models/<run_id>.keras.")
flags.DEFINE_string("data_dir", "", "TFDS data directory for prepared TFDS data sets (empty: TFDS's default).")
flags.DEFINE_bool("dry_run", False, "Print the grid and its estimated run time, train nothing.")

_OVERRIDABLE = _AXES + ("epochs", "batch_size", "optimizer", "learning_rate", "max_examples", "output_dir",
                        "save_models", "data_dir")


def config_from_flags():
    """The preset's config with every flag given on the command line applied over it."""
    overrides = {}
    for name in _OVERRIDABLE:
        if not FLAGS[name].present:
            continue
        value = FLAGS[name].value
        if name in _AXES:
            value = tuple(item.strip() for item in value if item.strip())
        if name == "seeds":
            try:
                value = tuple(int(seed) for seed in value)
            except ValueError:
                raise app.UsageError(f"--seeds takes integers; got {FLAGS.seeds}.") from None
        if name in ("max_examples", "data_dir"):
            value = value or None
        overrides[name] = value
    return benchmark.BenchmarkConfig.from_preset(FLAGS.preset, **overrides)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = config_from_flags()
    try:
        if FLAGS.dry_run:
            config.validate()
            runs = config.runs()
            print(f"Preset {FLAGS.preset}: {len(runs)} runs, {len(config.method_list())} methods "
                  f"({', '.join(config.method_list())}); estimated "
                  f"{benchmark.format_duration(benchmark.estimate_seconds(runs, config.data_dir))} on a 2-core CPU.")
            return
        benchmark.run_benchmark(config)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None


if __name__ == "__main__":
    app.run(main)
