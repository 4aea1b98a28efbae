"""How a candidate's accuracies on a generation's task instances become its fitness.

`SearchConfig.fitness_aggregation` (flag `--fitness_aggregation`) is a spec:

    [REFERENCE/]STATISTIC

STATISTIC, over the generation's task instances:
    mean              the mean (the default, and the search's original fitness)
    quantile:Q        the lower Q-quantile, 0 < Q < 1 (numpy's linear
                      interpolation), e.g. quantile:0.25: a loss scores by
                      its bad tasks, so it cannot win by excelling on easy ones
    mean_minus_std:K  the mean minus K (>= 0) standard deviations: a
                      penalty for uneven results. The spread is over the
                      drawn task instances, each with its own seed, so it
                      mixes seed variance with task-to-task variance.

REFERENCE (optional) turns each accuracy into a score relative to
a reference loss trained on the same task instance (same data, noise draw,
initial weights, batch order and optimiser) before the statistic:
    ce_gain     accuracy minus cross-entropy's accuracy
    ce_ratio    accuracy divided by cross-entropy's accuracy (floored at
                `RATIO_FLOOR`, so a diverged reference cannot divide by zero)
    start_gain  accuracy minus the accuracy of the search's starting loss
                (`search.evolve --init`; `search.score_losses`: the first
                loss). With a lower quantile, a candidate scores by the task
                where it falls furthest behind the start: the search's own
                version of the guarded selection rule, so that it cannot
                trade one noise setting's robustness for gains on another.

Cost of a reference: one extra `model.fit` with `keras.losses` cross-entropy
per task instance and generation (a per-candidate run, trained once and
shared by the whole population). A truncated Taylor expansion of
cross-entropy would be free as one more population member, but it is a
bounded loss, itself robust to noise (Feng et al., IJCAI 2020), so it is
no stand-in for the cross-entropy that memorises.

The start costs one more population member (free in a vectorized job).
Within one generation every candidate sees the same instances, so
`ce_gain/mean` and `start_gain/mean` rank candidates exactly as `mean` does (CMA-ES uses ranks
only); the reference changes the ranking through `ce_ratio` (hard tasks,
where cross-entropy does badly, weigh more) or a non-linear statistic
(`ce_gain/quantile:0.25`: the tasks where a loss helps least over
cross-entropy). Its numbers are also comparable across generations, whose
task draws differ in difficulty.
"""

import dataclasses

import numpy as np

STATISTICS = ("mean", "quantile", "mean_minus_std")
REFERENCES = ("ce_gain", "ce_ratio", "start_gain")
RATIO_FLOOR = 0.01
_GRAMMAR = ("[REFERENCE/]STATISTIC with STATISTIC one of 'mean', 'quantile:Q' (0 < Q < 1) or "
            "'mean_minus_std:K' (K >= 0) and the optional REFERENCE 'ce_gain', 'ce_ratio' or 'start_gain', "
            "e.g. 'mean', 'quantile:0.25', 'ce_gain/quantile:0.25'")


@dataclasses.dataclass(frozen=True)
class Aggregation:
    """A parsed `fitness_aggregation` spec (see the module docstring)."""

    statistic: str = "mean"
    parameter: float | None = None
    reference: str = ""

    @property
    def needs_reference(self):
        """Whether cross-entropy must be trained on every task instance."""
        return self.reference in ("ce_gain", "ce_ratio")

    @property
    def needs_start(self):
        """Whether the search's starting loss must be trained on every task instance."""
        return self.reference == "start_gain"

    def describe(self):
        """One line for provenance records and logs."""
        score = {
            "": "accuracy",
            "ce_gain": "accuracy minus cross-entropy's accuracy on the same task instance",
            "ce_ratio": f"accuracy / cross-entropy's accuracy on the same task instance (floored at {RATIO_FLOOR})",
            "start_gain": "accuracy minus the starting loss's accuracy on the same task instance",
        }[self.reference]
        statistic = {
            "mean": "mean",
            "quantile": f"{self.parameter}-quantile",
            "mean_minus_std": f"mean minus {self.parameter} x standard deviation",
        }[self.statistic]
        return f"{statistic} over task instances of the {score}"

    def scores(self, accuracies, reference=None):
        """Per-task scores: `accuracies` `(..., tasks)`, `reference` `(tasks,)` (the reference loss's accuracies:
        cross-entropy's, or the start's for start_gain)."""
        accuracies = np.asarray(accuracies, dtype=float)
        if not self.reference:
            return accuracies
        if reference is None:
            what = "the starting loss's" if self.needs_start else "cross-entropy's"
            raise ValueError(f"Fitness aggregation {self.reference!r} needs {what} accuracies; got None.")
        reference = np.asarray(reference, dtype=float)
        if reference.shape != accuracies.shape[-1:]:
            raise ValueError(f"Reference accuracies of shape {reference.shape} do not match {accuracies.shape[-1]} tasks.")
        if self.reference in ("ce_gain", "start_gain"):
            return accuracies - reference
        return accuracies / np.maximum(reference, RATIO_FLOOR)

    def __call__(self, accuracies, reference=None):
        """Fitness of each row of `accuracies` `(members, tasks)` (or of one `(tasks,)` vector)."""
        scores = self.scores(accuracies, reference)
        if self.statistic == "mean":
            return scores.mean(axis=-1)
        if self.statistic == "quantile":
            return np.quantile(scores, self.parameter, axis=-1)
        return scores.mean(axis=-1) - self.parameter * scores.std(axis=-1)


def parse_aggregation(spec):
    """The `Aggregation` of `spec`; a ValueError names the bad part and the grammar."""
    if isinstance(spec, Aggregation):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"--fitness_aggregation must be a string of the form {_GRAMMAR}; got {spec!r}.")
    reference, _, statistic = spec.strip().rpartition("/")
    if reference and reference not in REFERENCES:
        raise ValueError(f"--fitness_aggregation {spec!r}: unknown reference {reference!r}; the form is {_GRAMMAR}.")
    name, colon, argument = statistic.partition(":")
    if name not in STATISTICS:
        raise ValueError(f"--fitness_aggregation {spec!r}: unknown statistic {name!r}; the form is {_GRAMMAR}.")
    if name == "mean":
        if colon:
            raise ValueError(f"--fitness_aggregation {spec!r}: 'mean' takes no argument; the form is {_GRAMMAR}.")
        return Aggregation("mean", None, reference)
    try:
        value = float(argument)
    except ValueError:
        raise ValueError(
            f"--fitness_aggregation {spec!r}: {name!r} needs a number after ':'; the form is {_GRAMMAR}."
        ) from None
    valid = 0 < value < 1 if name == "quantile" else np.isfinite(value) and value >= 0
    if not valid:
        bound = "between 0 and 1 (exclusive)" if name == "quantile" else "a finite number of at least 0"
        raise ValueError(f"--fitness_aggregation {spec!r}: the argument of {name!r} must be {bound}; got {argument!r}.")
    return Aggregation(name, value, reference)


def train_reference(data, *, strategy="off"):
    """Cross-entropy on the task instance of `data` (a `training.TaskData`), the fitness reference.

    Trains exactly as `training.train_single` trains a candidate (same
    initial weights, batch stream, optimiser and scoring split), with
    `keras.losses.SparseCategoricalCrossentropy` in place of the TaylorLoss.
    Returns `(accuracy on the scoring split, finite)`.
    """
    import keras

    from tfrobust import distribute
    from tfrobust import models
    from tfrobust.optimizers import make_optimizer
    from tfrobust.search import training

    task = data.instance.task
    with distribute.get_strategy(strategy).scope():
        model = models.build_model(task.architecture, data.input_shape, data.num_classes)
        model.set_weights(data.initial_weights)
        model.compile(optimizer=make_optimizer(task.optimizer, task.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy())
    model.fit(data.batches(), epochs=1, shuffle=False, verbose=0)
    finite = all(np.isfinite(weights).all() for weights in model.get_weights())
    probabilities = model.predict(data.x_score, batch_size=1024, verbose=0)
    return (float(training.accuracy_of(probabilities, data.y_score)) if finite else 0.0), finite
