"""MAML vs NestedMAML on few-shot episodes with noisy support labels.

    python -m search.fewshot_benchmark                                   # digits, 3-way 5-shot -> runs/fewshot
    python -m search.fewshot_benchmark --dataset=mnist5k --seeds=0,1 --noise_rates=0,0.4

Meta-trains both methods per (support noise rate, seed) on episodes of the
meta-training classes and reports the meta-test query accuracy on unseen
classes (mean ± std over seeds): <output_dir>/results.csv, results.md and
fewshot.png. The work is done by `tfrobust.fewshot_benchmark.run_fewshot_benchmark`.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags  # noqa: E402

from tfrobust import fewshot_benchmark  # noqa: E402

DEFAULTS = fewshot_benchmark.FewShotConfig()
FLAGS = flags.FLAGS
flags.DEFINE_string("dataset", DEFAULTS.dataset, "Bundled data set: digits or mnist5k.")
flags.DEFINE_list("test_classes", [str(c) for c in DEFAULTS.test_classes], "Meta-test classes; the rest meta-train.")
flags.DEFINE_integer("ways", DEFAULTS.ways, "Classes per episode (N).")
flags.DEFINE_integer("shots", DEFAULTS.shots, "Support examples per class (K).")
flags.DEFINE_integer("queries", DEFAULTS.queries, "Query examples per class in training and validation episodes.")
flags.DEFINE_integer("test_queries", DEFAULTS.test_queries, "Query examples per class in meta-test episodes.")
flags.DEFINE_integer("train_episodes", DEFAULTS.train_episodes, "Size of the pool of meta-training episodes.")
flags.DEFINE_integer("validation_episodes", DEFAULTS.validation_episodes, "Clean validation episodes (NestedMAML).")
flags.DEFINE_integer("test_episodes", DEFAULTS.test_episodes, "Meta-test episodes scored per run.")
flags.DEFINE_integer("meta_batch_size", DEFAULTS.meta_batch_size, "Tasks per meta-update.")
flags.DEFINE_integer("epochs", DEFAULTS.epochs, "Passes over the pool of meta-training episodes.")
flags.DEFINE_integer("hidden_units", DEFAULTS.hidden_units, "Hidden units of the MLP.")
flags.DEFINE_integer("inner_steps", DEFAULTS.inner_steps, "Adaptation SGD steps.")
flags.DEFINE_float("inner_learning_rate", DEFAULTS.inner_learning_rate, "Adaptation SGD step size.")
flags.DEFINE_float("meta_learning_rate", DEFAULTS.meta_learning_rate, "Adam learning rate of the meta-update.")
flags.DEFINE_float("lookahead_learning_rate", DEFAULTS.lookahead_learning_rate, "NestedMAML's look-ahead step.")
flags.DEFINE_float("weight_learning_rate", DEFAULTS.weight_learning_rate, "NestedMAML's task-weight step.")
flags.DEFINE_enum("weighting", DEFAULTS.weighting, ["task", "instance"], "NestedMAML's weights: per task or query.")
flags.DEFINE_bool("noisy_query", DEFAULTS.noisy_query, "Corrupt the meta-training query labels at the same rate.")
flags.DEFINE_list("noise_rates", [str(r) for r in DEFAULTS.noise_rates], "Support label noise rates.")
flags.DEFINE_list("seeds", [str(s) for s in DEFAULTS.seeds], "Seeds (episodes and initialisation).")
flags.DEFINE_list("methods", list(DEFAULTS.methods), f"Methods, from {fewshot_benchmark.METHODS}.")
flags.DEFINE_string("output_dir", "runs/fewshot", "Folder for results.csv, results.md and fewshot.png.")


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    config = fewshot_benchmark.FewShotConfig(
        dataset=FLAGS.dataset, test_classes=tuple(int(c) for c in FLAGS.test_classes), ways=FLAGS.ways,
        shots=FLAGS.shots, queries=FLAGS.queries, test_queries=FLAGS.test_queries,
        train_episodes=FLAGS.train_episodes, validation_episodes=FLAGS.validation_episodes,
        test_episodes=FLAGS.test_episodes, meta_batch_size=FLAGS.meta_batch_size, epochs=FLAGS.epochs,
        hidden_units=FLAGS.hidden_units,
        inner_steps=FLAGS.inner_steps, inner_learning_rate=FLAGS.inner_learning_rate,
        meta_learning_rate=FLAGS.meta_learning_rate, lookahead_learning_rate=FLAGS.lookahead_learning_rate,
        weight_learning_rate=FLAGS.weight_learning_rate, weighting=FLAGS.weighting,
        noisy_query=FLAGS.noisy_query,
        noise_rates=tuple(float(r) for r in FLAGS.noise_rates), seeds=tuple(int(s) for s in FLAGS.seeds),
        methods=tuple(m.strip() for m in FLAGS.methods if m.strip()))
    try:
        fewshot_benchmark.run_fewshot_benchmark(config, FLAGS.output_dir)
    except ValueError as error:
        raise app.UsageError(str(error)) from None
    print(open(os.path.join(FLAGS.output_dir, "results.md")).read())


if __name__ == "__main__":
    app.run(main)
