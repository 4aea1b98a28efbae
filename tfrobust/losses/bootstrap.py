"""Bootstrapping losses: cross-entropy against labels mixed with the model's own predictions."""

import keras
from keras import ops

from tfrobust.losses import _base


class _Bootstrap(_base.ClassificationLoss):
    """Cross-entropy against beta * y + (1 - beta) * z(p), z(p) held constant."""

    def __init__(self, beta, from_logits, reduction, name, dtype):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.beta = _base.checked_number(type(self).__name__, "beta", beta, 0.0, 1.0)

    def predicted_target(self, probs):
        """z(p): the part of the target the model supplies."""
        raise NotImplementedError

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        # stop_gradient first: it also turns a variable into a tensor, which argmax needs.
        predicted = self.predicted_target(ops.stop_gradient(probs))
        mixed = self.beta * targets + (1.0 - self.beta) * predicted
        return _base.cross_entropy(mixed, log_probs)


@keras.saving.register_keras_serializable(package="tfrobust")
class BootstrapSoft(_Bootstrap):
    """Soft bootstrapping of Reed et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = -sum_c (beta * y_c + (1 - beta) * p_c) log p_c,

    cross-entropy against the label mixed with the model's own prediction,
    so that a confident model can partly overrule a noisy label.

    The prediction inside the target is treated as a constant (its gradient
    is stopped): the gradient pulls p towards the mixed target. Reed et al.
    write the loss without saying so; differentiating through it too would
    add an entropy-minimisation term (1 - beta) * H(p) instead.

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped).

    Args:
        beta: the weight of the given label in the target, in [0, 1];
            `beta = 1` is cross-entropy. Defaults to `0.95`, the paper's
            value for soft bootstrapping.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = BootstrapSoft(beta=0.5)
    >>> loss([0], [[0.5, 0.5]])  # -(0.75 log 0.5 + 0.25 log 0.5) = log 2
    0.693147

    Reference: Reed, Lee, Anguelov, Szegedy, Erhan & Rabinovich, "Training
    Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015
    (workshop track).
    """

    def __init__(self, beta=0.95, from_logits=False, reduction="sum_over_batch_size", name="bootstrap_soft",
                 dtype=None):
        super().__init__(beta, from_logits, reduction, name, dtype)

    def predicted_target(self, probs):
        return probs


@keras.saving.register_keras_serializable(package="tfrobust")
class BootstrapHard(_Bootstrap):
    """Hard bootstrapping of Reed et al.

    For one example with label row y and predicted probabilities p, the loss is

        L(y, p) = -sum_c (beta * y_c + (1 - beta) * z_c) log p_c,
        z = onehot(argmax_c p_c),

    cross-entropy against the label mixed with the model's predicted class.
    The predicted class is a constant of the target (no gradient flows
    through the argmax, as in the paper).

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped).

    Args:
        beta: the weight of the given label in the target, in [0, 1];
            `beta = 1` is cross-entropy. Defaults to `0.8`, the paper's
            value for hard bootstrapping.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = BootstrapHard(beta=0.8)
    >>> loss([1], [[0.8, 0.2]])  # -(0.2 log 0.8 + 0.8 log 0.2)
    1.332179

    Reference: Reed, Lee, Anguelov, Szegedy, Erhan & Rabinovich, "Training
    Deep Neural Networks on Noisy Labels with Bootstrapping", ICLR 2015
    (workshop track).
    """

    def __init__(self, beta=0.8, from_logits=False, reduction="sum_over_batch_size", name="bootstrap_hard",
                 dtype=None):
        super().__init__(beta, from_logits, reduction, name, dtype)

    def predicted_target(self, probs):
        return ops.one_hot(ops.argmax(probs, axis=-1), probs.shape[-1], dtype=probs.dtype)
