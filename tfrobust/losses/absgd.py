"""ABSGD: attentional-biased SGD as a loss (exp(loss / lambda) weights) and its two-stage switch."""

import math

import keras
from keras import ops

from tfrobust.losses import _base
from tfrobust.losses import _weighting


@keras.saving.register_keras_serializable(package="tfrobust")
class ABSGD(_weighting.BatchWeightingLoss):
    """Attentional-biased SGD (Qi et al.): examples weighted by exp(loss / lambda).

    For a batch of B per-example losses l_i (of `base_loss`), with
    e_i = exp(l_i / lambda),

        u_t = (1 - gamma) u_{t-1} + gamma * alpha * mean_B(e),    u_0 = 0,
        p_i = stop_gradient(e_i / (u_t B)),
        loss = sum_i p_i l_i.

    `call()` returns B p_i l_i, so the default mean reduction gives
    sum_i p_i l_i. This is the update of the authors' code (`ROBSGD` in
    `mylosses.py`, and `ABLoss` of the `absgd` package): the moving average
    starts at 0 and includes the factor `alpha` (their `abAlpha`; the
    paper's Algorithm 1 has alpha = 1). With u_0 = 0 the weights of the first
    weighted step sum to 1 / (gamma alpha), after which their sum settles
    near 1 / alpha.

    lambda > 0 solves the min-max (KL-regularised DRO) problem and
    up-weights high-loss examples: use it for class imbalance. lambda < 0
    solves the min-min problem and down-weights them: use it for label noise
    (the authors use -5 on Clothing1M). lambda = 0 is not allowed.

    Two stages: until the epoch set by `ABSGDSchedule`, every weight is 1/B
    (plain mean) and u is not updated, as the authors' code does while
    lambda >= 200; from that epoch on the weights above apply. Without the
    callback the loss weights from the first step.

    Numerics: the moving average is kept as log u, updated with log-sum-exp,
    and p_i = exp(l_i / lambda - log u_t - log B). Since u_t >= gamma alpha
    e_i / B, every p_i <= 1 / (gamma alpha): nothing overflows however large
    l_i / lambda is.

    State: log u and the stage switch are non-trainable variables of the
    loss, updated inside `model.fit`'s compiled step. The `ABSGDSchedule`
    callback freezes them while the model is evaluated; without it,
    `evaluate` updates u too. They are not saved with the model: after
    loading, u restarts at 0.

    Args:
        temperature: lambda, non-zero. Defaults to `0.5` (the `absgd`
            package); the authors' CIFAR-10-LT script uses 5, their noisy
            Clothing1M script -5.
        gamma: the moving-average rate in (0, 1]. Defaults to `0.9` (the
            `absgd` package; the paper's scripts use 0.1 to 0.7).
        alpha: the factor `abAlpha` of the authors' code, > 0. Defaults to
            `1.0` (the `absgd` package; their scripts use 0.3 or 0.5).
        base_loss: a Keras loss returning one value per example; `None` is
            cross-entropy.
        from_logits: for the default cross-entropy only.
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> model.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9),
    ...               loss=ABSGD(temperature=5.0, gamma=0.7, alpha=0.5))
    >>> model.fit(x, y, epochs=200, callbacks=[ABSGDSchedule(start_epoch=160)])

    Reference: Qi, Xu, Jin, Yin & Yang, "Attentional-Biased Stochastic
    Gradient Descent", TMLR 2023 (arXiv 2012.06951); code
    github.com/qiqi-helloworld/ABSGD.
    """

    def __init__(
        self,
        temperature=0.5,
        gamma=0.9,
        alpha=1.0,
        base_loss=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="absgd",
        dtype=None,
    ):
        super().__init__(base_loss=base_loss, from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.temperature = _base.checked_number("ABSGD", "temperature", temperature)
        if self.temperature == 0:
            raise ValueError(
                "ABSGD argument `temperature` (lambda) must be non-zero: lambda > 0 up-weights hard examples "
                "(class imbalance), lambda < 0 down-weights them (label noise); got 0."
            )
        self.gamma = _base.checked_number("ABSGD", "gamma", gamma, 0.0, 1.0, open_minimum=True)
        self.alpha = _base.checked_number("ABSGD", "alpha", alpha, 0.0, open_minimum=True)
        self.log_moving_average = self.state_variable("log_moving_average", -math.inf)
        # 0: first stage (uniform weights), 1: attentional weights.
        self.weighting = self.state_variable("weighting", 1.0)

    def weigh(self, per_example, targets, y_pred):
        scaled = ops.stop_gradient(per_example) / self.temperature
        batch_size = ops.cast(ops.shape(per_example)[0], per_example.dtype)
        log_batch_mean = ops.logsumexp(scaled) - ops.log(batch_size)
        log_previous = ops.cast(self.log_moving_average, per_example.dtype)
        # log((1 - gamma) u + gamma alpha mean(e)); log(0) = -inf drops a term.
        log_decay = math.log(1.0 - self.gamma) if self.gamma < 1.0 else -math.inf
        log_updated = ops.logaddexp(log_previous + log_decay, log_batch_mean + math.log(self.gamma * self.alpha))
        weighting = ops.cast(self.weighting, per_example.dtype)
        # The first stage leaves u alone (the authors' code skips the update while lambda >= 200).
        log_updated = ops.where(weighting > 0.5, log_updated, log_previous)
        log_in_effect = self.assign_unless_frozen(self.log_moving_average, ops.cast(log_updated, "float32"))
        # B p_i = e_i / u_t, or 1 (p_i = 1/B) in the first stage.
        scaled_weights = ops.exp(scaled - ops.cast(log_in_effect, per_example.dtype))
        scaled_weights = ops.where(weighting > 0.5, scaled_weights, ops.ones_like(scaled_weights))
        return ops.stop_gradient(scaled_weights) * per_example


class ABSGDSchedule(_weighting.LossScheduleCallback):
    """The two-stage schedule of ABSGD: uniform weights before `start_epoch`, ABSGD weights from it.

    The authors train with plain (class-balanced) SGD first and switch to
    finite lambda at epoch 160 of 200 for imbalanced CIFAR (`lamda_shots`),
    80 in their noisy-label script. Epochs count from 0, as `fit` counts
    them. Also freezes the loss's moving average during evaluation.

    Args:
        start_epoch: the first epoch with ABSGD weights (>= 0).
        loss: the `ABSGD` loss; `None` takes `model.loss`.
    """

    loss_class = ABSGD

    def __init__(self, start_epoch, loss=None):
        super().__init__(loss)
        self.start_epoch = _base.checked_integer("ABSGDSchedule", "start_epoch", start_epoch, 0)

    def on_epoch_begin(self, epoch, logs=None):
        self.loss.weighting.assign(1.0 if epoch >= self.start_epoch else 0.0)
