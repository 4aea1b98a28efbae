"""Poly1CrossEntropy: cross-entropy with its leading polynomial term reweighted."""

import keras

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class Poly1CrossEntropy(_base.ClassificationLoss):
    """Poly-1 cross-entropy of Leng et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = -sum_c y_c log p_c + epsilon * (1 - p_y),   p_y = sum_c y_c p_c,

    cross-entropy written as sum_{k>=1} (1 - p_y)^k / k with the weight of
    its first term raised from 1 to 1 + epsilon. With soft label rows (label
    smoothing, say) p_y is the label-weighted probability, as in the
    paper's code.

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped).

    Args:
        epsilon: the extra weight of the (1 - p_y) term, >= -1. Defaults to
            `1.0`, the paper's choice for ImageNet. Below -1 the loss would
            grow again as p_y approaches 1.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = Poly1CrossEntropy(epsilon=1.0)
    >>> loss([0], [[0.5, 0.5]])  # log 2 + (1 - 0.5)
    1.19315

    Reference: Leng, Tan, Liu, Cubuk, Shi, Cheng & Anguelov, "PolyLoss: A
    Polynomial Expansion Perspective of Classification Loss Functions",
    ICLR 2022.
    """

    def __init__(self, epsilon=1.0, from_logits=False, reduction="sum_over_batch_size",
                 name="poly1_cross_entropy", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.epsilon = _base.checked_number(
            "Poly1CrossEntropy", "epsilon", epsilon, -1.0,
            hint="Below -1 the loss is no longer decreasing in the probability of the label.",
        )

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        true_prob = _base.true_class_probability(targets, probs)
        return _base.cross_entropy(targets, log_probs) + self.epsilon * (1.0 - true_prob)
