"""Benchmark fitness evaluation: per-candidate model.fit vs vectorised population training.

    python -m search.throughput [--output_dir=runs/throughput]
    python -m search.throughput --architectures=cnn --conv_implementations=patch_einsum,auto --conv_variants
    python -m search.throughput --architectures=cnn --populations=1,16,64 --pool_variants

Prints candidate evaluations per second for both paths at population 1, 4,
16 and 64, their ratio, achieved GFLOP/s against this machine's matmul peak,
and the step time of TaylorLoss against cross-entropy.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust.search import throughput  # noqa: E402

_DEFAULTS = throughput.ThroughputConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", _DEFAULTS.dataset, "Dataset of the task model.")
flags.DEFINE_list("architectures", list(_DEFAULTS.architectures), "Task architectures to measure.")
flags.DEFINE_list("populations", [str(p) for p in _DEFAULTS.populations], "Population sizes.")
flags.DEFINE_integer("steps", _DEFAULTS.steps, "Training steps per candidate evaluation.")
flags.DEFINE_integer("batch_size", _DEFAULTS.batch_size, "Batch size.")
flags.DEFINE_integer("repeats", _DEFAULTS.repeats, "Timed repetitions per population size (median).")
flags.DEFINE_integer("per_candidate_fits", _DEFAULTS.per_candidate_fits, "Per-candidate fits timed (median).")
flags.DEFINE_list("conv_implementations", list(_DEFAULTS.conv_implementations),
                  "Population-convolution implementations to time the conv architectures with, side by side: "
                  "'auto' (the library's choice per layer) and/or patch_einsum, member_loop, grouped.")
flags.DEFINE_bool("conv_variants", _DEFAULTS.conv_variants,
                  "Also time every convolution implementation on each conv layer shape (the micro-benchmark "
                  "behind the 'auto' choice).")
flags.DEFINE_bool("pool_variants", _DEFAULTS.pool_variants,
                  "Also time both population max-pooling implementations on whole training steps of the "
                  "architectures that pool.")
flags.DEFINE_bool("diagnostics", _DEFAULTS.diagnostics,
                  "Also time TaylorLoss against cross-entropy, split the largest population's step and profile.")
flags.DEFINE_string("output_dir", "", "Where to write throughput.{json,md,png} (optional).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    throughput.run_throughput(throughput.ThroughputConfig(
        dataset=FLAGS.dataset, architectures=tuple(FLAGS.architectures),
        populations=tuple(int(p) for p in FLAGS.populations), steps=FLAGS.steps, batch_size=FLAGS.batch_size,
        repeats=FLAGS.repeats, per_candidate_fits=FLAGS.per_candidate_fits,
        conv_implementations=tuple(FLAGS.conv_implementations), conv_variants=FLAGS.conv_variants,
        pool_variants=FLAGS.pool_variants, diagnostics=FLAGS.diagnostics, output_dir=FLAGS.output_dir,
    ))


if __name__ == "__main__":
    app.run(main)
