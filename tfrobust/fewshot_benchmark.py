"""MAML vs NestedMAML on noisy few-shot episodes: the episodic benchmark of issue 11.

For every (support noise rate, seed) both methods meta-train the same small
MLP, from the same seeded initialisation, on the same pool of N-way K-shot
episodes of the meta-training classes (noisy support labels at that rate;
clean query labels unless `noisy_query`, which corrupts them at the same
rate), NestedMAML with its clean validation tasks from held-out
examples of the same classes; then each adapts to the same clean meta-test
episodes of the unseen classes and is scored on their queries. Results:
`results.csv` (one row per run, rewritten atomically after each), a markdown
table `results.md` of mean +- std over seeds and `fewshot.png`.

Each method's trainer is built and traced once; later runs reset its
weights, optimizer state and task weights in place, so the (slow) trace of
the unrolled meta-batch is paid once per method, not once per run.
"""

import csv
import dataclasses
import io
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust import _io
from tfrobust import episodes as episodes_lib
from tfrobust.reweighting.maml import MAML
from tfrobust.reweighting.nested_maml import NestedMAML

METHODS = ("maml", "nested_maml")
CSV_FIELDS = ("method", "support_noise", "seed", "query_accuracy", "query_accuracy_std_over_episodes",
              "test_episodes", "train_seconds")
# Distinct episode pools of one run seed.
_TRAIN_POOL, _VALIDATION_POOL, _TEST_POOL = range(3)


@dataclasses.dataclass(frozen=True)
class FewShotConfig:
    """Settings of the episodic benchmark (the script's flags default to these)."""

    dataset: str = "digits"
    test_classes: tuple = (6, 7, 8, 9)
    ways: int = 3
    shots: int = 5
    queries: int = 5
    test_queries: int = 10
    train_episodes: int = 400
    validation_episodes: int = 100
    test_episodes: int = 200
    meta_batch_size: int = 8
    epochs: int = 3
    hidden_units: int = 32
    inner_learning_rate: float = 0.5
    inner_steps: int = 2
    meta_learning_rate: float = 3e-3
    lookahead_learning_rate: float = 1.0
    weight_learning_rate: float = 0.01
    weighting: str = "task"
    noisy_query: bool = False
    noise_rates: tuple = (0.0, 0.2, 0.4)
    seeds: tuple = (0, 1, 2)
    methods: tuple = METHODS


def build_classifier(input_shape, ways, hidden_units, seed):
    """The small MLP both methods meta-train, its initial weights seeded by `seed`."""
    keras.utils.set_random_seed(seed)
    return keras.Sequential([
        keras.Input(input_shape), keras.layers.Flatten(),
        keras.layers.Dense(hidden_units, activation="relu"), keras.layers.Dense(ways, activation="softmax"),
    ])


def _episode_pools(split, config, noise, seed):
    common = dict(ways=config.ways, shots=config.shots)
    train = episodes_lib.sample_episodes(split.x_train, split.y_train, queries=config.queries,
                                         num_episodes=config.train_episodes, support_noise=noise,
                                         query_noise=noise if config.noisy_query else 0.0,
                                         seed=seed * 10 + _TRAIN_POOL, **common)
    validation = episodes_lib.sample_episodes(split.x_validation, split.y_validation, queries=config.queries,
                                              num_episodes=config.validation_episodes,
                                              seed=seed * 10 + _VALIDATION_POOL, **common)
    test = episodes_lib.sample_episodes(split.x_test, split.y_test, queries=config.test_queries,
                                        num_episodes=config.test_episodes, seed=seed * 10 + _TEST_POOL, **common)
    return train, validation, test


def _build_trainer(method, classifier, validation, config):
    common = dict(inner_learning_rate=config.inner_learning_rate, inner_steps=config.inner_steps)
    if method == "maml":
        trainer = MAML(classifier, **common)
    else:
        trainer = NestedMAML(classifier, validation, num_training_tasks=config.train_episodes,
                             query_size=config.ways * config.queries, weighting=config.weighting,
                             lookahead_learning_rate=config.lookahead_learning_rate,
                             weight_learning_rate=config.weight_learning_rate, **common)
    trainer.compile(optimizer=keras.optimizers.Adam(config.meta_learning_rate))
    # The optimizer's fresh state (zero moments and step count, its learning rate), restored by `_reset`.
    fresh_optimizer = [variable.numpy() for variable in trainer.optimizer.variables]
    return trainer, fresh_optimizer


def _reset(trainer, fresh_optimizer, initial_weights, validation):
    """Puts a traced trainer back to a fresh start in place (weights, Adam state, task weights)."""
    trainer.model.set_weights(initial_weights)
    for variable, value in zip(trainer.optimizer.variables, fresh_optimizer):
        variable.assign(value)
    if isinstance(trainer, NestedMAML):
        trainer.task_weights.assign(tf.fill(trainer.task_weights.shape, trainer.weight_init))
        trainer.set_validation_episodes(validation)  # same shapes: assigned, no retrace


def run_fewshot_benchmark(config=FewShotConfig(), output_dir=None, log=print):
    """Runs every (method, noise rate, seed); returns the result rows (dicts with `CSV_FIELDS`).

    Writes `results.csv`, `results.md` and `fewshot.png` under `output_dir`
    (when given), the CSV after every run. Prints a progress line per run.
    """
    unknown = sorted(set(config.methods) - set(METHODS))
    if unknown:
        raise ValueError(f"Unknown few-shot methods {unknown}; choose from {METHODS}.")
    split = episodes_lib.load_fewshot(config.dataset, test_classes=config.test_classes, seed=0)
    trainers, rows = {}, []
    runs = [(noise, seed, method) for noise in config.noise_rates for seed in config.seeds for method in config.methods]
    start = time.time()
    for done, (noise, seed, method) in enumerate(runs, 1):
        train, validation, test = _episode_pools(split, config, noise, seed)
        initial = build_classifier(split.x_train.shape[1:], config.ways, config.hidden_units, seed).get_weights()
        if method not in trainers:
            classifier = build_classifier(split.x_train.shape[1:], config.ways, config.hidden_units, seed)
            trainers[method] = _build_trainer(method, classifier, validation, config)
        trainer, fresh_optimizer = trainers[method]
        _reset(trainer, fresh_optimizer, initial, validation)
        began = time.time()
        # The episode pool is shuffled by its dataset (shuffle=False only silences Keras's note).
        trainer.fit(train.dataset(config.meta_batch_size, seed=seed), epochs=config.epochs, shuffle=False,
                    verbose=0)
        seconds = time.time() - began
        accuracy = trainer.evaluate_episodes(test)
        rows.append({"method": method, "support_noise": noise, "seed": seed,
                     "query_accuracy": float(accuracy.mean()),
                     "query_accuracy_std_over_episodes": float(accuracy.std()),
                     "test_episodes": len(test), "train_seconds": round(seconds, 1)})
        elapsed = time.time() - start
        log(f"[{done}/{len(runs)}] {method} support_noise={noise:.2f} seed={seed}: meta-test query accuracy "
            f"{accuracy.mean():.4f} ({seconds:.0f}s; {done / elapsed:.2f} runs/s, ETA "
            f"{elapsed / done * (len(runs) - done):.0f}s)")
        if output_dir:
            _io.write_text(f"{output_dir}/results.csv", results_csv(rows))
    if output_dir:
        _io.write_text(f"{output_dir}/results.md", results_table(rows, config))
        plot_results(rows, f"{output_dir}/fewshot.png", config)
    return rows


def results_csv(rows):
    """The rows as CSV text with the `CSV_FIELDS` header."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def summarize(rows):
    """{(method, noise): (mean, std over seeds, number of seeds)} of the meta-test query accuracy."""
    groups = {}
    for row in rows:
        groups.setdefault((row["method"], float(row["support_noise"])), []).append(float(row["query_accuracy"]))
    return {key: (float(np.mean(values)), float(np.std(values)), len(values)) for key, values in groups.items()}


def results_table(rows, config):
    """A markdown table: one row per method, one column per support noise rate, mean +- std over seeds."""
    summary = summarize(rows)
    noises = sorted({noise for _, noise in summary})
    methods = [method for method in config.methods if any(key[0] == method for key in summary)]
    noisy = "support and query" if config.noisy_query else "support"
    lines = [f"Meta-test query accuracy, {config.ways}-way {config.shots}-shot on {config.dataset} "
             f"(meta-test classes {list(config.test_classes)}), mean ± std over seeds:", "",
             "| method | " + " | ".join(f"{noise:.0%} noisy {noisy}" for noise in noises) + " |",
             "|---|" + "---|" * len(noises)]
    for method in methods:
        cells = []
        for noise in noises:
            mean, std, count = summary.get((method, noise), (float("nan"), float("nan"), 0))
            cells.append(f"{mean:.3f} ± {std:.3f} (n={count})")
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot_results(rows, path, config):
    """Writes a PNG of mean query accuracy (error bars: std over seeds) against the support noise rate."""
    summary = summarize(rows)
    figure, axes = _io.new_figure()
    for method in config.methods:
        points = sorted((noise, mean, std) for (name, noise), (mean, std, _) in summary.items() if name == method)
        if points:
            noise, mean, std = (np.asarray(values) for values in zip(*points))
            axes.errorbar(noise, mean, yerr=std, marker="o", capsize=3, label=method)
    axes.axhline(1.0 / config.ways, color="grey", linestyle=":", label="chance")
    axes.set_xlabel(f"noisy {'support and query' if config.noisy_query else 'support'} label rate (meta-training)")
    axes.set_ylabel("meta-test query accuracy")
    axes.set_title(f"{config.ways}-way {config.shots}-shot {config.dataset}")
    axes.legend()
    figure.tight_layout()
    return _io.save_figure(figure, path)
