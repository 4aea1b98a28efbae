"""What one training step of each method costs, relative to a plain cross-entropy step.

`measure_step_costs` builds every method as the benchmark trains it (its
model, its compiled trainer or loss, its schedule callbacks switched on) and
times its compiled train step on one fixed batch beside a plain CE step of
the same architecture and batch, in the same process: for each repetition,
a block of CE steps and a block of the method's steps, the order of the two
alternating between repetitions so that drift (thermal, other load) falls on
both alike. The ratio reported is the median over repetitions of
(method block time / CE block time). `python -m search.method_costs` prints
and writes the table.
"""

import dataclasses
import statistics
import time

import keras
import numpy as np
import tensorflow as tf

from tfrobust import datasets
from tfrobust.benchmark import _methods
from tfrobust.benchmark._config import RunSpec

# The reference every method is measured against.
REFERENCE_METHOD = "ce"
COSTS_MD = "method_costs.md"


@dataclasses.dataclass(frozen=True)
class StepCost:
    """One method's step time: medians over repetitions, in seconds per step, and their ratio."""

    method: str
    seconds_per_step: float
    reference_seconds_per_step: float
    relative_cost: float  # median of the per-repetition ratios to the CE step
    clean_examples: int


def _compiled_step(method, data, run, batch):
    """A function running one compiled train step of `method` on `batch` (warmed up: traced and built)."""
    keras.utils.set_random_seed(run.seed)
    model = method.build_model(run, data)
    fit_model, _, schedule = method.trainer(model, data, run)
    one_batch = tf.data.Dataset.from_tensors(batch)
    # One ordinary fit step builds the optimizer, traces the step and runs the
    # schedule callbacks, which switch each stage on (a 1-epoch run starts every
    # stage at epoch 0: ABSGD's attentional weights, DRW's class weights).
    fit_model.fit(one_batch, epochs=1, shuffle=False, verbose=0, callbacks=schedule)
    iterator = iter(one_batch.repeat())
    train_function = fit_model.train_function

    def step():
        return train_function(iterator)

    return step


def _time_block(step, steps):
    """Seconds per step over `steps` steps (the last result read back, so the work is done)."""
    started = time.perf_counter()
    for _ in range(steps):
        logs = step()
    tf.nest.map_structure(lambda value: np.asarray(value), logs)
    return (time.perf_counter() - started) / steps


def measure_step_costs(methods, *, dataset="digits", architecture="mlp", noise="symmetric:0.4", batch_size=64,
                       repetitions=7, steps=20, seed=0, max_examples=None, data_dir=None, optimizer="adam",
                       learning_rate=1e-3):
    """The per-step cost of each of `methods` relative to a plain CE step (a list of `StepCost`).

    Every method steps on the same batch of `dataset` (noisy labels) with the
    `architecture` model; its meta set, if it has one, is carved as in the
    benchmark. `repetitions` blocks of `steps` steps each (CE and the method
    alternating first).

    Raises:
        ValueError: for an unknown method, fewer than 1 repetition or step, or a
            method that runs its own loop (it has no step to time).
    """
    if repetitions < 1 or steps < 1:
        raise ValueError(f"repetitions and steps must be at least 1; got {repetitions} and {steps}.")
    names = list(dict.fromkeys(_methods.canonical_method_name(name) for name in methods))
    data = datasets.load(dataset, noise=noise, seed=seed, max_examples=max_examples, data_dir=data_dir)
    x, y = next(iter(data.train_dataset(batch_size, seed=seed)))

    def run_of(name):
        return RunSpec(dataset, architecture, noise, name, seed, 1, batch_size, optimizer, float(learning_rate),
                       max_examples)

    def compiled(name):
        method = _methods.get_method(name)
        try:
            return _compiled_step(method, data, run_of(name), (x, y))
        except NotImplementedError:
            raise ValueError(
                f"Method {name!r} runs its own training loop (it implements train, not trainer): it has no "
                "compiled step to time. Implement Method.trainer to measure it."
            ) from None

    reference = compiled(REFERENCE_METHOD)
    costs = []
    for name in names:
        step = compiled(name)
        method_times, reference_times, ratios = [], [], []
        for repetition in range(repetitions):
            pair = [(step, method_times), (reference, reference_times)]
            for timed, times in (pair if repetition % 2 else pair[::-1]):
                times.append(_time_block(timed, steps))
            ratios.append(method_times[-1] / reference_times[-1])
        clean_set, _ = _methods.get_method(name).split_data(data, run_of(name))
        costs.append(StepCost(name, statistics.median(method_times), statistics.median(reference_times),
                              statistics.median(ratios), 0 if clean_set is None else len(clean_set[1])))
    return costs


def costs_table(costs, settings_text=""):
    """A markdown table of `costs` (from `measure_step_costs`), slowest last."""
    lines = [
        "# Per-step cost of each method relative to a plain CE step",
        "",
        (settings_text + " " if settings_text else "") + "Median over repetitions of (method step time / CE step "
        "time), each measured in the same process on the same batch, CE and the method alternating first.",
        "",
        "| method | step (ms) | CE step (ms) | relative to CE | clean examples |",
        "|---|---|---|---|---|",
    ]
    for cost in sorted(costs, key=lambda cost: cost.relative_cost):
        lines.append(f"| {cost.method} | {1e3 * cost.seconds_per_step:.2f} | "
                     f"{1e3 * cost.reference_seconds_per_step:.2f} | {cost.relative_cost:.3g}x | "
                     f"{cost.clean_examples} |")
    return "\n".join(lines) + "\n"
