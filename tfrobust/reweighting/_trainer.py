"""ReweightingTrainer: the keras.Model that every reweighting method subclasses.

It wraps the user's classifier, holds the clean meta set as constants and
draws a meta batch from them inside each (traced) train step, so `fit` needs
no iterator or Python loop of its own. Subclasses implement
`_reweighted_step(x, y)`; the shared real update is `_apply_weighted_update`.
"""

import copy

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core


class ReweightingTrainer(keras.Model):
    """Base class of the reweighting trainers (TensorFlow backend only).

    Args:
        model: the classifier to train, a `keras.Model` whose output is
            `(batch, classes)` probabilities or logits. It is trained in place.
        meta_data: the clean meta set, `(x_meta, y_meta)` with integer labels
            or a `tf.data.Dataset` of `(x, y)` (read once into memory). Needed
            to train; `None` only for a trainer rebuilt from its config, which
            gets one from `set_meta_data` before `fit`.
        loss: the base loss, one value per example: a `keras.losses.Loss`
            (evaluated through `call()`, so its `reduction` is ignored) or a
            function `(y_true, y_pred) -> (batch,)`. Default: sparse
            categorical cross-entropy on probabilities.
        meta_batch_size: clean examples per step (the whole meta set when it
            is smaller).
        seed: seeds the meta batches: the batch of step t depends on
            (seed, t) only, whatever the number of replicas (and MetaWeightNet
            seeds its default meta-net with it).
    """

    # The nested objects of the config (deserialised by `from_config`).
    _nested_config_keys = ("model", "loss")

    def __init__(self, model, meta_data=None, loss=None, meta_batch_size=_core.DEFAULT_META_BATCH_SIZE, seed=0,
                 **kwargs):
        owner = type(self).__name__
        _core.require_tensorflow_backend(owner)
        super().__init__(**kwargs)
        if not isinstance(model, keras.Model):
            raise TypeError(f"{owner} wraps a keras.Model (the classifier to train); got {type(model).__name__}.")
        if isinstance(meta_batch_size, bool) or not isinstance(meta_batch_size, (int, np.integer)) or meta_batch_size < 1:
            raise ValueError(f"{owner} argument `meta_batch_size` must be a positive integer; got {meta_batch_size!r}.")
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"{owner} argument `seed` must be a non-negative integer; got {seed!r}.")
        self.model = model
        self.base_loss = _core.default_loss() if loss is None else loss
        if isinstance(self.base_loss, str):
            self.base_loss = keras.losses.get(self.base_loss)
        self.meta_batch_size = int(meta_batch_size)
        self.seed = int(seed)
        self._meta_x = self._meta_y = None
        if meta_data is not None:
            self.set_meta_data(meta_data)

    # ---- the meta set ---------------------------------------------------------------------

    def set_meta_data(self, meta_data):
        """Sets the clean meta set, checking it against the model and the base loss.

        Raises:
            ValueError: for a missing or malformed meta set, meta labels out of
                the model's class range, a model whose output is not
                `(batch, classes)`, or a base loss that does not return one
                value per example.
        """
        owner = type(self).__name__
        x, y = _core.meta_arrays(meta_data, owner)
        # One eager forward on two meta examples: it builds a subclassed model,
        # and reveals the number of classes and the loss's output shape now
        # rather than inside the first traced step.
        probe_x, probe_y = x[:2], y[:2]
        probe = self.model(probe_x, training=False)
        if len(probe.shape) != 2 or probe.shape[-1] < 2:
            _core.per_example_loss(self.base_loss, probe_y, probe, owner)  # raises the output-shape error
        num_classes = int(probe.shape[-1])
        if y.max() >= num_classes:
            raise ValueError(
                f"{owner}: meta labels must lie in [0, {num_classes}) for a model with {num_classes} outputs; "
                f"found label {int(y.max())}. Check that the meta set and the model belong to the same task."
            )
        values = _core.per_example_loss(self.base_loss, probe_y, probe, owner)
        if tuple(values.shape) != (len(probe_y),):
            raise ValueError(
                f"{owner}: the base loss returned shape {tuple(values.shape)} for {len(probe_y)} examples; "
                "it must return one value per example."
            )
        self._meta_x = tf.constant(x)
        self._meta_y = tf.constant(y)
        # A train function traced for another meta set would keep its constants.
        self.train_function = None

    @property
    def meta_data(self):
        """The meta set as numpy `(x, y)`, or None."""
        if self._meta_x is None:
            return None
        return self._meta_x.numpy(), self._meta_y.numpy()

    def _require_meta_data(self):
        if self._meta_x is None:
            _core.meta_arrays(None, type(self).__name__)  # raises the "no meta set" error

    def _draw_meta_batch(self, step):
        """This replica's shard of the meta batch of `step`, and the global batch size.

        The batch is drawn without replacement from the stored meta set by a
        stateless random permutation seeded with (seed, step), so it is the
        same on every replica and in every run; replica r of R takes its
        every R-th example, and the meta loss divides by the global size.
        """
        total = int(self._meta_y.shape[0])
        count = min(self.meta_batch_size, total)
        if count < total:
            seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(step, tf.int64)])
            indices = tf.argsort(tf.random.stateless_uniform([total], seed=seed))[:count]
        else:
            indices = tf.range(total)
        replica, replicas = _core.replica_context()
        if replicas > 1:
            indices = indices[replica::replicas]
        return tf.gather(self._meta_x, indices), tf.gather(self._meta_y, indices), float(count)

    # ---- Keras hooks ------------------------------------------------------------------------

    def call(self, inputs, training=None):
        return self.model(inputs, training=training)

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        """Like `keras.Model.compile`; the base loss is the constructor's `loss`.

        An uncompiled wrapped model is compiled too (see
        `_compile_wrapped_model`), so `model.evaluate(...)` works after `fit`.
        """
        if loss is not None:
            raise ValueError(
                f"{type(self).__name__}: pass the base loss to the constructor "
                f"({type(self).__name__}(model, meta_data, loss=...)), not to compile(): the trainer "
                "weights its per-example values itself."
            )
        super().compile(optimizer=optimizer, **kwargs)
        self._compile_wrapped_model(kwargs.get("metrics"))
        # Build the classifier's optimizer on the classifier's variables only:
        # `fit` would otherwise build it on all the trainer's variables,
        # giving a meta-net momentum slots it never uses.
        with self.distribute_strategy.scope():
            if not self.optimizer.built:
                self.optimizer.build(self.model.trainable_variables)

    def _compile_wrapped_model(self, metrics):
        """Compiles an uncompiled wrapped model, so that `model.evaluate` works after `fit`.

        It gets the base loss (averaged over the batch), the trainer's metrics
        and the trainer's optimizer, whose state (momentum) then travels with
        `model.save(...)`. A model the user compiled is left alone.
        """
        if getattr(self.model, "compiled", False):
            return
        loss = self.base_loss
        if isinstance(loss, keras.losses.Loss) and loss.reduction in (None, "none"):
            loss = type(loss).from_config({**loss.get_config(), "reduction": "sum_over_batch_size"})
        if metrics is not None:  # fresh metric objects: the two models must not share state
            metrics = [keras.metrics.deserialize(keras.metrics.serialize(m)) if isinstance(m, keras.metrics.Metric)
                       else m for m in metrics]
        self.model.compile(optimizer=self.optimizer, loss=loss, metrics=metrics)

    def compile_from_config(self, config):
        """Compiles a trainer revived by Keras with its saved compile arguments."""
        self.compile(**keras.saving.deserialize_keras_object(config))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        """The mean base loss (plus the model's own losses), used by `evaluate` and validation."""
        values = _core.per_example_loss(self.base_loss, y, y_pred, type(self).__name__)
        if sample_weight is not None:
            values = values * tf.cast(tf.reshape(sample_weight, [-1]), values.dtype)
        total = tf.reduce_mean(values)
        if self.model.losses:
            total += tf.add_n([tf.cast(value, total.dtype) for value in self.model.losses])
        # Keras sums replica losses after this; scale as its own losses are.
        return total / tf.distribute.get_strategy().num_replicas_in_sync

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        if sample_weight is not None:
            raise ValueError(
                f"{type(self).__name__} learns the example weights itself; fit() with sample_weight or "
                "class_weight is not supported."
            )
        self._require_meta_data()
        return self._reweighted_step(x, y)

    def _reweighted_step(self, x, y):
        raise NotImplementedError

    def _apply_weighted_update(self, tape, trainable, losses, coefficients, regularization, new_non_trainable,
                               x, y, y_pred):
        """The real step on sum_i c_i l_i (this replica's share), and the logs.

        `coefficients` c_i make sum over this replica's examples of c_i l_i
        its share of the global objective; the optimizer sums the shares.
        The noisy forward recorded on `tape` is reused, and its non-trainable
        state (BatchNormalization statistics) is assigned: the one forward of
        the step that updates the model's statistics.
        """
        coefficients = tf.stop_gradient(coefficients)
        gradients = tape.gradient(
            [losses, regularization],
            trainable,
            output_gradients=[coefficients, tf.ones_like(regularization)],
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        self.optimizer.apply(gradients, self.model.trainable_variables)
        for variable, value in zip(self.model.non_trainable_variables, new_non_trainable):
            variable.assign(value)
        _, replicas = _core.replica_context()
        objective = _core.all_reduce_sum(tf.reduce_sum(coefficients * losses) + regularization)
        # Keras's own loss tracker: weighted by the local batch size, its
        # replica-summed state gives the batch-size-weighted mean of `objective`.
        self._loss_tracker.update_state(objective, sample_weight=tf.shape(losses)[0])
        return self.compute_metrics(x, y, y_pred, sample_weight=None)

    # ---- serialisation ----------------------------------------------------------------------

    def get_config(self):
        return {
            "name": self.name,
            "model": keras.saving.serialize_keras_object(self.model),
            "loss": keras.saving.serialize_keras_object(self.base_loss),
            "meta_batch_size": self.meta_batch_size,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        """Rebuilds the trainer (fresh weights, no meta set: see `set_meta_data`)."""
        config = copy.deepcopy(config)  # deserialising a functional model pops keys of its nested config
        for key in cls._nested_config_keys:
            if config.get(key) is not None:
                config[key] = keras.saving.deserialize_keras_object(config[key], custom_objects=custom_objects)
        return cls(**config)


class MetaNetTrainer(ReweightingTrainer):
    """A `ReweightingTrainer` with a learned meta-net (a Keras model) and its own optimizer.

    Subclasses call `_set_meta_net(meta_net, meta_optimizer, default_learning_rate)`
    in their constructor; the meta-net travels in the config and in the
    trainer's `.keras` file, and its optimizer is built on its variables only.
    Each step updates the meta-net from `_bilevel`'s look-ahead, then takes
    the classifier's `_real_step` with the updated meta-net.
    """

    _nested_config_keys = ReweightingTrainer._nested_config_keys + ("meta_net", "meta_optimizer")

    def _set_meta_net(self, meta_net, meta_optimizer, default_learning_rate):
        owner = type(self).__name__
        if not isinstance(meta_net, keras.Model):
            raise TypeError(f"{owner} `meta_net` must be a keras.Model; got {type(meta_net).__name__}.")
        self.meta_net = meta_net
        if meta_optimizer is None:
            meta_optimizer = keras.optimizers.Adam(default_learning_rate)
        self.meta_optimizer = keras.optimizers.get(meta_optimizer)

    def _check_meta_net(self, inputs, expected_shapes, signature):
        """Calls the meta-net on probe `inputs` (an array or a list of them): a ValueError quoting `signature`
        unless it gives `expected_shapes`."""
        count = len(inputs[0]) if isinstance(inputs, (list, tuple)) else len(inputs)
        try:
            outputs = self.meta_net(inputs)
            outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
            got = [tuple(part.shape) for part in outputs]
        except (ValueError, TypeError) as error:
            got = f"an error: {error}"
        if got != list(expected_shapes):
            raise ValueError(f"{type(self).__name__} `meta_net` must map {signature}; for a probe of "
                             f"{count} examples it gave {got}, not {list(expected_shapes)}.")

    def compile(self, optimizer="rmsprop", loss=None, **kwargs):
        super().compile(optimizer=optimizer, loss=loss, **kwargs)
        with self.distribute_strategy.scope():
            if not self.meta_optimizer.built:
                self.meta_optimizer.build(self.meta_net.trainable_variables)

    def _reweighted_step(self, x, y):
        """The meta-net's update from the look-ahead, then the classifier's real step with the updated meta-net."""
        step = self.optimizer.iterations
        meta_x, meta_y, meta_count = self._draw_meta_batch(step)
        learning_rate = self.optimizer.learning_rate
        meta_gradient, _, recorded = self._bilevel(x, y, meta_x, meta_y, meta_count, learning_rate, step)
        self.meta_optimizer.apply(self._meta_update(meta_gradient), self.meta_net.trainable_variables)
        return self._real_step(x, y, recorded, step)

    def _meta_update(self, meta_gradient):
        """What the meta-optimizer applies for `meta_gradient`: the gradient itself, unless a subclass adds a
        decay term."""
        return meta_gradient

    def _bilevel(self, x, y, meta_x, meta_y, meta_count, learning_rate, step):
        """The look-ahead with alpha = `learning_rate`: `(meta_gradient, meta_loss, recorded)`.

        By nested tapes through `_virtual_objective`; a subclass whose
        meta-gradient has a cheaper closed form overrides this (MetaWeightNet).
        `recorded` is what `_real_step` reuses, here `(tape, trainable,
        forward)`: the tape holding the noisy forward at theta, the parameter
        values it was recorded at, and what `_virtual_objective` left for the
        real step.
        """
        trainable = _core.variable_values(self.model.trainable_variables)
        non_trainable = _core.variable_values(self.model.non_trainable_variables)
        tape = tf.GradientTape()  # records the noisy forward a second time, for the real step
        forward = {}
        meta_gradient, meta_loss = _core.nested_lookahead_meta_gradient(
            self.model, self.base_loss, trainable, non_trainable,
            lambda values: self._virtual_objective(x, y, values, non_trainable, tape, forward, step),
            self.meta_net.trainable_variables, meta_x, meta_y, meta_count, learning_rate, type(self).__name__,
        )
        return meta_gradient, meta_loss, (tape, trainable, forward)

    def _virtual_objective(self, x, y, trainable, non_trainable, tape, forward, step):
        """This replica's share of the training objective at `trainable`, the meta-net acting inside it.

        Records the noisy forward on `tape` (watching `trainable`) and leaves
        in the dict `forward` what `_real_step` reuses.
        """
        raise NotImplementedError

    def _real_step(self, x, y, recorded, step):
        """The classifier's update with the updated meta-net, reusing the `recorded` forward; returns the logs."""
        raise NotImplementedError

    def meta_gradient(self, x, y, meta_data=None, learning_rate=None, step=0):
        """The meta-net's gradient for the batch `(x, y)` at training step `step` (numpy list; nothing changes).

        `meta_data` is `(x_meta, y_meta)`, by default the whole stored meta
        set; `learning_rate` is alpha, by default the compiled optimizer's.
        A decay term added by `_meta_update` is not included. For analysis
        and tests.
        """
        if meta_data is None:
            self._require_meta_data()
            meta_x, meta_y = self._meta_x, self._meta_y
        else:
            meta_x, meta_y = (tf.constant(part) for part in _core.meta_arrays(meta_data, type(self).__name__))
        if learning_rate is None:
            learning_rate = self.optimizer.learning_rate
        gradient, _, _ = self._bilevel(tf.convert_to_tensor(x), tf.convert_to_tensor(y), meta_x, meta_y,
                                       float(meta_y.shape[0]), learning_rate, tf.constant(step, tf.int64))
        return [value.numpy() for value in gradient]

    def get_config(self):
        config = super().get_config()
        config.update(
            meta_net=keras.saving.serialize_keras_object(self.meta_net),
            meta_optimizer=keras.saving.serialize_keras_object(self.meta_optimizer),
        )
        return config
