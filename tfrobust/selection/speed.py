"""AdaCore's claim, measured: test accuracy against wall-clock training time.

Pooladzandi et al. (ICML 2022) claim that training on AdaCore coresets
reaches the accuracy of full-data training faster, and beats random subsets
of the same size. `compare_training_speed` trains one architecture on one
data set three ways, with the same seeded initial weights, optimizer and
batch size:

  full      every training example, every epoch;
  adacore   an `AdaCore` coreset of each fraction, re-selected every `every` epochs;
  random    a `RandomSubset` of the same per-class sizes, redrawn as often.

The clock runs from the start of `fit` and includes the selections; the
test-set evaluation after every epoch is taken off it. It writes
curves.csv (one row per run and epoch), speed.md (the table) and
accuracy_vs_time.png (mean curves over seeds) to `output_dir`.
"""

import csv
import io
import os
import time

import keras
import numpy as np

from tfrobust import _io, datasets, models
from tfrobust.optimizers import make_optimizer
from tfrobust.selection._subset import RandomSubset
from tfrobust.selection.adacore import AdaCore

CURVES_CSV = "curves.csv"
SPEED_MD = "speed.md"
SPEED_PLOT = "accuracy_vs_time.png"
CURVE_FIELDS = ("method", "fraction", "seed", "epoch", "steps", "train_seconds", "selection_seconds",
                "test_accuracy")
_SUBSETS = {"adacore": AdaCore, "random": RandomSubset}


class _Clock(keras.callbacks.Callback):
    """Training seconds and test accuracy after every epoch; the evaluation is taken off the clock."""

    def __init__(self, x_test, y_test, schedule, record):
        super().__init__()
        self.x_test, self.y_test, self.schedule, self.record = x_test, y_test, schedule, record

    def on_train_begin(self, logs=None):
        self.start, self.paused, self.steps = time.perf_counter(), 0.0, 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1

    def on_epoch_end(self, epoch, logs=None):
        stopped = time.perf_counter()
        predicted = np.argmax(self.model.predict(self.x_test, batch_size=1024, verbose=0), axis=-1)
        self.record(epoch + 1, self.steps, stopped - self.start - self.paused,
                    self.schedule.selection_seconds if self.schedule else 0.0,
                    float(np.mean(predicted == self.y_test)))
        self.paused += time.perf_counter() - stopped


def _train(data, method, fraction, seed, epochs, settings, rows):
    keras.utils.set_random_seed(seed)
    model = models.build_model(settings["architecture"], data.input_shape, data.num_classes, seed=seed)
    model.compile(optimizer=make_optimizer(settings["optimizer"], settings["learning_rate"]),
                  loss="sparse_categorical_crossentropy", jit_compile=False)
    schedule = None
    if method == "full":
        batches = data.train_dataset(settings["batch_size"], seed=seed)
    else:
        schedule = _SUBSETS[method](data.x_train, data.y_train, fraction=fraction, every=settings["every"],
                                    seed=seed)
        batches = schedule.dataset(settings["batch_size"], seed=seed)

    def record(epoch, steps, seconds, selection_seconds, accuracy):
        rows.append(dict(method=method, fraction=fraction, seed=seed, epoch=epoch, steps=steps,
                         train_seconds=seconds, selection_seconds=selection_seconds, test_accuracy=accuracy))

    clock = _Clock(data.x_test, data.y_test, schedule, record)  # first, so the selections run on its clock
    model.fit(batches, epochs=epochs, callbacks=[clock] + ([schedule] if schedule else []), shuffle=False,
              verbose=0)


def compare_training_speed(*, dataset="mnist5k", architecture="mlp", fractions=(0.1, 0.3), epochs=10,
                           subset_epochs=None, seeds=(0,), batch_size=32, optimizer="momentum",
                           learning_rate=0.01, every=1, target_ratio=0.99, max_examples=None, output_dir=None,
                           log=print):
    """Trains full data, AdaCore and random subsets; returns the curve rows (dicts with `CURVE_FIELDS`).

    Args:
        dataset, architecture: a `tfrobust.datasets` name (clean labels) and a `tfrobust.models` architecture.
        fractions: the subset sizes, each in (0, 1].
        epochs: epochs of full-data training; `subset_epochs` (default the
            same) of every subset run.
        seeds: each seed gives every method the same split and initial weights.
        batch_size, optimizer, learning_rate: as `tfrobust.optimizers.make_optimizer`.
        every: epochs between selections (and random redraws).
        target_ratio: the table's time-to-target is the time to reach this
            fraction of full-data training's mean final accuracy.
        max_examples: read at most this many examples per source split.
        output_dir: where curves.csv, speed.md and accuracy_vs_time.png go (None: nowhere).
        log: prints a progress line per run.
    """
    fractions = tuple(float(fraction) for fraction in fractions)
    for fraction in fractions:
        if not 0 < fraction <= 1:
            raise ValueError(f"Every fraction must be in (0, 1]; got {fraction}.")
    if not seeds:
        raise ValueError("Give at least one seed.")
    subset_epochs = epochs if subset_epochs is None else subset_epochs
    settings = dict(architecture=architecture, batch_size=batch_size, optimizer=optimizer,
                    learning_rate=learning_rate, every=every)
    runs = [run for seed in seeds for run in [(seed, "full", 1.0, epochs)] + [
        (seed, method, fraction, subset_epochs) for fraction in fractions for method in ("adacore", "random")]]
    rows, started = [], time.perf_counter()
    data_by_seed = {}
    for number, (seed, method, fraction, run_epochs) in enumerate(runs, 1):
        if seed not in data_by_seed:
            data_by_seed = {seed: datasets.load(dataset, seed=seed, max_examples=max_examples)}
        _train(data_by_seed[seed], method, fraction, seed, run_epochs, settings, rows)
        elapsed = time.perf_counter() - started
        last = rows[-1]
        log(f"[{number}/{len(runs)}] {method} {fraction:g} seed {seed}: test accuracy {last['test_accuracy']:.4f} "
            f"after {last['train_seconds']:.1f} s of training ({last['steps'] / max(last['train_seconds'], 1e-9):.0f}"
            f" steps/s); ETA {elapsed / number * (len(runs) - number):.0f} s")
    if output_dir:
        write_outputs(rows, output_dir, target_ratio, describe=_describe(dataset, settings, epochs, subset_epochs,
                                                                         seeds))
    return rows


def _describe(dataset, settings, epochs, subset_epochs, seeds):
    return (f"{dataset} / {settings['architecture']}, batch {settings['batch_size']}, {settings['optimizer']} "
            f"lr {settings['learning_rate']:g}, full data {epochs} epochs, subsets {subset_epochs} epochs "
            f"(re-selected every {settings['every']}), seeds {', '.join(map(str, seeds))}")


def summarize(rows, target_ratio=0.99):
    """One summary dict per (method, fraction): final accuracy, times, and time to reach the target accuracy."""
    runs = {}
    for row in rows:
        runs.setdefault((row["method"], row["fraction"]), {}).setdefault(row["seed"], []).append(row)
    full_final = [curve[-1]["test_accuracy"] for curve in runs.get(("full", 1.0), {}).values()]
    target = target_ratio * float(np.mean(full_final)) if full_final else None
    summary = []
    for (method, fraction), by_seed in runs.items():
        finals = [curve[-1] for curve in by_seed.values()]
        reached = [next((row["train_seconds"] for row in curve if row["test_accuracy"] >= target), None)
                   for curve in by_seed.values()] if target is not None else []
        times = [seconds for seconds in reached if seconds is not None]
        summary.append(dict(
            method=method, fraction=fraction, runs=len(finals), epochs=finals[0]["epoch"],
            steps=float(np.mean([row["steps"] for row in finals])),
            accuracy=float(np.mean([row["test_accuracy"] for row in finals])),
            accuracy_std=float(np.std([row["test_accuracy"] for row in finals])),
            train_seconds=float(np.mean([row["train_seconds"] for row in finals])),
            selection_seconds=float(np.mean([row["selection_seconds"] for row in finals])),
            target=target, target_ratio=target_ratio, reached=len(times), seconds_to_target=float(np.mean(times)) if times else None,
        ))
    full = next((entry for entry in summary if entry["method"] == "full"), None)
    for entry in summary:
        entry["speedup"] = (full["seconds_to_target"] / entry["seconds_to_target"]
                            if full and full["seconds_to_target"] and entry["seconds_to_target"] else None)
    return summary


def speed_table(summary, describe=""):
    """The markdown table of `summarize`'s entries."""
    entry = next((entry for entry in summary if entry["target"] is not None), None)
    target, ratio = (entry["target"], entry["target_ratio"]) if entry else (None, None)
    lines = [f"Accuracy against training time: {describe}." if describe else "Accuracy against training time.", "",
             f"Target: {target:.4f} test accuracy ({ratio:g} x full-data training's mean final accuracy); "
             "s to target is the mean over the runs that reached it, training seconds at the first epoch at or "
             "above it."
             if target is not None else "No full-data run: no target.", "",
             "| method | fraction | epochs | steps | final test accuracy | training s | of which selection s "
             "| reached target | s to target | speed-up vs full |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for entry in summary:
        to_target = "-" if entry["seconds_to_target"] is None else f"{entry['seconds_to_target']:.1f}"
        speedup = "-" if entry["speedup"] is None else f"{entry['speedup']:.2f}x"
        lines.append(
            f"| {entry['method']} | {entry['fraction']:g} | {entry['epochs']} | {entry['steps']:.0f} | "
            f"{entry['accuracy']:.4f} ± {entry['accuracy_std']:.4f} | {entry['train_seconds']:.1f} | "
            f"{entry['selection_seconds']:.1f} | {entry['reached']}/{entry['runs']} | {to_target} | {speedup} |")
    return "\n".join(lines) + "\n"


def plot_accuracy_vs_time(rows, path):
    """Mean test accuracy against mean training seconds per epoch, one line per method and fraction."""
    figure, axes = _io.new_figure((7, 4.5))
    colors = {"full": "black", "adacore": "tab:blue", "random": "tab:orange"}
    styles = {}
    groups = {}
    for row in rows:
        groups.setdefault((row["method"], row["fraction"]), {}).setdefault(row["epoch"], []).append(row)
    for (method, fraction), by_epoch in groups.items():
        epochs = sorted(by_epoch)
        seconds = [np.mean([row["train_seconds"] for row in by_epoch[e]]) for e in epochs]
        accuracy = [np.mean([row["test_accuracy"] for row in by_epoch[e]]) for e in epochs]
        style = styles.setdefault(fraction, ["-", "--", ":", "-."][len(styles) % 4]) if method != "full" else "-"
        label = "full data" if method == "full" else f"{method} {fraction:g}"
        axes.plot(seconds, accuracy, style, color=colors.get(method), marker=".", label=label)
    axes.set_xlabel("training wall-clock seconds (selection included, evaluation excluded)")
    axes.set_ylabel("test accuracy")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    return _io.save_figure(figure, path)


def write_outputs(rows, output_dir, target_ratio=0.99, describe=""):
    """Writes curves.csv, speed.md and accuracy_vs_time.png (atomically) to `output_dir`; returns their paths."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CURVE_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    paths = [os.path.join(output_dir, name) for name in (CURVES_CSV, SPEED_MD, SPEED_PLOT)]
    _io.write_text(paths[0], buffer.getvalue())
    _io.write_text(paths[1], speed_table(summarize(rows, target_ratio), describe))
    plot_accuracy_vs_time(rows, paths[2])
    return paths
