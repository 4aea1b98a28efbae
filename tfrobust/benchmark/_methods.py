"""The benchmark's method axis: what a method is, and the registry of named methods.

Adding a method
---------------
A method is a way of training on noisy labels. There are two kinds:

* A loss trained with `model.fit`: register a `LossMethod` with a factory
  `factory(num_classes, noise_context) -> keras.losses.Loss`:

      register_method(LossMethod("my_loss", lambda num_classes, noise: MyLoss()))

* A training method with its own update rule (sample re-weighting such as
  L2RW or Meta-Weight-Net, sample selection, ...): subclass `Method`, set
  `name`, and implement `trainer(model, data, run)`, which returns the
  compiled `keras.Model` to fit (a wrapper that overrides `train_step`), the
  training batches and the method's own schedule callbacks; the base class's
  `train` fits it, and `search.method_costs` can time its step. A method
  that runs its own loop implements `train(model, data, run, callbacks)`
  instead and calls `callbacks.on_epoch_end(epoch)` itself after every epoch.

Hooks a method may override besides (the defaults suit a plain loss):

* `split_data(data, run)`: the clean examples the method is given (a meta
  set) and the training split it trains on. It must be deterministic in
  `data` and `run.seed`: `run_one` calls it to record `clean_examples` in
  results.csv and to measure memorisation on what was trained on.
* `build_model(run, data)`: the model, when the method needs another head
  (LDAM-DRW's cosine classifier).
* `in_default_grid = False`: registered, but left out of `default_methods()`
  (the grids of the presets that train "every method" stay as they were).

The re-weighting, sample-selection and imbalance methods are registered in
`_reweighting_methods`.

Once registered, the name works everywhere: `--methods=` of
`python -m search.benchmark`, `BenchmarkConfig(methods=...)`, the default
method list (`default_methods()`) and the tables. Register from a module that
`tfrobust.benchmark` imports (or before building the config) so the name is
known when the grid is validated.
"""

import dataclasses

import keras
import numpy as np

from tfrobust import losses
from tfrobust import models
from tfrobust import noise as noise_lib
from tfrobust.optimizers import make_optimizer

# TaylorLoss methods are named by these prefixes rather than registered one by one:
# "taylor:<preset>" (a shipped preset) and "taylor_file:<path>" (a coefficient file).
TAYLOR_PRESET_PREFIX = "taylor:"
TAYLOR_FILE_PREFIX = "taylor_file:"


@dataclasses.dataclass(frozen=True)
class NoiseContext:
    """What a method may know about the noise of a run.

    Attributes:
        spec: the `NoiseSpec` the training labels were corrupted with.
        transition_matrix: T[i, j] = P(noisy label = j | clean label = i).
            For class-conditional noise (none, symmetric, pair-flip, matrix)
            it is the TRUE matrix the labels were drawn from
            (`NoiseSpec.transition_matrix`): methods that use it (forward /
            backward correction) run in the "known T" oracle setting.
            Instance-dependent noise has no class-level matrix, so it is the
            matrix realised on the training split.
        transition_matrix_source: "true" or "realised".
    """

    spec: noise_lib.NoiseSpec
    transition_matrix: np.ndarray
    transition_matrix_source: str

    @classmethod
    def from_dataset(cls, data):
        """The context of a `tfrobust.datasets.NoisyDataset`."""
        matrix = data.noise.transition_matrix(data.num_classes)
        if matrix is None:
            return cls(data.noise, np.asarray(data.noisy_labels.transition_matrix), "realised")
        return cls(data.noise, matrix, "true")


class Method:
    """One entry of the benchmark's method axis: a way to train on noisy labels.

    Subclasses set `name` and implement `train`. The benchmark builds the
    model (softmax output, seeded initial weights) and passes callbacks that
    record the per-epoch metrics. A method that needs clean data, such as a
    re-weighting method's meta set, carves it from `data.x_train` /
    `data.y_train_clean` with a generator seeded by `run.seed`, so that every
    seed sees the same meta set and every method the same training split.

    Attributes:
        name: the name used on the command line and in results.csv.
        uses_transition_matrix: whether the method reads
            `NoiseContext.transition_matrix` (recorded in results.csv).
        in_default_grid: whether `default_methods()` lists it.
        relative_step_cost: a training step's cost relative to a plain loss
            step, for the run-time estimate (`search.method_costs` measures it).
    """

    name = None
    uses_transition_matrix = False
    in_default_grid = True
    relative_step_cost = 1.0

    def build_model(self, run, data):
        """The untrained model of `run`: the architecture with softmax output, initial weights seeded by `run.seed`."""
        return models.build_model(run.architecture, data.input_shape, data.num_classes, seed=run.seed)

    def split_data(self, data, run):
        """`(clean_set, train_data)`: the clean examples the method is given, `(x, y)` or None, and the
        `NoisyDataset` whose training split it trains on. By default no clean data and all of `data`."""
        return None, data

    def trainer(self, model, data, run):
        """`(fit_model, train_batches, schedule_callbacks)`: the compiled model that `fit` trains, its batches
        and the method's own callbacks (put before the benchmark's). Implement this or `train`."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement train(model, data, run, callbacks) or trainer(model, data, run)."
        )

    def train(self, model, data, run, callbacks):
        """Trains `model` in place on `data.x_train` with the NOISY labels `data.y_train`.

        Args:
            model: an uncompiled Keras model from `build_model` (softmax output by default).
            data: the run's `tfrobust.datasets.NoisyDataset`.
            run: the `RunSpec` (epochs, batch_size, optimizer, learning_rate, seed).
            callbacks: Keras callbacks to call every epoch. A method with its own
                loop wraps them in `keras.callbacks.CallbackList(callbacks, model=model)`
                and calls `on_epoch_end(epoch)` after each epoch.

        Returns a `keras.callbacks.History` or None. By default fits what `trainer` returns.
        """
        fit_model, batches, schedule = self.trainer(model, data, run)
        return fit_model.fit(batches, epochs=run.epochs, shuffle=False, verbose=0, callbacks=[*schedule, *callbacks])

    def __repr__(self):
        return f"{type(self).__name__}({self.name!r})"


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

    def trainer(self, model, data, run):
        model.compile(
            optimizer=make_optimizer(run.optimizer, run.learning_rate),
            loss=self.loss(data),
            # Runs are seconds long: XLA compilation would cost more than it saves on CPU.
            jit_compile=False,
        )
        return model, data.train_dataset(run.batch_size, seed=run.seed), []


_REGISTRY = {}


def register_method(method, *, overwrite=False):
    """Adds `method` (a `Method` with a `name`) to the method axis; returns it.

    Raises:
        ValueError: for a name already registered (pass `overwrite=True` to
            replace it), a name without text, or one that starts with a
            TaylorLoss prefix (those names are resolved, not registered).
        TypeError: when `method` is not a `Method`.
    """
    if not isinstance(method, Method):
        raise TypeError(f"register_method takes a Method (or LossMethod) instance; got {method!r}.")
    name = method.name
    if not isinstance(name, str) or not name.strip() or "," in name:
        raise ValueError(f"A method needs a non-empty name without commas (it is a --methods value); got {name!r}.")
    if name.startswith((TAYLOR_PRESET_PREFIX, TAYLOR_FILE_PREFIX)) or name == "taylor":
        raise ValueError(f"Method names starting with 'taylor' name TaylorLoss presets and files; rename {name!r}.")
    if not overwrite and name in _REGISTRY:
        raise ValueError(f"A method named {name!r} is already registered; pass overwrite=True to replace it.")
    _REGISTRY[name] = method
    return method


def _fixed_loss(loss_class):
    """A loss factory for a loss that needs nothing from the data or the noise (its defaults)."""
    return lambda num_classes, noise: loss_class()


def _corrected_loss(loss_class):
    """A loss factory for a loss corrected with the run's transition matrix."""
    return lambda num_classes, noise: loss_class(noise.transition_matrix)


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


def method_names():
    """The registered method names, in registration order ("ce" first).

    TaylorLoss methods are not registered: they are named "taylor:<preset>"
    and "taylor_file:<path>" (see `get_method`).
    """
    return list(_REGISTRY)


def describe_method_names():
    """Every way to name a method, in one line (for help texts and error messages)."""
    return (
        f"{', '.join(method_names())}, taylor (the default TaylorLoss preset), taylor:<preset> with a preset of "
        f"{', '.join(sorted(losses.TaylorLoss.presets()))}, or taylor_file:<path to a coefficient file>"
    )


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
    raise ValueError(f"Unknown method {name!r}. Methods: {describe_method_names()}.")


def default_methods():
    """Every registered method in the default grid (`Method.in_default_grid`) and every TaylorLoss preset,
    "ce" first."""
    in_grid = [name for name in method_names() if _REGISTRY[name].in_default_grid]
    return in_grid + [TAYLOR_PRESET_PREFIX + preset for preset in losses.TaylorLoss.presets()]
