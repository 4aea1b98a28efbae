"""NestedMAML (Killamsetty, Li, Zhao, Chen, Iyer, AAAI 2022): MAML with learned task weights.

MAML weighs every training task (and every query example) equally. NestedMAML
gives each training task of a fixed pool a persistent weight w_i (or each of
its query examples a weight w_ij, `weighting="instance"`), trains the MAML
initialisation theta on the weighted outer objective

    J(theta; W) = (1/B) sum_i sum_j W_ij l_ij(phi_i(theta)),    phi_i = adapt(theta, support_i)

(W_ij = w_i for task weights) and, at every step, moves the weights of the
meta-batch's tasks down the gradient of the clean VALIDATION meta-loss after
one look-ahead step on J, the nested bi-level problem of the paper solved by
its online one-step approximation:

    theta_hat(W) = theta - eta grad_theta J(theta; W)
    dL_val(theta_hat)/dW_ij = -(eta / B) <grad_theta l_ij(theta), grad L_val(theta_hat)>,

where L_val is the MAML query loss of clean validation tasks (adapted from
theta_hat with the same inner loop). The update is the official code's:
W <- max(0, W - weight_learning_rate * clip(dL_val/dW, -threshold, inf)),
exact zeros set to 1e-5; weights start at 0.005 (Hugo101/NestedMAML,
instance-level scripts). Then theta takes one optimizer step on J with the
new weights, as in Algorithm 1 (weights first, then the meta-parameters).

How the dot products are computed. The paper's code forms one flattened
gradient per query example and multiplies by the validation gradient. Here
one extra forward of the meta-batch's MAML losses runs inside a
`tf.autodiff.ForwardAccumulator` along g = grad L_val(theta_hat) (forward
mode over the reverse-mode inner loop), which gives every <grad l_ij, g> at
once, second-order terms included; the tests check it against the
derivative of L_val(theta_hat(W)) by explicit nested tapes.

Two differences from the official code, both deliberate: the meta-gradient is
the exact derivative of the look-ahead above at the current theta (the
official script takes per-example gradients at the adapted weights of one
inner step); and `lookahead_learning_rate` eta is its own argument (the
official script reuses Adam's learning rate as eta).

Outside few-shot learning (one "task" per example, no inner loop: phi = theta)
this is L2RW-style reweighting (Ren et al., ICML 2018) of the training loss
with PERSISTENT per-example weights moved by a clipped gradient step instead
of recomputed from zero each step, i.e. a per-example, learning-rate-driven
relative of Meta-Weight-Net without the weighting network. With task weights
it is the same reweighting applied to the meta-objective, one weight per task.
TensorFlow backend only.
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting.maml import _EPISODE_KEYS
from tfrobust.reweighting.maml import MAML

WEIGHTINGS = ("task", "instance")
# Defaults of the official instance-level scripts (Hugo101/NestedMAML).
DEFAULT_WEIGHT_INIT = 0.005
_ZERO_WEIGHT_FLOOR = 1e-5
_VALIDATION_STREAM = 11


@keras.saving.register_keras_serializable(package="tfrobust")
class NestedMAML(MAML):
    """MAML whose training tasks (or query examples) carry weights learned on clean validation tasks.

    Args:
        model: the classifier (`ways` outputs), trained in place.
        validation_episodes: clean validation tasks, an
            `tfrobust.episodes.Episodes` (or its `inputs()` dict), same ways
            and input shape as the training tasks.
        num_training_tasks: size of the pool of training episodes that `fit`
            sees; each episode's `task_index` selects its persistent weight.
        query_size: query examples per training task (ways * queries),
            needed for `weighting="instance"`.
        weighting: "task" (one weight per training task; the paper's
            task-level reweighting) or "instance" (one per query example; its
            instance-level reweighting for noisy labels).
        validation_batch_size: validation tasks drawn per step.
        lookahead_learning_rate: eta of the look-ahead SGD step.
        weight_learning_rate: the step of the weight update (official: 0.01).
        threshold: meta-gradients below -threshold are clipped (official: 10).
        weight_init: the initial weight (official: 0.005).
        seed: seeds the validation batches: step t's depends on (seed, t) only.
        inner_learning_rate, inner_steps, evaluation_inner_steps,
        first_order, loss: as for `MAML`.
    """

    def __init__(self, model, validation_episodes=None, num_training_tasks=None, query_size=None, weighting="task",
                 validation_batch_size=8, lookahead_learning_rate=1.0, weight_learning_rate=0.01, threshold=10.0,
                 weight_init=DEFAULT_WEIGHT_INIT, seed=0, **kwargs):
        super().__init__(model, **kwargs)
        owner = type(self).__name__
        if weighting not in WEIGHTINGS:
            raise ValueError(f"{owner} argument `weighting` must be one of {WEIGHTINGS}; got {weighting!r}.")
        if isinstance(num_training_tasks, bool) or not isinstance(num_training_tasks, (int, np.integer)) \
                or num_training_tasks < 1:
            raise ValueError(f"{owner} needs `num_training_tasks`, the size of the pool of training episodes "
                             f"(len(train_episodes)), to hold one persistent weight per task; "
                             f"got {num_training_tasks!r}.")
        if weighting == "instance" and (isinstance(query_size, bool) or not isinstance(query_size, (int, np.integer))
                                        or query_size < 1):
            raise ValueError(f"{owner}(weighting='instance') needs `query_size`, the query examples per training "
                             f"task (ways * queries); got {query_size!r}.")
        for value, what in ((lookahead_learning_rate, "lookahead_learning_rate"),
                            (weight_learning_rate, "weight_learning_rate"), (threshold, "threshold"),
                            (weight_init, "weight_init")):
            if isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) or not np.isfinite(value) \
                    or value <= 0:
                raise ValueError(f"{owner} argument `{what}` must be a positive finite number; got {value!r}.")
        self.weighting = weighting
        self.num_training_tasks = int(num_training_tasks)
        self.query_size = None if query_size is None else int(query_size)
        self.validation_batch_size = int(validation_batch_size)
        self.lookahead_learning_rate = float(lookahead_learning_rate)
        self.weight_learning_rate = float(weight_learning_rate)
        self.threshold = float(threshold)
        self.weight_init = float(weight_init)
        self.seed = int(seed)
        shape = (self.num_training_tasks,) if weighting == "task" else (self.num_training_tasks, self.query_size)
        self.task_weights = self.add_weight(shape=shape, initializer=keras.initializers.Constant(self.weight_init),
                                            trainable=False, name="task_weights")
        self._validation = None
        if validation_episodes is not None:
            self.set_validation_episodes(validation_episodes)

    def set_validation_episodes(self, validation_episodes):
        """Sets the clean validation tasks (an `Episodes` or its `inputs()` dict)."""
        inputs = validation_episodes.inputs() if hasattr(validation_episodes, "inputs") else validation_episodes
        if not isinstance(inputs, dict) or any(key not in inputs for key in _EPISODE_KEYS):
            raise ValueError(f"{type(self).__name__}: validation_episodes must be a tfrobust.episodes.Episodes (clean "
                             f"tasks from the meta-training classes) or a dict with keys {_EPISODE_KEYS}.")
        arrays = {key: np.asarray(inputs[key]) for key in _EPISODE_KEYS}
        same_shapes = self._validation is not None and all(
            tuple(self._validation[key].shape) == arrays[key].shape and self._validation[key].dtype == arrays[key].dtype
            for key in _EPISODE_KEYS)
        if same_shapes:  # assigned in place: a traced train step keeps working, as for new model weights
            for key in _EPISODE_KEYS:
                self._validation[key].assign(arrays[key])
        else:
            self._validation = {key: tf.Variable(value, trainable=False) for key, value in arrays.items()}
            self.train_function = None

    def _require_validation(self):
        if self._validation is None:
            raise ValueError(f"{type(self).__name__} has no validation tasks: it learns the task weights from clean "
                             "validation episodes. Pass validation_episodes=episodes.sample_episodes("
                             "split.x_validation, split.y_validation, ...) (tfrobust.episodes).")

    def _batch_weights(self, episodes, tasks, queries):
        """The `(tasks, queries)` weight matrix W of the meta-batch, from the persistent weights."""
        if "task_index" not in episodes:
            raise ValueError(f"{type(self).__name__} needs each episode's `task_index` (its row in the training pool) "
                             "to keep its weight: use tfrobust.episodes.Episodes.dataset.")
        weights = tf.gather(self.task_weights, tf.cast(episodes["task_index"], tf.int32))
        if self.weighting == "task":
            return tf.tile(weights[:, tf.newaxis], [1, queries])
        return weights

    def _draw_validation(self, step):
        total = int(self._validation["support_y"].shape[0])
        count = min(self.validation_batch_size, total)
        seed = _core.step_seed(self.seed, step, _VALIDATION_STREAM)
        indices = tf.argsort(tf.random.stateless_uniform([total], seed=seed))[:count]
        return {key: tf.gather(value, indices) for key, value in self._validation.items()}

    def weight_meta_gradient(self, trainable, episodes, weight_matrix, validation):
        """dL_val(theta_hat(W))/dW for the meta-batch `(tasks, queries)`, and L_val.

        theta_hat = theta - eta grad_theta J(theta; W), J = (1/B) sum W_ij l_ij.
        Returns `(instance_gradient, validation_loss, losses, tape)`: the
        derivative for every query example, the validation meta-loss at
        theta_hat, the training losses `(tasks, queries)` and the persistent
        tape that recorded them (for the real update).
        """
        tape = tf.GradientTape(persistent=True)
        with tape:
            tape.watch(trainable)
            losses, accuracies = self.query_losses(trainable, episodes)
        tasks = losses.shape[0]
        scale = tf.constant(1.0 / tasks, losses.dtype)
        lookahead_gradient = tape.gradient(losses, trainable, output_gradients=weight_matrix * scale,
                                           unconnected_gradients=tf.UnconnectedGradients.ZERO)
        eta = tf.constant(self.lookahead_learning_rate, losses.dtype)
        lookahead = [value - eta * step for value, step in zip(trainable, lookahead_gradient)]
        with tf.GradientTape() as validation_tape:
            validation_tape.watch(lookahead)
            validation_loss = tf.reduce_mean(self.query_losses(lookahead, validation)[0])
        direction = validation_tape.gradient(validation_loss, lookahead,
                                             unconnected_gradients=tf.UnconnectedGradients.ZERO)
        with tf.autodiff.ForwardAccumulator(primals=trainable, tangents=direction) as accumulator:
            replayed, _ = self.query_losses(trainable, episodes)
        dot_products = accumulator.jvp(replayed, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return -eta * scale * dot_products, validation_loss, (losses, accuracies), tape

    def train_step(self, data):
        episodes, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        self._require_validation()
        trainable = _core.variable_values(self.model.trainable_variables)
        queries = episodes["query_y"].shape[1]
        if self.weighting == "instance" and queries != self.query_size:
            raise ValueError(f"{type(self).__name__}: the training episodes have {queries} query examples each, "
                             f"but query_size={self.query_size}.")
        weight_matrix = self._batch_weights(episodes, episodes["query_y"].shape[0], queries)
        validation = self._draw_validation(self.optimizer.iterations)
        instance_gradient, validation_loss, (losses, accuracies), tape = self.weight_meta_gradient(
            trainable, episodes, weight_matrix, validation)
        gradient = instance_gradient if self.weighting == "instance" else tf.reduce_sum(instance_gradient, axis=1)
        old = weight_matrix if self.weighting == "instance" else weight_matrix[:, 0]
        new = tf.maximum(old - self.weight_learning_rate * tf.maximum(gradient, -self.threshold), 0.0)
        new = tf.where(tf.equal(new, 0.0), tf.constant(_ZERO_WEIGHT_FLOOR, new.dtype), new)
        index = tf.cast(episodes["task_index"], tf.int32)[:, tf.newaxis]
        self.task_weights.assign(tf.tensor_scatter_nd_update(self.task_weights, index, new))
        new_matrix = new if self.weighting == "instance" else tf.tile(new[:, tf.newaxis], [1, queries])
        scale = tf.constant(1.0 / losses.shape[0], losses.dtype)
        gradients = tape.gradient(losses, trainable, output_gradients=new_matrix * scale,
                                  unconnected_gradients=tf.UnconnectedGradients.ZERO)
        del tape
        self.optimizer.apply(gradients, self.model.trainable_variables)
        logs = self._report(losses, accuracies)
        logs["validation_loss"] = validation_loss
        return logs

    def get_config(self):
        config = super().get_config()
        config.update({
            "num_training_tasks": self.num_training_tasks, "query_size": self.query_size,
            "weighting": self.weighting, "validation_batch_size": self.validation_batch_size,
            "lookahead_learning_rate": self.lookahead_learning_rate,
            "weight_learning_rate": self.weight_learning_rate, "threshold": self.threshold,
            "weight_init": self.weight_init, "seed": self.seed,
        })
        return config
