"""Susceptibility to noisy labels: how easily a model fits random labels, measured without clean labels.

Forouzesh, Sedghi & Thiran, "Leveraging Unlabeled Data to Track Memorization",
ICLR 2023 (arXiv 2212.04461). Public face: `tfrobust.metrics.Susceptibility`.
"""

import math
import numbers

import keras
import numpy as np
import tensorflow as tf

# The default key of zeta in `logs` and History, and its curve in the benchmark's curves.jsonl.
SUSCEPTIBILITY_CURVE = "susceptibility"


class Susceptibility(keras.callbacks.Callback):
    """Once per epoch, how much ONE optimiser step on randomly labelled inputs lowers their loss.

    After epoch t (weights w(t)) the callback takes a batch S~ of the
    unlabeled inputs, each with a label drawn uniformly at random, and computes

        Delta(t) = Phi~(w(t)) - Phi~(w~(t+1)),

    where Phi~ is the mean cross-entropy on S~ and w~(t+1) is w(t) after one
    step of the model's own optimiser (its current state: momentum, Adam
    moments, iteration count, learning rate) on S~. Susceptibility is the
    running mean of the drop (Forouzesh et al., ICLR 2023, Eq. 1):

        zeta(t) = (1/t) * sum_{tau=1..t} Delta(tau).

    A high zeta means the network readily fits random labels, i.e. it is in a
    regime where it memorises. No clean labels are needed; the inputs may be
    the training inputs. zeta(t) is written into the epoch's `logs` under
    `name`, so `History` (and a `TensorBoard` callback listed AFTER this
    one) record it; `history` lists it by epoch and `drops` lists Delta(t).

    As in the authors' code, the random labels are drawn once per input
    (seeded by `seed`) and each epoch uses a fresh batch of `batch_size` of
    them (all of them when there are fewer). Phi~ is evaluated in inference
    mode (a function of the weights only); the step's gradient comes from a
    training-mode forward, with the regularisation losses the model adds, as
    a training step would; Phi~(w~(t+1)) uses the non-trainable state that
    step would leave (e.g. BatchNorm statistics).

    Training is left exactly as it was: the forwards are `stateless_call`s
    (their BatchNorm and RNG-state updates are discarded) and the step is
    applied to a private scratch copy of the optimiser (the same class and
    config, loaded with the real optimiser's values), because the TensorFlow
    backend's `optimizer.stateless_apply` is not supported. The model's and
    the optimiser's own variables are only read, never assigned, and the
    callback draws from no global random generator.

    Args:
        unlabeled_x: array of inputs (numpy or convertible), shape
            `(n, *input_shape)`, at least one, finite.
        num_classes: the number of classes the random labels are drawn from;
            by default the width of the model's output.
        batch_size: size of the batch S~ drawn each epoch (the authors: 128).
        seed: seed of the random labels and of the batch draws.
        from_logits: whether the model outputs logits (tfrobust models output
            softmax probabilities by default).
        model: the network to probe, when `fit` trains a wrapper around it
            (e.g. a `tfrobust.reweighting` trainer): its trainable variables
            must be those the optimiser updates. Default: the fitted model.
        optimizer: the optimiser whose step is simulated. Default: the
            fitted model's `optimizer`.
        probe_optimizer: instead, an optimiser that is NOT built (e.g.
            `keras.optimizers.SGD(0.05)`), whose step is simulated from its
            initial state (zero momentum or moments, iteration 0) at every
            measurement. Not the paper's definition: it removes what the
            training run's optimiser state does to the probe step, e.g.
            Adam's second moments built by the training loss, so models
            trained with different losses or optimisers are probed alike.
        name: the key in `logs`.

    Example:
        zeta = Susceptibility(x_train[:1000], seed=0)
        history = model.fit(x_train, y_noisy, epochs=20, callbacks=[zeta])
        history.history["susceptibility"]  # zeta(t), one value per epoch

    Raises:
        ValueError: for empty or non-finite `unlabeled_x`, a `batch_size`
            below 1, fewer than 2 classes, an optimiser that was not built on
            the probed model's trainable variables, or a loss-scaling
            optimiser (mixed precision), which is not supported; a
            `probe_optimizer` that is built, or given with `optimizer`.
    """

    def __init__(self, unlabeled_x, num_classes=None, *, batch_size=128, seed=0, from_logits=False, model=None,
                 optimizer=None, probe_optimizer=None, name=SUSCEPTIBILITY_CURVE):
        super().__init__()
        try:
            x = np.asarray(unlabeled_x)
        except (TypeError, ValueError) as error:
            raise ValueError(f"Susceptibility: unlabeled_x must be an array of inputs; got {error}.") from None
        if x.ndim < 2 or len(x) == 0:
            raise ValueError(
                f"Susceptibility: unlabeled_x must hold at least one example, shape (n, *input_shape); got shape "
                f"{x.shape}. Pass e.g. the training inputs, x_train[:1000]."
            )
        if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
            raise ValueError("Susceptibility: unlabeled_x must be numeric and finite (no NaN or inf).")
        for label, value, low in (("batch_size", batch_size, 1), ("num_classes", num_classes, 2)):
            if value is None and label == "num_classes":
                continue
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
                raise ValueError(f"Susceptibility: {label} must be an integer of at least {low}; got {value!r}.")
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"Susceptibility: seed must be a non-negative integer; got {seed!r}.")
        self.unlabeled_x = x.astype(keras.backend.floatx()) if x.dtype.kind != "f" else x
        self.num_classes = None if num_classes is None else int(num_classes)
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.from_logits = bool(from_logits)
        if probe_optimizer is not None:
            if optimizer is not None:
                raise ValueError("Susceptibility: pass optimizer (its state is used) or probe_optimizer (fresh "
                                 "state), not both.")
            if not isinstance(probe_optimizer, keras.optimizers.Optimizer) or probe_optimizer.built:
                raise ValueError("Susceptibility: probe_optimizer must be a Keras optimiser that is not built yet, "
                                 f"e.g. keras.optimizers.SGD(0.05); got {probe_optimizer!r}.")
        self.probed_model = model
        self.probed_optimizer = optimizer
        self.probe_optimizer = probe_optimizer
        self.name = name
        self._rng = np.random.default_rng(self.seed)
        self.random_labels = None  # one per unlabeled input, drawn at the first measurement
        self._scratch = None  # (optimizer copy, its variables) built on first use
        self._initial_state = None  # the scratch optimiser's variables as built (probe_optimizer only)
        self._step = None
        self._traced = None  # (network, optimizer, scratch optimizer, scratch variables) of `_step`
        self.drops = []
        self.history = []

    # ---- what is probed ------------------------------------------------------------------------

    def _network(self):
        return self.probed_model if self.probed_model is not None else self.model

    def _optimizer(self):
        if self.probe_optimizer is not None:
            return self.probe_optimizer
        optimizer = self.probed_optimizer or getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError(
                "Susceptibility needs the optimiser whose step it simulates: compile the model, or pass "
                "Susceptibility(..., optimizer=...)."
            )
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            raise ValueError("Susceptibility does not support loss-scaling (mixed precision) optimisers.")
        if not optimizer.built:
            raise ValueError("Susceptibility: the optimiser is not built yet; measure after training has started.")
        return optimizer

    def _draw_labels(self, output_width):
        """Draws one uniformly random label per unlabeled input (once)."""
        num_classes = self.num_classes if self.num_classes is not None else int(output_width)
        if num_classes < 2:
            raise ValueError(f"Susceptibility: the model has {num_classes} output; pass num_classes (>= 2).")
        if num_classes > output_width:
            raise ValueError(
                f"Susceptibility: num_classes={num_classes} but the model outputs {output_width} classes.")
        self.num_classes = num_classes
        self.random_labels = self._rng.integers(num_classes, size=len(self.unlabeled_x))

    def _scratch_optimizer(self, optimizer, network):
        """A same-class, same-config optimiser built on private variables shaped like the network's."""
        if self._scratch is None:
            variables = [keras.Variable(np.zeros(v.shape, v.dtype), dtype=v.dtype, name=f"scratch_{i}")
                         for i, v in enumerate(network.trainable_variables)]
            copy = type(optimizer).from_config(optimizer.get_config())
            copy.build(variables)
            if optimizer is self.probe_optimizer:  # a fresh state at every step: keep the initial one
                self._initial_state = [np.array(v.value) for v in copy.variables]
                self._scratch = copy, variables
                return self._scratch
            # The variables the optimiser was built on (Keras keeps them privately; shapes as a fallback).
            built_on = getattr(optimizer, "_trainable_variables", None)
            if built_on is not None:
                mismatch = [id(v) for v in built_on] != [id(v) for v in network.trainable_variables]
            else:
                mismatch = [tuple(v.shape) for v in copy.variables] != [tuple(v.shape) for v in optimizer.variables]
            if mismatch:
                raise ValueError(
                    f"Susceptibility: the optimiser {optimizer.name!r} was not built on the trainable variables "
                    f"of {network.name!r}, so its step cannot be simulated on that network. When fit trains a "
                    "wrapper, pass the wrapped network: Susceptibility(..., model=network)."
                )
            self._scratch = copy, variables
        return self._scratch

    # ---- the measurement -----------------------------------------------------------------------

    def _cross_entropy(self, labels, predictions):
        return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(
            labels, predictions, from_logits=self.from_logits))

    def _simulate_step(self, x, y):
        """`(Phi~(w), Phi~(w~))` on `(x, y)`, w~ after one step of the scratch optimiser loaded with the real one's
        state. Its network and optimisers are read from `self._traced` (variables passed to a `tf.function`
        would arrive as tensors)."""
        network, optimizer, copy, copy_variables = self._traced
        trainable = [tf.identity(v.value) for v in network.trainable_variables]
        non_trainable = [tf.identity(v.value) for v in network.non_trainable_variables]
        before, _ = network.stateless_call(trainable, non_trainable, x, training=False)
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            predictions, stepped_non_trainable, regularization = network.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True)
            objective = self._cross_entropy(y, predictions) + tf.add_n([0.0, *regularization])
        gradients = tape.gradient(objective, trainable)
        for scratch, value in zip(copy_variables, trainable):
            scratch.assign(value)
        if optimizer is self.probe_optimizer:
            for scratch, initial in zip(copy.variables, self._initial_state):
                scratch.assign(initial)
        else:
            for scratch, real in zip(copy.variables, optimizer.variables):
                scratch.assign(real.value)
        copy.apply(gradients, copy_variables)
        stepped = [tf.identity(v.value) for v in copy_variables]
        after, _ = network.stateless_call(stepped, stepped_non_trainable, x, training=False)
        return self._cross_entropy(y, before), self._cross_entropy(y, after)

    def measure(self):
        """Draws this epoch's batch and simulates one step on it; returns `(Phi~ before, Phi~ after)`.

        Appends the drop to `drops` and zeta to `history`.
        """
        network, optimizer = self._network(), self._optimizer()
        size = min(self.batch_size, len(self.unlabeled_x))
        chosen = np.sort(self._rng.choice(len(self.unlabeled_x), size=size, replace=False))
        x = tf.convert_to_tensor(self.unlabeled_x[chosen])
        if self.random_labels is None:
            values = [v.value for v in network.trainable_variables], [v.value for v in network.non_trainable_variables]
            self._draw_labels(int(network.stateless_call(*values, x[:1], training=False)[0].shape[-1]))
        y = tf.convert_to_tensor(self.random_labels[chosen])
        if self._traced is None or self._traced[:2] != (network, optimizer):
            self._traced = (network, optimizer, *self._scratch_optimizer(optimizer, network))
            # Traced once: eager stateless calls cost more than the step itself.
            self._step = tf.function(self._simulate_step, reduce_retracing=True)
        loss_before, loss_after = (float(value) for value in self._step(x, y))
        self.drops.append(loss_before - loss_after)
        self.history.append(math.fsum(self.drops) / len(self.drops))
        return loss_before, loss_after

    def on_epoch_end(self, epoch, logs=None):
        self.measure()
        if logs is not None:
            logs[self.name] = self.history[-1]
