"""GeneralizedCrossEntropy: the L_q loss, between cross-entropy and MAE."""

import keras
from keras import ops

from tfrobust.losses import _base


@keras.saving.register_keras_serializable(package="tfrobust")
class GeneralizedCrossEntropy(_base.ClassificationLoss):
    """Generalized cross-entropy (the L_q loss) of Zhang & Sabuncu.

    For one example with label y and predicted probabilities p, the loss is

        L(y, p) = (1 - p_y^q) / q,

    the negative Box-Cox transform of the probability of the labelled class.
    As q -> 0 it tends to cross-entropy -log p_y; at q = 1 it is 1 - p_y,
    half the mean absolute error. A q near 1 trades a slower fit of the
    clean labels for robustness to noisy ones; the paper uses q = 0.7. With
    soft label rows, p_y is the label-weighted probability sum_c y_c p_c.
    For integer labels and probabilities this is
    `keras.losses.CategoricalGeneralizedCrossEntropy`, which takes q in
    (0, 1) and integer labels only. The truncated variant of the paper is
    not implemented.

    p_y is clipped into [EPSILON, 1] before the power: the gradient
    q p^(q - 1) of p^q is infinite at p = 0, which a softmax reaches in
    float32 for a confident wrong prediction.

    Args:
        q: the exponent, in (0, 1]. Defaults to `0.7`.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = GeneralizedCrossEntropy(q=0.5)
    >>> loss([0, 1], [[0.64, 0.36], [0.75, 0.25]])  # ((1 - 0.8) + (1 - 0.5)) / 0.5 / 2
    0.7

    Reference: Zhang & Sabuncu, "Generalized Cross Entropy Loss for Training
    Deep Neural Networks with Noisy Labels", NeurIPS 2018.
    """

    def __init__(
        self,
        q=0.7,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="generalized_cross_entropy",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.q = _base.checked_number(
            "GeneralizedCrossEntropy", "q", q, 0.0, 1.0, open_minimum=True,
            hint="(q -> 0 is cross-entropy: use keras.losses.CategoricalCrossentropy.)",
        )

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        true_prob = _base.clipped(_base.true_class_probability(targets, probs))
        return (1.0 - ops.power(true_prob, self.q)) / self.q
