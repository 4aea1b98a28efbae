"""Model selection without clean labels on a benchmark's runs: the susceptibility quadrant rule, judged.

    python -m search.benchmark --preset=full --susceptibility     # any benchmark that records zeta
    python -m search.model_selection --output_dir=runs/benchmark_full

Every (run, epoch) is a candidate model; models trained on the same noisy
training set compete. Writes <report_dir>/model_selection.md (the test
accuracy of the model the quadrant rule picks against the best and the
median model, and the rank correlation of zeta with the memorisation the
benchmark measures from its clean labels) and model_selection.png. The work
is done by `tfrobust.benchmark.model_selection_report`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import benchmark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("output_dir", benchmark.BenchmarkConfig.from_preset("full").output_dir,
                    "A benchmark output folder whose curves.jsonl recorded susceptibility.")
flags.DEFINE_string("report_dir", "", "Where to write model_selection.md and .png (empty: the benchmark folder).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        _, paths = benchmark.model_selection_report(FLAGS.output_dir, FLAGS.report_dir or None)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    with open(paths["table"]) as handle:
        print(handle.read())
    print(f"Wrote {paths['table']} and {paths['plot']}")


if __name__ == "__main__":
    app.run(main)
