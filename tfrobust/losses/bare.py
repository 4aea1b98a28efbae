"""BARE: batch-statistics sample selection for noisy labels."""

import keras
from keras import ops

from tfrobust.losses import _base

_BATCH_SIZE_ONE = (
    "BatchReweighting needs at least two examples per batch: its threshold uses the batch standard "
    "deviation, which one example does not define. Use a batch size of 2 or more (the authors use 128), "
    "and drop_remainder or a batch size that divides the data if the last batch could hold one example."
)


@keras.saving.register_keras_serializable(package="tfrobust")
class BatchReweighting(_base.ClassificationLoss):
    """BARE (Patel & Sastry): keep an example when it is confident for its class, relative to the batch.

    For a batch with predicted probabilities f(x), let mu_j and sigma_j be
    the mean and the standard deviation of f_j(x) over the whole batch (all
    examples, whatever their label; sigma unbiased, as `torch.std` in the
    authors' code). Example i with label y_i is kept when

        f_{y_i}(x_i) >= mu_{y_i} + kappa * sigma_{y_i},

    and the loss is the mean cross-entropy over the kept examples, or over
    the whole batch when none is kept. No clean data and no noise rate are
    needed. `call()` returns, per example, CE_i * B / K for the K kept
    examples and 0 for the others (CE_i for all when K = 0), so the mean
    reduction gives the kept-mean. The selection carries no gradient.
    Averaging over the kept examples only raises the effective learning rate
    when few are kept; the selection depends on the batch size.

    With soft label rows, f_y and the statistics are label-weighted.

    Args:
        kappa: the number of standard deviations. Defaults to `1.0`.
        from_logits: whether `y_pred` holds logits.
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Raises:
        ValueError (or, inside a compiled graph, InvalidArgumentError) for a
        batch of one example.

    Example:

    >>> model.compile(optimizer=keras.optimizers.Adam(2e-4), loss=BatchReweighting())
    >>> model.fit(x, y_noisy, batch_size=128)

    Reference: Patel & Sastry, "Adaptive Sample Selection for Robust Learning
    under Label Noise", WACV 2023; code github.com/dbp1994/bare-wacv-2023.
    """

    def __init__(self, kappa=1.0, from_logits=False, reduction="sum_over_batch_size", name="bare", dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        self.kappa = _base.checked_number("BatchReweighting", "kappa", kappa)

    def compute(self, targets, y_pred):
        _check_batch_size(y_pred)
        probs = ops.stop_gradient(_base.probabilities(y_pred, self.from_logits))
        batch_size = ops.cast(ops.shape(probs)[0], probs.dtype)
        mean = ops.mean(probs, axis=0)
        std = ops.sqrt(ops.sum(ops.square(probs - mean), axis=0) / (batch_size - 1.0))
        threshold = ops.sum(targets * (mean + self.kappa * std), axis=-1)
        kept = ops.cast(_base.true_class_probability(targets, probs) >= threshold, probs.dtype)
        num_kept = ops.sum(kept)
        weights = ops.where(num_kept > 0, kept * batch_size / ops.maximum(num_kept, 1.0), ops.ones_like(kept))
        per_example = _base.cross_entropy(targets, _base.log_probabilities(y_pred, self.from_logits))
        return ops.stop_gradient(weights) * per_example


def _check_batch_size(y_pred):
    if y_pred.shape[0] == 1:
        raise ValueError(_BATCH_SIZE_ONE)
    if y_pred.shape[0] is None and keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        tf.debugging.assert_greater(tf.shape(y_pred)[0], 1, message=_BATCH_SIZE_ONE)
