"""L2RW's MNIST class-imbalance experiment (Ren et al., ICML 2018) on MNIST-5k: CE vs L2RW as one class dominates.

    python -m search.l2rw_imbalance                                       # 4 vs 9, 3 seeds -> runs/l2rw_imbalance
    python -m search.l2rw_imbalance --proportions=0.9,0.995 --seeds=0 --architecture=cnn --steps=400

Writes <output_dir>/results.csv (one row per run), results.md (mean ± std
over seeds) and l2rw_imbalance.png. The work is done by
`tfrobust.imbalance_study.run_l2rw_imbalance`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import imbalance_study  # noqa: E402

DEFAULTS = imbalance_study.ImbalanceStudyConfig()
FLAGS = flags.FLAGS
flags.DEFINE_integer("majority_class", DEFAULTS.majority_class, "The digit that dominates training.")
flags.DEFINE_integer("minority_class", DEFAULTS.minority_class, "The rare digit.")
flags.DEFINE_list("proportions", [str(p) for p in DEFAULTS.proportions], "Proportions of the majority class.")
flags.DEFINE_list("methods", list(DEFAULTS.methods), f"Methods, from {list(imbalance_study.METHODS)}.")
flags.DEFINE_list("seeds", [str(seed) for seed in DEFAULTS.seeds], "Seeds (split, subsample, model).")
flags.DEFINE_integer("clean_per_class", DEFAULTS.clean_per_class, "Clean balanced examples per class for L2RW.")
flags.DEFINE_string("architecture", DEFAULTS.architecture, "Model architecture (tfrobust.models).")
flags.DEFINE_integer("steps", DEFAULTS.steps, "Training steps.")
flags.DEFINE_integer("batch_size", DEFAULTS.batch_size, "Examples per step.")
flags.DEFINE_string("optimizer", DEFAULTS.optimizer, "Optimizer name (tfrobust.optimizers.make_optimizer).")
flags.DEFINE_float("learning_rate", DEFAULTS.learning_rate, "Learning rate.")
flags.DEFINE_string("output_dir", DEFAULTS.output_dir, "Folder for results.csv, results.md and the figure.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = imbalance_study.ImbalanceStudyConfig(
        majority_class=FLAGS.majority_class, minority_class=FLAGS.minority_class,
        proportions=tuple(float(p) for p in FLAGS.proportions), methods=tuple(FLAGS.methods),
        seeds=tuple(int(seed) for seed in FLAGS.seeds), clean_per_class=FLAGS.clean_per_class,
        architecture=FLAGS.architecture, steps=FLAGS.steps, batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer,
        learning_rate=FLAGS.learning_rate, output_dir=FLAGS.output_dir,
    )
    try:
        imbalance_study.run_l2rw_imbalance(config)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    print(open(os.path.join(FLAGS.output_dir, "results.md")).read())


if __name__ == "__main__":
    app.run(main)
