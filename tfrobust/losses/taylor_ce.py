"""TaylorCrossEntropy: cross-entropy's Taylor series about p_y = 1, truncated."""

import keras
from keras import ops

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class TaylorCrossEntropy(_base.ClassificationLoss):
    """Taylor cross-entropy of Feng et al.

    For one example with label y and predicted probabilities p, the loss is

        L(y, p) = sum_{k=1}^{order} (1 - p_y)^k / k,

    the first `order` terms of -log p_y = sum_{k>=1} (1 - p_y)^k / k. At
    order 1 it is 1 - p_y, half the mean absolute error; as the order grows
    it approaches cross-entropy. A low order keeps the loss bounded (by
    sum_k 1/k) and so robust to label noise; the paper uses order 2 on
    CIFAR. With soft label rows, p_y is the label-weighted probability
    sum_c y_c p_c.

    The loss is a polynomial in p_y in [0, 1], so nothing is clipped.

    Args:
        order: the number of terms kept, an integer >= 1. Defaults to `2`.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = TaylorCrossEntropy(order=2)
    >>> loss([0], [[0.6, 0.4]])  # 0.4 + 0.4^2 / 2
    0.48

    Reference: Feng, Shu, Lin, Lv, Li & An, "Can Cross Entropy Loss Be
    Robust to Label Noise?", IJCAI 2020.
    """

    def __init__(self, order=2, from_logits=False, reduction="sum_over_batch_size",
                 name="taylor_cross_entropy", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.order = _base.checked_integer("TaylorCrossEntropy", "order", order, minimum=1)

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        miss = 1.0 - _base.true_class_probability(targets, probs)
        value = ops.zeros_like(miss)
        power = ops.ones_like(miss)
        for k in range(1, self.order + 1):
            power = power * miss
            value = value + power / k
        return value
