"""Shared machinery of the losses that weight the examples of a batch.

ABSGD, MentorNet and BARE see the whole batch: each example's value depends
on the others (a batch mean, a percentile, batch statistics), and ABSGD and
MentorNet keep a moving average across batches. This module gives them

- `BatchWeightingLoss`: a base loss that computes per-example values of a
  wrapped `base_loss` (cross-entropy by default) and keeps its cross-batch
  state in non-trainable `keras.Variable`s, which `model.fit`'s compiled
  `tf.function` reads and assigns like any other variable;
- `LossScheduleCallback`: the callback base that finds that loss in the
  model, sets its per-epoch schedule, and freezes its state while the model
  is evaluated, so validation batches do not move a training statistic.

The state is not part of a saved model (Keras saves a loss's config, not its
variables): after `keras.models.load_model` the moving averages restart from
their initial values, and the schedule callback sets the epoch-dependent
switches again when training resumes.
"""

import keras
from keras import ops

from tfrobust.losses import _base


class BatchWeightingLoss(_base.ClassificationLoss):
    """Base class: per-example values of `base_loss`, state variables, a freeze switch.

    Subclasses implement `weigh(per_example, targets, y_pred)` and return one
    value per example. `base_loss=None` means cross-entropy -log p_y (from
    logits with a stable log-softmax when `from_logits=True`). A given
    `base_loss` is any Keras loss whose `call()` returns one value per example
    (every `tfrobust.losses` loss, `keras.losses.CategoricalCrossentropy`, ...);
    it receives the labels exactly as given, and carries its own `from_logits`.
    """

    def __init__(self, base_loss=None, from_logits=False, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        owner = type(self).__name__
        if isinstance(base_loss, dict):
            base_loss = keras.losses.deserialize(base_loss)
        if base_loss is not None and not isinstance(base_loss, keras.losses.Loss):
            raise ValueError(
                f"{owner} argument `base_loss` must be a keras.losses.Loss instance (or None for "
                f"cross-entropy); got {base_loss!r}. Wrap a plain function in keras.losses.Loss subclass."
            )
        if base_loss is not None and from_logits:
            raise ValueError(
                f"{owner}: `from_logits` applies only to the default cross-entropy; set it on the "
                "`base_loss` you pass instead."
            )
        self.base_loss = base_loss
        # 1 while the model is evaluated (set by the schedule callbacks): the
        # state is read but not updated.
        self.frozen = self.state_variable("frozen", 0.0)

    def state_variable(self, name, initial_value):
        """A scalar float32 non-trainable variable owned by this loss."""
        return keras.Variable(initial_value, dtype="float32", trainable=False, name=f"{self.name}_{name}")

    def assign_unless_frozen(self, variable, value):
        """Assigns `value` to `variable` unless frozen; returns the value now in effect."""
        value = ops.where(self.frozen > 0.5, variable, value)
        variable.assign(value)
        return value

    def call(self, y_true, y_pred):
        if not hasattr(y_pred, "shape"):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        if not hasattr(y_true, "shape"):
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        targets = _base.standardize_labels(y_true, y_pred)
        if self.base_loss is None:
            per_example = _base.cross_entropy(targets, _base.log_probabilities(y_pred, self.from_logits))
        else:
            per_example = ops.reshape(ops.cast(self.base_loss.call(y_true, y_pred), y_pred.dtype), (-1,))
        return self.weigh(per_example, targets, y_pred)

    def weigh(self, per_example, targets, y_pred):
        raise NotImplementedError

    def get_config(self):
        config = super().get_config()
        config["base_loss"] = None if self.base_loss is None else keras.losses.serialize(self.base_loss)
        return config


class LossScheduleCallback(keras.callbacks.Callback):
    """Finds the `loss_class` loss the model trains with; freezes its state (if any) during evaluation.

    `loss=None` takes `model.loss` when training begins. Subclasses set the
    loss's epoch-dependent variables in `on_epoch_begin`.
    """

    loss_class = BatchWeightingLoss

    def __init__(self, loss=None):
        super().__init__()
        if loss is not None and not isinstance(loss, self.loss_class):
            raise ValueError(f"{type(self).__name__} needs a {self.loss_class.__name__} loss; got {loss!r}.")
        self.loss = loss

    def on_train_begin(self, logs=None):
        if self.loss is None:
            loss = getattr(self.model, "loss", None)
            if not isinstance(loss, self.loss_class):
                raise ValueError(
                    f"{type(self).__name__} found no {self.loss_class.__name__} in model.loss ({loss!r}): "
                    f"compile the model with one, or pass it as {type(self).__name__}(loss=...)."
                )
            self.loss = loss

    def _set_frozen(self, value):
        if self.loss is not None and hasattr(self.loss, "frozen"):
            self.loss.frozen.assign(value)

    def on_test_begin(self, logs=None):
        self._set_frozen(1.0)

    def on_test_end(self, logs=None):
        self._set_frozen(0.0)
