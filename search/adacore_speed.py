"""AdaCore against full data and random subsets: test accuracy against wall-clock training time.

    python -m search.adacore_speed                                   # MNIST-5k / mlp -> runs/adacore_speed
    python -m search.adacore_speed --fractions=0.1,0.3 --seeds=0,1,2 --epochs=10 --subset_epochs=20

Writes curves.csv, speed.md (the table, also printed) and accuracy_vs_time.png
to --output_dir. The work is done by `tfrobust.selection.speed.compare_training_speed`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust.selection import speed  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", "mnist5k", "A tfrobust.datasets name (trained with its clean labels).")
flags.DEFINE_string("architecture", "mlp", "A tfrobust.models architecture.")
flags.DEFINE_list("fractions", ["0.1", "0.3"], "Coreset / random subset sizes as fractions of the training split.")
flags.DEFINE_integer("epochs", 10, "Epochs of full-data training.")
flags.DEFINE_integer("subset_epochs", None, "Epochs of every subset run (default: --epochs).")
flags.DEFINE_list("seeds", ["0"], "Seeds; each gives every method the same split and initial weights.")
flags.DEFINE_integer("batch_size", 32, "Examples per step.")
flags.DEFINE_string("optimizer", "momentum", "Optimizer name (tfrobust.optimizers.make_optimizer).")
flags.DEFINE_float("learning_rate", 0.01, "Learning rate.")
flags.DEFINE_integer("every", 1, "Epochs between coreset selections (and random redraws).")
flags.DEFINE_float("target_ratio", 0.99, "Time to target = time to reach this fraction of full-data accuracy.")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples per source split (0: all).")
flags.DEFINE_string("output_dir", "runs/adacore_speed", "Folder for curves.csv, speed.md and the plot.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        rows = speed.compare_training_speed(
            dataset=FLAGS.dataset, architecture=FLAGS.architecture,
            fractions=[float(value) for value in FLAGS.fractions], epochs=FLAGS.epochs,
            subset_epochs=FLAGS.subset_epochs, seeds=[int(value) for value in FLAGS.seeds],
            batch_size=FLAGS.batch_size, optimizer=FLAGS.optimizer, learning_rate=FLAGS.learning_rate,
            every=FLAGS.every, target_ratio=FLAGS.target_ratio, max_examples=FLAGS.max_examples or None,
            output_dir=FLAGS.output_dir,
        )
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    print(open(os.path.join(FLAGS.output_dir, speed.SPEED_MD)).read())
    print(f"Wrote {len(rows)} curve rows and the plot to {FLAGS.output_dir}")


if __name__ == "__main__":
    app.run(main)
