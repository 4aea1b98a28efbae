"""Noisy-label tasks and task suites that candidate losses are scored on.

A task is dataset x architecture x noise x training budget. Each generation
draws its tasks from a suite; every candidate of that generation sees the
same task instances (same data split, noise draw, initial weights and batch
order), so candidates are compared on equal terms (common random numbers).
"""

import dataclasses
import itertools
import json
import os

import numpy as np

from tfrobust import models
from tfrobust import noise as noise_lib


@dataclasses.dataclass(frozen=True)
class Task:
    """One kind of noisy-label training problem.

    Attributes:
        dataset: a `tfrobust.datasets` name ("digits", "mnist5k", or a
            prepared TFDS dataset).
        architecture: a `tfrobust.models.ARCHITECTURES` name.
        noise: a noise spec string, e.g. "symmetric:0.4" or "pairflip:0.2".
        steps: training steps (the truncated budget).
        batch_size: examples per step.
        optimizer: "adam", "sgd" (with momentum 0.9) or "rmsprop".
        learning_rate: the optimiser's learning rate.
    """

    dataset: str
    architecture: str
    noise: str
    steps: int = 200
    batch_size: int = 64
    optimizer: str = "adam"
    learning_rate: float = 1e-3

    def __post_init__(self):
        models.architecture(self.architecture)  # raises on unknown names
        noise_lib.parse_noise_spec(self.noise)
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"Task steps and batch_size must be positive; got {self}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}; choose one of {sorted(OPTIMIZERS)}.")

    @property
    def key(self):
        """A short readable identifier, used in logs and `evaluations.jsonl`."""
        return f"{self.dataset}/{self.architecture}/{self.noise}/{self.steps}x{self.batch_size}"


@dataclasses.dataclass(frozen=True)
class TaskInstance:
    """A task with the seed that fixes its data split, noise, initial weights and batch order."""

    task: Task
    seed: int

    @property
    def key(self):
        return f"{self.task.key}#{self.seed}"


OPTIMIZERS = ("adam", "sgd", "rmsprop")


@dataclasses.dataclass(frozen=True)
class TaskSuite:
    """A set of tasks and how many of them a generation draws."""

    name: str
    tasks: tuple
    tasks_per_generation: int
    fitness_split: str = "clean"

    def draw(self, generation, seed):
        """The task instances of `generation`: a seeded draw without replacement.

        Depends only on (seed, generation), so a resumed search draws exactly
        the tasks an uninterrupted one would.
        """
        rng = np.random.default_rng([seed, generation, 7])
        count = min(self.tasks_per_generation, len(self.tasks))
        chosen = rng.choice(len(self.tasks), size=count, replace=False)
        seeds = rng.integers(0, 2**31 - 1, size=count)
        return [TaskInstance(self.tasks[i], int(s)) for i, s in zip(sorted(chosen), seeds)]

    def fixed_instances(self, seed, repeats=1):
        """Every task of the suite, `repeats` times with distinct seeds (for final selection)."""
        rng = np.random.default_rng([seed, 99991])
        return [
            TaskInstance(task, int(rng.integers(0, 2**31 - 1))) for _ in range(repeats) for task in self.tasks
        ]

    def to_dict(self):
        return {
            "name": self.name,
            "tasks_per_generation": self.tasks_per_generation,
            "fitness_split": self.fitness_split,
            "tasks": [dataclasses.asdict(t) for t in self.tasks],
        }


def _grid(datasets, architectures, noises, **budget):
    return tuple(Task(d, a, n, **budget) for d, a, n in itertools.product(datasets, architectures, noises))


_SEARCH_NOISE = ["symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "pairflip:0.2", "pairflip:0.4"]

SUITES = {
    # The default run: about a minute on a 2-core CPU (the limit is 10).
    "default": TaskSuite(
        "default",
        _grid(["digits"], ["mlp", "linear"], ["symmetric:0.2", "symmetric:0.4", "symmetric:0.6", "pairflip:0.3"], steps=300),
        tasks_per_generation=3,
    ),
    # The suite behind the shipped preset: both bundled datasets, three
    # architectures, symmetric and pair-flip noise at several rates.
    "bundled": TaskSuite(
        "bundled",
        _grid(["digits", "mnist5k"], ["mlp", "linear"], _SEARCH_NOISE, steps=500)
        # The CNN on 28x28 inputs costs ~10x the MLP per step: digits only.
        + _grid(["digits"], ["cnn"], _SEARCH_NOISE, steps=500),
        tasks_per_generation=4,
    ),
    # Longer training, where memorising the noisy labels sets in (digits: ~40
    # epochs, MNIST-5k: ~27 epochs), and more tasks per generation for a less
    # noisy ranking: the budget the vectorised evaluator buys.
    "bundled_long": TaskSuite(
        "bundled_long",
        _grid(["digits"], ["mlp", "linear", "cnn"], _SEARCH_NOISE, steps=800)
        + _grid(["mnist5k"], ["mlp", "linear"], _SEARCH_NOISE, steps=1500),
        tasks_per_generation=6,
    ),
    # A tiny suite for tests and smoke runs.
    "tiny": TaskSuite("tiny", _grid(["digits"], ["linear"], ["symmetric:0.4"], steps=20, batch_size=32), 1),
}


def load_suite(name_or_path, fitness_split=None):
    """A named suite (see `SUITES`) or one read from a JSON file.

    The file holds `{"name": ..., "tasks_per_generation": N, "tasks": [{...Task fields...}]}`
    and optionally `"fitness_split": "clean" | "noisy"`.
    """
    if name_or_path in SUITES:
        suite = SUITES[name_or_path]
    elif os.path.isfile(str(name_or_path)):
        with open(name_or_path) as handle:
            try:
                spec = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"Task suite file {name_or_path!r} is not valid JSON ({error}).") from None
        try:
            tasks = tuple(Task(**t) for t in spec["tasks"])
            suite = TaskSuite(
                spec.get("name", os.path.basename(name_or_path)),
                tasks,
                int(spec.get("tasks_per_generation", len(tasks))),
                spec.get("fitness_split", "clean"),
            )
        except (KeyError, TypeError) as error:
            raise ValueError(
                f"Task suite file {name_or_path!r} must hold {{'tasks': [{{'dataset', 'architecture', "
                f"'noise', ...}}], 'tasks_per_generation': N}} ({error})."
            ) from None
    else:
        raise ValueError(
            f"Unknown task suite {name_or_path!r}: use one of {sorted(SUITES)} or the path of a JSON suite file."
        )
    if fitness_split is not None:
        if fitness_split not in ("clean", "noisy"):
            raise ValueError(f"fitness_split must be 'clean' or 'noisy'; got {fitness_split!r}.")
        suite = dataclasses.replace(suite, fitness_split=fitness_split)
    if not suite.tasks:
        raise ValueError(f"Task suite {suite.name!r} has no tasks.")
    return suite
