"""Data-selection methods on the benchmark's method axis: training on a re-chosen weighted subset.

  adacore  AdaCore (Pooladzandi et al., ICML 2022): a coreset of
           ADACORE_FRACTION of the training split, re-selected every epoch
           (`tfrobust.selection.AdaCore`, its defaults), trained with
           cross-entropy on the NOISY labels (what a user has) and the
           coreset's cluster-size weights.

Registered out of the default grid: AdaCore is a data-efficiency method (its
claim is speed at equal accuracy; `python -m search.adacore_speed` measures
that), not a noisy-label method, so the presets that train "every method"
keep their grids. With the benchmark's fixed epoch count it trains
ADACORE_FRACTION of the steps per epoch of the other methods.
"""

import keras

from tfrobust import selection
from tfrobust.benchmark._methods import Method, register_method
from tfrobust.optimizers import make_optimizer

# The middle of the fractions the paper trains on (10% to 50% of the data).
ADACORE_FRACTION = 0.3


class CoresetMethod(Method):
    """Cross-entropy `fit` on a `tfrobust.selection.SubsetSchedule` of the training split, seeded by the run."""

    in_default_grid = False

    def __init__(self, name, schedule_class, fraction, relative_step_cost, **schedule_arguments):
        self.name = name
        self.schedule_class = schedule_class
        self.fraction = fraction
        self.relative_step_cost = relative_step_cost
        self.schedule_arguments = schedule_arguments

    def schedule(self, data, run):
        """The subset schedule (a callback) over `data`'s training split."""
        return self.schedule_class(data.x_train, data.y_train, fraction=self.fraction, seed=run.seed,
                                   **self.schedule_arguments)

    def trainer(self, model, data, run):
        schedule = self.schedule(data, run)
        model.compile(optimizer=make_optimizer(run.optimizer, run.learning_rate),
                      loss=keras.losses.SparseCategoricalCrossentropy(name="ce"), jit_compile=False)
        return model, schedule.dataset(run.batch_size, seed=run.seed), [schedule]


# A step costs what a CE step costs; per epoch AdaCore runs ADACORE_FRACTION of the steps plus a forward
# pass over the whole split (about a third of a step per example) and the selection: about 0.3 + 0.35 of
# a full epoch, and the estimate counts the run's full-data steps.
register_method(CoresetMethod("adacore", selection.AdaCore, ADACORE_FRACTION, relative_step_cost=0.7, every=1))
