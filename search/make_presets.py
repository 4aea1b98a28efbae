"""Maintains the TaylorLoss presets shipped with tfrobust.

    python -m search.make_presets
        rewrites the analytically derived presets (unchanged ones keep their date and revision).
    python -m search.make_presets --promote=RUN/best_coefficients.json --name=NAME [--default]
        ships a search result as preset NAME, keeping the search's provenance
        (command, seed, budget, fitness, wall time, machine, revision); with
        --default it becomes what `TaylorLoss.pretrained()` returns.

The work is done by `tfrobust.search.presets`.
"""

from absl import app, flags

from tfrobust.search import presets

FLAGS = flags.FLAGS
flags.DEFINE_string("promote", "", "A search run's best_coefficients.json to ship as a preset.")
flags.DEFINE_string("name", "", "Preset name for --promote.")
flags.DEFINE_bool("default", False, "Make the promoted preset the default.")
flags.DEFINE_string("description", "", "One line for the promoted preset (default: the search's own description).")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not FLAGS.promote:
        if FLAGS.name or FLAGS.default or FLAGS.description:
            raise app.UsageError("--name, --default and --description go with --promote.")
        presets.rewrite_derived()
        return
    if not FLAGS.name:
        raise app.UsageError("--promote needs --name, the name of the new preset.")
    try:
        presets.promote(FLAGS.promote, FLAGS.name, FLAGS.default, description=FLAGS.description or None)
    except ValueError as error:
        raise app.UsageError(str(error)) from None


if __name__ == "__main__":
    app.run(main)
