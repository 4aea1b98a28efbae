"""CE, L2RW and FORML on a grouped task (a minority of intensity-inverted digits): accuracy and worst-group accuracy.

    python -m search.fairness_benchmark                                    # digits, 3 seeds -> runs/fairness
    python -m search.fairness_benchmark --dataset=mnist5k --seeds=0 --epochs=5

Writes <output_dir>/results.csv (one row per run), results.md (mean ± std
over seeds) and fairness.png. The work is done by
`tfrobust.fairness_benchmark.run_fairness_benchmark`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import fairness_benchmark  # noqa: E402
from tfrobust.reweighting import forml  # noqa: E402

DEFAULTS = fairness_benchmark.FairnessConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", DEFAULTS.dataset, "Bundled data set: digits or mnist5k.")
flags.DEFINE_string("architecture", DEFAULTS.architecture, "Model architecture (tfrobust.models).")
flags.DEFINE_list("noise", list(DEFAULTS.noise), "Training-label noise settings, e.g. none,symmetric:0.2.")
flags.DEFINE_list("methods", list(DEFAULTS.methods), f"Methods, from {list(fairness_benchmark.METHODS)}.")
flags.DEFINE_list("seeds", [str(seed) for seed in DEFAULTS.seeds], "Seeds (data split, groups, noise, model).")
flags.DEFINE_float("minority_fraction", DEFAULTS.minority_fraction, "Share of inverted images in training.")
flags.DEFINE_integer("meta_per_class_and_group", DEFAULTS.meta_per_class_and_group,
                     "Clean meta examples per class in each group.")
flags.DEFINE_integer("epochs", DEFAULTS.epochs, "Training epochs.")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Examples per step.")
flags.DEFINE_string("optimizer", DEFAULTS.optimizer, "Optimizer name (tfrobust.optimizers.make_optimizer).")
flags.DEFINE_float("learning_rate", DEFAULTS.learning_rate, "Learning rate.")
flags.DEFINE_enum("objective", DEFAULTS.objective, list(forml.OBJECTIVES), "FORML's group objective.")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples of the data set (0: all).")
flags.DEFINE_string("output_dir", DEFAULTS.output_dir, "Folder for results.csv, results.md and the figure.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = fairness_benchmark.FairnessConfig(
        dataset=FLAGS.dataset, architecture=FLAGS.architecture, noise=tuple(FLAGS.noise),
        methods=tuple(FLAGS.methods), seeds=tuple(int(seed) for seed in FLAGS.seeds),
        minority_fraction=FLAGS.minority_fraction, meta_per_class_and_group=FLAGS.meta_per_class_and_group,
        epochs=FLAGS.epochs, batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate, objective=FLAGS.objective, max_examples=FLAGS.max_examples or None,
        output_dir=FLAGS.output_dir,
    )
    try:
        fairness_benchmark.run_fairness_benchmark(config)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    print(open(os.path.join(FLAGS.output_dir, "results.md")).read())


if __name__ == "__main__":
    app.run(main)
