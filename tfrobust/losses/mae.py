"""MeanAbsoluteError: the L1 distance between the label row and the probabilities."""

import keras
from keras import ops

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class MeanAbsoluteError(_base.ClassificationLoss):
    """Mean absolute error between labels and predicted probabilities, of Ghosh et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = sum_c |y_c - p_c|,

    which for a one-hot label is 2 (1 - p_y). Its sum over all labels is
    the constant 2 (K - 1), which makes it tolerant to symmetric label
    noise; it fits clean labels slowly. Unlike `keras.losses.MeanAbsoluteError`
    it sums over the classes, takes integer labels and applies the softmax
    with `from_logits=True`.

    The loss is bounded and has no log or division, so nothing is clipped.

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

    >>> loss = MeanAbsoluteError()
    >>> loss([0], [[0.8, 0.2]])  # |1 - 0.8| + |0 - 0.2|
    0.4

    Reference: Ghosh, Kumar & Sastry, "Robust Loss Functions under Label
    Noise for Deep Neural Networks", AAAI 2017.
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name="mean_absolute_error",
                 dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        return ops.sum(ops.abs(targets - probs), axis=-1)
