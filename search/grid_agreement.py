"""Does one benchmark grid rank losses as another does? E.g. can the validation grid choose a search's loss?

    python -m search.benchmark --preset=validation                     # peers -> runs/benchmark_validation
    python -m search.benchmark --preset=validation --methods=taylor_file:runs/evolve_a/best_coefficients.json \\
        --output_dir=runs/benchmark_validation_searched                # searched losses on the same grid
    python -m search.grid_agreement \\
        --results=runs/benchmark_validation/results.csv,runs/benchmark_validation_searched/results.csv \\
        --against=runs/benchmark_heldout/results.csv,runs/benchmark_heldout_candidate/results.csv \\
        --candidates=taylor_file:runs/evolve_a/best_coefficients.json --plot=docs/validation_vs_heldout.png

Prints each method's mean over the columns of both grids (--preset's rows of --results, --against_preset's
rows of --against) with its rank on each, Spearman's rank correlation over the methods both grids ran whole,
and which candidate each grid would pick. Writes the text to --output and a scatter plot to --plot
(atomically) when given. The work is done by `tfrobust.benchmark.grid_agreement`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import _io, benchmark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("results", ["runs/benchmark_validation/results.csv"],
                  "The first grid's results.csv files (comma-separated, read as one).")
flags.DEFINE_string("preset", "validation", "Count only the rows of this benchmark preset's grid in --results "
                    "(empty: every row).")
flags.DEFINE_list("against", ["runs/benchmark_heldout/results.csv"],
                  "The second grid's results.csv files (comma-separated, read as one).")
flags.DEFINE_string("against_preset", "heldout", "Count only the rows of this preset's grid in --against (empty: "
                    "every row).")
flags.DEFINE_list("candidates", [], "Methods a search would choose among (e.g. its taylor_file: results): each "
                  "grid's pick among them is reported. Default: every method of both grids that is not a held-out peer.")
flags.DEFINE_string("metric", "final_test_accuracy", "The results.csv column compared (higher is better).")
flags.DEFINE_string("output", "", "Also write the text to this Markdown file.")
flags.DEFINE_string("plot", "", "Also draw the methods' means (first grid against second) in this PNG.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    try:
        rows = benchmark.read_grid(FLAGS.results, FLAGS.preset)
        other = benchmark.read_grid(FLAGS.against, FLAGS.against_preset)
        candidates = FLAGS.candidates or sorted(
            {row["method"] for row in rows} & {row["method"] for row in other} - set(benchmark.HELDOUT_METHODS))
        names = (benchmark.grid_name(FLAGS.preset, "first"), benchmark.grid_name(FLAGS.against_preset, "second"))
        agreement = benchmark.grid_agreement(rows, other, names, candidates, FLAGS.metric)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    text = agreement.markdown()
    print(text)
    if FLAGS.output:
        _io.write_text(FLAGS.output, text + "\n")
    if FLAGS.plot:
        print(f"Plot: {benchmark.plot_agreement(agreement, FLAGS.plot)}")


if __name__ == "__main__":
    app.run(main)
