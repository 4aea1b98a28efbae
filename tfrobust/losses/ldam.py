"""LDAM-DRW: the label-distribution-aware margin loss and deferred re-weighting."""

import keras
import numpy as np
from keras import ops

from tfrobust.losses import _base
from tfrobust.losses import _weighting


def ldam_margins(class_counts, max_margin):
    """Delta_j = C / n_j^(1/4), rescaled so that the largest margin is `max_margin` (C cancels)."""
    margins = 1.0 / np.power(np.asarray(class_counts, dtype=np.float64), 0.25)
    return margins * (max_margin / margins.max())


def class_balanced_weights(class_counts, beta=0.9999):
    """The class-balanced weights of Cui et al. (CVPR 2019) that DRW switches on.

    w_j = (1 - beta) / (1 - beta^n_j), normalised to sum to the number of
    classes (Cao et al. use these, not 1 / n_j: kaidic/LDAM-DRW issue #19).
    """
    counts = np.asarray(class_counts, dtype=np.float64)
    weights = (1.0 - beta) / (1.0 - np.power(beta, counts))
    return weights / weights.sum() * len(counts)


@keras.saving.register_keras_serializable(package="tfrobust")
class LDAMLoss(_base.ClassificationLoss):
    """Label-distribution-aware margin loss (Cao et al.), with DRW class weights.

    `y_pred` holds the cosine similarities of a `tfrobust.layers.CosineClassifier`
    head (normalised features times normalised class weights), not
    probabilities. For an example with label y,

        L = w_y * CE(softmax(s * (z - Delta_y e_y)), y),
        Delta_j = C / n_j^(1/4), rescaled so that max_j Delta_j = max_margin,

    a larger margin for rarer classes. The class weights w start at 1;
    the `DeferredReweighting` callback sets them to the class-balanced
    weights from a given epoch (DRW). Like PyTorch's weighted
    cross-entropy in the released code, the batch mean is normalised by the
    weights: `call()` returns w_{y_i} L_i * B / sum_k w_{y_k}, whose mean is
    sum_i w_{y_i} L_i / sum_k w_{y_k}. With soft labels, Delta and w are the
    label-weighted sums over classes.

    Args:
        class_counts: training examples per class, `(C,)`, all >= 1 (for
            example `tfrobust.imbalance.class_counts(y_train, C)`). Required.
        max_margin: the largest margin. Defaults to `0.5` (the released
            code; its issue #2 suggests 0.3 for iNaturalist).
        scale: s > 0. Defaults to `30.0`.
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> counts = tfrobust.imbalance.class_counts(data.y_train, data.num_classes)
    >>> outputs = tfrobust.layers.CosineClassifier(data.num_classes)(features)
    >>> model.compile(optimizer="sgd", loss=LDAMLoss(counts))
    >>> model.fit(x, y, epochs=200, callbacks=[DeferredReweighting(start_epoch=160)])

    Reference: Cao, Wei, Gaidon, Arechiga & Ma, "Learning Imbalanced Datasets
    with Label-Distribution-Aware Margin Loss", NeurIPS 2019; code
    github.com/kaidic/LDAM-DRW.
    """

    def __init__(self, class_counts=None, max_margin=0.5, scale=30.0, reduction="sum_over_batch_size",
                 name="ldam", dtype=None):
        super().__init__(from_logits=True, reduction=reduction, name=name, dtype=dtype)
        self.class_counts = _checked_counts("LDAMLoss", class_counts)
        self.max_margin = _base.checked_number("LDAMLoss", "max_margin", max_margin, 0.0)
        self.scale = _base.checked_number("LDAMLoss", "scale", scale, 0.0, open_minimum=True)
        self.margins = ldam_margins(self.class_counts, self.max_margin).astype(np.float32)
        self.class_weights = keras.Variable(
            np.ones(len(self.class_counts), np.float32), trainable=False, name=f"{name}_class_weights"
        )

    def compute(self, targets, y_pred):
        num_classes = len(self.class_counts)
        if y_pred.shape[-1] != num_classes:
            raise ValueError(
                f"LDAMLoss has class_counts for {num_classes} classes but predictions of shape "
                f"{tuple(y_pred.shape)}."
            )
        margined = self.scale * (y_pred - targets * ops.cast(self.margins, y_pred.dtype))
        per_example = _base.cross_entropy(targets, ops.log_softmax(margined, axis=-1))
        weights = ops.sum(targets * ops.cast(self.class_weights, y_pred.dtype), axis=-1)
        batch_size = ops.cast(ops.shape(weights)[0], y_pred.dtype)
        return per_example * weights * batch_size / ops.maximum(ops.sum(weights), _base.EPSILON)


class DeferredReweighting(_weighting.LossScheduleCallback):
    """DRW: class-balanced weights in an `LDAMLoss` from `start_epoch` on (ones before).

    Cao et al. train unweighted until epoch 160 of 200, then with the
    class-balanced weights (1 - beta) / (1 - beta^n_j), beta = 0.9999,
    normalised to sum to C. Epochs count from 0, as `fit` counts them.

    Args:
        start_epoch: the first epoch with class weights (>= 0).
        beta: in [0, 1). Defaults to `0.9999`.
        loss: the `LDAMLoss`; `None` takes `model.loss`.
    """

    loss_class = LDAMLoss

    def __init__(self, start_epoch, beta=0.9999, loss=None):
        super().__init__(loss)
        self.start_epoch = _base.checked_integer("DeferredReweighting", "start_epoch", start_epoch, 0)
        self.beta = _base.checked_number("DeferredReweighting", "beta", beta, 0.0, 1.0, open_maximum=True)

    def on_epoch_begin(self, epoch, logs=None):
        counts = self.loss.class_counts
        weights = class_balanced_weights(counts, self.beta) if epoch >= self.start_epoch else np.ones(len(counts))
        self.loss.class_weights.assign(weights.astype(np.float32))


def _checked_counts(owner, class_counts):
    if class_counts is None:
        raise ValueError(
            f"{owner} needs `class_counts`, the number of training examples of each class: its margins are "
            "C / n_j^(1/4). Pass tfrobust.imbalance.class_counts(y_train, num_classes)."
        )
    counts = np.asarray(class_counts)
    if counts.ndim != 1 or counts.size < 2 or not np.issubdtype(counts.dtype, np.number) or not np.all(
        np.isfinite(counts)
    ) or np.any(counts < 1) or np.any(counts != np.round(counts)):
        raise ValueError(
            f"{owner} argument `class_counts` must be a list of at least two whole numbers >= 1 (examples per "
            f"class); got {class_counts!r}."
        )
    return counts.astype(np.int64)
