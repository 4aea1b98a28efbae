"""Running the grid: one run with its metrics (`run_one`), and the resumable loop over all of them."""

import dataclasses
import itertools
import math
import os
import time

import keras
import numpy as np

from tfrobust import _provenance
from tfrobust import datasets
from tfrobust import imbalance as imbalance_lib
from tfrobust.benchmark import _methods
from tfrobust.benchmark import _report
from tfrobust.benchmark import _results
from tfrobust.benchmark._estimate import estimate_run_seconds, estimate_seconds, format_duration
from tfrobust.metrics import SUSCEPTIBILITY_CURVE, EpochMetrics, Susceptibility, predicted_classes


def run_one(run, data, *, model_path=None, provenance=None, susceptibility=False, probe_optimizer=None):
    """Trains and evaluates one run on `data` (the run's `NoisyDataset`).

    Returns `(row, curves)`: the results.csv row as a dict and the per-epoch
    curves of `EpochMetrics`. With `model_path` the trained model is saved
    there. `provenance` ({"revision", "dirty"}) is recorded in the row;
    by default the git revision of the running code. With `susceptibility`
    the curves also hold zeta per epoch (`SUSCEPTIBILITY_CURVE`), measured
    with random labels on the inputs of the split the method trains on.

    The row says how many clean examples the method was given
    (`clean_examples`, the size of its meta set; 0 for most) and counts
    `num_train`, `num_corrupted` and the memorisation metrics on the
    training split it trained on (without the meta set). Besides accuracy it records the
    balanced (per-class mean) test accuracy and the mean test accuracy of
    the rarest classes of the training split
    (`tfrobust.imbalance.rarest_classes_accuracy`).
    """
    method = _methods.get_method(run.method)
    started = time.perf_counter()
    keras.utils.set_random_seed(run.seed)
    model = method.build_model(run, data)
    clean_set, train_data = method.split_data(data, run)
    metrics = EpochMetrics(train_data)
    probes = [_susceptibility_probe(model, train_data, run, probe_optimizer)] if susceptibility else []
    method.train(model, data, run, [metrics, *probes, keras.callbacks.TerminateOnNaN()])
    metrics.set_model(model)
    if not metrics.curves["test_accuracy"]:  # a method that stopped before its first epoch ended
        metrics.measure()
    finite = all(np.isfinite(weights).all() for weights in model.get_weights())
    if model_path is not None:
        os.makedirs(os.path.dirname(model_path), exist_ok=True)
        model.save(model_path)
    curves = {**metrics.curves, **{SUSCEPTIBILITY_CURVE: probe.history for probe in probes}}
    test_curve = curves["test_accuracy"]
    noise = data.noise
    context = _methods.NoiseContext.from_dataset(data) if method.uses_transition_matrix else None
    test_predictions = predicted_classes(model, data.x_test)
    counts = imbalance_lib.class_counts(data.y_train_clean, data.num_classes)
    row = {
        **run.fields(),
        "noise_kind": noise.kind,
        "noise_rate": noise.rate if noise.kind != "matrix" else math.nan,
        "realised_noise_rate": data.noisy_labels.realised_rate,
        "num_train": len(train_data.y_train),
        "num_corrupted": int(train_data.is_corrupted.sum()),
        "clean_examples": 0 if clean_set is None else len(clean_set[1]),
        "transition_matrix": context.transition_matrix_source if context else "",
        "epochs_trained": len(test_curve),
        "finite": finite,
        "final_test_accuracy": test_curve[-1],
        "best_test_accuracy": max(test_curve),
        "best_epoch": int(np.argmax(test_curve)) + 1,
        "balanced_test_accuracy": imbalance_lib.balanced_accuracy(data.y_test, test_predictions, data.num_classes),
        "rarest_classes_test_accuracy": imbalance_lib.rarest_classes_accuracy(data.y_test, test_predictions, counts),
        **{name: curves[name][-1] for name in _results.MEMORISATION_FIELDS},
        "seconds": time.perf_counter() - started,
        **(provenance or _provenance.git_revision()),
    }
    return row, curves


def _susceptibility_probe(model, train_data, run, probe_optimizer=None):
    """The `Susceptibility` callback of a run: the method's network (inside any wrapper it fits), seeded by the run;
    `probe_optimizer` (unbuilt) replaces the run's own optimiser in the probe step."""
    last = model.layers[-1] if model.layers else None
    outputs_probabilities = getattr(last, "activation", None) is keras.activations.softmax
    return Susceptibility(train_data.x_train, seed=run.seed, model=model, from_logits=not outputs_probabilities,
                          probe_optimizer=probe_optimizer)


@dataclasses.dataclass
class BenchmarkResult:
    """What `run_benchmark` did: runs trained now, runs skipped as already done, torn rows
    found in results.csv (trained again), and the report files."""

    output_dir: str
    trained: int
    skipped: int
    report: dict
    torn: int = 0


def run_benchmark(config, printer=print):
    """Runs (or resumes) the grid of `config`; writes results, curves, tables and plots.

    Runs whose rows are already whole in results.csv are skipped; a torn row
    (see `tfrobust.benchmark.is_whole_row`) is dropped and its run trained
    again. Every new row records the git revision of the code (`revision`,
    `dirty`). Returns a `BenchmarkResult`. Raises ValueError for a bad config
    before training anything.
    """
    config.validate()
    os.makedirs(config.output_dir, exist_ok=True)
    csv_path = os.path.join(config.output_dir, _results.RESULTS_CSV)
    curves_path = os.path.join(config.output_dir, _results.CURVES)
    rows, torn = _results.partition_results(csv_path)
    done = {row["run_id"] for row in rows}
    runs = config.runs()
    todo = [run for run in runs if run.run_id not in done]
    imbalance_axis = f" x {len(set(config.imbalance))} imbalance settings" if config.imbalance != ("none",) else ""
    printer(
        f"Benchmark grid: {len(runs)} runs = {len(config.method_list())} methods x {len(set(config.datasets))} "
        f"datasets x {len(set(config.architectures))} architectures x {len(set(config.noise))} noise settings"
        f"{imbalance_axis} x {len(set(config.seeds))} seeds ({config.epochs} epochs, batch {config.batch_size}, "
        f"{config.optimizer} lr {config.learning_rate}); outputs in {config.output_dir}"
    )
    estimate = estimate_seconds(todo, config.data_dir)
    torn_note = (f" ({len(torn)} torn or incomplete rows there are dropped; their runs train again)"
                 if torn else "")
    printer(
        f"{len(runs) - len(todo)} runs already in {csv_path}{torn_note}; {len(todo)} to train, estimated "
        f"{format_duration(estimate)} (cost model of a 2-core CPU)"
    )
    provenance = _provenance.git_revision()
    progress = _Progress(len(runs), len(runs) - len(todo), estimate, printer, config.data_dir)
    def load_key(run):
        return run.dataset, run.imbalance, run.noise, run.seed

    for (dataset, imbalance, noise, seed), group in itertools.groupby(todo, key=load_key):
        data = datasets.load(dataset, noise=noise, seed=seed, max_examples=config.max_examples,
                             data_dir=config.data_dir, imbalance=imbalance)
        for run in group:
            model_path = os.path.join(config.output_dir, "models", f"{run.run_id}.keras")
            row, curves = run_one(run, data, model_path=model_path if config.save_models else None,
                                  provenance=provenance, susceptibility=config.susceptibility,
                                  probe_optimizer=config.probe_optimizer())
            # Curves first: results.csv is the record of what is done, and
            # `read_curves` lets a rerun's line replace an orphaned one.
            _results.append_curves(curves_path, run.run_id, curves)
            rows.append(row)
            _results.write_results(csv_path, rows)
            progress.report(run, row)
        keras.backend.clear_session()
    report = _report.write_report(config.output_dir)
    printer(f"Trained {len(todo)} runs in {format_duration(time.perf_counter() - progress.started)}; wrote "
            + ", ".join(os.path.basename(path) for path in report.values()))
    return BenchmarkResult(config.output_dir, trained=len(todo), skipped=len(runs) - len(todo), report=report,
                           torn=len(torn))


class _Progress:
    """Runs done / total, rate and an ETA scaled from the cost model by the time runs really took."""

    def __init__(self, total, already_done, estimate, printer, data_dir=None):
        self.total, self.done, self.remaining_estimate, self.printer = total, already_done, estimate, printer
        self.data_dir = data_dir
        self.started = time.perf_counter()
        self.trained = 0
        self.estimated_so_far = 0.0

    def report(self, run, row):
        self.done += 1
        self.trained += 1
        cost = estimate_run_seconds(run, self.data_dir)
        self.estimated_so_far += cost
        self.remaining_estimate -= cost
        elapsed = time.perf_counter() - self.started
        eta = max(self.remaining_estimate, 0.0) * elapsed / max(self.estimated_so_far, 1e-9)
        memorised = row["corrupted_predicted_noisy"]
        memorised = "-" if math.isnan(memorised) else f"{memorised:.3f}"
        self.printer(
            f"[{self.done}/{self.total}] {run.describe()}: test acc {row['final_test_accuracy']:.3f} "
            f"(best {row['best_test_accuracy']:.3f}), corrupted predicted noisy {memorised}, "
            f"{row['seconds']:.1f}s | {60 * self.trained / elapsed:.1f} runs/min, ETA {format_duration(eta)}"
        )
