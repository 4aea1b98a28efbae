"""BiTemperedLogisticLoss: logistic loss with a tempered log and a tempered softmax."""

import keras
from keras import ops

from tfrobust.losses import _base


def log_t(u, t):
    """The tempered logarithm (u^(1 - t) - 1) / (1 - t); log u at t = 1."""
    if t == 1.0:
        return ops.log(u)
    return (ops.power(u, 1.0 - t) - 1.0) / (1.0 - t)


def exp_t(u, t):
    """The tempered exponential [1 + (1 - t) u]_+^(1 / (1 - t)); exp u at t = 1."""
    if t == 1.0:
        return ops.exp(u)
    return ops.power(ops.relu(1.0 + (1.0 - t) * u), 1.0 / (1.0 - t))


def tempered_softmax(activations, t, num_iters):
    """exp_t(a - lambda(a), t), with lambda(a) the normaliser that makes each row sum to 1.

    For t > 1, lambda is found by the fixed-point iteration of Amid et al.:
    with a0 = a - max(a), repeat a_t <- a0 * Z(a_t)^(1 - t), where
    Z(a) = sum_c exp_t(a_c, t), `num_iters` times; then
    lambda = max(a) - log_t(1 / Z(a_t), t). For t = 1 it is the softmax.
    Only t >= 1 is supported (t < 1 needs a binary search instead).
    """
    if t == 1.0:
        return ops.softmax(activations, axis=-1)
    shift = ops.max(activations, axis=-1, keepdims=True)
    start = activations - shift
    normalized = start
    for _ in range(num_iters):
        partition = ops.sum(exp_t(normalized, t), axis=-1, keepdims=True)
        normalized = start * ops.power(partition, 1.0 - t)
    partition = ops.sum(exp_t(normalized, t), axis=-1, keepdims=True)
    normalizer = shift - log_t(1.0 / partition, t)
    return exp_t(activations - normalizer, t)


@keras.saving.register_keras_serializable(package="tfrobust")
class BiTemperedLogisticLoss(_base.ClassificationLoss):
    """Bi-tempered logistic loss of Amid et al.

    With activations a (logits), the predicted probabilities are the
    tempered softmax p = exp_t2(a - lambda(a)), whose tail is heavier than
    the softmax's for t2 > 1, and the loss against the label row y is the
    Bregman divergence built on the tempered logarithm log_t1:

        L(y, p) = sum_c [ y_c (log_t1 y_c - log_t1 p_c)
                          - (y_c^(2 - t1) - p_c^(2 - t1)) / (2 - t1) ],
        log_t(u) = (u^(1 - t) - 1) / (1 - t),
        exp_t(u) = [1 + (1 - t) u]_+^(1 / (1 - t)).

    t1 < 1 makes the loss bounded (robust to mislabelled points far from the
    boundary); t2 > 1 makes it non-convex with a heavy tail (robust to
    points near it). At t1 = t2 = 1 it is the KL divergence KL(y || p),
    that is cross-entropy for one-hot labels. lambda(a) is found by
    `num_iters` fixed-point iterations (see `tempered_softmax`); gradients
    are taken through those iterations by automatic differentiation (the
    reference code uses the closed-form gradient of the exact normaliser).

    The loss is defined on activations, so it naturally takes logits. With
    `from_logits=False` it uses log(p) as the activations: logits up to a
    per-example shift, to which the tempered softmax is invariant. Inside a
    TensorFlow graph (`model.fit`) a softmax output is read from its logits,
    like every tfrobust loss, so the activations are exactly the model's
    logits (shifted); eagerly and on the other backends p is clipped into
    [EPSILON, 1] first, so probabilities below EPSILON are read as EPSILON.

    Clipping: the tempered probabilities are clipped into [EPSILON, 1]
    before log_t1, whose gradient u^(-t1) is infinite at u = 0 for t1 > 0
    (and log is -inf there at t1 = 1); the label row likewise before
    log_t1 y, so that its product with y = 0 is 0.

    Args:
        t1: the temperature of the logarithm in the loss, in [0, 1].
            Defaults to `0.8`.
        t2: the temperature of the tempered softmax, >= 1. Defaults to
            `1.2`.
        label_smoothing: in [0, 1): the labelled class gets 1 -
            `label_smoothing` and each other class `label_smoothing /
            (classes - 1)`, as in the reference code. Defaults to `0.0`.
        num_iters: number of fixed-point iterations of the normaliser when
            t2 > 1, an integer >= 1. Defaults to `5`.
        from_logits: whether `y_pred` holds logits rather than
            probabilities (see above).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = BiTemperedLogisticLoss(t1=1.0, t2=1.0, from_logits=True)
    >>> loss([0], [[2.0, 0.0]])  # cross-entropy: log(1 + e^-2)
    0.126928

    Reference: Amid, Warmuth, Anil & Koren, "Robust Bi-Tempered Logistic
    Loss Based on Bregman Divergences", NeurIPS 2019.
    """

    def __init__(
        self,
        t1=0.8,
        t2=1.2,
        label_smoothing=0.0,
        num_iters=5,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="bi_tempered_logistic_loss",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        owner = "BiTemperedLogisticLoss"
        self.t1 = _base.checked_number(owner, "t1", t1, 0.0, 1.0)
        self.t2 = _base.checked_number(
            owner, "t2", t2, 1.0, hint="(t2 < 1 needs a binary-search normaliser, not implemented.)"
        )
        self.label_smoothing = _base.checked_number(
            owner, "label_smoothing", label_smoothing, 0.0, 1.0, open_maximum=True
        )
        self.num_iters = _base.checked_integer(owner, "num_iters", num_iters, minimum=1)

    def compute(self, targets, y_pred):
        # The tempered softmax is invariant to a per-example shift of its activations, so
        # log p (a log-softmax of the logits, where the graph has them) serves as logits.
        activations = y_pred if self.from_logits else _base.log_probabilities(y_pred, from_logits=False)
        if self.label_smoothing > 0.0:
            num_classes = targets.shape[-1]
            spread = self.label_smoothing / (num_classes - 1)
            targets = (1.0 - self.label_smoothing - spread) * targets + spread
        probs = tempered_softmax(activations, self.t2, self.num_iters)
        t1 = self.t1
        divergence = targets * (log_t(_base.clipped(targets), t1) - log_t(_base.clipped(probs), t1))
        power_gap = (ops.power(targets, 2.0 - t1) - ops.power(probs, 2.0 - t1)) / (2.0 - t1)
        return ops.sum(divergence - power_gap, axis=-1)
