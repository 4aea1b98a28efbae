"""MAML (Finn, Abbeel, Levine, ICML 2017) as a keras.Model trained on episodes.

`MAML(model)` wraps a classifier with `ways` outputs. Its `fit` takes
meta-batches of episodes (`tfrobust.episodes.Episodes.dataset`): for each
task of the meta-batch it adapts the classifier's weights by a few SGD steps
on the support set, scores the adapted weights on the query set, and updates
the shared initialisation with the compiled optimizer (Adam in the paper) on
the mean query loss:

    train = episodes.sample_episodes(split.x_train, split.y_train, ways=3, shots=5, queries=5, num_episodes=500)
    maml = reweighting.MAML(model, inner_learning_rate=0.5, inner_steps=1)
    maml.compile(optimizer=keras.optimizers.Adam(1e-3))
    maml.fit(train.dataset(8), epochs=10)
    accuracy = maml.evaluate_episodes(test)          # per-episode query accuracy after adaptation

Second order by default: the outer gradient flows through the inner SGD
steps (the inner gradients are recorded on the outer tape), as in Finn et al.
and learn2learn's `MAML(first_order=False)`, which the NestedMAML code uses.
`first_order=True` stops it there (FOMAML). Every forward is a
`model.stateless_call`; the non-trainable state it returns (BatchNorm
statistics) is discarded, so the wrapped model's statistics never move.
TensorFlow backend only.
"""

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core

_EPISODE_KEYS = ("support_x", "support_y", "query_x", "query_y")


@keras.saving.register_keras_serializable(package="tfrobust")
class MAML(keras.Model):
    """Model-agnostic meta-learning over meta-batches of few-shot episodes.

    Args:
        model: the classifier, a `keras.Model` with `ways` outputs
            (probabilities or logits, matching `loss`). Its weights become the
            meta-learned initialisation, trained in place.
        inner_learning_rate: the SGD step size of the adaptation (alpha).
        inner_steps: SGD steps on the support set per task during training.
        evaluation_inner_steps: SGD steps when adapting to a meta-test task
            (default: `inner_steps`).
        first_order: drop the second-order term (FOMAML).
        loss: the per-example base loss, default sparse categorical
            cross-entropy on probabilities. The inner loss is its mean over
            the support set; the outer loss its mean over the query sets.
    """

    def __init__(self, model, inner_learning_rate=0.4, inner_steps=1, evaluation_inner_steps=None,
                 first_order=False, loss=None, **kwargs):
        owner = type(self).__name__
        _core.require_tensorflow_backend(owner)
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"{owner} wraps a keras.Model (the classifier to meta-train); got {type(model).__name__}.")
        if not (isinstance(inner_learning_rate, (int, float, np.floating)) and np.isfinite(inner_learning_rate)
                and inner_learning_rate > 0) or isinstance(inner_learning_rate, bool):
            raise ValueError(f"{owner} argument `inner_learning_rate` must be a positive finite number; "
                             f"got {inner_learning_rate!r}.")
        for value, what in ((inner_steps, "inner_steps"), (evaluation_inner_steps, "evaluation_inner_steps")):
            if value is None and what == "evaluation_inner_steps":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{owner} argument `{what}` must be a positive integer; got {value!r}.")
        self.model = model
        self.inner_learning_rate = float(inner_learning_rate)
        self.inner_steps = int(inner_steps)
        self.evaluation_inner_steps = int(evaluation_inner_steps or inner_steps)
        self.first_order = bool(first_order)
        self.base_loss = _core.default_loss() if loss is None else loss
        if isinstance(self.base_loss, str):
            self.base_loss = keras.losses.get(self.base_loss)
        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.accuracy_tracker = keras.metrics.Mean(name="query_accuracy")
        self._evaluate_function = None

    # ---- the inner loop ---------------------------------------------------------------------

    def _support_loss(self, trainable, non_trainable, support_x, support_y):
        y_pred = _core.lookahead_forward(self.model, trainable, non_trainable, support_x)
        return tf.reduce_mean(_core.per_example_loss(self.base_loss, support_y, y_pred, type(self).__name__))

    def adapt(self, trainable, non_trainable, support_x, support_y, steps):
        """The task's weights after `steps` SGD steps on its support set from `trainable`.

        Differentiable in `trainable` (second order unless `first_order`).
        """
        weights = list(trainable)
        for _ in range(steps):
            with tf.GradientTape() as tape:
                tape.watch(weights)
                support_loss = self._support_loss(weights, non_trainable, support_x, support_y)
            gradients = tape.gradient(support_loss, weights, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            if self.first_order:
                gradients = [tf.stop_gradient(gradient) for gradient in gradients]
            rate = tf.constant(self.inner_learning_rate, support_loss.dtype)  # no float32 rounding on the way
            weights = [weight - rate * gradient for weight, gradient in zip(weights, gradients)]
        return weights

    def query_losses(self, trainable, episodes, steps=None):
        """Per-query losses `(tasks, queries)` and per-task query accuracy `(tasks,)` after adaptation.

        `episodes` is a dict of stacked tasks (support_x, support_y, query_x,
        query_y); the task loop is unrolled over its static first dimension.
        """
        steps = self.inner_steps if steps is None else steps
        missing = [key for key in _EPISODE_KEYS if key not in episodes]
        if missing:
            raise ValueError(f"{type(self).__name__} trains on episode batches: dicts with keys {_EPISODE_KEYS} "
                             f"(tfrobust.episodes.Episodes.dataset); missing {missing}.")
        tasks = episodes["support_x"].shape[0]
        if tasks is None:
            raise ValueError(f"{type(self).__name__} needs a fixed number of tasks per meta-batch: batch the "
                             "episodes with drop_remainder=True (Episodes.dataset does).")
        non_trainable = _core.variable_values(self.model.non_trainable_variables)
        losses, accuracies = [], []
        for task in range(tasks):
            weights = self.adapt(trainable, non_trainable, episodes["support_x"][task], episodes["support_y"][task],
                                 steps)
            y_pred = _core.lookahead_forward(self.model, weights, non_trainable, episodes["query_x"][task])
            query_y = episodes["query_y"][task]
            losses.append(_core.per_example_loss(self.base_loss, query_y, y_pred, type(self).__name__))
            hits = tf.equal(tf.argmax(y_pred, axis=-1), tf.cast(query_y, tf.int64))
            accuracies.append(tf.reduce_mean(tf.cast(hits, y_pred.dtype)))
        return tf.stack(losses), tf.stack(accuracies)

    # ---- Keras hooks ------------------------------------------------------------------------

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    @property
    def metrics(self):
        return [self.loss_tracker, self.accuracy_tracker]

    def compile(self, optimizer="adam", loss=None, **kwargs):
        """Like `keras.Model.compile`; the base loss is the constructor's `loss`."""
        if loss is not None:
            raise ValueError(f"{type(self).__name__}: pass the base loss to the constructor, not to compile().")
        super().compile(optimizer=optimizer, **kwargs)
        with self.distribute_strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)

    def _objective(self, losses, episodes):
        """The outer objective from the `(tasks, queries)` losses: their mean (plain MAML)."""
        return tf.reduce_mean(losses)

    def train_step(self, data):
        episodes, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = _core.variable_values(self.model.trainable_variables)
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            losses, accuracies = self.query_losses(trainable, episodes)
            objective = self._objective(losses, episodes)
        gradients = tape.gradient(objective, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        self.optimizer.apply(gradients, self.model.trainable_variables)
        return self._report(losses, accuracies)

    def _report(self, losses, accuracies):
        self.loss_tracker.update_state(tf.reduce_mean(losses))
        self.accuracy_tracker.update_state(tf.reduce_mean(accuracies))
        return {"loss": self.loss_tracker.result(), "query_accuracy": self.accuracy_tracker.result()}

    def test_step(self, data):
        episodes, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        trainable = _core.variable_values(self.model.trainable_variables)
        losses, accuracies = self.query_losses(trainable, episodes, steps=self.evaluation_inner_steps)
        return self._report(losses, accuracies)

    def evaluate_episodes(self, episodes, batch_size=20, clean_query=True):
        """Query accuracy of each episode of an `Episodes` pool after adapting to its support set.

        Adapts with `evaluation_inner_steps` steps from the current
        initialisation and scores the CLEAN query labels (unless
        `clean_query=False`). Returns a numpy array `(episodes,)`.
        """
        if self._evaluate_function is None:
            @tf.function
            def evaluate(batch):
                trainable = _core.variable_values(self.model.trainable_variables)
                return self.query_losses(trainable, batch, steps=self.evaluation_inner_steps)[1]
            self._evaluate_function = evaluate
        accuracies = []
        for start in range(0, len(episodes), batch_size):
            batch = episodes.inputs(np.arange(start, min(start + batch_size, len(episodes))), clean_query=clean_query)
            batch = {key: tf.constant(batch[key]) for key in _EPISODE_KEYS}
            accuracies.append(self._evaluate_function(batch).numpy())
        return np.concatenate(accuracies)

    def get_config(self):
        config = super().get_config()
        config.update({
            "model": keras.saving.serialize_keras_object(self.model),
            "inner_learning_rate": self.inner_learning_rate,
            "inner_steps": self.inner_steps,
            "evaluation_inner_steps": self.evaluation_inner_steps,
            "first_order": self.first_order,
            "loss": keras.saving.serialize_keras_object(self.base_loss),
        })
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        for key in ("model", "loss"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)
