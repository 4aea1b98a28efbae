"""Shared machinery of the tfrobust classification losses.

Every loss here takes labels either as integer class indices (shape `(batch,)`
or `(batch, 1)`) or as one-hot / soft label rows (shape `(batch, classes)`),
and predictions as probabilities or, with `from_logits=True`, as logits of
shape `(batch, classes)`. `call()` returns one value per example; the Keras
base class applies `sample_weight` and the reduction.

The losses are written with `keras.ops` and give the same values and
gradients on the TensorFlow, JAX and PyTorch backends, with one difference
for the losses that take a logarithm or a power of p (or, for the
bi-tempered loss, read the activations): inside a TensorFlow graph
(`model.fit`, `tf.function`) the output of a softmax is read from its
logits, so log p comes from a log-softmax and is not clipped; eagerly and on
the other backends the probabilities are clipped into [EPSILON, 1] first.
The two agree to float32 rounding until a probability falls below EPSILON
(a logit gap of about 16), where the clipped value stops growing and its
gradient vanishes while the logit path keeps both.
"""

import inspect

import keras
import numpy as np
from keras import ops

# Smallest probability fed to a logarithm or a division. float32 resolves
# 1 - 1e-7 from 1, so clipping at 1e-7 keeps log(p) finite (about -16.1)
# without moving any probability a float32 model can really produce.
EPSILON = 1e-7


# How far a row of probabilities may sum from 1 before `from_logits=False`
# refuses it. A float32 softmax row is off by about classes * 1e-7; 16-bit
# rows get a wider bound from their resolution (see `_check_probabilities`).
PROBABILITY_SUM_TOLERANCE = 1e-3
# Relative resolution (machine epsilon) of the float types a model may output.
_EPSILON_OF_DTYPE = {"float16": 2.0**-10, "bfloat16": 2.0**-7, "float32": 2.0**-23, "float64": 2.0**-52}


def _concrete_values(tensor):
    """The values of `tensor` as a numpy array when they are at hand, else None.

    None inside a TensorFlow graph (`tf.function`, `model.fit`) and for a
    traced JAX value (`jax.jit`), which have no values yet, and for a torch
    tensor off the CPU, where reading values would stall the device on every
    training step. Those cases are checked by a graph assertion (TensorFlow)
    or not at all.
    """
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        if not tf.executing_eagerly():
            return None
    elif backend == "torch" and getattr(getattr(tensor, "device", None), "type", "cpu") != "cpu":
        return None
    try:
        return np.asarray(ops.convert_to_numpy(tensor))
    except Exception:  # a traced value (jax.jit): nothing concrete to check
        return None


def _in_tensorflow_graph():
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return not tf.executing_eagerly()


def _batch_size_message(y_true, y_pred):
    return (
        f"Labels and predictions hold different numbers of examples: labels of shape "
        f"{tuple(y_true.shape)}, predictions of shape {tuple(y_pred.shape)}. The first axis of both "
        "is the batch: pass one label (or label row) per prediction row."
    )


def _whole_number_message(num_classes, got=""):
    return (
        f"Sparse labels must be whole class indices in [0, {num_classes}){got}. A label such as 1.7 "
        "is not truncated or rounded to a class: round the labels to the classes you mean, or pass "
        f"soft label rows of shape (batch, {num_classes})."
    )


def _range_message(num_classes):
    return (
        f"Class index out of range: sparse labels must lie in [0, {num_classes}) "
        f"for predictions with {num_classes} classes. Check the labels, or pass "
        "one-hot labels of shape (batch, classes)."
    )


def _graph_label_check(labels, num_classes):
    """Inside a TensorFlow graph: `labels`, made to depend on an Assert that they are whole numbers in range.

    The values are not known when the graph is built, so the check runs with
    each step. It is one Assert op over a vector of batch length (a training
    step pays a few tiny kernels) and XLA-compatible, so its message is one
    static string covering both problems, followed by the labels themselves.
    """
    import tensorflow as tf

    indices = tf.cast(labels, tf.int32)
    # One unsigned comparison covers both ends: a negative index wraps to a huge unsigned value.
    valid = tf.cast(indices, tf.uint32) < num_classes
    if labels.dtype.is_floating:
        # 1.7, NaN and values beyond int32 do not survive the round trip through int32.
        valid = tf.logical_and(valid, tf.equal(tf.cast(indices, labels.dtype), labels))
    message = (
        f"Class index out of range or not a whole number: sparse labels must be whole class indices in "
        f"[0, {num_classes}) for predictions with {num_classes} classes (a label such as 1.7 is not "
        f"truncated or rounded to a class). Check the labels, or pass one-hot or soft label rows of "
        f"shape (batch, {num_classes}). The labels:"
    )
    assertion = tf.debugging.Assert(tf.reduce_all(valid), [message, labels], summarize=20)
    with tf.control_dependencies([assertion]):
        return tf.identity(labels)


def _check_sparse_label_values(values, num_classes):
    """`ValueError` for concrete sparse labels that are not whole numbers in [0, num_classes)."""
    if not values.size:
        return
    fractional = values[values != np.round(values)]  # NaN is never equal: it lands here too
    if fractional.size:
        shown = ", ".join(f"{value:g}" for value in fractional[:5])
        raise ValueError(_whole_number_message(num_classes, f"; got {shown}"))
    if values.min() < 0 or values.max() >= num_classes:
        raise ValueError(_range_message(num_classes))


def check_probabilities(y_pred):
    """`ValueError` when concrete `y_pred` rows cannot be class probabilities.

    For `from_logits=False`: values outside [0, 1] or rows that do not sum
    to 1 (within `PROBABILITY_SUM_TOLERANCE`, or classes x 2 epsilon of a
    16-bit dtype) give meaningless loss values rather than an error, so they
    are refused here. Only concrete values are checked (eager calls, torch on
    the CPU): inside a compiled training step the check would cost a
    reduction over the predictions on every step, and a model that ends in a
    softmax cannot get there anyway.
    """
    values = _concrete_values(y_pred)
    if values is None or not values.size:
        return
    values = values.astype(np.float64)
    epsilon = _EPSILON_OF_DTYPE.get(keras.backend.standardize_dtype(y_pred.dtype), 0.0)
    tolerance = max(PROBABILITY_SUM_TOLERANCE, 2.0 * values.shape[-1] * epsilon)
    sums = values.sum(axis=-1)
    problem = None
    if not np.all(np.isfinite(values)):
        problem = "some are not finite"
    elif values.min() < -tolerance or values.max() > 1.0 + tolerance:
        problem = f"they range over [{values.min():.4g}, {values.max():.4g}]"
    elif np.any(np.abs(sums - 1.0) > tolerance):
        row = int(np.argmax(np.abs(sums - 1.0)))
        problem = f"row {row} sums to {sums[row]:.6g}"
    if problem:
        raise ValueError(
            "With from_logits=False the predictions must be class probabilities (each row in [0, 1], "
            f"summing to 1), but {problem}. If the model outputs logits (no softmax), pass "
            "from_logits=True; otherwise end the model in a softmax."
        )


def standardize_labels(y_true, y_pred):
    """Returns one-hot (or soft) targets with the dtype and shape of `y_pred`.

    Integer labels of shape `(batch,)` or `(batch, 1)` are one-hot encoded;
    rows of shape `(batch, classes)` are used as they are. Raises a
    `ValueError` naming the shapes for any other shape or for a label batch
    of a different size from the prediction batch, and one naming the labels
    for sparse labels that are not whole numbers in [0, classes). Inside a
    TensorFlow graph, where the values are not known yet, the label check is
    an assertion that fails the step (and batch sizes the graph does not know
    are left to the ops that combine labels and predictions); under
    `jax.jit` only the shapes are checked.
    """
    num_classes = y_pred.shape[-1]
    if len(y_pred.shape) != 2 or num_classes is None:
        raise ValueError(
            "Predictions must have shape (batch, classes) with a known number of "
            f"classes; got shape {tuple(y_pred.shape)}."
        )
    true_shape = tuple(y_true.shape)
    true_batch, pred_batch = (true_shape[0] if true_shape else None), y_pred.shape[0]
    if true_batch is not None and pred_batch is not None and true_batch != pred_batch:
        raise ValueError(_batch_size_message(y_true, y_pred))
    is_dense = len(true_shape) == 2 and true_shape[-1] == num_classes and num_classes != 1
    if is_dense:
        return ops.cast(y_true, y_pred.dtype)
    if len(true_shape) == 2 and true_shape[-1] == 1:
        labels = ops.squeeze(y_true, axis=-1)
    elif len(true_shape) == 1:
        labels = y_true
    else:
        raise ValueError(
            f"Labels of shape {true_shape} do not match predictions of shape "
            f"{tuple(y_pred.shape)}: pass integer class indices of shape (batch,) "
            f"or (batch, 1), or one-hot rows of shape (batch, {num_classes})."
        )
    if _in_tensorflow_graph():
        labels = _graph_label_check(labels, num_classes)
    else:
        values = _concrete_values(labels)
        if values is not None:
            _check_sparse_label_values(values, num_classes)
    return ops.one_hot(ops.cast(labels, "int32"), num_classes, dtype=y_pred.dtype)


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
    """Base class: label standardisation, input checks, `from_logits` and a complete config.

    Input checks. Labels whose batch size differs from the predictions', and
    sparse labels that are not whole class indices in [0, classes) (1.7 is
    refused, 2.0 accepted), raise a `ValueError` naming the problem; inside
    a TensorFlow graph the label values are checked by an assertion that
    fails the step (XLA drops it). With `from_logits=False` the predictions
    must be probabilities: each row in [0, 1] and summing to 1 (within
    `PROBABILITY_SUM_TOLERANCE`). Logits or unnormalised scores give
    meaningless values, not an error, wherever values are not at hand, so
    they are checked only where that is cheap: eager calls (and torch on the
    CPU), not a compiled training step, where a model ending in a softmax
    cannot produce them anyway.

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
        if not self.from_logits:
            check_probabilities(y_pred)
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
