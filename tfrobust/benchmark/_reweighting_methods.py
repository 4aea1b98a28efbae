"""The re-weighting, sample-selection and class-imbalance methods on the benchmark's method axis.

Registered here, out of the default grid (`Method.in_default_grid = False`),
so the presets that train "every method" keep their grids; the
"reweighting" and "imbalance" presets name them.

Each method keeps the defaults of its official code, with epoch counts
scaled to the run's epochs (the fractions are constants below). Every method
trains with the run's optimizer and learning rate, like the losses it is
compared with, not with the optimizer of its paper.

  l2rw, mwn,       L2RW (Ren et al., ICML 2018), Meta-Weight-Net (Shu et
  warpi, advisor   al., NeurIPS 2019), WarPI (Sun et al., Pattern Recognition
                   2022) and the advisor network (Ricci et al., ICIAP 2021),
                   `tfrobust.reweighting` trainers with a clean meta set of
                   META_PER_CLASS examples per class (`meta_set`), seeded by
                   the run's seed. They are the only methods here that use
                   clean data; results.csv records how much
                   (`clean_examples`). The advisor splits the classifier at
                   the penultimate layer of the architecture (`advisor_split`):
                   the hidden Dense of mlp / mlp2, the Flatten before the
                   classifier of cnn, the flattened input of linear.
  forml            FORML (Yan et al., 2022) with the same meta set, its
                   classes as the groups (the benchmark's data carry no
                   group labels): the worst-class meta loss is the outer
                   objective. `search.fairness_benchmark` runs it on a task
                   with real groups.
  absgd            ABSGD for label noise (Qi et al.): lambda = -1, gamma 0.9,
                   abAlpha 0.5, uniform weights for the first 80 of 120 epochs
                   (the official noisy_label script for CE on CIFAR-10).
  absgd_imbalance  ABSGD for class imbalance: lambda = 5, gamma 0.7, abAlpha
                   0.5, uniform weights for the first 160 of 200 epochs (the
                   official CIFAR-10-LT script).
  bare             BARE (Patel & Sastry, WACV 2023), kappa = 1.
  mentornet_pd     MentorNet-PD (Jiang et al., ICML 2018): the predefined
                   curriculum with the released defaults (percentile 0.7,
                   decay 0.5, burn-in 19%, SPCL-linear from 90%), its
                   progress spread over the run's epochs.
  ldam_drw         LDAM-DRW (Cao et al., NeurIPS 2019): the LDAM loss over a
                   cosine classifier head (`build_model`), class counts from
                   the NOISY training labels (what a user has), max margin
                   0.5, s = 30, class-balanced weights from 160/200 of the run.

MentorNet-DD is not on the axis: it needs a mentor trained beforehand on a
clean subset of another run.
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust import imbalance as imbalance_lib
from tfrobust import layers
from tfrobust import losses
from tfrobust import reweighting
from tfrobust.benchmark._methods import LossMethod, Method, register_method
from tfrobust.losses.absgd import ABSGDSchedule
from tfrobust.losses.ldam import DeferredReweighting
from tfrobust.losses.mentornet import MentorNetSchedule
from tfrobust.optimizers import make_optimizer

# Clean meta-set examples per class for l2rw and mwn: 10 per class is the
# clean set of Ren et al.'s background-flip and class-imbalance experiments
# and of Shu et al.'s imbalance experiments.
META_PER_CLASS = 10

# ABSGD (github.com/qiqi-helloworld/ABSGD): noisy_label/train.py trains 120
# epochs and switches to finite lambda at `lamda_shots` 80; train.py (imbalance)
# 200 epochs, switching at 160.
ABSGD_NOISE = {"temperature": -1.0, "gamma": 0.9, "alpha": 0.5}
ABSGD_NOISE_START_FRACTION = 80 / 120
ABSGD_IMBALANCE = {"temperature": 5.0, "gamma": 0.7, "alpha": 0.5}
ABSGD_IMBALANCE_START_FRACTION = 160 / 200
# LDAM-DRW (github.com/kaidic/LDAM-DRW, cifar_train.py): DRW from epoch 160 of 200.
DRW_START_FRACTION = 160 / 200


def scaled_epoch(fraction, epochs):
    """The epoch (counted from 0, as `fit` counts) at `fraction` of a run of `epochs`: floor(fraction * epochs)."""
    return int(np.floor(fraction * epochs + 1e-9))


def meta_set(data, seed, per_class=META_PER_CLASS):
    """`((x_meta, y_meta), train_data)`: a balanced clean meta set of `per_class` examples per class.

    Balanced data: `data.meta_split(per_class, seed)`, carved from the
    training split and removed from it. Imbalanced data (`load(imbalance=...)`):
    drawn first from the training-pool examples the imbalance left out
    (`data.imbalance_left_out`, never trained on), as the papers draw a
    balanced clean set beside the long-tailed training set; a class with
    fewer left out (the head class keeps almost all of its examples) takes
    the rest from the training split, removed from it. Labels are the true
    ones; the draw depends on `seed` alone.
    """
    if data.imbalance_left_out is None:
        return data.meta_split(per_class=per_class, seed=seed)
    pool_x, pool_y = data.imbalance_left_out
    rng = np.random.default_rng([seed, 6])  # a stream apart from the split's and the noise's
    xs, ys, from_training = [], [], []
    for label in range(data.num_classes):
        pool = np.flatnonzero(pool_y == label)
        taken = rng.choice(pool, size=min(per_class, len(pool)), replace=False)
        xs.append(pool_x[taken])
        missing = per_class - len(taken)
        if missing:
            members = np.flatnonzero(data.y_train_clean == label)
            if len(members) <= missing:
                raise ValueError(
                    f"A meta set of {per_class} per class needs {missing} more examples of class {label} than the "
                    f"imbalance left out, but its training split has only {len(members)}. Use fewer per class."
                )
            chosen = rng.choice(members, size=missing, replace=False)
            xs.append(data.x_train[chosen])
            from_training.append(chosen)
        ys.append(np.full(per_class, label, dtype=np.int64))
    train_data = data.without_training_examples(np.concatenate(from_training)) if from_training else data
    return (np.concatenate(xs), np.concatenate(ys)), train_data


class MetaSetMethod(Method):
    """A `tfrobust.reweighting` trainer with a clean meta set (`meta_set`) carved by the run's seed."""

    in_default_grid = False

    def __init__(self, name, trainer_class, relative_step_cost, per_class=META_PER_CLASS, trainer_arguments=None):
        """`trainer_arguments(model)`, if given, returns the trainer's extra keyword arguments for `model`."""
        self.name = name
        self.trainer_class = trainer_class
        self.relative_step_cost = relative_step_cost
        self.per_class = per_class
        self.trainer_arguments = trainer_arguments

    def split_data(self, data, run):
        return meta_set(data, run.seed, self.per_class)

    def meta_data(self, meta, data):
        """What the trainer gets as `meta_data`: the clean `(x_meta, y_meta)`."""
        return meta

    def trainer(self, model, data, run):
        meta, train_data = self.split_data(data, run)
        extra = self.trainer_arguments(model) if self.trainer_arguments else {}
        trainer = self.trainer_class(model, meta_data=self.meta_data(meta, data), seed=run.seed, **extra)
        trainer.compile(optimizer=make_optimizer(run.optimizer, run.learning_rate), jit_compile=False)
        return trainer, train_data.train_dataset(run.batch_size, seed=run.seed), []


class ClassGroupedMetaSetMethod(MetaSetMethod):
    """FORML on the benchmark: the meta set's classes are its groups.

    The benchmark's data sets carry no group labels, so the fairness the
    outer objective asks for is across classes: with "worst_group", each
    step's weights serve the class whose clean meta loss is highest now
    (`search.fairness_benchmark` runs FORML on a task with real groups).
    """

    def meta_data(self, meta, data):
        x_meta, y_meta = meta
        return x_meta, y_meta, y_meta  # every class is in the meta set, so there are num_classes groups


def advisor_split(model):
    """The name of the layer whose output the classifier's last Dense reads: the advisor's split point.

    On the benchmark's architectures (`tfrobust.models`) that is the
    penultimate layer with an output (the softmax is an Activation after the
    last Dense): the hidden Dense(128) of mlp, Dense(128) of mlp2, the Flatten
    of cnn and of linear (whose advisor then re-weights input pixels).
    """
    dense = [index for index, layer in enumerate(model.layers) if isinstance(layer, keras.layers.Dense)]
    if not dense or dense[-1] == 0:
        raise ValueError(f"advisor_split: {model.name!r} has no layer before its last Dense to split at.")
    return model.layers[dense[-1] - 1].name


class ScheduledLossMethod(LossMethod):
    """A batch-weighting loss with its per-epoch schedule callback, out of the default grid.

    Args:
        name: the method's name.
        loss_factory: `factory(data) -> keras.losses.Loss`.
        schedule: `schedule(loss, run) -> list of callbacks`.
        drop_single_example_batches: skip a last batch of one example (BARE's
            batch statistics need two).
    """

    in_default_grid = False

    def __init__(self, name, loss_factory, schedule=None, drop_single_example_batches=False):
        # The factory takes the data set (LDAM needs its class counts), so `loss` is overridden.
        super().__init__(name, loss_factory=None)
        self._data_loss_factory = loss_factory
        self.schedule = schedule
        self.drop_single_example_batches = drop_single_example_batches

    def loss(self, data):
        return self._data_loss_factory(data)

    def trainer(self, model, data, run):
        model, batches, _ = super().trainer(model, data, run)
        size = len(data.y_train)
        if self.drop_single_example_batches and size % run.batch_size == 1:
            # The filter hides the number of batches; Keras needs it to run every epoch.
            batches = batches.filter(lambda x, y: tf.shape(y)[0] > 1).apply(
                tf.data.experimental.assert_cardinality(size // run.batch_size)
            )
        schedule = self.schedule(model.loss, run) if self.schedule else []
        return model, batches, schedule


class LDAMDRWMethod(ScheduledLossMethod):
    """LDAM-DRW: a cosine classifier head in place of the softmax output, the LDAM loss and DRW."""

    def build_model(self, run, data):
        # The run's architecture with its hidden layers (and their seeded initial
        # weights) unchanged; only the output layer becomes a cosine classifier.
        base = super().build_model(run, data)
        hidden = [layer for layer in base.layers[:-2]]  # drop the last Dense and the softmax
        head = layers.CosineClassifier(
            data.num_classes, kernel_initializer=keras.initializers.GlorotUniform(seed=run.seed + len(hidden)),
            name="cosine_classifier",
        )
        return keras.Sequential([keras.Input(data.input_shape), *hidden, head], name=f"{base.name}_cosine")


def _absgd(settings, start_fraction):
    return dict(
        loss_factory=lambda data: losses.ABSGD(**settings),
        schedule=lambda loss, run: [ABSGDSchedule(scaled_epoch(start_fraction, run.epochs), loss=loss)],
    )


def _ldam_loss(data):
    return losses.LDAMLoss(imbalance_lib.class_counts(data.y_train, data.num_classes))


# Step costs for the run-time estimate, rounded up from whole benchmark runs
# on digits / mlp (2-core CPU): the trainers' look-ahead (a clean
# forward/backward and a forward-mode pass, and for MW-Net a second clean
# forward at the virtual weights) on top of a plain step.
# WarPI and the advisor differentiate through the virtual step with nested
# tapes (a second-order backward): `python -m search.method_costs
# --methods=l2rw,mwn,warpi,advisor --repetitions=5 --steps=10` measured 1.99x
# and 3.76x a CE step (digits / mlp, batch 64, 2-core CPU), rounded up.
WARPI_STEP_COST = 2.5
ADVISOR_STEP_COST = 4.0
register_method(MetaSetMethod("l2rw", reweighting.L2RW, relative_step_cost=1.5))
register_method(MetaSetMethod("mwn", reweighting.MetaWeightNet, relative_step_cost=2.0))
# FORML's step is L2RW's with a different meta loss.
register_method(ClassGroupedMetaSetMethod("forml", reweighting.FORML, relative_step_cost=1.5))
register_method(MetaSetMethod("warpi", reweighting.WarPI, relative_step_cost=WARPI_STEP_COST))
register_method(MetaSetMethod("advisor", reweighting.AdvisorNetwork, relative_step_cost=ADVISOR_STEP_COST,
                              trainer_arguments=lambda model: {"split": advisor_split(model)}))
register_method(ScheduledLossMethod("absgd", **_absgd(ABSGD_NOISE, ABSGD_NOISE_START_FRACTION)))
register_method(ScheduledLossMethod("absgd_imbalance", **_absgd(ABSGD_IMBALANCE, ABSGD_IMBALANCE_START_FRACTION)))
register_method(ScheduledLossMethod("bare", lambda data: losses.BatchReweighting(), drop_single_example_batches=True))
register_method(ScheduledLossMethod(
    "mentornet_pd", lambda data: losses.MentorNetPD(), lambda loss, run: [MentorNetSchedule(run.epochs, loss=loss)]
))
register_method(LDAMDRWMethod(
    "ldam_drw", _ldam_loss,
    lambda loss, run: [DeferredReweighting(scaled_epoch(DRW_START_FRACTION, run.epochs), loss=loss)],
))
