"""Should a searched TaylorLoss ship as the default? Issue 10's rule on the held-out benchmark.

    python -m search.benchmark --preset=heldout          # the peers (and shipped presets) -> runs/benchmark_heldout
    python -m search.benchmark --preset=heldout --methods=taylor_file:runs/evolve_broad/best_coefficients.json \\
        --output_dir=runs/candidate                       # a search result on the same grid
    python -m search.heldout_verdict --results=runs/benchmark_heldout/results.csv \\
        --candidate=taylor:evolved_broad
    python -m search.heldout_verdict --results=runs/benchmark_heldout/results.csv,runs/candidate/results.csv \\
        --candidate=taylor_file:runs/evolve_broad/best_coefficients.json
    python -m search.heldout_verdict --results=runs/benchmark_heldout/results.csv,runs/a/results.csv,runs/b/results.csv \\
        --candidate=taylor_file:runs/search_a/best_coefficients.json,taylor_file:runs/search_b/best_coefficients.json

Prints the table (methods x held-out columns, mean ± std over seeds, and the mean over columns)
and the verdict: the candidate passes only if its mean is above every peer's and no column is
below that column's best peer by more than the peer's seed spread. With several candidates, each
gets its verdict, then one table compares them (order, suite, fitness and seed of each search,
held-out mean) with the spread over search seeds of each setting. Writes the same text to
--output and a figure to --plot (atomically) when given; exits 0 either way, 1 on bad input. The work is done by
`tfrobust.benchmark.shipping_verdict`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import _io, benchmark  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("results", ["runs/benchmark_heldout/results.csv"],
                  "The benchmark's results.csv; several (comma-separated) are read as one, e.g. the peers' grid "
                  "and a candidate run into another --output_dir.")
flags.DEFINE_list("candidate", [], "The candidate method, as named in results.csv (e.g. taylor:evolved_broad); several "
                  "(comma-separated) are each judged against the peers, then compared in one table (search seeds and "
                  "orders side by side).")
flags.DEFINE_list("peers", [m for m in benchmark.HELDOUT_METHODS],
                  "Peer methods (default: the held-out preset's methods; the candidate is left out of them).")
flags.DEFINE_string("preset", "heldout", "Count only the rows of this benchmark preset's grid (any method); empty: "
                    "every row of the files.")
flags.DEFINE_string("metric", "final_test_accuracy", "The results.csv column compared (higher is better).")
flags.DEFINE_string("output", "", "Also write the table and verdict to this Markdown file.")
flags.DEFINE_string("plot", "", "Also draw the columns' accuracies and the losses' shapes in this PNG.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.candidate:
        raise app.UsageError("--candidate is required: the method name of the loss to judge, as in results.csv.")
    candidates = list(dict.fromkeys(FLAGS.candidate))
    if FLAGS.plot and len(candidates) > 1:
        raise app.UsageError("--plot draws one candidate: give one --candidate with it.")
    peers = [p for p in FLAGS.peers if p not in candidates]
    try:
        rows = benchmark.read_grid(FLAGS.results, FLAGS.preset)
        verdicts = [benchmark.shipping_verdict(rows, candidate, peers, FLAGS.metric) for candidate in candidates]
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    grid = benchmark.grid_name(FLAGS.preset)
    texts = [verdict.markdown() for verdict in verdicts]
    if len(verdicts) > 1:
        texts = [f"### {candidate}\n\n{text}" for candidate, text in zip(candidates, texts)]
        texts.append("### The candidates compared\n\n" + benchmark.compare_candidates(verdicts, grid))
    text = "\n\n".join(texts)
    print(text)
    if FLAGS.output:
        _io.write_text(FLAGS.output, text + "\n")
    if FLAGS.plot:
        print(f"Plot: {benchmark.plot_verdict(verdicts[0], FLAGS.plot, grid)}")


if __name__ == "__main__":
    app.run(main)
