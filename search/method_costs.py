"""Per-step cost of each benchmark method relative to a plain cross-entropy step.

    python -m search.method_costs                                  # every method -> runs/method_costs
    python -m search.method_costs --methods=l2rw,mwn,absgd --repetitions=11

Each method's compiled training step is timed on one batch beside a CE step
of the same model and batch, in one process, CE and the method alternating
first; the table (median ratios) is printed and written to
<output_dir>/method_costs.md. The work is done by
`tfrobust.benchmark.measure_step_costs`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import _io, benchmark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("methods", benchmark.method_names() + ["taylor"],
                  f"Methods to time: {benchmark.describe_method_names()}. Default: every registered method and "
                  "the default TaylorLoss preset.")
flags.DEFINE_string("dataset", "digits", "The data set the batch comes from.")
flags.DEFINE_string("architecture", "mlp", "The model architecture.")
flags.DEFINE_string("noise", "symmetric:0.4", "The noise of the training labels.")
flags.DEFINE_integer("batch_size", benchmark.BenchmarkConfig().batch_size, "Examples per step.")
flags.DEFINE_integer("repetitions", 7, "Timed blocks per method (and as many CE blocks beside them).")
flags.DEFINE_integer("steps", 20, "Steps per timed block.")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples per source split (0: all).")
flags.DEFINE_string("output_dir", "runs/method_costs", "Folder for method_costs.md.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        costs = benchmark.measure_step_costs(
            [name.strip() for name in FLAGS.methods if name.strip()], dataset=FLAGS.dataset,
            architecture=FLAGS.architecture, noise=FLAGS.noise, batch_size=FLAGS.batch_size,
            repetitions=FLAGS.repetitions, steps=FLAGS.steps, max_examples=FLAGS.max_examples or None,
        )
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    settings = (f"{FLAGS.dataset} / {FLAGS.architecture}, {FLAGS.noise}, batch {FLAGS.batch_size}, "
                f"{FLAGS.repetitions} repetitions of {FLAGS.steps} steps.")
    table = benchmark.costs_table(costs, settings)
    print(table)
    os.makedirs(FLAGS.output_dir, exist_ok=True)
    path = os.path.join(FLAGS.output_dir, benchmark.COSTS_MD)
    _io.write_text(path, table)
    print(f"Wrote {path}")


if __name__ == "__main__":
    app.run(main)
