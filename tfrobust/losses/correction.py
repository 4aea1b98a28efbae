"""Loss correction with a known noise transition matrix: forward and backward."""

import keras
import numpy as np
from keras import ops

from tfrobust import noise
from tfrobust.losses import _base

# Beyond this condition number float32 cannot resolve T^{-1} (1 / float32 eps).
MAX_CONDITION_NUMBER = 1.0 / float(np.finfo(np.float32).eps)


def _checked_transition_matrix(owner, transition_matrix):
    """`transition_matrix` as float64, by the one validator every tfrobust matrix goes through."""
    return noise.check_transition_matrix(transition_matrix, source=f"{owner} `transition_matrix`")


def _check_num_classes(owner, matrix, y_pred):
    if y_pred.shape[-1] != len(matrix):
        raise ValueError(
            f"{owner} has a {len(matrix)} x {len(matrix)} transition matrix but the predictions "
            f"have {y_pred.shape[-1]} classes."
        )


@keras.saving.register_keras_serializable(package="tfrobust")
class ForwardCorrection(_base.ClassificationLoss):
    """Forward loss correction of Patrini et al.

    With a transition matrix T, T[i, j] = P(noisy label = j | clean label = i),
    the model's clean-class probabilities p are turned into noisy-label
    probabilities p T and scored with cross-entropy against the (noisy)
    label row y:

        L(y, p) = -sum_j y_j log (p T)_j.

    Minimising it makes p estimate the clean posterior. T must be known or
    estimated beforehand; it need not be invertible.

    Clipping: p T is clipped into [EPSILON, 1] before the log (with
    `from_logits=True` the softmax is taken first, then multiplied by T, so
    no log-softmax shortcut applies).

    Args:
        transition_matrix: T, a (classes, classes) nested list or array of
            probabilities whose rows sum to 1. Stored as a nested list.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = ForwardCorrection([[0.8, 0.2], [0.2, 0.8]])
    >>> loss([1], [[0.9, 0.1]])  # p T = [0.74, 0.26]; -log 0.26
    1.347074

    Reference: Patrini, Rozza, Menon, Nock & Qu, "Making Deep Neural
    Networks Robust to Label Noise: a Loss Correction Approach", CVPR 2017.
    """

    def __init__(self, transition_matrix, from_logits=False, reduction="sum_over_batch_size",
                 name="forward_correction", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.transition_matrix = _checked_transition_matrix("ForwardCorrection", transition_matrix).tolist()

    def compute(self, targets, y_pred):
        _check_num_classes("ForwardCorrection", self.transition_matrix, y_pred)
        probs = _base.probabilities(y_pred, self.from_logits)
        matrix = ops.convert_to_tensor(self.transition_matrix, dtype=probs.dtype)
        noisy_probs = _base.clipped(ops.matmul(probs, matrix))
        return _base.cross_entropy(targets, ops.log(noisy_probs))


@keras.saving.register_keras_serializable(package="tfrobust")
class BackwardCorrection(_base.ClassificationLoss):
    """Backward loss correction of Patrini et al.

    With a transition matrix T, T[i, j] = P(noisy label = j | clean label = i),
    the vector of per-class cross-entropies l_c = -log p_c is multiplied by
    T^{-1}, and the entry of the given (noisy) label is the loss:

        L(y, p) = (T^{-1} l)_y = sum_c (y T^{-1})_c l_c

    (the second form also serves soft label rows). Its expectation over the
    label noise is the cross-entropy against the clean label. T^{-1} has
    negative entries, so the loss can be negative and is unbounded below;
    Patrini et al. found it less stable than `ForwardCorrection`.

    Clipping: probabilities are clipped into [EPSILON, 1] before the log
    (a log-softmax is used instead with `from_logits=True`, and inside a
    TensorFlow graph for a softmax output, read from its logits; eagerly and on other
    backends the probabilities are clipped), which also
    bounds the loss below for probability inputs.

    Args:
        transition_matrix: T, an invertible (classes, classes) nested list
            or array of probabilities whose rows sum to 1. Stored as a
            nested list; its inverse is computed once, in float64.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = BackwardCorrection([[0.8, 0.2], [0.2, 0.8]])  # T^{-1} = [[4, -1], [-1, 4]] / 3
    >>> loss([1], [[0.8, 0.2]])  # (-(-log 0.8) + 4 * (-log 0.2)) / 3
    2.071536

    Reference: Patrini, Rozza, Menon, Nock & Qu, "Making Deep Neural
    Networks Robust to Label Noise: a Loss Correction Approach", CVPR 2017.
    """

    def __init__(self, transition_matrix, from_logits=False, reduction="sum_over_batch_size",
                 name="backward_correction", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        matrix = _checked_transition_matrix("BackwardCorrection", transition_matrix)
        condition = np.linalg.cond(matrix)
        if not condition < MAX_CONDITION_NUMBER:
            raise ValueError(
                "BackwardCorrection needs an invertible `transition_matrix`; this one is singular "
                f"or nearly so (condition number {condition:.3g}). Symmetric noise at rate "
                "(classes - 1) / classes makes T singular; ForwardCorrection does not need T^{-1}."
            )
        self.transition_matrix = matrix.tolist()
        self._inverse = np.linalg.inv(matrix)

    def compute(self, targets, y_pred):
        _check_num_classes("BackwardCorrection", self.transition_matrix, y_pred)
        log_probs = _base.log_probabilities(y_pred, self.from_logits)
        inverse = ops.convert_to_tensor(self._inverse, dtype=log_probs.dtype)
        return _base.cross_entropy(ops.matmul(targets, inverse), log_probs)
