"""How well the label-issue finder finds injected label noise, beside cleanlab, and what removing it buys.

    python -m search.label_issues                                   # digits, six noises -> runs/label_issues
    python -m search.label_issues --dataset=mnist5k --noises=symmetric:0.4 --epochs=20
    python -m search.label_issues --seeds=0,1,2 --output_dir=runs/label_issues_3seeds   # mean ± std
    python -m search.label_issues --rescore=runs/label_issues_3seeds      # every flagging rule, no training

For each noise the tfrobust finder (TaylorLoss.pretrained() out-of-fold
probabilities, confident learning) and cleanlab's find_label_issues on
cross-entropy out-of-fold probabilities of the same model are scored against
the truly corrupted examples (precision, recall, F1, AUROC), and CE is
retrained without each one's flagged examples. Writes flags.csv, metrics.md
and top_flagged_<noise>.png to --output_dir. Needs cleanlab (the [test]
extra). The work is done by `tfrobust.label_issues_benchmark.run`.
"""

import glob
import inspect
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import _io, label_issues, label_issues_benchmark  # noqa: E402

_DEFAULTS = {name: parameter.default
             for name, parameter in inspect.signature(label_issues_benchmark.run).parameters.items()}

FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", _DEFAULTS["dataset"], "A bundled data set: digits or mnist5k.")
flags.DEFINE_list("noises", list(_DEFAULTS["noises"]), "Noise specs, one run each (see tfrobust.noise).")
flags.DEFINE_string("architecture", _DEFAULTS["architecture"], "The model architecture (tfrobust.models).")
flags.DEFINE_integer("num_folds", _DEFAULTS["num_folds"], "K of the K-fold out-of-fold probabilities.")
flags.DEFINE_integer("epochs", _DEFAULTS["epochs"], "Epochs of every training (folds and pipelines).")
flags.DEFINE_integer("batch_size", _DEFAULTS["batch_size"], "Examples per step.")
flags.DEFINE_float("learning_rate", _DEFAULTS["learning_rate"], "Adam learning rate.")
flags.DEFINE_integer("seed", _DEFAULTS["seed"], "Seeds the splits, the noise, the folds and the models.")
flags.DEFINE_list("seeds", [], "Several seeds instead of --seed: one run each in OUTPUT_DIR/seed_<seed>, then "
                  "OUTPUT_DIR/summary.md with every metric as mean ± std over them.")
flags.DEFINE_enum("filter_by", _DEFAULTS["filter_by"], list(label_issues.FILTERS),
                  "The tfrobust finder's flagging rule (tfrobust.label_issues.FILTERS), also applied to the CE "
                  "probabilities in the 'tfrobust CL + CE' row; cleanlab's row keeps its default.")
flags.DEFINE_string("rescore", "", "Instead of training: a folder written by this script (one run, or seed_<seed>/ "
                    "folders inside); prints and writes FOLDER/rescored_filters.md, the F1 of every flagging rule "
                    "on its saved out-of-fold probabilities.")
flags.DEFINE_integer("max_examples", 0, "Read at most this many examples of the data set (0: all).")
flags.DEFINE_string("output_dir", "runs/label_issues", "Folder for flags.csv, metrics.md and the PNG grids.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if FLAGS.rescore:
        folders = sorted(glob.glob(os.path.join(FLAGS.rescore, "seed_*"))) or [FLAGS.rescore]
        try:
            _, table = label_issues_benchmark.rescore_filters(folders)
        except (FileNotFoundError, ValueError) as error:
            raise app.UsageError(str(error)) from None
        _io.write_text(os.path.join(FLAGS.rescore, "rescored_filters.md"), table)
        print(table)
        print(f"Wrote {FLAGS.rescore}/rescored_filters.md")
        return
    settings = dict(
        dataset=FLAGS.dataset, noises=[noise.strip() for noise in FLAGS.noises if noise.strip()],
        architecture=FLAGS.architecture, num_folds=FLAGS.num_folds, epochs=FLAGS.epochs,
        batch_size=FLAGS.batch_size, learning_rate=FLAGS.learning_rate, max_examples=FLAGS.max_examples or None,
        filter_by=FLAGS.filter_by)
    if FLAGS.seeds:
        try:
            seeds = [int(seed) for seed in FLAGS.seeds]
        except ValueError:
            raise app.UsageError(f"--seeds takes integers; got {FLAGS.seeds}.") from None
        results = label_issues_benchmark.run_seeds(FLAGS.output_dir, seeds, **settings)
        print(label_issues_benchmark.summary_markdown(results))
        print(f"Wrote {FLAGS.output_dir}/summary.md and one folder per seed (seed_<seed>/).")
        return
    detection, accuracy = label_issues_benchmark.run(FLAGS.output_dir, seed=FLAGS.seed, **settings)
    print(label_issues_benchmark.tables_markdown(detection, accuracy))
    print(f"Wrote {FLAGS.output_dir}/flags.csv, metrics.md, probabilities_*.npz and the top_flagged_*.png grids.")


if __name__ == "__main__":
    app.run(main)
