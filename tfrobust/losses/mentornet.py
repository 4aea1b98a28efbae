"""MentorNet-PD: the predefined curriculum of MentorNet as a loss, and the schedule shared with MentorNet-DD."""

import keras
from keras import ops

from tfrobust.losses import _base
from tfrobust.losses import _weighting

# MentorNet measures training progress in percent, 0 .. 99 (its "epoch"
# feature; the released code maps the run onto 100 such epochs).
PROGRESS_STEPS = 100


class MentorNetLoss(_weighting.BatchWeightingLoss):
    """Base class of MentorNet-PD and -DD: the moving loss percentile and the progress.

    Each batch first updates the moving percentile

        l_pt <- d l_pt + (1 - d) percentile_p(batch losses),   l_pt starts at 0,

    then weighs each example from its loss l_i, its gap l_i - l_pt to the
    updated l_pt, and the training progress (percent of the run, set each
    epoch by `MentorNetSchedule`). `call()` returns v_i l_i, so the mean
    reduction gives the student loss (1/B) sum_i v_i l_i of Jiang et al.;
    the weights v_i carry no gradient. The percentile interpolates linearly
    between the batch's losses (the released code uses TF's nearest-rank
    percentile; they differ by at most the gap between two neighbouring losses).

    Not implemented from the released code: "example dropout" (randomly
    zeroing a share of the weights) and the weight-decay term scaled by
    sum(v)/B; use the optimizer's weight decay.
    """

    def __init__(self, percentile, moving_average_decay, burn_in_fraction, base_loss, from_logits, reduction,
                 name, dtype):
        super().__init__(base_loss=base_loss, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        owner = type(self).__name__
        self.percentile = _base.checked_number(owner, "percentile", percentile, 0.0, 1.0)
        self.moving_average_decay = _base.checked_number(
            owner, "moving_average_decay", moving_average_decay, 0.0, 1.0, open_maximum=True
        )
        self.burn_in_fraction = _base.checked_number(owner, "burn_in_fraction", burn_in_fraction, 0.0, 1.0)
        self.moving_percentile = self.state_variable("moving_percentile", 0.0)
        self.progress = self.state_variable("progress", 0.0)

    def weigh(self, per_example, targets, y_pred):
        losses = ops.stop_gradient(per_example)
        batch_percentile = ops.quantile(losses, self.percentile)
        decay = self.moving_average_decay
        updated = decay * ops.cast(self.moving_percentile, losses.dtype) + (1.0 - decay) * batch_percentile
        moving_percentile = ops.cast(self.assign_unless_frozen(self.moving_percentile, ops.cast(updated, "float32")),
                                     losses.dtype)
        progress = ops.cast(self.progress, losses.dtype)
        weights = self.example_weights(losses, losses - moving_percentile, progress, targets)
        # Burn-in: every example has weight 1 while progress < burn-in (in percent).
        burn_in = progress < PROGRESS_STEPS * self.burn_in_fraction
        weights = ops.where(burn_in, ops.ones_like(weights), weights)
        return ops.stop_gradient(weights) * per_example

    def example_weights(self, losses, loss_gaps, progress, targets):
        raise NotImplementedError


@keras.saving.register_keras_serializable(package="tfrobust")
class MentorNetPD(MentorNetLoss):
    """MentorNet-PD (Jiang et al.): the predefined curriculum, in closed form.

    With l_i an example's loss, l_pt the moving percentile of the batch
    losses (see below) and t the training progress in percent (0 .. 99),

        v_i = 1                                   if t < 100 * burn_in_fraction,
        v_i = 1[l_i - l_pt <= 0]                  if t < 100 * spcl_fraction (self-paced),
        v_i = clip(1 - (l_i - l_pt) / gamma, 0, 1) otherwise (SPCL-linear),

    and the loss is (1/B) sum_i v_i l_i. These are the stages of
    `vstar_mentornet_pd` in the released code (t <= 18, i.e. t < 19;
    t < 90; gamma = 1),
    which trains a MentorNet to imitate them; here the curriculum is used
    directly, without the network. `MentorNetSchedule(epochs)` maps epochs
    to t; without it t stays 0 (burn-in: plain mean loss).

    The moving percentile: l_pt <- d l_pt + (1 - d) percentile_p(losses),
    updated by every training batch before it is weighted, starting at 0.

    Args:
        percentile: p in [0, 1]. Defaults to `0.7` (the released commands
            use 0.7 or 0.75; 0.5 at 80% noise).
        moving_average_decay: d in [0, 1). Defaults to `0.5` (mentormix's
            MentorNet code).
        burn_in_fraction: share of the run with all weights 1. Defaults to
            `0.19` (progress 0 .. 18 percent).
        spcl_fraction: share of the run after which SPCL-linear replaces
            self-paced weights. Defaults to `0.9`.
        spcl_gamma: gamma > 0 of SPCL-linear. Defaults to `1.0`.
        base_loss: a Keras loss returning one value per example; `None` is
            cross-entropy.
        from_logits: for the default cross-entropy only.
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> model.compile(optimizer="sgd", loss=MentorNetPD())
    >>> model.fit(x, y_noisy, epochs=100, callbacks=[MentorNetSchedule(epochs=100)])

    Reference: Jiang, Zhou, Leung, Li & Fei-Fei, "MentorNet: Learning
    Data-Driven Curriculum for Very Deep Neural Networks on Corrupted
    Labels", ICML 2018; code github.com/google/mentornet.
    """

    def __init__(
        self,
        percentile=0.7,
        moving_average_decay=0.5,
        burn_in_fraction=0.19,
        spcl_fraction=0.9,
        spcl_gamma=1.0,
        base_loss=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="mentornet_pd",
        dtype=None,
    ):
        super().__init__(percentile, moving_average_decay, burn_in_fraction, base_loss, from_logits, reduction,
                         name, dtype)
        self.spcl_fraction = _base.checked_number("MentorNetPD", "spcl_fraction", spcl_fraction, 0.0, 1.0)
        self.spcl_gamma = _base.checked_number("MentorNetPD", "spcl_gamma", spcl_gamma, 0.0, open_minimum=True)

    def example_weights(self, losses, loss_gaps, progress, targets):
        self_paced = ops.cast(loss_gaps <= 0, losses.dtype)
        spcl_linear = ops.clip(1.0 - loss_gaps / self.spcl_gamma, 0.0, 1.0)
        return ops.where(progress < PROGRESS_STEPS * self.spcl_fraction, self_paced, spcl_linear)


class MentorNetSchedule(_weighting.LossScheduleCallback):
    """Tells a MentorNet loss (PD or DD) how far training has come.

    At the start of each epoch it sets the progress t = floor(100 epoch /
    epochs), capped at 99: the released code's 0 .. 99 "epoch" feature,
    scaled to this run's length. Also freezes the moving percentile during
    evaluation.

    Args:
        epochs: the number of epochs of the run (as passed to `fit`).
        loss: the MentorNet loss; `None` takes `model.loss`.
    """

    loss_class = MentorNetLoss

    def __init__(self, epochs, loss=None):
        super().__init__(loss)
        self.epochs = _base.checked_integer("MentorNetSchedule", "epochs", epochs, 1)

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.progress.assign(float(progress_percent(epoch, self.epochs)))


def progress_percent(epoch, epochs):
    """MentorNet's progress feature: floor(100 epoch / epochs), capped at 99."""
    return min(PROGRESS_STEPS - 1, (PROGRESS_STEPS * int(epoch)) // int(epochs))
