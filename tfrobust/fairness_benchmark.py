"""CE, L2RW and FORML on a grouped task: test accuracy and worst-group accuracy over seeds.

The task (`tfrobust.groups.load_grouped`) holds a small minority of
intensity-inverted images in training, half in test. The re-weighting
methods get the task's clean meta set (both groups in equal parts; FORML
also its group labels); CE trains on the same training split and never sees
the meta set. `python -m search.fairness_benchmark` wraps `run_fairness_benchmark`.
"""

import dataclasses
import time

from tfrobust import _provenance, _study_tables, groups, metrics, models, reweighting
from tfrobust._io import new_figure, save_figure
from tfrobust.optimizers import make_optimizer
from tfrobust.reweighting import forml

METHODS = ("ce", "l2rw", "forml")
FIGURE_PNG = "fairness.png"


@dataclasses.dataclass(frozen=True)
class FairnessConfig:
    """The grid (noise x method x seed) and the training settings, shared by every run."""

    dataset: str = "digits"
    architecture: str = "mlp"
    noise: tuple = ("none", "symmetric:0.2")
    methods: tuple = METHODS
    seeds: tuple = (0, 1, 2)
    minority_fraction: float = 0.05
    meta_per_class_and_group: int = 5
    epochs: int = 20
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    objective: str = "worst_group"
    max_examples: int | None = None
    output_dir: str = "runs/fairness"

    def validate(self):
        unknown = sorted(set(self.methods) - set(METHODS))
        if unknown or not self.methods:
            raise ValueError(f"Unknown or no methods {unknown or list(self.methods)}; choose from {list(METHODS)}.")
        if self.objective not in forml.OBJECTIVES:
            raise ValueError(f"objective must be one of {forml.OBJECTIVES}; got {self.objective!r}.")
        if not self.seeds or not self.noise:
            raise ValueError("The grid needs at least one seed and one noise setting.")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be positive; got {self.epochs}, {self.batch_size}.")


def train(method, task, config, seed):
    """Trains a fresh `config.architecture` model on `task` with `method`; returns the model."""
    model = models.build_model(config.architecture, task.input_shape, task.num_classes, seed=seed)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    if method == "ce":
        fit_model = model
        fit_model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy")
    else:
        if method == "l2rw":
            fit_model = reweighting.L2RW(model, meta_data=task.meta[:2], seed=seed)
        else:
            fit_model = reweighting.FORML(model, meta_data=task.meta, num_groups=task.num_groups,
                                          objective=config.objective, seed=seed)
        fit_model.compile(optimizer=optimizer, jit_compile=False)
    # The batches are shuffled by the dataset itself, seeded.
    fit_model.fit(task.train_dataset(config.batch_size, seed=seed), epochs=config.epochs, shuffle=False, verbose=0)
    return model


def evaluate(model, task):
    """Test accuracy, worst-group accuracy and each group's accuracy of `model` on `task`."""
    predicted = metrics.predicted_classes(model, task.x_test)
    per_group = groups.group_accuracies(task.y_test, predicted, task.g_test, task.num_groups)
    return {
        "test_accuracy": float((predicted == task.y_test).mean()),
        "worst_group_accuracy": float(per_group.min()),
        "majority_accuracy": float(per_group[groups.MAJORITY]),
        "minority_accuracy": float(per_group[groups.MINORITY]),
    }


def run_fairness_benchmark(config=FairnessConfig(), printer=print, clock=time.perf_counter):
    """Trains every (noise, method, seed) of `config`; writes results.csv, results.md and fairness.png.

    Returns the rows (one dict per run). Prints a progress line (with ETA) per run.
    """
    config.validate()
    provenance = _provenance.git_revision()
    rows = []
    progress = _study_tables.Progress(len(config.noise) * len(config.seeds) * len(config.methods), clock, printer)
    for noise in config.noise:
        for seed in config.seeds:
            task = groups.load_grouped(config.dataset, minority_fraction=config.minority_fraction, noise=noise,
                                       meta_per_class_and_group=config.meta_per_class_and_group, seed=seed,
                                       max_examples=config.max_examples)
            for method in config.methods:
                started = clock()
                model = train(method, task, config, seed)
                row = {"dataset": config.dataset, "architecture": config.architecture, "noise": noise,
                       "minority_fraction": config.minority_fraction, "method": method, "seed": seed,
                       "epochs": config.epochs, "clean_examples": 0 if method == "ce" else len(task.meta[1]),
                       **evaluate(model, task), "train_seconds": clock() - started,
                       "revision": provenance["revision"]}
                rows.append(row)
                progress.tick(f"{noise} {method} seed {seed}: accuracy {row['test_accuracy']:.3f}, worst group "
                              f"{row['worst_group_accuracy']:.3f}")
    header = (f"# CE, L2RW and FORML ({config.objective}) on {config.dataset} with a "
              f"{config.minority_fraction:.0%} minority of inverted images\n\n"
              f"{config.architecture}, {config.epochs} epochs, batch {config.batch_size}, {config.optimizer} "
              f"{config.learning_rate}; clean meta set of {2 * config.meta_per_class_and_group} per class (half "
              f"of each group) for L2RW and FORML; {_provenance.short_revision(provenance)}. Mean ± std over "
              "seeds (runs).")
    table = _study_tables.mean_std_table(
        rows, ("noise", "method"), ("test_accuracy", "worst_group_accuracy", "majority_accuracy",
                                    "minority_accuracy"),
        ("accuracy", "worst-group accuracy", "majority (plain) accuracy", "minority (inverted) accuracy"))
    _study_tables.write_results(rows, config.output_dir, header, table)
    plot(rows, f"{config.output_dir}/{FIGURE_PNG}")
    return rows


def plot(rows, path):
    """Bars of mean accuracy (solid) and worst-group accuracy (hatched) per noise setting and method."""
    figure, axes = new_figure((7, 4))
    keys = list(dict.fromkeys((row["noise"], row["method"]) for row in rows))
    width = 0.4
    for index, key in enumerate(keys):
        members = [row for row in rows if (row["noise"], row["method"]) == key]
        for offset, metric, hatch in ((-width / 2, "test_accuracy", None), (width / 2, "worst_group_accuracy", "//")):
            mean = sum(row[metric] for row in members) / len(members)
            axes.bar(index + offset, mean, width, color=f"C{METHODS.index(key[1])}", hatch=hatch, edgecolor="black")
    axes.set_xticks(range(len(keys)), [f"{method}\n{noise}" for noise, method in keys], fontsize=8)
    axes.set_ylabel("test accuracy (solid) / worst-group (hatched)")
    axes.set_ylim(0, 1)
    figure.tight_layout()
    return save_figure(figure, path)
