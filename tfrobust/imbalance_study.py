"""The class-imbalance experiment of L2RW (Ren, Zeng, Yang, Urtasun, ICML 2018, Sec. 5.1) on MNIST-5k.

A binary 4-vs-9 task whose training set is dominated by one class (a
proportion of 0.9 to 0.995 of the majority, 9 by default), a balanced clean
set of 10 examples (5 per class) and a balanced test set. Plain training on
the imbalanced set drifts toward the majority class as the proportion
grows; L2RW, re-weighting each batch against the 10 clean examples, should
not. Ren et al. trained LeNet for 8,000 steps of batch 100 with SGD at lr
1e-3 on MNIST's 5,000-image 4/9 subset; the default here is smaller (an MLP,
300 steps of batch 100, SGD with momentum 0.9 at lr 0.01), to run in
minutes on a CPU. MNIST-5k holds 500 images of each
class, so here the majority class keeps about 400 and the minority class
round(400 (1 - p) / p) (44 at p = 0.9, 2 at p = 0.995). CE trains on the
imbalanced set only; L2RW trains on it and draws its meta batch from the
clean examples. `python -m search.l2rw_imbalance` wraps `run_l2rw_imbalance`.
"""

import dataclasses
import time

import numpy as np
import tensorflow as tf

from tfrobust import _provenance, _study_tables, datasets, metrics, models, reweighting
from tfrobust._io import new_figure, save_figure
from tfrobust.optimizers import make_optimizer

METHODS = ("ce", "l2rw")
FIGURE_PNG = "l2rw_imbalance.png"
_STUDY_STREAM = 8  # a random stream apart from datasets' own


@dataclasses.dataclass(frozen=True)
class ImbalanceStudyConfig:
    """The grid (proportion x method x seed) and the training settings shared by every run."""

    majority_class: int = 9
    minority_class: int = 4
    proportions: tuple = (0.9, 0.95, 0.98, 0.99, 0.995)
    methods: tuple = METHODS
    seeds: tuple = (0, 1, 2)
    clean_per_class: int = 5
    architecture: str = "mlp"
    steps: int = 300
    batch_size: int = 100
    optimizer: str = "momentum"
    learning_rate: float = 0.01
    output_dir: str = "runs/l2rw_imbalance"

    def validate(self):
        if self.majority_class == self.minority_class or not {self.majority_class, self.minority_class} <= set(
                range(10)):
            raise ValueError(f"majority_class and minority_class must be two different digits; got "
                             f"{self.majority_class} and {self.minority_class}.")
        if not self.proportions or not all(0.5 <= p < 1.0 for p in self.proportions):
            raise ValueError(f"proportions of the majority class must lie in [0.5, 1); got {self.proportions}.")
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods or not self.seeds:
            raise ValueError(f"Unknown or no methods {unknown or list(self.methods)} (choose from {list(METHODS)}), "
                             "or no seeds.")
        if self.steps < 1 or self.batch_size < 1 or self.clean_per_class < 1:
            raise ValueError("steps, batch_size and clean_per_class must be positive.")


@dataclasses.dataclass(frozen=True)
class BinaryTask:
    """Labels are 0 for the minority class and 1 for the majority class; `meta` is the balanced clean set."""

    x_train: np.ndarray
    y_train: np.ndarray
    meta: tuple
    x_test: np.ndarray
    y_test: np.ndarray


def binary_task(config, proportion, seed, data=None):
    """The imbalanced 4-vs-9 task at `proportion` of the majority class, seeded.

    From the training pool of `datasets.load("mnist5k", seed=seed)` (clean
    labels): `clean_per_class` examples of each class go to the meta set;
    every remaining majority example is kept, and round(n_majority (1 - p) /
    p) (at least 1) minority examples are drawn. The test set is every test
    example of the two classes.
    """
    data = data or datasets.load("mnist5k", seed=seed, validation_fraction=0.0)
    rng = np.random.default_rng([seed, _STUDY_STREAM])
    pools = [rng.permutation(np.flatnonzero(data.y_train == digit))
             for digit in (config.minority_class, config.majority_class)]
    meta = np.concatenate([pool[: config.clean_per_class] for pool in pools])
    minority, majority = (pool[config.clean_per_class :] for pool in pools)
    kept_minority = max(1, int(round(len(majority) * (1.0 - proportion) / proportion)))
    if kept_minority > len(minority):
        raise ValueError(f"A proportion of {proportion} needs {kept_minority} examples of class "
                         f"{config.minority_class}; the pool has {len(minority)}.")
    train = np.concatenate([minority[:kept_minority], majority])
    as_binary = np.vectorize({config.minority_class: 0, config.majority_class: 1}.get, otypes=[np.int64])
    test = np.flatnonzero(np.isin(data.y_test, [config.minority_class, config.majority_class]))
    return BinaryTask(data.x_train[train], as_binary(data.y_train[train]),
                      (data.x_train[meta], as_binary(data.y_train[meta])),
                      data.x_test[test], as_binary(data.y_test[test]))


def train(method, task, config, seed):
    """Trains a fresh two-class `config.architecture` model for `config.steps` steps; returns it."""
    model = models.build_model(config.architecture, task.x_train.shape[1:], 2, seed=seed)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    if method == "ce":
        fit_model = model
        fit_model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    else:
        fit_model = reweighting.L2RW(model, meta_data=task.meta, seed=seed)
        fit_model.compile(optimizer=optimizer, jit_compile=False)
    batches = (tf.data.Dataset.from_tensor_slices((task.x_train, task.y_train))
               .shuffle(len(task.y_train), seed=seed, reshuffle_each_iteration=True)
               .repeat().batch(config.batch_size).take(config.steps))
    fit_model.fit(batches, epochs=1, steps_per_epoch=config.steps, shuffle=False, verbose=0)
    return model


def run_l2rw_imbalance(config=ImbalanceStudyConfig(), printer=print, clock=time.perf_counter):
    """Trains every (proportion, method, seed); writes results.csv, results.md and the figure. Returns the rows."""
    config.validate()
    provenance = _provenance.git_revision()
    rows = []
    progress = _study_tables.Progress(len(config.proportions) * len(config.seeds) * len(config.methods), clock,
                                      printer)
    for seed in config.seeds:
        data = datasets.load("mnist5k", seed=seed, validation_fraction=0.0)
        for proportion in config.proportions:
            task = binary_task(config, proportion, seed, data)
            for method in config.methods:
                started = clock()
                predicted = metrics.predicted_classes(train(method, task, config, seed), task.x_test)
                row = {"proportion": proportion, "method": method, "seed": seed,
                       "minority_train_examples": int(np.sum(task.y_train == 0)),
                       "majority_train_examples": int(np.sum(task.y_train == 1)),
                       "clean_examples": 0 if method == "ce" else len(task.meta[1]),
                       "test_accuracy": float(np.mean(predicted == task.y_test)),
                       "minority_recall": float(np.mean(predicted[task.y_test == 0] == 0)),
                       "train_seconds": clock() - started, "revision": provenance["revision"]}
                rows.append(row)
                progress.tick(f"p={proportion} {method} seed {seed}: accuracy {row['test_accuracy']:.3f}")
    rows.sort(key=lambda row: (row["proportion"], METHODS.index(row["method"]), row["seed"]))
    header = (f"# L2RW's MNIST class-imbalance experiment on MNIST-5k: {config.minority_class} (minority) vs "
              f"{config.majority_class} (majority)\n\n{config.architecture}, {config.steps} steps of batch "
              f"{config.batch_size}, {config.optimizer} {config.learning_rate}; L2RW against "
              f"{2 * config.clean_per_class} clean balanced examples; balanced test set; "
              f"{_provenance.short_revision(provenance)}. Mean ± std over seeds (runs).")
    table = _study_tables.mean_std_table(
        rows, ("proportion", "method"), ("minority_train_examples", "test_accuracy", "minority_recall"),
        ("minority training examples", "test accuracy", f"recall of {config.minority_class}"))
    _study_tables.write_results(rows, config.output_dir, header, table)
    plot(rows, f"{config.output_dir}/{FIGURE_PNG}")
    return rows


def plot(rows, path):
    """Test accuracy (mean ± std over seeds) against the majority proportion, one line per method."""
    figure, axes = new_figure()
    for index, method in enumerate(dict.fromkeys(row["method"] for row in rows)):
        proportions = sorted({row["proportion"] for row in rows if row["method"] == method})
        values = [[row["test_accuracy"] for row in rows if (row["method"], row["proportion"]) == (method, p)]
                  for p in proportions]
        axes.errorbar([str(p) for p in proportions], [np.mean(v) for v in values], yerr=[np.std(v) for v in values],
                      marker="o", capsize=3, color=f"C{index}", label=method)
    axes.set_xlabel("proportion of the majority class in training")
    axes.set_ylabel("balanced test accuracy")
    axes.set_ylim(0.4, 1.0)
    axes.legend()
    figure.tight_layout()
    return save_figure(figure, path)
