"""FocalLoss: cross-entropy down-weighted on well-classified examples."""

import keras
import numpy as np
from keras import ops

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class FocalLoss(_base.ClassificationLoss):
    """Multi-class focal loss of Lin et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = -sum_c alpha_c y_c (1 - p_c)^gamma log p_c,

    cross-entropy with each class's term scaled by the modulating factor
    (1 - p_c)^gamma, which fades the examples the model already gets right,
    and by an optional class weight alpha_c. gamma = 0 and no alpha is
    cross-entropy. The sum over classes weighted by y is the form of
    `keras.losses.CategoricalFocalCrossentropy` (which defaults to
    alpha = 0.25; here no alpha means 1).

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped), and 1 - p into
    [EPSILON, 1] before the power, whose gradient gamma (1 - p)^(gamma - 1)
    is infinite at p = 1 for gamma < 1 (and undefined at gamma = 0).

    Args:
        gamma: the focusing parameter, >= 0. Defaults to `2.0`, the paper's
            value.
        alpha: class weights: `None` (all 1), one non-negative number for
            all classes, or a list with one non-negative weight per class.
            Defaults to `None`.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = FocalLoss(gamma=2.0)
    >>> loss([0], [[0.5, 0.5]])  # -(0.5^2) log 0.5
    0.173287

    Reference: Lin, Goyal, Girshick, He & Dollar, "Focal Loss for Dense
    Object Detection", ICCV 2017.
    """

    def __init__(self, gamma=2.0, alpha=None, from_logits=False, reduction="sum_over_batch_size",
                 name="focal_loss", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.gamma = _base.checked_number("FocalLoss", "gamma", gamma, 0.0)
        self.alpha = _checked_alpha(alpha)

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        modulating = ops.power(_base.clipped(1.0 - probs), self.gamma)
        per_class = targets * modulating * log_probs
        if self.alpha is not None:
            if isinstance(self.alpha, list) and len(self.alpha) != y_pred.shape[-1]:
                raise ValueError(
                    f"FocalLoss has {len(self.alpha)} class weights `alpha` but the predictions "
                    f"have {y_pred.shape[-1]} classes."
                )
            per_class = per_class * ops.convert_to_tensor(self.alpha, dtype=per_class.dtype)
        return -ops.sum(per_class, axis=-1)


def _checked_alpha(alpha):
    """`None`, a float, or a list of floats: the class weights, all finite and >= 0."""
    if alpha is None:
        return None
    message = (
        "FocalLoss argument `alpha` must be None, one non-negative number, or a list of "
        f"non-negative numbers (one per class); got {alpha!r}."
    )
    try:
        weights = np.asarray(alpha, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    if isinstance(alpha, bool) or weights.ndim > 1 or weights.size == 0:
        raise ValueError(message)
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(message)
    return weights.tolist()
