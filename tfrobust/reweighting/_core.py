"""The bilevel machinery shared by the meta-learned reweighting methods.

Every method here takes, at each training step, a noisy batch and a batch of a
small clean "meta" set, looks one SGD step ahead on the noisy batch, measures
the clean loss there, and turns its gradient into example weights (L2RW) or
into an update of a weighting network (Meta-Weight-Net).

Two facts shape the code:

* Look-ahead forwards use `model.stateless_call(trainable, non_trainable, x,
  training=True)`. It returns the BatchNormalization statistics (and dropout
  seed state) instead of assigning them, and the look-ahead's copies are
  thrown away. Only the one forward on the noisy batch that also serves the
  real update assigns them, so the model's statistics move exactly as in one
  plain training step (the official code gets the same effect from a
  throw-away copy of the network).
* Where the weight signal is a per-example gradient dot product
  <grad l_i(theta), g> (L2RW, Meta-Weight-Net), it is computed in forward
  mode: one noisy forward inside `tf.autodiff.ForwardAccumulator(primals=theta,
  tangents=g)` gives every <grad l_i, g> at once, with no per-example gradient
  and no double backward pass. The tests check it against the explicit
  nested-tape look-ahead.

Distribution. Under a `tf.distribute` strategy each replica sees its share of
the noisy batch and of the meta batch. Every quantity that must be global is
made so explicitly: the meta loss and its gradient are replica sums of
per-replica partial sums divided by the GLOBAL meta batch size (an all-reduce,
so every replica holds the same g), and the methods normalise weights over
the global noisy batch. Gradients handed to a Keras optimizer are each
replica's share of the global gradient, because the optimizer sums them over
replicas (Keras scales its own losses by 1 / replicas for the same reason).
"""

import keras
import numpy as np
import tensorflow as tf

# Ren et al. (ICML 2018) and Shu et al. (NeurIPS 2019) both draw 100 clean
# examples per step in their official CIFAR code.
DEFAULT_META_BATCH_SIZE = 100


def require_tensorflow_backend(owner):
    """Raises unless Keras runs on TensorFlow: the trainers use tf.GradientTape,
    tf.autodiff.ForwardAccumulator and tf.distribute."""
    backend = keras.backend.backend()
    if backend != "tensorflow":
        raise RuntimeError(
            f"{owner} runs on the TensorFlow backend only (its train_step uses tf.GradientTape, "
            f"tf.autodiff.ForwardAccumulator and tf.distribute); Keras is using {backend!r}. Set "
            "the environment variable KERAS_BACKEND=tensorflow before Keras is imported."
        )


def default_loss():
    """Sparse categorical cross-entropy on probabilities, one value per example."""
    return keras.losses.SparseCategoricalCrossentropy(reduction=None)


def meta_arrays(meta_data, owner):
    """`(x, y)` numpy arrays of a meta set given as `(x, y)` or a `tf.data.Dataset`.

    A dataset (batched or not) is read once into memory: meta sets are small
    by design (tens to a thousand examples), and holding them as constants
    lets the train step draw its meta batches with no iterator of its own.
    """
    how = (
        "Pass meta_data=(x_meta, y_meta) with integer class labels, e.g. from "
        "`meta, data = data.meta_split(per_class=10, seed=0)` (tfrobust.datasets), or a "
        "tf.data.Dataset of (x, y) pairs."
    )
    if meta_data is None:
        raise ValueError(f"{owner} has no meta set: it learns example weights from clean data. {how}")
    if isinstance(meta_data, tf.data.Dataset):
        xs, ys = [], []
        for element in meta_data:
            if not isinstance(element, (tuple, list)) or len(element) != 2:
                raise ValueError(f"{owner}: a meta dataset must yield (x, y) pairs. {how}")
            x, y = (np.asarray(part) for part in element)
            if y.ndim == 0:  # an unbatched dataset: one example per element
                x, y = x[np.newaxis], y[np.newaxis]
            xs.append(x)
            ys.append(y)
        if not xs:
            raise ValueError(f"{owner}: the meta dataset is empty. {how}")
        x, y = np.concatenate(xs), np.concatenate(ys)
    elif isinstance(meta_data, (tuple, list)) and len(meta_data) == 2:
        x, y = np.asarray(meta_data[0]), np.asarray(meta_data[1])
    else:
        raise ValueError(f"{owner}: cannot read a meta set from {type(meta_data).__name__}. {how}")
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1 or not (np.issubdtype(y.dtype, np.integer) or _integral_floats(y)):
        raise ValueError(
            f"{owner}: meta labels must be integer class indices of shape (n,); got dtype {y.dtype} "
            f"and shape {y.shape}. {how}"
        )
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"{owner}: the meta set has {len(x)} inputs and {len(y)} labels. {how}")
    if y.min() < 0:
        raise ValueError(f"{owner}: meta labels must be class indices >= 0; found {int(y.min())}.")
    x = x.astype(keras.backend.floatx()) if np.issubdtype(x.dtype, np.floating) else x
    return x, y.astype(np.int64)


def _integral_floats(values):
    return np.issubdtype(values.dtype, np.floating) and np.all(np.isfinite(values)) and np.all(values == np.round(values))


def per_example_loss(loss, y_true, y_pred, owner):
    """The base loss, one value per example, or a ValueError saying what is wrong.

    A `keras.losses.Loss` is evaluated through its `call()`, which returns the
    unreduced values whatever its `reduction` (so `TaylorLoss.pretrained()`
    works as it is). A plain function must itself return shape (batch,).
    """
    if len(y_pred.shape) != 2 or y_pred.shape[-1] is None or y_pred.shape[-1] < 2:
        raise ValueError(
            f"{owner} needs a classifier whose output is (batch, classes) class probabilities "
            f"(softmax) or logits; the model returned shape {tuple(y_pred.shape)}."
        )
    values = loss.call(y_true, y_pred) if isinstance(loss, keras.losses.Loss) else loss(y_true, y_pred)
    if len(values.shape) != 1:
        raise ValueError(
            f"{owner}: the base loss must return one value per example (shape (batch,)) so that the "
            f"examples can be weighted; it returned shape {tuple(values.shape)}. Pass a "
            "keras.losses.Loss (its reduction is ignored) or a function without a final mean, e.g. "
            "keras.losses.SparseCategoricalCrossentropy(reduction=None)."
        )
    return values


def replica_context():
    """(replica id, number of replicas) of the running step; (0, 1) outside a strategy."""
    context = tf.distribute.get_replica_context()
    if context is None:  # cross-replica context: called outside strategy.run
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync


def all_reduce_sum(values):
    """The sum over replicas of a (nested) structure of tensors; the identity on one replica."""
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return values
    return context.all_reduce(tf.distribute.ReduceOp.SUM, values)


def variable_values(variables):
    """Current values of `variables` as tensors: the primals of the look-ahead."""
    return [tf.convert_to_tensor(variable) for variable in variables]


def lookahead_forward(model, trainable, non_trainable, x):
    """Predictions of `model` at parameters `trainable`, in training mode.

    The returned non-trainable state (BatchNormalization moving statistics,
    dropout seeds) is discarded: look-ahead forwards must leave no trace.
    """
    y_pred, _ = model.stateless_call(trainable, non_trainable, x, training=True)
    return y_pred


def meta_loss_and_gradient(model, loss, trainable, non_trainable, meta_x, meta_y, meta_count, owner):
    """The clean meta loss L = (1/m) sum_j l(x_j, y_j) at `trainable`, and its gradient.

    Each replica passes its shard of the meta batch and the GLOBAL size
    `meta_count`; the all-reduce makes L and its gradient global and equal on
    every replica.
    """
    with tf.GradientTape() as tape:
        tape.watch(trainable)
        y_pred = lookahead_forward(model, trainable, non_trainable, meta_x)
        partial = tf.reduce_sum(per_example_loss(loss, meta_y, y_pred, owner)) / meta_count
    gradient = tape.gradient(partial, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    return all_reduce_sum((partial, gradient))


def directional_derivatives(model, loss, trainable, non_trainable, x, y, tangents, owner):
    """Per-example losses l_i at `trainable` and d_i = <grad l_i, tangents>, in one forward.

    Forward-mode differentiation along `tangents` gives every d_i at once.
    Returns `(losses, d, y_pred, new_non_trainable, regularization)`: the
    caller decides whether this forward's non-trainable state is kept (it is
    when the same forward serves the real update) and may record it on a
    GradientTape for the update's gradient.
    """
    with tf.autodiff.ForwardAccumulator(primals=trainable, tangents=tangents) as accumulator:
        y_pred, new_non_trainable, regularization = model.stateless_call(
            trainable, non_trainable, x, training=True, return_losses=True
        )
        losses = per_example_loss(loss, y, y_pred, owner)
    return losses, accumulator.jvp(losses), y_pred, new_non_trainable, regularization


def regularization_share(regularization, dtype):
    """This replica's share of the model's own losses (weight regularizers).

    Every replica computes the same penalty and the optimizer sums replica
    gradients, so each contributes 1 / replicas of it, as Keras does.
    """
    _, replicas = replica_context()
    if not regularization:
        return tf.zeros((), dtype)
    return tf.add_n([tf.cast(value, dtype) for value in regularization]) / replicas
