"""Active-passive losses: normalized cross-entropy, reverse cross-entropy, NCE+RCE."""

import keras
from keras import ops

from tfrobust.losses import _base


def normalized_cross_entropy(targets, log_probs):
    """CE / sum_k (-log p_k), one value per example.

    The denominator is at least K log K > 0 for K >= 2 classes; it is
    kept above EPSILON all the same, so a single-class input cannot divide
    by zero.
    """
    normalizer = ops.maximum(-ops.sum(log_probs, axis=-1), _base.EPSILON)
    return _base.cross_entropy(targets, log_probs) / normalizer


@keras.saving.register_keras_serializable(package="tfrobust")
class NormalizedCrossEntropy(_base.ClassificationLoss):
    """Normalized cross-entropy (NCE), the active loss of Ma et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = (-sum_c y_c log p_c) / (-sum_k log p_k),

    cross-entropy divided by its sum over all K possible labels. It lies in
    [0, 1] and is robust to symmetric label noise, but on its own it
    underfits; Ma et al. pair it with a passive loss (see `NCEandRCE`).

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped), and the
    denominator is kept above EPSILON.

    Args:
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = NormalizedCrossEntropy()
    >>> loss([0], [[0.5, 0.25, 0.25]])  # log 2 / (log 2 + 2 log 4) = 1/5
    0.2

    Reference: Ma, Huang, Wang, Romano, Erfani & Bailey, "Normalized Loss
    Functions for Deep Learning with Noisy Labels", ICML 2020.
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="normalized_cross_entropy",
                 dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)

    def compute(self, targets, y_pred):
        return normalized_cross_entropy(targets, _base.log_probabilities(y_pred, self.from_logits))


@keras.saving.register_keras_serializable(package="tfrobust")
class ReverseCrossEntropy(_base.ClassificationLoss):
    """Reverse cross-entropy (RCE), the passive term of Wang et al. and Ma et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = -sum_c p_c log y_c,   with log 0 := A (`log_zero`),

    which for a one-hot label is -A (1 - p_y): a multiple of the mean
    absolute error, bounded and symmetric.

    Clipping: labels are clipped into [exp(A), 1] before the log, which is
    what makes log 0 = A; a soft-label entry below exp(A) counts as a zero.
    Predictions are not clipped.

    Args:
        log_zero: A, the value given to log 0; a negative number. Defaults
            to `-4.0`, the value of both papers.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = ReverseCrossEntropy()
    >>> loss([0], [[0.8, 0.2]])  # -(0.8 log 1 + 0.2 * (-4))
    0.8

    Reference: Wang, Ma, Chen, Luo, Yi & Bailey, "Symmetric Cross Entropy
    for Robust Learning with Noisy Labels", ICCV 2019.
    """

    def __init__(self, log_zero=-4.0, from_logits=False, reduction="sum_over_batch_size",
                 name="reverse_cross_entropy", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.log_zero = _base.checked_number(
            "ReverseCrossEntropy", "log_zero", log_zero, maximum=0.0, open_maximum=True
        )

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        return _base.reverse_cross_entropy(targets, probs, self.log_zero)


@keras.saving.register_keras_serializable(package="tfrobust")
class NCEandRCE(_base.ClassificationLoss):
    """NCE + RCE, the active-passive loss of Ma et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = alpha * NCE + beta * RCE,
        NCE = (-sum_c y_c log p_c) / (-sum_k log p_k),
        RCE = -sum_c p_c log y_c,   with log 0 := A (`log_zero`).

    Both terms are robust to label noise: the active NCE raises p_y, the
    passive RCE lowers the other probabilities, and together they avoid the
    underfitting of NCE alone.

    Clipping: probabilities are clipped into [EPSILON, 1] before the log of
    NCE (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped) and NCE's
    denominator is kept above EPSILON; labels are clipped into [exp(A), 1]
    before the log of RCE.

    Args:
        alpha: weight of NCE, >= 0. Defaults to `1.0`.
        beta: weight of RCE, >= 0. Defaults to `1.0`.
        log_zero: A, the value given to log 0 in RCE; a negative number.
            Defaults to `-4.0`.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = NCEandRCE(alpha=1.0, beta=1.0)
    >>> loss([0], [[0.5, 0.25, 0.25]])  # 1/5 + 4 * 0.5
    2.2

    Reference: Ma, Huang, Wang, Romano, Erfani & Bailey, "Normalized Loss
    Functions for Deep Learning with Noisy Labels", ICML 2020.
    """

    def __init__(
        self,
        alpha=1.0,
        beta=1.0,
        log_zero=-4.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="nce_and_rce",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.alpha = _base.checked_number("NCEandRCE", "alpha", alpha, 0.0)
        self.beta = _base.checked_number("NCEandRCE", "beta", beta, 0.0)
        self.log_zero = _base.checked_number("NCEandRCE", "log_zero", log_zero, maximum=0.0, open_maximum=True)

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        return self.alpha * normalized_cross_entropy(targets, log_probs) + self.beta * _base.reverse_cross_entropy(
            targets, probs, self.log_zero
        )
