"""Training candidates on a task: per candidate (the reference) and as a population.

Both paths see exactly the same data: `prepare_task` fixes the noisy
training labels, the validation split, the initial weights and the sequence
of training batches from the task instance's seed.
"""

import dataclasses
import functools

import numpy as np

from tfrobust import datasets
from tfrobust import distribute
from tfrobust import models
from tfrobust.losses import TaylorLoss, taylor
from tfrobust.optimizers import make_optimizer
from tfrobust.search import population
from tfrobust.search.population_loss import PopulationTaylorLoss


@dataclasses.dataclass
class TaskData:
    """Arrays for one task instance: the batch stream, the scoring split, the initial weights."""

    instance: object
    x_stream: np.ndarray  # (steps * batch_size, ...) training inputs in batch order
    y_stream: np.ndarray  # their (noisy) labels
    x_score: np.ndarray  # the split fitness is measured on
    y_score: np.ndarray
    input_shape: tuple
    num_classes: int
    initial_weights: list

    def batches(self):
        """The training stream as a `tf.data.Dataset` of the task's batches, in order, for `model.fit`.

        Without autotuning and with a one-thread private pool: Keras's adapter
        for NumPy arrays prefetches with autotuned threads, which on a 2-core
        machine at times took a core from the training step (a population-16
        cnn fit then ran at its one-thread speed, 5.1 s instead of 2.2-2.7 s).
        """
        import tensorflow as tf

        options = tf.data.Options()
        options.autotune.enabled = False
        options.threading.private_threadpool_size = 1
        dataset = tf.data.Dataset.from_tensor_slices((self.x_stream, self.y_stream))
        return dataset.batch(self.instance.task.batch_size).with_options(options)


@functools.lru_cache(maxsize=32)
def _load(dataset, noise, seed, noisy_validation):
    return datasets.load(dataset, noise=noise, seed=seed, noisy_validation=noisy_validation)


def prepare_task(instance, fitness_split="clean"):
    """The arrays of `instance` (cached per process: every candidate reuses them)."""
    return _prepare(instance, fitness_split)


@functools.lru_cache(maxsize=16)
def _prepare(instance, fitness_split):
    task = instance.task
    data = _load(task.dataset, task.noise, instance.seed, fitness_split == "noisy")
    rng = np.random.default_rng([instance.seed, 1])
    needed = task.steps * task.batch_size
    epochs = -(-needed // len(data.y_train))
    order = np.concatenate([rng.permutation(len(data.y_train)) for _ in range(epochs)])[:needed]
    initial = models.build_model(task.architecture, data.input_shape, data.num_classes, seed=instance.seed % 100000)
    return TaskData(
        instance=instance,
        x_stream=data.x_train[order],
        y_stream=data.y_train[order],
        x_score=data.x_val,
        y_score=data.y_val,
        input_shape=tuple(data.input_shape),
        num_classes=int(data.num_classes),
        initial_weights=initial.get_weights(),
    )


def accuracy_of(probabilities, labels):
    """Accuracy per member: probabilities `(n, [population,] classes)`, labels `(n,)`."""
    predictions = np.argmax(probabilities, axis=-1)
    if predictions.ndim == 2:
        return (predictions == labels[:, None]).mean(axis=0)
    return np.float64((predictions == labels).mean())


def _finite_members(model, population_size):
    finite = np.ones(population_size, dtype=bool)
    for weights in model.get_weights():
        finite &= np.isfinite(weights.reshape(population_size, -1)).all(axis=1)
    return finite


def train_single(data, coefficients, *, strategy="off", jit_compile="auto"):
    """The reference path: one `model.fit` with `TaylorLoss(coefficients)`.

    Returns `(accuracy on the scoring split, finite)`.
    """
    task = data.instance.task
    with distribute.get_strategy(strategy).scope():
        model = models.build_model(task.architecture, data.input_shape, data.num_classes)
        model.set_weights(data.initial_weights)
        model.compile(
            optimizer=make_optimizer(task.optimizer, task.learning_rate),
            loss=TaylorLoss(coefficients),
            jit_compile=jit_compile,
        )
    model.fit(data.batches(), epochs=1, shuffle=False, verbose=0)
    finite = bool(_finite_members(model, 1)[0])
    probabilities = model.predict(data.x_score, batch_size=1024, verbose=0)
    return (float(accuracy_of(probabilities, data.y_score)) if finite else 0.0), finite


class PopulationTrainer:
    """A compiled population model for one task shape, reused across generations.

    Compiling once and resetting the weights, the optimiser state and the
    loss coefficients between generations avoids retracing and XLA
    compilation on every call.
    """

    def __init__(self, task, input_shape, num_classes, population_size, order, *, strategy="off", jit_compile=True,
                 conv_implementation="auto", pooling="fused"):
        self.task = task
        self.population_size = population_size
        if strategy == "mirrored":
            # XLA cannot compile a step whose variables live on several devices.
            jit_compile = False
        with distribute.get_strategy(strategy).scope():
            self.model = population.build_population_model(
                task.architecture, input_shape, num_classes, population_size, conv_implementation=conv_implementation,
                pooling=pooling,
            )
            self.loss = PopulationTaylorLoss(np.zeros((population_size, taylor.num_coefficients(order))), order=order)
            self.optimizer = make_optimizer(task.optimizer, task.learning_rate)
            self.model.compile(
                optimizer=self.optimizer,
                loss=self.loss,
                jit_compile=jit_compile,
                # Several steps per call cut Python dispatch; Keras 3.15's multi-step
                # loop fails under MirroredStrategy, which therefore runs one per call.
                steps_per_execution=min(task.steps, 100) if strategy == "off" else 1,
            )
            self.optimizer.build(self.model.trainable_variables)
        self._initial_optimizer_state = [np.array(v) for v in self.optimizer.variables]

    def train(self, data, coefficients, initial_weights=None):
        """Trains every member from `initial_weights` (default: the task's, shared by all).

        Returns `(accuracies, finite)`, arrays of shape `(population,)`.
        """
        coefficients = np.asarray(coefficients, dtype="float32")
        self.loss.assign(coefficients)
        if initial_weights is None:
            population.broadcast_member(self.model, data.initial_weights)
        else:
            self.model.set_weights(initial_weights)
        for variable, value in zip(self.optimizer.variables, self._initial_optimizer_state):
            variable.assign(value)
        self.model.fit(data.batches(), epochs=1, shuffle=False, verbose=0)
        finite = _finite_members(self.model, self.population_size)
        probabilities = self.model.predict(data.x_score, batch_size=1024, verbose=0)
        accuracies = np.where(finite, accuracy_of(probabilities, data.y_score), 0.0)
        return accuracies, finite


_TRAINERS = {}


def train_population(data, coefficients, *, strategy="off", jit_compile=True, conv_implementation="auto",
                     pooling="fused"):
    """Trains all rows of `coefficients` on `data` at once, reusing a cached compiled trainer.

    `conv_implementation` (see `population.PopulationConv2D`) is for benchmarks;
    `pooling` is one of `population.POOLINGS` ("reshape_max" repeats searches
    recorded before fused pooling exactly).
    """
    coefficients = np.asarray(coefficients, dtype="float32")
    population_size, length = coefficients.shape
    order = taylor.order_from_length(length)
    task = data.instance.task
    # Tasks that differ only in data or noise share one compiled graph.
    key = (task.architecture, task.optimizer, task.learning_rate, task.batch_size, min(task.steps, 100),
           data.input_shape, data.num_classes, population_size, order, strategy, jit_compile, conv_implementation,
           pooling)
    if key not in _TRAINERS:
        if len(_TRAINERS) >= 16:
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = PopulationTrainer(
            data.instance.task, data.input_shape, data.num_classes, population_size, order,
            strategy=strategy, jit_compile=jit_compile, conv_implementation=conv_implementation, pooling=pooling,
        )
    return _TRAINERS[key].train(data, coefficients)
