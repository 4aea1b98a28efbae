"""Shared machinery of the tfrobust classification losses.

Every loss here takes labels either as integer class indices (shape `(batch,)`
or `(batch, 1)`) or as one-hot / soft label rows (shape `(batch, classes)`),
and predictions as probabilities or, with `from_logits=True`, as logits of
shape `(batch, classes)`. `call()` returns one value per example; the Keras
base class applies `sample_weight` and the reduction.
"""

import inspect

import keras
import numpy as np
from keras import ops

# Smallest probability fed to a logarithm or a division. float32 resolves
# 1 - 1e-7 from 1, so clipping at 1e-7 keeps log(p) finite (about -16.1)
# without moving any probability a float32 model can really produce.
EPSILON = 1e-7


def _backend_assert_labels_in_range(labels, num_classes):
    """Raise on class indices outside [0, num_classes) where the backend can.

    On TensorFlow this adds an assertion to the graph, so it also fires
    inside `model.fit`; on other backends it checks concrete (eager) values.
    """
    message = (
        f"Class index out of range: sparse labels must lie in [0, {num_classes}) "
        f"for predictions with {num_classes} classes. Check the labels, or pass "
        "one-hot labels of shape (batch, classes)."
    )
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        # One unsigned comparison covers both ends: a negative index wraps to
        # a huge unsigned value. One Assert op keeps the per-step cost low.
        in_range = tf.reduce_all(tf.cast(labels, tf.uint32) < num_classes)
        with tf.control_dependencies([tf.debugging.Assert(in_range, [message])]):
            return tf.identity(labels)
    try:
        values = ops.convert_to_numpy(labels)
    except Exception:  # a traced value (jit): nothing concrete to check
        return labels
    if values.size and (values.min() < 0 or values.max() >= num_classes):
        raise ValueError(message)
    return labels


def standardize_labels(y_true, y_pred):
    """Returns one-hot (or soft) targets with the dtype and shape of `y_pred`.

    Integer labels of shape `(batch,)` or `(batch, 1)` are one-hot encoded;
    rows of shape `(batch, classes)` are used as they are. Any other shape
    raises a `ValueError` naming the shapes seen.
    """
    num_classes = y_pred.shape[-1]
    if len(y_pred.shape) != 2 or num_classes is None:
        raise ValueError(
            "Predictions must have shape (batch, classes) with a known number of "
            f"classes; got shape {tuple(y_pred.shape)}."
        )
    true_shape = tuple(y_true.shape)
    is_dense = len(true_shape) == 2 and true_shape[-1] == num_classes and num_classes != 1
    if is_dense:
        return ops.cast(y_true, y_pred.dtype)
    if len(true_shape) == 2 and true_shape[-1] == 1:
        y_true = ops.squeeze(y_true, axis=-1)
    elif len(true_shape) != 1:
        raise ValueError(
            f"Labels of shape {true_shape} do not match predictions of shape "
            f"{tuple(y_pred.shape)}: pass integer class indices of shape (batch,) "
            f"or (batch, 1), or one-hot rows of shape (batch, {num_classes})."
        )
    labels = ops.cast(y_true, "int32")
    labels = _backend_assert_labels_in_range(labels, num_classes)
    return ops.one_hot(labels, num_classes, dtype=y_pred.dtype)


def _softmax_input(y_pred):
    """The logits behind `y_pred` when it is the output of a TensorFlow Softmax op, else None.

    A model that ends in a softmax hands the loss probabilities; like Keras's
    own cross-entropy, the losses then work from the logits. That is more
    stable for logarithms, and it skips the framework's Softmax kernel, whose
    fixed cost dominated the loss on small models (profiled: a tenth of the
    training step of a 64-128-10 MLP). Only TensorFlow graphs expose the op;
    elsewhere the probabilities are used as given.
    """
    op = getattr(y_pred, "op", None) if keras.backend.backend() == "tensorflow" else None
    try:
        if op is not None and op.type == "Softmax":
            return op.inputs[0]
    except AttributeError:  # eager tensors have no graph op
        pass
    return None


def _stable_softmax(logits):
    shifted = logits - ops.max(logits, axis=-1, keepdims=True)
    exponentials = ops.exp(shifted)
    return exponentials / ops.sum(exponentials, axis=-1, keepdims=True)


def probabilities(y_pred, from_logits):
    """Class probabilities from `y_pred` (softmax of logits if `from_logits`)."""
    logits = y_pred if from_logits else _softmax_input(y_pred)
    if logits is not None:
        return _stable_softmax(logits)
    return y_pred


def clipped(probs):
    """`probs` clipped into [EPSILON, 1] for a log or a division."""
    return ops.clip(probs, EPSILON, 1.0)


def log_probabilities(y_pred, from_logits):
    """log p, from logits with a stable log-softmax, else from clipped probabilities."""
    logits = y_pred if from_logits else _softmax_input(y_pred)
    if logits is not None:
        return ops.log_softmax(logits, axis=-1)
    return ops.log(clipped(y_pred))


class ClassificationLoss(keras.losses.Loss):
    """Base class: label standardisation, `from_logits` and a complete config.

    Subclasses implement `compute(targets, y_pred)` where `targets` are
    one-hot (or soft) label rows and `y_pred` the raw predictions, returning
    one value per example. `get_config()` is built from the constructor's
    signature, so every argument round-trips as long as the subclass stores
    it as an attribute of the same name.
    """

    def __init__(self, from_logits=False, reduction="sum_over_batch_size", name=None, dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        # Keras's __call__ converts only the leaves of nested Python lists
        # (`loss([1], [[0.2, 0.8]])`), so the lists are stacked here.
        if not hasattr(y_pred, "shape"):
            y_pred = ops.convert_to_tensor(y_pred, dtype=self.dtype)
        if not hasattr(y_true, "shape"):
            y_true = ops.convert_to_tensor(y_true, dtype=self.dtype)
        targets = standardize_labels(y_true, y_pred)
        return self.compute(targets, y_pred)

    def compute(self, targets, y_pred):
        raise NotImplementedError

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self._dtype_policy.name}
        for parameter in inspect.signature(type(self).__init__).parameters:
            if parameter in ("self", "name", "reduction", "dtype") or parameter in config:
                continue
            value = getattr(self, parameter)
            config[parameter] = value.tolist() if hasattr(value, "tolist") else value
        return config


# ---- shared pieces of the baseline losses ------------------------------------


def true_class_probability(targets, probs):
    """p_y = sum_c y_c p_c: the probability of the labelled class, one per example.

    For soft label rows it is the label-weighted probability.
    """
    return ops.sum(targets * probs, axis=-1)


def cross_entropy(targets, log_probs):
    """-sum_c y_c log p_c, one value per example."""
    return -ops.sum(targets * log_probs, axis=-1)


def reverse_cross_entropy(targets, probs, log_zero):
    """-sum_c p_c log y_c with log 0 := `log_zero`, one value per example.

    Labels are clipped into [exp(log_zero), 1] before the logarithm, so a
    one-hot label gives exactly -log_zero * (1 - p_y) and a soft label entry
    below exp(log_zero) counts as a zero (as the reference code of Wang et
    al. clamps the labels). No gradient flows through the labels.
    """
    floor = float(np.exp(log_zero))
    return -ops.sum(probs * ops.log(ops.clip(targets, floor, 1.0)), axis=-1)


def checked_number(owner, argument, value, minimum=None, maximum=None, open_minimum=False,
                   open_maximum=False, hint=""):
    """`value` as a float, or a `ValueError` naming the loss, the argument and its range.

    `minimum` / `maximum` of `None` leave that side unbounded; `open_*` make
    the bound exclusive. `hint` (a sentence) is appended to the message.
    """
    left = "(" if open_minimum or minimum is None else "["
    right = ")" if open_maximum or maximum is None else "]"
    low = "-inf" if minimum is None else f"{minimum:g}"
    high = "inf" if maximum is None else f"{maximum:g}"
    message = f"{owner} argument `{argument}` must be a finite number in {left}{low}, {high}{right}; got {value!r}."
    if hint:
        message = f"{message} {hint}"
    if isinstance(value, (bool, str, bytes)):
        raise ValueError(message)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(message) from None
    too_low = minimum is not None and (number <= minimum if open_minimum else number < minimum)
    too_high = maximum is not None and (number >= maximum if open_maximum else number > maximum)
    if not np.isfinite(number) or too_low or too_high:
        raise ValueError(message)
    return number


def checked_integer(owner, argument, value, minimum, maximum=None):
    """`value` as an int in [minimum, maximum], or a `ValueError` saying what is allowed."""
    high = "" if maximum is None else f", at most {maximum}"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{owner} argument `{argument}` must be an integer; got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(
            f"{owner} argument `{argument}` must be an integer of at least {minimum}{high}; got {value!r}."
        )
    return int(value)
