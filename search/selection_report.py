"""Where a search's finalists gain on its start, and where they give it up: the final selection, by noise.

    python -m search.selection_report --runs=runs/evolve_broad2_lh_guarded_s4,runs/evolve_broad2_lh_strat_s4

Reads each run's best_coefficients.json (a search run with --selection_include_start) and prints, per finalist,
its fitness, the task instances it wins against the start, the tasks where it falls below the start's seed
spread (with --selection_repeats of 2 or more), and its mean accuracy gain over the start per noise setting.
--drop_tasks=REGEX re-counts all but the instances it matches: what a selection without those tasks would
have said. With repeated selection tasks it also gives the seed noise of one instance's gain over the start
and how many instances a mean gain of --gain_resolution points needs. Trains nothing. The table is built by
`tfrobust.search.evolve.selection_report`.
"""

import json
import os
import re

from absl import app, flags

from tfrobust import _io
from tfrobust.search import evolve

FLAGS = flags.FLAGS
flags.DEFINE_list("runs", [], "search.evolve output folders (or their best_coefficients.json files).")
flags.DEFINE_string("output", "", "Also write the report to this Markdown file.")
flags.DEFINE_string("drop_tasks", "", "A regular expression: leave out the selection instances whose key matches "
                    "(e.g. 'symmetric:0\\.8/.*momentum') and count wins, tasks below spread and gains over the rest.")
flags.DEFINE_float("gain_resolution", 1.0, "With repeated selection tasks, report how many task instances a mean "
                   "gain over the start of this many points needs to stand 2 standard errors from none.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.runs:
        raise app.UsageError("--runs is required: search.evolve output folders, comma-separated.")
    sections = []
    for run in FLAGS.runs:
        path = os.path.join(run, evolve.BEST) if os.path.isdir(run) else run
        if not os.path.isfile(path):
            raise app.UsageError(f"{path} does not exist: is {run!r} a finished search.evolve run?")
        with open(path) as handle:
            record = json.load(handle)
        try:
            report = evolve.selection_report(record, FLAGS.drop_tasks, FLAGS.gain_resolution)
            sections.append(f"## {run}\n\n" + report)
        except (ValueError, re.error) as error:
            raise app.UsageError(f"{path}: {error}") from None
    text = "\n\n".join(sections)
    print(text)
    if FLAGS.output:
        _io.write_text(FLAGS.output, text + "\n")


if __name__ == "__main__":
    app.run(main)
