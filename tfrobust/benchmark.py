"""Benchmark of training methods under label noise (the library behind `python -m search.benchmark`).

Every run trains one model (dataset x architecture) with one method under
one noise setting and one seed, and measures accuracy against the CLEAN test
labels. Runs with the same seed share the data split, the noisy labels, the
initial weights and the order of the training batches whatever the method
(common random numbers), so methods are compared on equal terms.

A method is a way of training on noisy labels. Today every method is a loss
trained with `model.fit` (`LossMethod`); methods with their own training
procedure (sample re-weighting such as L2RW or Meta-Weight-Net, which carve a
small clean meta set from the training split) subclass `Method` and override
`train`.

Outputs in `BenchmarkConfig.output_dir`:
  results.csv               one row per run, rewritten atomically after every run
  curves.jsonl              per-epoch test accuracy and memorisation of every run
  results.md                mean ± std tables (`summarize(csv_path)` rebuilds it)
  accuracy_vs_noise.png     final test accuracy against the symmetric noise rate
  memorisation_<dataset>_<architecture>.png
                            share of corrupted training examples predicted with
                            their noisy label, per epoch and method
  models/<run_id>.keras     the trained models, with `save_models=True`

Rerunning the same configuration skips the runs already in results.csv, so a
stopped benchmark resumes where it stopped.
"""

import collections
import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import time

import keras
import numpy as np

from tfrobust import _io
from tfrobust import datasets
from tfrobust import losses
from tfrobust import models
from tfrobust import noise as noise_lib

RESULTS_CSV = "results.csv"
CURVES = "curves.jsonl"
RESULTS_MD = "results.md"
ACCURACY_PLOT = "accuracy_vs_noise.png"

# ---- methods ---------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NoiseContext:
    """What a method may know about the noise of a run.

    Attributes:
        spec: the `NoiseSpec` the training labels were corrupted with.
        transition_matrix: T[i, j] = P(noisy label = j | clean label = i).
            For class-conditional noise (none, symmetric, pair-flip, matrix)
            it is the TRUE matrix the labels were drawn from: methods that
            use it (forward / backward correction) run in the "known T"
            oracle setting. Instance-dependent noise has no class-level
            matrix, so it is the matrix realised on the training split.
        transition_matrix_source: "true" or "realised".
    """

    spec: noise_lib.NoiseSpec
    transition_matrix: np.ndarray
    transition_matrix_source: str

    @classmethod
    def from_dataset(cls, data):
        """The context of a `tfrobust.datasets.NoisyDataset`."""
        spec, num_classes = data.noise, data.num_classes
        if spec.kind == "symmetric":
            matrix = noise_lib.symmetric_transition_matrix(spec.rate, num_classes)
        elif spec.kind == "pairflip":
            matrix = noise_lib.pair_flip_transition_matrix(spec.rate, num_classes)
        elif spec.kind == "matrix":
            matrix = noise_lib.load_transition_matrix(spec.matrix_path)
        elif spec.kind == "none":
            matrix = np.eye(num_classes)
        else:
            return cls(spec, np.asarray(data.noisy_labels.transition_matrix), "realised")
        return cls(spec, matrix, "true")


class Method:
    """One entry of the benchmark's method axis: a way to train on noisy labels.

    Subclasses implement `train`. The benchmark builds the model (softmax
    output, seeded initial weights) and passes callbacks that record the
    per-epoch metrics; a method with its own training loop must call
    `callbacks.on_epoch_end(epoch)` after every epoch itself (wrap the list in
    `keras.callbacks.CallbackList(callbacks, model=model)`). A method that
    needs clean data, such as a re-weighting method's meta set, carves it
    from `data.x_train` / `data.y_train_clean` with a generator seeded by
    `run.seed`, so that every seed sees the same meta set.

    Attributes:
        name: the name used on the command line and in results.csv.
        uses_transition_matrix: whether the method reads
            `NoiseContext.transition_matrix` (recorded in results.csv).
    """

    name = None
    uses_transition_matrix = False

    def train(self, model, data, run, callbacks):
        """Trains `model` in place on `data.x_train` with the NOISY labels `data.y_train`.

        Args:
            model: an uncompiled Keras model with softmax output.
            data: the run's `tfrobust.datasets.NoisyDataset`.
            run: the `RunSpec` (epochs, batch_size, optimizer, learning_rate, seed).
            callbacks: Keras callbacks to call every epoch.

        Returns a `keras.callbacks.History` or None.
        """
        raise NotImplementedError


class LossMethod(Method):
    """Training with a loss: `model.fit` on the noisy labels, batches shuffled by the run's seed.

    Args:
        name: the method's name.
        loss_factory: `factory(num_classes, noise_context) -> keras.losses.Loss`
            for predictions given as probabilities (`from_logits=False`).
        uses_transition_matrix: whether the factory reads the transition matrix.
    """

    def __init__(self, name, loss_factory, uses_transition_matrix=False):
        self.name = name
        self.loss_factory = loss_factory
        self.uses_transition_matrix = uses_transition_matrix

    def loss(self, data):
        """The loss for `data` (a `NoisyDataset`)."""
        return self.loss_factory(data.num_classes, NoiseContext.from_dataset(data))

    def train(self, model, data, run, callbacks):
        model.compile(
            optimizer=make_optimizer(run.optimizer, run.learning_rate),
            loss=self.loss(data),
            # Runs are seconds long: XLA compilation would cost more than it saves on CPU.
            jit_compile=False,
        )
        return model.fit(
            data.train_dataset(run.batch_size, seed=run.seed), epochs=run.epochs, shuffle=False, verbose=0,
            callbacks=callbacks,
        )

    def __repr__(self):
        return f"LossMethod({self.name!r})"


def make_optimizer(name, learning_rate):
    """A Keras optimizer by name ("adam", "sgd", "rmsprop", "adamw", ...) with `learning_rate`."""
    try:
        return keras.optimizers.get({"class_name": name, "config": {"learning_rate": learning_rate}})
    except ValueError:
        raise ValueError(f"Unknown optimizer {name!r}: use a Keras optimizer name such as 'adam' or 'sgd'.") from None


def _fixed_loss(loss_class):
    """A loss factory for a loss that needs nothing from the data or the noise (its defaults)."""
    return lambda num_classes, noise: loss_class()


def _corrected_loss(loss_class):
    """A loss factory for a loss corrected with the run's transition matrix."""
    return lambda num_classes, noise: loss_class(noise.transition_matrix)


_REGISTRY = {}


def register_method(method, *, overwrite=False):
    """Adds `method` to the method axis under `method.name`; returns it."""
    if not overwrite and method.name in _REGISTRY:
        raise ValueError(f"A method named {method.name!r} is already registered; pass overwrite=True.")
    _REGISTRY[method.name] = method
    return method


# Baselines trained with their constructors' defaults (the values of their papers).
_BASELINE_LOSSES = {
    "gce": losses.GeneralizedCrossEntropy,
    "sce": losses.SymmetricCrossEntropy,
    "nce_rce": losses.NCEandRCE,
    "nce": losses.NormalizedCrossEntropy,
    "rce": losses.ReverseCrossEntropy,
    "mae": losses.MeanAbsoluteError,
    "bootstrap_soft": losses.BootstrapSoft,
    "bootstrap_hard": losses.BootstrapHard,
    "taylor_ce": losses.TaylorCrossEntropy,
    "poly1": losses.Poly1CrossEntropy,
    "bitempered": losses.BiTemperedLogisticLoss,
    "focal": losses.FocalLoss,
}
# Loss corrections given the run's transition matrix (see `NoiseContext`).
_CORRECTED_LOSSES = {"forward": losses.ForwardCorrection, "backward": losses.BackwardCorrection}

register_method(LossMethod("ce", lambda num_classes, noise: keras.losses.SparseCategoricalCrossentropy(name="ce")))
for _name, _loss_class in _BASELINE_LOSSES.items():
    register_method(LossMethod(_name, _fixed_loss(_loss_class)))
for _name, _loss_class in _CORRECTED_LOSSES.items():
    register_method(LossMethod(_name, _corrected_loss(_loss_class), uses_transition_matrix=True))

TAYLOR_PRESET_PREFIX = "taylor:"
TAYLOR_FILE_PREFIX = "taylor_file:"


def method_names():
    """The registered method names (TaylorLoss methods are named "taylor:<preset>" and "taylor_file:<path>")."""
    return list(_REGISTRY)


def canonical_method_name(name):
    """"taylor" names the default TaylorLoss preset: it becomes "taylor:<that preset>",
    so results stay tied to the coefficients they were trained with."""
    name = name.strip()
    if name == "taylor":
        return TAYLOR_PRESET_PREFIX + losses.TaylorLoss.preset_info()["name"]
    return name


def get_method(name):
    """The `Method` called `name`.

    Names: a registered name (`method_names()`), "taylor" (the default
    `TaylorLoss.pretrained()` preset), "taylor:<preset>" (`TaylorLoss.presets()`)
    or "taylor_file:<path>" (a coefficient file such as a search's
    best_coefficients.json).

    Raises:
        ValueError: for an unknown name or preset, naming the valid ones.
        FileNotFoundError: for a missing TaylorLoss coefficient file.
    """
    name = canonical_method_name(name)
    if name in _REGISTRY:
        return _REGISTRY[name]
    if name.startswith(TAYLOR_PRESET_PREFIX):
        preset = name[len(TAYLOR_PRESET_PREFIX) :]
        losses.TaylorLoss.pretrained(preset)  # raises on unknown presets
        return LossMethod(name, lambda num_classes, noise: losses.TaylorLoss.pretrained(preset))
    if name.startswith(TAYLOR_FILE_PREFIX):
        path = name[len(TAYLOR_FILE_PREFIX) :]
        losses.TaylorLoss.from_file(path)  # raises on missing or malformed files
        return LossMethod(name, lambda num_classes, noise: losses.TaylorLoss.from_file(path, name="taylor_file"))
    raise ValueError(
        f"Unknown method {name!r}. Methods: {', '.join(method_names())}, 'taylor' (the default TaylorLoss "
        f"preset), 'taylor:<preset>' with a preset of {sorted(losses.TaylorLoss.presets())}, or "
        "'taylor_file:<path to a coefficient file>'."
    )


def default_methods():
    """Every registered method and every TaylorLoss preset, "ce" first."""
    return method_names() + [TAYLOR_PRESET_PREFIX + preset for preset in losses.TaylorLoss.presets()]


# ---- configuration ---------------------------------------------------------

ALL_NOISE = (
    "none", "symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "symmetric:0.8",
    "pairflip:0.2", "pairflip:0.4", "instance:0.4",
)

# Presets are values of `BenchmarkConfig` fields; explicit arguments override them.
# "methods": None stands for `default_methods()`.
PRESETS = {
    # Every method, kept within 10 minutes on a 2-core CPU by a small grid:
    # one data set, one architecture, three noise settings.
    "default": {
        "output_dir": "runs/benchmark",
        "methods": None,
        "datasets": ("digits",),
        "architectures": ("mlp",),
        "noise": ("none", "symmetric:0.4", "pairflip:0.4"),
        "seeds": (0, 1, 2),
        "epochs": 20,
    },
    # The grid of the README table: every method, both bundled data sets, five
    # noise settings, 3 seeds (about 40 minutes on a 2-core CPU). Add
    # --architectures=mlp,cnn and --noise with every setting of ALL_NOISE for
    # the whole grid (about 2.5 hours there).
    "full": {
        "output_dir": "runs/benchmark_full",
        "methods": None,
        "datasets": ("digits", "mnist5k"),
        "architectures": ("mlp",),
        "noise": ("none", "symmetric:0.4", "symmetric:0.8", "pairflip:0.4", "instance:0.4"),
        "seeds": (0, 1, 2),
        "epochs": 20,
    },
    # The evolved TaylorLoss on settings the search did not train on: another
    # architecture (the search uses linear, mlp, cnn) and other noise (it uses
    # symmetric 0.2 / 0.4 / 0.6 and pair-flip 0.2 / 0.4).
    "heldout": {
        "output_dir": "runs/benchmark_heldout",
        # taylor:cross_entropy_taylor3 is where the searches start from;
        # evolved_bundled_long is the longer-training search's result.
        "methods": ("taylor", "taylor:evolved_bundled_long", "taylor:cross_entropy_taylor3", "ce", "gce", "sce",
                    "mae"),
        "datasets": ("mnist5k", "digits"),
        "architectures": ("mlp2",),
        "noise": ("symmetric:0.5", "symmetric:0.8", "instance:0.4", "pairflip:0.3"),
        "seeds": (0, 1, 2),
        "epochs": 40,
    },
}


@dataclasses.dataclass(frozen=True)
class RunSpec:
    """One run of the grid: everything that decides its result (and its row's key)."""

    dataset: str
    architecture: str
    noise: str
    method: str
    seed: int
    epochs: int
    batch_size: int
    optimizer: str
    learning_rate: float
    max_examples: int | None

    def fields(self):
        """The key columns of results.csv, as the strings written there."""
        values = {
            "dataset": self.dataset,
            "architecture": self.architecture,
            "noise": self.noise,
            "method": self.method,
            "seed": str(self.seed),
            "epochs": str(self.epochs),
            "batch_size": str(self.batch_size),
            "optimizer": self.optimizer,
            "learning_rate": repr(float(self.learning_rate)),
            "max_examples": "" if self.max_examples is None else str(self.max_examples),
        }
        return {"run_id": hashlib.sha1("|".join(values.values()).encode()).hexdigest()[:12], **values}

    @property
    def run_id(self):
        return self.fields()["run_id"]

    def describe(self):
        return f"{self.dataset}/{self.architecture} {self.noise} {self.method} seed {self.seed}"


@dataclasses.dataclass(frozen=True)
class BenchmarkConfig:
    """Every setting of a benchmark (the flags of `search.benchmark`).

    The defaults are the "default" preset; `from_preset` gives the others.
    Axis values are tuples of names; `methods=None` means `default_methods()`.
    """

    output_dir: str = PRESETS["default"]["output_dir"]
    methods: tuple | None = PRESETS["default"]["methods"]
    datasets: tuple = PRESETS["default"]["datasets"]
    architectures: tuple = PRESETS["default"]["architectures"]
    noise: tuple = PRESETS["default"]["noise"]
    seeds: tuple = PRESETS["default"]["seeds"]
    epochs: int = PRESETS["default"]["epochs"]
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    max_examples: int | None = None
    save_models: bool = False
    data_dir: str | None = None  # TFDS data directory (TFDS's own default when None)

    @classmethod
    def from_preset(cls, name="default", **overrides):
        """The config of preset `name` ("default", "full", "heldout") with `overrides` applied."""
        if name not in PRESETS:
            raise ValueError(f"Unknown preset {name!r}; choose one of {sorted(PRESETS)}.")
        return cls(**{**PRESETS[name], **overrides})

    def method_list(self):
        """The canonical method names of the grid."""
        names = default_methods() if self.methods is None else self.methods
        return list(dict.fromkeys(canonical_method_name(name) for name in names))

    def validate(self):
        """Raises ValueError (or FileNotFoundError) for anything that would fail mid-grid."""
        for axis in ("datasets", "architectures", "noise", "seeds"):
            if not getattr(self, axis):
                raise ValueError(f"The {axis} axis is empty.")
        if self.methods is not None and not self.methods:
            raise ValueError("The methods axis is empty.")
        for name in self.method_list():
            get_method(name)
        for name in self.architectures:
            models.architecture(name)
        for spec in self.noise:
            spec = noise_lib.parse_noise_spec(spec)
            if spec.kind == "matrix":
                noise_lib.load_transition_matrix(spec.matrix_path)
        for seed in self.seeds:
            if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
                raise ValueError(f"Seeds must be non-negative integers; got {seed!r}.")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1; got {getattr(self, name)}.")
        if not self.learning_rate > 0:
            raise ValueError(f"learning_rate must be positive; got {self.learning_rate}.")
        make_optimizer(self.optimizer, self.learning_rate)

    def runs(self):
        """Every `RunSpec` of the grid, grouped so that each (dataset, noise, seed) loads once."""
        noises = [str(noise_lib.parse_noise_spec(spec)) for spec in self.noise]
        axes = (self.datasets, noises, self.seeds, self.architectures, self.method_list())
        return [
            RunSpec(
                dataset, architecture, noise, method, seed, self.epochs, self.batch_size, self.optimizer,
                float(self.learning_rate), self.max_examples,
            )
            # dict.fromkeys: each value once, in the order given.
            for dataset, noise, seed, architecture, method in itertools.product(*map(dict.fromkeys, axes))
        ]


# ---- one run ----------------------------------------------------------------


def predicted_classes(model, x, batch_size=1024):
    """argmax predictions of `model` on `x`; -1 (never a class) where a prediction is not finite.

    Calls `predict_on_batch` on slices: `model.predict` costs about 0.1 s of
    set-up per call, more than the prediction itself at these sizes.
    """
    chunks = []
    for start in range(0, len(x), batch_size):
        probabilities = np.asarray(model.predict_on_batch(x[start : start + batch_size]))
        classes = np.argmax(probabilities, axis=-1)
        classes[~np.isfinite(probabilities).all(axis=-1)] = -1
        chunks.append(classes)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def memorisation_metrics(predicted, noisy_labels, clean_labels):
    """How predictions on the training split relate to its noisy and clean labels.

    Returns a dict of
        noisy_train_accuracy: share of training examples predicted as their noisy label.
        clean_train_accuracy: share predicted as their clean label.
        corrupted_predicted_clean: among examples whose label was corrupted,
            the share predicted as their CLEAN label (robustness).
        corrupted_predicted_noisy: among them, the share predicted as their
            NOISY label (memorisation).
    The two `corrupted_*` values are NaN when no label was corrupted.
    """
    predicted, noisy_labels, clean_labels = map(np.asarray, (predicted, noisy_labels, clean_labels))
    corrupted = noisy_labels != clean_labels

    def share_of_corrupted(labels):
        return float(np.mean(predicted[corrupted] == labels[corrupted])) if corrupted.any() else math.nan

    return {
        "noisy_train_accuracy": float(np.mean(predicted == noisy_labels)),
        "clean_train_accuracy": float(np.mean(predicted == clean_labels)),
        "corrupted_predicted_clean": share_of_corrupted(clean_labels),
        "corrupted_predicted_noisy": share_of_corrupted(noisy_labels),
    }


CURVE_METRICS = (
    "test_accuracy", "noisy_train_accuracy", "clean_train_accuracy",
    "corrupted_predicted_clean", "corrupted_predicted_noisy",
)


class EpochMetrics(keras.callbacks.Callback):
    """Records, after every epoch, the clean test accuracy and the memorisation metrics
    (`memorisation_metrics`) of the training split; `curves[name]` lists them by epoch."""

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.curves = {name: [] for name in CURVE_METRICS}

    def measure(self):
        """Appends the current model's metrics to `curves`."""
        test_accuracy = float(np.mean(predicted_classes(self.model, self.data.x_test) == self.data.y_test))
        train = memorisation_metrics(
            predicted_classes(self.model, self.data.x_train), self.data.y_train, self.data.y_train_clean
        )
        for name, value in {"test_accuracy": test_accuracy, **train}.items():
            self.curves[name].append(value)

    def on_epoch_end(self, epoch, logs=None):
        self.measure()


def run_one(run, data, *, model_path=None):
    """Trains and evaluates one run on `data` (the run's `NoisyDataset`).

    Returns `(row, curves)`: the results.csv row as a dict and the per-epoch
    curves of `EpochMetrics`. With `model_path` the trained model is saved there.
    """
    method = get_method(run.method)
    started = time.perf_counter()
    keras.utils.set_random_seed(run.seed)
    model = models.build_model(run.architecture, data.input_shape, data.num_classes, seed=run.seed)
    metrics = EpochMetrics(data)
    method.train(model, data, run, [metrics, keras.callbacks.TerminateOnNaN()])
    metrics.set_model(model)
    if not metrics.curves["test_accuracy"]:  # a method that stopped before its first epoch ended
        metrics.measure()
    finite = all(np.isfinite(weights).all() for weights in model.get_weights())
    if model_path is not None:
        os.makedirs(os.path.dirname(model_path), exist_ok=True)
        model.save(model_path)
    curves = metrics.curves
    test_curve = curves["test_accuracy"]
    noise = data.noise
    context = NoiseContext.from_dataset(data) if method.uses_transition_matrix else None
    row = {
        **run.fields(),
        "noise_kind": noise.kind,
        "noise_rate": noise.rate if noise.kind != "matrix" else math.nan,
        "realised_noise_rate": data.noisy_labels.realised_rate,
        "num_train": len(data.y_train),
        "num_corrupted": int(data.is_corrupted.sum()),
        "transition_matrix": context.transition_matrix_source if context else "",
        "epochs_trained": len(test_curve),
        "finite": finite,
        "final_test_accuracy": test_curve[-1],
        "best_test_accuracy": max(test_curve),
        "best_epoch": int(np.argmax(test_curve)) + 1,
        **{name: curves[name][-1] for name in CURVE_METRICS if name != "test_accuracy"},
        "seconds": time.perf_counter() - started,
    }
    return row, curves


# ---- results files ----------------------------------------------------------

KEY_FIELDS = ("run_id",) + tuple(field.name for field in dataclasses.fields(RunSpec))
RESULT_FIELDS = (
    "noise_kind", "noise_rate", "realised_noise_rate", "num_train", "num_corrupted", "transition_matrix",
    "epochs_trained", "finite", "final_test_accuracy", "best_test_accuracy", "best_epoch",
    "noisy_train_accuracy", "clean_train_accuracy", "corrupted_predicted_clean", "corrupted_predicted_noisy",
    "seconds",
)
CSV_FIELDS = KEY_FIELDS + RESULT_FIELDS


def _csv_value(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def read_results(csv_path):
    """The rows of results.csv as dicts of strings (empty list when there is no file)."""
    if not os.path.exists(csv_path):
        return []
    with open(csv_path, newline="") as handle:
        return list(csv.DictReader(handle))


def write_results(csv_path, rows):
    """Rewrites results.csv with every row, atomically: a reader (or a benchmark
    killed mid-write) sees the old file or the new one, never a torn one."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(value) for key, value in row.items()})
    _io.write_text(csv_path, text.getvalue())


def append_curves(path, run_id, curves):
    """Appends one run's curves as a JSON line (NaN as null), flushed to disk."""
    record = {"run_id": run_id, **{k: [None if math.isnan(v) else v for v in values] for k, values in curves.items()}}
    with open(path, "a") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_curves(path):
    """run_id -> curves (None back to NaN); a torn last line is skipped, a rerun's line wins."""
    curves = {}
    for record in _io.read_jsonl(path):
        run_id = record.pop("run_id")
        curves[run_id] = {k: [math.nan if v is None else v for v in values] for k, values in record.items()}
    return curves


# ---- the grid ----------------------------------------------------------------


@dataclasses.dataclass
class BenchmarkResult:
    """What `run_benchmark` did: runs trained now, runs skipped as already done, and the report files."""

    output_dir: str
    trained: int
    skipped: int
    report: dict


def run_benchmark(config, printer=print):
    """Runs (or resumes) the grid of `config`; writes results, curves, tables and plots.

    Runs whose rows are already in results.csv are skipped. Returns a
    `BenchmarkResult`. Raises ValueError for a bad config before training anything.
    """
    config.validate()
    os.makedirs(config.output_dir, exist_ok=True)
    csv_path = os.path.join(config.output_dir, RESULTS_CSV)
    curves_path = os.path.join(config.output_dir, CURVES)
    rows = read_results(csv_path)
    done = {row["run_id"] for row in rows}
    runs = config.runs()
    todo = [run for run in runs if run.run_id not in done]
    printer(
        f"Benchmark grid: {len(runs)} runs = {len(config.method_list())} methods x {len(set(config.datasets))} "
        f"datasets x {len(set(config.architectures))} architectures x {len(set(config.noise))} noise settings "
        f"x {len(set(config.seeds))} seeds ({config.epochs} epochs, batch {config.batch_size}, "
        f"{config.optimizer} lr {config.learning_rate}); outputs in {config.output_dir}"
    )
    estimate = estimate_seconds(todo, config.data_dir)
    printer(
        f"{len(runs) - len(todo)} runs already in {csv_path}; {len(todo)} to train, estimated "
        f"{format_duration(estimate)} (cost model of a 2-core CPU)"
    )
    progress = _Progress(len(runs), len(runs) - len(todo), estimate, printer, config.data_dir)
    for (dataset, noise, seed), group in itertools.groupby(todo, key=lambda run: (run.dataset, run.noise, run.seed)):
        data = datasets.load(dataset, noise=noise, seed=seed, max_examples=config.max_examples,
                             data_dir=config.data_dir)
        for run in group:
            model_path = os.path.join(config.output_dir, "models", f"{run.run_id}.keras")
            row, curves = run_one(run, data, model_path=model_path if config.save_models else None)
            # Curves first: results.csv is the record of what is done, and
            # `read_curves` lets a rerun's line replace an orphaned one.
            append_curves(curves_path, run.run_id, curves)
            rows.append(row)
            write_results(csv_path, rows)
            progress.report(run, row)
        keras.backend.clear_session()
    report = write_report(config.output_dir)
    printer(f"Trained {len(todo)} runs in {format_duration(time.perf_counter() - progress.started)}; wrote "
            + ", ".join(os.path.basename(path) for path in report.values()))
    return BenchmarkResult(config.output_dir, trained=len(todo), skipped=len(runs) - len(todo), report=report)


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


# ---- run-time estimate ---------------------------------------------------------

# Cost model fitted to runs on a 2-core CPU (TensorFlow 2.21): a fixed cost per
# run (model, tracing), per training step, per epoch (evaluation calls), and a
# throughput for the FLOPs of training and evaluation.
_SECONDS_PER_RUN = 0.7
_SECONDS_PER_STEP = 0.001
_SECONDS_PER_EPOCH = 0.04
_FLOPS_PER_SECOND = 60e9

_SPLIT_SIZES = {}


def _split_sizes(dataset, max_examples, data_dir=None):
    """(train, test, input shape, classes) of a data set, read once per process."""
    key = (dataset, max_examples, data_dir)
    if key not in _SPLIT_SIZES:
        data = datasets.load(dataset, max_examples=max_examples, data_dir=data_dir)
        _SPLIT_SIZES[key] = (len(data.y_train), len(data.y_test), data.input_shape, data.num_classes)
    return _SPLIT_SIZES[key]


def estimate_run_seconds(run, data_dir=None):
    """Estimated seconds of one run on a 2-core CPU (see the cost-model constants)."""
    num_train, num_test, input_shape, num_classes = _split_sizes(run.dataset, run.max_examples, data_dir)
    training_flops = models.training_flops_per_example(run.architecture, input_shape, num_classes)
    steps = -(-num_train // run.batch_size)
    # Training is 3 forward passes per example; evaluation one per training and test example.
    flops = training_flops * (num_train + (num_train + num_test) / 3)
    per_epoch = steps * _SECONDS_PER_STEP + _SECONDS_PER_EPOCH + flops / _FLOPS_PER_SECOND
    return _SECONDS_PER_RUN + run.epochs * per_epoch


def estimate_seconds(runs, data_dir=None):
    """Estimated seconds of all `runs` (see `estimate_run_seconds`)."""
    return sum(estimate_run_seconds(run, data_dir) for run in runs)


def format_duration(seconds):
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


# ---- report: tables and plots --------------------------------------------------

SUMMARY_METRICS = (
    # (column, caption, higher is better)
    ("final_test_accuracy", "Clean test accuracy (%) after the last epoch", True),
    ("best_test_accuracy", "Best clean test accuracy (%) over the epochs", True),
    ("corrupted_predicted_noisy",
     "Memorisation: corrupted training examples predicted as their noisy label (%) after the last epoch", False),
)
_SETTING_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "max_examples")


def _number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def _noise_order(noise):
    spec = noise_lib.parse_noise_spec(noise)
    return noise_lib.NOISE_KINDS.index(spec.kind), spec.rate, spec.matrix_path or ""


def _settings_text(row):
    text = f"{row['epochs']} epochs, batch {row['batch_size']}, {row['optimizer']} lr {row['learning_rate']}"
    return text + (f", at most {row['max_examples']} examples" if row.get("max_examples") else "")


def _groups(rows):
    """Rows grouped by (dataset, architecture, training settings), in order of appearance."""
    groups = collections.defaultdict(list)
    for row in rows:
        groups[(row["dataset"], row["architecture"], tuple(row[f] for f in _SETTING_FIELDS))].append(row)
    return groups


def _cell_values(rows, metric):
    """{(method, noise): [values over seeds]}, with methods and noise settings in table order."""
    cells = collections.defaultdict(list)
    for row in rows:
        cells[(row["method"], row["noise"])].append(_number(row[metric]))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    noises = sorted({row["noise"] for row in rows}, key=_noise_order)
    return cells, methods, noises


def _table(rows, metric, higher_is_better):
    cells, methods, noises = _cell_values(rows, metric)
    runs_per_cell = max(len(values) for values in cells.values())
    text = {}
    means = {}
    for key, values in cells.items():
        values = np.array([v for v in values if not math.isnan(v)]) * 100
        if not len(values):
            text[key] = "–"
            continue
        means[key] = round(float(values.mean()), 1)
        text[key] = f"{means[key]:.1f}" + (f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else "")
        if len(cells[key]) < runs_per_cell:
            text[key] += f" (n={len(cells[key])})"
    for noise in noises:
        column = [means[(m, noise)] for m in methods if (m, noise) in means]
        if column:
            best = max(column) if higher_is_better else min(column)
            for method in methods:
                if means.get((method, noise)) == best:
                    text[(method, noise)] = f"**{text[(method, noise)]}**"
    lines = ["| method | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(text.get((method, noise), "") for noise in noises) + " |")
    return "\n".join(lines), runs_per_cell


def summarize(csv_path, metrics=SUMMARY_METRICS):
    """Markdown tables of results.csv: mean ± std over seeds, methods as rows and
    noise settings as columns, one section per dataset x architecture (x training
    settings), the best mean of each column in bold (ties all bold).

    `metrics` lists `(column, caption, higher_is_better)`; accuracies are shown in %.
    """
    rows = read_results(csv_path)
    if not rows:
        return "# Benchmark results\n\nNo runs yet.\n"
    groups = _groups(rows)
    several_settings = len({key[2] for key in groups}) > 1
    parts = [
        "# Benchmark results",
        f"{len(rows)} runs from `{os.path.basename(csv_path)}`. Accuracy is measured against the clean test "
        "labels; noise settings are the training-label noise. Forward / backward correction are given the "
        "true transition matrix of the noise (the known-T oracle setting; for instance-dependent noise, the "
        "matrix realised on the training split).",
    ]
    for (dataset, architecture, _), group in groups.items():
        title = f"## {dataset} / {architecture}"
        parts.append(f"{title} ({_settings_text(group[0])})" if several_settings else title)
        if not several_settings:
            parts.append(_settings_text(group[0]) + ".")
        for metric, caption, higher_is_better in metrics:
            table, runs_per_cell = _table(group, metric, higher_is_better)
            best = "highest" if higher_is_better else "lowest"
            seeds = f"mean ± std over {runs_per_cell} seeds" if runs_per_cell > 1 else "1 seed"
            parts.append(f"**{caption}**, {seeds}; {best} per column in bold.\n\n{table}")
    return "\n\n".join(parts) + "\n"


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def _method_colors(methods):
    import matplotlib

    palette = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {method: palette(index % palette.N) for index, method in enumerate(methods)}


_PANEL_SIZE = (4.6, 3.6)  # inches
_LEGEND_WIDTH = 2.6
_LEGEND_ENTRY_HEIGHT = 0.22


def _panels(count, legend_entries):
    """A pyplot-free figure with `count` panels (at most 3 a row) and room on the right
    for a legend of `legend_entries` lines."""
    from matplotlib.figure import Figure

    columns = min(count, 3)
    rows = -(-count // columns)
    height = max(_PANEL_SIZE[1] * rows, _LEGEND_ENTRY_HEIGHT * legend_entries + 0.8)
    figure = Figure(figsize=(_PANEL_SIZE[0] * columns + _LEGEND_WIDTH, height))
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for axis in axes[count:]:
        axis.set_visible(False)
    return figure, list(axes)


def _finish(figure, axes, title):
    """Title over the panels and one legend for all of them in the space `_panels` kept free."""
    panels_share = 1 - _LEGEND_WIDTH / figure.get_figwidth()
    figure.suptitle(title, x=panels_share / 2)
    figure.tight_layout(rect=(0, 0, panels_share, 1))
    # Every panel's entries, once each: a method may appear in some panels only.
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(panels_share, 0.5), fontsize="small")


def plot_accuracy_vs_noise(rows, path):
    """Final clean test accuracy against the symmetric noise rate ("none" at 0), a line per
    method (mean ± std over seeds), a panel per dataset x architecture. Returns the path,
    or None when no row has symmetric or no noise."""
    rows = [row for row in rows if row["noise_kind"] in ("none", "symmetric")]
    if not rows:
        return None
    groups = _groups(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    colours = _method_colors(methods)
    figure, axes = _panels(len(groups), len(methods))
    for axis, ((dataset, architecture, _), group) in zip(axes, groups.items()):
        by_method = collections.defaultdict(lambda: collections.defaultdict(list))
        for row in group:
            by_method[row["method"]][_number(row["noise_rate"])].append(_number(row["final_test_accuracy"]))
        for method in methods:
            if method not in by_method:
                continue
            rates = sorted(by_method[method])
            values = [np.array(by_method[method][rate]) for rate in rates]
            axis.errorbar(rates, [v.mean() for v in values], yerr=[v.std() for v in values], marker="o",
                          markersize=3, capsize=2, elinewidth=0.8, label=method, color=colours[method])
        axis.set_title(f"{dataset} / {architecture}")
        axis.set_xlabel("symmetric noise rate")
        axis.set_ylabel("clean test accuracy")
        axis.grid(alpha=0.3)
    _finish(figure, axes, "Clean test accuracy under symmetric label noise")
    return _io.save_figure(figure, path)


def plot_memorisation(rows, curves, path, title):
    """Per-epoch share of corrupted training examples predicted with their noisy label,
    a line per method (mean over seeds), a panel per noise setting with corrupted labels.
    Returns the path, or None when no run had corrupted labels."""
    rows = [row for row in rows if _number(row["num_corrupted"]) > 0 and row["run_id"] in curves]
    if not rows:
        return None
    methods = list(dict.fromkeys(row["method"] for row in rows))
    noises = sorted({row["noise"] for row in rows}, key=_noise_order)
    colours = _method_colors(methods)
    figure, axes = _panels(len(noises), len(methods))
    for axis, noise in zip(axes, noises):
        for method in methods:
            series = [curves[row["run_id"]]["corrupted_predicted_noisy"] for row in rows
                      if row["noise"] == noise and row["method"] == method]
            if not series:
                continue
            length = min(len(values) for values in series)
            mean = np.mean([values[:length] for values in series], axis=0)
            axis.plot(np.arange(1, length + 1), mean, label=method, color=colours[method])
        axis.set_title(noise)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel("corrupted examples predicted as noisy label")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    _finish(figure, axes, title)
    return _io.save_figure(figure, path)


def write_report(output_dir):
    """Writes results.md and the plots from results.csv and curves.jsonl alone.

    Returns {name: path} of the files written.
    """
    rows = read_results(os.path.join(output_dir, RESULTS_CSV))
    written = {}
    markdown_path = os.path.join(output_dir, RESULTS_MD)
    _io.write_text(markdown_path, summarize(os.path.join(output_dir, RESULTS_CSV)))
    written["results.md"] = markdown_path
    if not rows:
        return written
    accuracy_plot = plot_accuracy_vs_noise(rows, os.path.join(output_dir, ACCURACY_PLOT))
    if accuracy_plot:
        written["accuracy_vs_noise"] = accuracy_plot
    curves = read_curves(os.path.join(output_dir, CURVES))
    groups = _groups(rows)
    pairs = collections.Counter((dataset, architecture) for dataset, architecture, _ in groups)
    for (dataset, architecture, settings), group in groups.items():
        name = f"memorisation_{_slug(dataset)}_{_slug(architecture)}"
        if pairs[(dataset, architecture)] > 1:
            name += "_" + _slug("_".join(settings))
        title = f"Memorisation of corrupted labels: {dataset} / {architecture} ({_settings_text(group[0])})"
        path = plot_memorisation(group, curves, os.path.join(output_dir, name + ".png"), title)
        if path:
            written[name] = path
    return written
