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


def meta_loss_share(model, loss, trainable, non_trainable, meta_x, meta_y, meta_count, owner):
    """This replica's share sum_{j in shard} l(x_j, y_j) / m of the clean meta loss at `trainable`.

    `meta_count` is the GLOBAL meta batch size m, so the replica sum is the
    meta loss itself.
    """
    y_pred = lookahead_forward(model, trainable, non_trainable, meta_x)
    return tf.reduce_sum(per_example_loss(loss, meta_y, y_pred, owner)) / meta_count


def meta_loss_and_gradient(model, loss, trainable, non_trainable, meta_x, meta_y, meta_count, owner):
    """The clean meta loss L = (1/m) sum_j l(x_j, y_j) at `trainable`, and its gradient.

    Each replica passes its shard of the meta batch and the GLOBAL size
    `meta_count`; the all-reduce makes L and its gradient global and equal on
    every replica.
    """
    with tf.GradientTape() as tape:
        tape.watch(trainable)
        partial = meta_loss_share(model, loss, trainable, non_trainable, meta_x, meta_y, meta_count, owner)
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


def stateless_run(model, trainable, non_trainable, function):
    """Runs `function()`, any computation on the layers of `model`, with its variables read from values.

    The generalisation of `model.stateless_call` that the methods acting
    inside the model need (a logit view, a feature extractor and a head):
    every variable of `model` reads from `trainable` / `non_trainable`
    (in the order of `model.trainable_variables` / `.non_trainable_variables`)
    and nothing is assigned. Returns `(outputs, new_non_trainable, losses,
    added_losses)`: the non-trainable values after the call (BatchNorm
    statistics; the caller keeps or discards them), `model.losses` evaluated
    at these values (weight regularizers of every variable plus the
    `add_loss` values of the layers called), and the `add_loss` values of
    this call alone (activity regularizers, no weight penalty).
    """
    mapping = list(zip(model.trainable_variables, trainable)) + list(zip(model.non_trainable_variables, non_trainable))
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as scope:
        outputs = function()
        losses = list(model.losses)
        added_losses = list(scope.losses)
    new_non_trainable = [scope.get_current_value(variable) for variable in model.non_trainable_variables]
    return outputs, new_non_trainable, losses, added_losses


def nested_lookahead_meta_gradient(model, loss, trainable, non_trainable, virtual_objective, meta_variables,
                                   meta_x, meta_y, meta_count, learning_rate, owner):
    """grad_Phi L_meta(theta_hat(Phi)), theta_hat = theta - alpha grad_theta J(theta; Phi), by nested tapes.

    For the methods whose meta-net Phi acts nonlinearly inside the training
    loss (WarPI rescales the logits, the advisor masks the features), where
    the forward-mode shortcut of `directional_derivatives` does not apply.
    `virtual_objective(trainable)` returns this replica's share of J, a
    scalar computed statelessly and depending on the meta-net's trainable
    variables `meta_variables` (watched as trainable variables); its gradient is summed
    over replicas so every replica takes the same virtual step. The clean
    meta loss at theta_hat is `meta_loss_share` (its look-ahead statistics
    discarded); the gradient of the all-reduce sends every replica's part
    of dL/dtheta_hat back to every replica's Phi.

    Exactness: Keras's BatchNormalization takes its batch moments from
    tf.nn.moments, which stops the gradient of the mean inside the variance.
    First derivatives are exact; second derivatives through the layer miss
    a term. The meta-gradient is exact when Phi enters the objective after
    the last BatchNormalization (WarPI rescales the logits; an advisor split
    after it), since the virtual step then depends on Phi only through
    the linear backward pass; `AdvisorNetwork` warns otherwise.

    Returns `(meta_gradient, meta_loss)`: this replica's share of
    grad_Phi L_meta (the optimizer sums replicas) and the global meta loss.
    """
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(trainable)
            objective = virtual_objective(trainable)
        gradient = inner.gradient(objective, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        gradient = all_reduce_sum(gradient)
        learning_rate = tf.cast(learning_rate, objective.dtype)
        lookahead = [value - learning_rate * step for value, step in zip(trainable, gradient)]
        meta_loss = meta_loss_share(model, loss, lookahead, non_trainable, meta_x, meta_y, meta_count, owner)
    meta_gradient = outer.gradient(meta_loss, meta_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    # Dense, as PyTorch's: an embedding's IndexedSlices would give Adam lazy (sparse) updates.
    meta_gradient = [tf.convert_to_tensor(gradient) for gradient in meta_gradient]
    return meta_gradient, all_reduce_sum(meta_loss)


def step_seed(seed, step, stream):
    """A stateless-random seed for `stream` at training step `step`: a function of (seed, step, stream, replica).

    The key is [seed, step] (int64), folded in with the stream and then the
    replica id (each as int64: fold-in keeps the data's dtype). Different
    streams (WarPI's virtual and real step noise) and different replicas get
    independent draws; a rerun with the same seed gets the same.
    """
    replica, _ = replica_context()
    key = tf.stack([tf.constant(seed, tf.int64), tf.cast(step, tf.int64)])
    key = tf.random.experimental.stateless_fold_in(key, tf.constant(stream, tf.int64))
    return tf.random.experimental.stateless_fold_in(key, tf.cast(replica, tf.int64))
