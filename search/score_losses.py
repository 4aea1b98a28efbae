"""Score TaylorLosses on a search suite's tasks, with a search's fitness: did a search's winner beat its start?

    python -m search.score_losses --suite=broad2_selection --seed=0 \\
        --losses=taylor:evolved_bundled,taylor_file:runs/evolve_broad2_mean_s0/best_coefficients.json

Trains each loss (and cross-entropy, when the fitness is relative to it) on every task of --suite, on
the task instances that `search.evolve --seed=SEED --selection_suite=SUITE` re-scores its finalists on,
and prints each loss's accuracy per task and its fitness (`--output` also writes it, with the raw
accuracies in a JSON file beside it), then which loss each `search.evolve --selection_rule` would keep
with the first loss as the start and the others as its finalists. With --repeats of 2 or more it also
gives the seed noise of one instance's gain over the first loss, and how many instances a mean gain of
--gain_resolution points needs. A failed or non-finite run is shown in the table and makes the command
exit 1. The work is done by `tfrobust.search.evolve.score_losses`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import _io  # noqa: E402
from tfrobust.search import evaluation, evolve  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_list("losses", [], "TaylorLosses: preset names (taylor:PRESET or PRESET) or taylor_file:PATH files.")
flags.DEFINE_string("suite", "broad2_selection", "A task suite name or a JSON suite file.")
flags.DEFINE_integer("seed", 0, "The search seed whose final-selection task instances are used.")
flags.DEFINE_integer("repeats", 1, "Seeds per task (search.evolve --selection_repeats).")
flags.DEFINE_string("fitness_aggregation", "ce_gain/mean", "The fitness (search.evolve --fitness_aggregation; "
                    "start_gain scores each loss against the first).")
flags.DEFINE_enum("population_pooling", "fused", list(evolve.population.POOLINGS),
                  "The vectorised models' max pooling (search.evolve --population_pooling).")
flags.DEFINE_float("gain_resolution", 1.0, "With --repeats of 2 or more, report how many task instances a mean "
                   "gain over the first loss of this many points needs to stand 2 standard errors from none.")
flags.DEFINE_string("output", "", "Also write the table to this Markdown file (and the raw results to .json).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.losses:
        raise app.UsageError("--losses is required: TaylorLoss presets or taylor_file:PATH files, comma-separated.")
    results_path = os.path.splitext(FLAGS.output)[0] + ".json" if FLAGS.output else ""
    if results_path and os.path.abspath(results_path) == os.path.abspath(FLAGS.suite):
        raise app.UsageError(f"--output={FLAGS.output} would write its raw results to {results_path}, the --suite "
                             "file itself: give --output another name.")
    try:
        instances, results = evolve.score_losses(FLAGS.losses, FLAGS.suite, seed=FLAGS.seed, repeats=FLAGS.repeats,
                                                 fitness_aggregation=FLAGS.fitness_aggregation,
                                                 pooling=FLAGS.population_pooling)
    except (ValueError, FileNotFoundError) as error:
        raise app.UsageError(str(error)) from None
    text = (f"Suite {FLAGS.suite!r}, the final-selection instances of seed {FLAGS.seed}; fitness "
            f"{FLAGS.fitness_aggregation}; accuracy (%) on the clean validation split.\n\n"
            + evolve.format_scores(FLAGS.losses, instances, results))
    if len(results) > 1 and all(r.status == evaluation.STATUS_OK for r in results):
        text += ("\n\nWith the first loss as the start and the others as finalists, `search.evolve` would keep: "
                 + "; ".join(f"{rule}: {name}"
                             for rule, name in evolve.rule_picks(FLAGS.losses, instances, results).items())
                 + ".")
        summary = evolve.gain_noise_summary(results[0].accuracies, [r.accuracies for r in results[1:]],
                                            FLAGS.gain_resolution)
        text += "\n\n" + summary if summary else ""
    print(text)
    if FLAGS.output:
        _io.write_text(FLAGS.output, text + "\n")
        _io.write_json(results_path, {
            "suite": FLAGS.suite, "seed": FLAGS.seed, "fitness_aggregation": FLAGS.fitness_aggregation,
            "population_pooling": FLAGS.population_pooling,
            "losses": {name: {"fitness": r.fitness, "status": r.status, "accuracies": r.accuracies,
                              "error": r.error} for name, r in zip(FLAGS.losses, results)},
            "cross_entropy": results[0].reference_accuracies,
        })
    failed = [(name, r) for name, r in zip(FLAGS.losses, results) if r.status != evaluation.STATUS_OK]
    for name, result in failed:
        print(f"{name}: {result.status} {result.error}")
    if failed:
        raise SystemExit(f"{len(failed)} of {len(results)} losses did not train to a finite result (see above).")


if __name__ == "__main__":
    app.run(main)
