"""Benchmark training methods (losses) under label noise: clean test accuracy and memorisation.

    python -m search.benchmark                       # the default preset -> runs/benchmark
    python -m search.benchmark --preset=full         # the README grid -> runs/benchmark_full
    python -m search.benchmark --preset=heldout      # evolved TaylorLoss, unseen settings -> runs/benchmark_heldout
    python -m search.benchmark --preset=reweighting  # L2RW, MW-Net, ABSGD, BARE, MentorNet-PD -> runs/benchmark_reweighting
    python -m search.benchmark --preset=imbalance    # long-tailed MNIST-5k -> runs/benchmark_imbalance
    python -m search.benchmark --preset=full --dry_run   # print the grid and its estimated time
    python -m search.benchmark --methods=ce,ldam_drw --imbalance=longtail:10,step:10   # any grid

`--help` lists the presets with their grids (read from
`tfrobust.benchmark.PRESETS`); `--dry_run` gives a grid's run count and
estimated time. Explicit flags override the preset's values. Rerunning a
command skips the runs already in <output_dir>/results.csv. The work is done
by `tfrobust.benchmark.run_benchmark`, which notebooks can call directly;
`tfrobust.benchmark.summarize(csv_path)` rebuilds the tables of results.md.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import benchmark, datasets, models, noise, optimizers  # noqa: E402

_DEFAULTS = benchmark.BenchmarkConfig()
_AXES = ("methods", "datasets", "architectures", "noise", "imbalance", "seeds", "skip")


def _per_preset(field):
    """"full: X, heldout: Y" for the presets whose `field` differs from the default preset's."""
    values = {name: preset[field] for name, preset in benchmark.PRESETS.items()}
    return ", ".join(f"{name}: {value}" for name, value in values.items() if value != values["default"])


def _per_preset_optional(field):
    """"Preset X: a,b." for the presets that set the optional `field`."""
    values = {name: preset.get(field) for name, preset in benchmark.PRESETS.items()}
    return "; ".join(f"Preset {name}: {','.join(value)}." for name, value in values.items() if value)


FLAGS = flags.FLAGS
flags.DEFINE_enum("preset", "default", sorted(benchmark.PRESETS),
                  " ".join(benchmark.describe_preset(name) + "." for name in benchmark.PRESETS))
flags.DEFINE_list("methods", benchmark.default_methods(),
                  f"Methods: {benchmark.describe_method_names()}. Default: every method and TaylorLoss preset.")
flags.DEFINE_list("datasets", list(_DEFAULTS.datasets),
                  ", ".join(datasets.available()) + ", a procedural set (e.g. procedural:strokes or "
                  "procedural:templates:classes=5,difficulty=0.2: its KEY=VALUE commas are kept), or any prepared "
                  "TFDS data set.")
flags.DEFINE_list("architectures", list(_DEFAULTS.architectures), ", ".join(models.ARCHITECTURES) + ".")
_NOISE_FORMS = {"none": "none", "matrix": "matrix:<" + "/".join(noise.MATRIX_FILE_EXTENSIONS) + " file>"}
flags.DEFINE_list("noise", list(_DEFAULTS.noise),
                  "Noise settings: " + ", ".join(_NOISE_FORMS.get(kind, f"{kind}:R") for kind in noise.NOISE_KINDS)
                  + ". The whole grid (tfrobust.benchmark.ALL_NOISE): " + ",".join(benchmark.ALL_NOISE) + ".")
flags.DEFINE_list("imbalance", list(_DEFAULTS.imbalance),
                  "Class-imbalance profiles of the training split: none, longtail:RHO or step:RHO (RHO = n_max / "
                  "n_min, e.g. longtail:10,longtail:100,step:10); test splits stay balanced. "
                  f"{_per_preset_optional('imbalance')}")
flags.DEFINE_list("seeds", [str(seed) for seed in _DEFAULTS.seeds],
                  "Seeds: each fixes the split, the noise, the initial weights and the batch order for all methods.")
flags.DEFINE_integer("epochs", _DEFAULTS.epochs, f"Training epochs per run (default preset; {_per_preset('epochs')}).")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Examples per training step.")
flags.DEFINE_string("optimizer", _DEFAULTS.optimizer,
                    f"An optimizer name for tfrobust.optimizers.make_optimizer: {', '.join(optimizers.OPTIMIZERS)} "
                    "or any other Keras optimizer name.")
flags.DEFINE_float("learning_rate", _DEFAULTS.learning_rate, "The optimizer's learning rate.")
flags.DEFINE_list("skip", list(_DEFAULTS.skip),
                  "DATASET/ARCHITECTURE cells of the grid to leave out, e.g. an architecture too costly on one data set. "
                  f"{_per_preset_optional('skip')}")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples per source split (0: all).")
flags.DEFINE_string("output_dir", _DEFAULTS.output_dir,
                    f"Folder for results.csv, curves.jsonl, results.md and plots ({_per_preset('output_dir')}).")
flags.DEFINE_bool("save_models", False, "Also save every trained model as <output_dir>/models/<run_id>.keras.")
flags.DEFINE_bool("susceptibility", _DEFAULTS.susceptibility,
                  "Record susceptibility zeta per epoch in curves.jsonl (tfrobust.metrics.Susceptibility; training "
                  "is unchanged; python -m search.model_selection reads it). On in the presets: "
                  + ", ".join(name for name in benchmark.PRESETS if benchmark.PRESETS[name].get("susceptibility"))
                  + ".")
flags.DEFINE_string("susceptibility_probe", "",
                    "With --susceptibility: OPTIMIZER:LEARNING_RATE (e.g. sgd:0.05), a step of that optimiser from a "
                    "fresh state probes zeta instead of the run's own optimiser (not the paper's definition; it "
                    "probes models trained with different losses or optimisers alike). Use its own output_dir.")
flags.DEFINE_string("data_dir", "", "TFDS data directory for prepared TFDS data sets (empty: TFDS's default).")
flags.DEFINE_bool("dry_run", False, "Print the grid and its estimated run time, train nothing.")

_OVERRIDABLE = _AXES + ("epochs", "batch_size", "optimizer", "learning_rate", "max_examples", "output_dir",
                        "save_models", "data_dir", "susceptibility", "susceptibility_probe")


def config_from_flags():
    """The preset's config with every flag given on the command line applied over it."""
    overrides = {}
    for name in _OVERRIDABLE:
        if not FLAGS[name].present:
            continue
        value = FLAGS[name].value
        if name in ("datasets", "skip"):
            try:  # procedural and TFDS names may hold commas: "procedural:templates:classes=5,seed=1"
                value = tuple(datasets.split_names(value))
            except ValueError as error:
                raise app.UsageError(f"--{name}: {error}") from None
        elif name in _AXES:
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
