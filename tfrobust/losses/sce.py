"""SymmetricCrossEntropy: cross-entropy plus reverse cross-entropy."""

import keras

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class SymmetricCrossEntropy(_base.ClassificationLoss):
    """Symmetric cross-entropy of Wang et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = alpha * CE + beta * RCE,
        CE  = -sum_c y_c log p_c,
        RCE = -sum_c p_c log y_c,   with log 0 := A (`log_zero`),

    so that for a one-hot label RCE = -A (1 - p_y), a bounded, noise-tolerant
    term, while CE keeps the fast fit of the clean labels. The paper sets
    A = -4 and, on CIFAR-10, alpha = 0.1, beta = 1.

    Clipping: probabilities are clipped into [EPSILON, 1] before the log of
    CE (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped); labels are
    clipped into [exp(A), 1] before the log of RCE, which is what makes
    log 0 = A, and a soft-label entry below exp(A) counts as a zero.

    Args:
        alpha: weight of the cross-entropy term, >= 0. Defaults to `0.1`.
        beta: weight of the reverse cross-entropy term, >= 0. Defaults to
            `1.0`.
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

    >>> loss = SymmetricCrossEntropy(alpha=0.1, beta=1.0)
    >>> loss([0], [[0.8, 0.2]])  # 0.1 * -log(0.8) + 4 * 0.2
    0.82231

    Reference: Wang, Ma, Chen, Luo, Yi & Bailey, "Symmetric Cross Entropy
    for Robust Learning with Noisy Labels", ICCV 2019.
    """

    def __init__(
        self,
        alpha=0.1,
        beta=1.0,
        log_zero=-4.0,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="symmetric_cross_entropy",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.alpha = _base.checked_number("SymmetricCrossEntropy", "alpha", alpha, 0.0)
        self.beta = _base.checked_number("SymmetricCrossEntropy", "beta", beta, 0.0)
        self.log_zero = _base.checked_number(
            "SymmetricCrossEntropy", "log_zero", log_zero, maximum=0.0, open_maximum=True
        )

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        return self.alpha * _base.cross_entropy(targets, log_probs) + self.beta * _base.reverse_cross_entropy(
            targets, probs, self.log_zero
        )
