"""Meta-Weight-Net (Shu, Xie, Yi, Zhao, Zhou, Xu, Meng, NeurIPS 2019)."""

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting._trainer import MetaNetTrainer

# Defaults of the stable official script (xjtushujun/meta-weight-net, MW-Net.py):
# the meta-net has 100 hidden units and is trained by Adam, lr 1e-3, with
# weight decay 1e-4 added to its gradient (PyTorch's coupled Adam decay).
DEFAULT_HIDDEN_UNITS = 100
DEFAULT_META_LEARNING_RATE = 1e-3
DEFAULT_META_WEIGHT_DECAY = 1e-4


def build_meta_net(hidden_units=DEFAULT_HIDDEN_UNITS, seed=None, name="meta_weight_net"):
    """V(l; Theta) = sigmoid(W2 relu(W1 l + b1) + b2): loss (n, 1) -> weight (n, 1) in (0, 1).

    The one-hidden-layer MLP of Shu et al. (NeurIPS 2019). Kernels are
    Glorot-uniform (seeded by `seed` when given) and biases zero, Keras's
    defaults rather than PyTorch's, so a fresh net maps every loss to a
    weight near 0.5.
    """
    def kernel(offset):
        return keras.initializers.GlorotUniform(None if seed is None else seed + offset)

    return keras.Sequential(
        [
            keras.Input((1,)),
            keras.layers.Dense(hidden_units, activation="relu", kernel_initializer=kernel(0)),
            keras.layers.Dense(1, activation="sigmoid", kernel_initializer=kernel(1)),
        ],
        name=name,
    )


@keras.saving.register_keras_serializable(package="tfrobust")
class MetaWeightNet(MetaNetTrainer):
    """Meta-Weight-Net: a small MLP, learned on a clean meta set, maps each loss to a weight.

    Each step, with n noisy examples, a clean meta batch, the weighting net
    V(.; Theta) fed the DETACHED per-example loss l_i, and alpha the
    classifier optimizer's current learning rate (Shu et al., NeurIPS 2019,
    Algorithm 1; weights divided by the batch size as in the official
    MW-Net.py):

        1. theta_hat = theta - alpha (1/n) sum_i V(l_i; Theta) grad l_i(theta)
        2. Theta <- meta-optimizer step on L_meta(theta_hat(Theta))
        3. w_i = V(l_i; Theta_new)                     (no gradient)
        4. theta <- optimizer step on (1/n) sum_i w_i l_i(theta)

    The meta-gradient of step 2 is
    grad_Theta = -(alpha/n) sum_i <grad l_i(theta), grad L_meta(theta_hat)> grad_Theta V(l_i),
    computed without a double backward pass: g_m = grad L_meta at theta_hat
    (a stateless forward at the virtual weights), d_i = <grad l_i(theta), g_m>
    from one forward in forward mode, then backpropagation of
    -(alpha/n) sum_i stopgrad(d_i) V(l_i; Theta) through the tiny V only.
    The first noisy forward is reused for the virtual and the real step.

    It runs on the TensorFlow backend only. The user's `model` is trained in
    place; `meta_net` is a Keras model of its own (save it with
    `trainer.meta_net.save(...)`), and `get_config` / `from_config`
    round-trip the trainer.

    Args:
        model, meta_data, loss, meta_batch_size, seed: see
            `ReweightingTrainer` (meta_batch_size defaults to 100, as in the
            official code).
        meta_net: the weighting net, a Keras model from (n, 1) losses to
            (n, 1) weights; default `build_meta_net(seed=seed)` (1-100-1 MLP).
        meta_optimizer: optimizer of the meta-net (default Adam, 1e-3).
        meta_weight_decay: L2 coefficient added to the meta-net's gradient
            (coupled, as PyTorch's Adam does; default 1e-4).

    Example:
        ```python
        meta, data = datasets.load("mnist5k", noise="symmetric:0.4").meta_split(per_class=10)
        trainer = reweighting.MetaWeightNet(model, meta_data=meta)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
        trainer.fit(data.train_dataset(100), epochs=40)
        ```
    """

    def __init__(self, model, meta_data=None, loss=None, meta_net=None, meta_optimizer=None,
                 meta_weight_decay=DEFAULT_META_WEIGHT_DECAY, meta_batch_size=_core.DEFAULT_META_BATCH_SIZE, seed=0,
                 **kwargs):
        super().__init__(model, meta_data=meta_data, loss=loss, meta_batch_size=meta_batch_size, seed=seed, **kwargs)
        self._set_meta_net(build_meta_net(seed=self.seed) if meta_net is None else meta_net, meta_optimizer,
                           DEFAULT_META_LEARNING_RATE)
        self._check_meta_net(np.zeros((2, 1), dtype=keras.backend.floatx()), [(2, 1)],
                             "losses of shape (n, 1) to weights of shape (n, 1)")
        if isinstance(meta_weight_decay, bool) or not np.isfinite(float(meta_weight_decay)) or meta_weight_decay < 0:
            raise ValueError(f"MetaWeightNet `meta_weight_decay` must be a finite number >= 0; got {meta_weight_decay!r}.")
        self.meta_weight_decay = float(meta_weight_decay)

    def _weigh(self, losses):
        """V(l_i; Theta) of the detached losses, shape (n,)."""
        return self.meta_net(tf.stop_gradient(losses)[:, tf.newaxis])[:, 0]

    def _bilevel(self, x, y, meta_x, meta_y, meta_count, learning_rate, step):
        """Steps 1-2 up to the meta-gradient, in forward mode rather than the base class's nested tapes;
        returns it, the meta loss and the recorded noisy forward (`step` is unused: nothing is random)."""
        owner = type(self).__name__
        trainable = _core.variable_values(self.model.trainable_variables)
        non_trainable = _core.variable_values(self.model.non_trainable_variables)
        # Persistent: the noisy forward serves the virtual step and the real one.
        tape = tf.GradientTape(persistent=True)
        with tape:
            tape.watch(trainable)
            y_pred, new_non_trainable, regularization = self.model.stateless_call(
                trainable, non_trainable, x, training=True, return_losses=True
            )
            losses = _core.per_example_loss(self.base_loss, y, y_pred, owner)
            regularization = _core.regularization_share(regularization, losses.dtype)
        batch_size = _core.all_reduce_sum(tf.cast(tf.shape(losses)[0], losses.dtype))
        learning_rate = tf.cast(learning_rate, losses.dtype)

        # Step 1: theta_hat = theta - alpha (1/n) sum_i V(l_i) grad l_i, the
        # gradient summed over replicas so every replica holds the same theta_hat.
        virtual_gradient = tape.gradient(
            losses, trainable, output_gradients=self._weigh(losses) / batch_size,
            unconnected_gradients=tf.UnconnectedGradients.ZERO,
        )
        virtual_gradient = _core.all_reduce_sum(virtual_gradient)
        lookahead = [value - learning_rate * gradient for value, gradient in zip(trainable, virtual_gradient)]

        # Step 2: d_i = <grad l_i(theta), grad L_meta(theta_hat)> in forward mode, then
        # grad_Theta = -(alpha/n) sum_i d_i grad_Theta V(l_i) by backprop through V alone.
        meta_loss, meta_gradient = _core.meta_loss_and_gradient(
            self.model, self.base_loss, lookahead, non_trainable, meta_x, meta_y, meta_count, owner
        )
        _, directional, *_ = _core.directional_derivatives(
            self.model, self.base_loss, trainable, non_trainable, x, y, meta_gradient, owner
        )
        with tf.GradientTape() as meta_tape:
            surrogate = -learning_rate / batch_size * tf.reduce_sum(tf.stop_gradient(directional) * self._weigh(losses))
        meta_net_gradient = meta_tape.gradient(
            surrogate, self.meta_net.trainable_variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
        )
        forward = (tape, trainable, losses, y_pred, new_non_trainable, regularization, batch_size)
        return meta_net_gradient, meta_loss, forward

    def _meta_update(self, meta_gradient):
        if not self.meta_weight_decay:
            return meta_gradient
        # Coupled L2 as in PyTorch's Adam(weight_decay=...); each replica
        # adds its 1 / replicas share because the optimizer sums replicas.
        _, replicas = _core.replica_context()
        return [
            gradient + (self.meta_weight_decay / replicas) * tf.convert_to_tensor(variable)
            for gradient, variable in zip(meta_gradient, self.meta_net.trainable_variables)
        ]

    def _real_step(self, x, y, recorded, step):
        tape, trainable, losses, y_pred, new_non_trainable, regularization, batch_size = recorded
        # Steps 3-4: weights from the updated meta-net, divided by the global batch size.
        weights = self._weigh(losses)
        return self._apply_weighted_update(
            tape, trainable, losses, weights / batch_size, regularization, new_non_trainable, x, y, y_pred
        )

    def example_weights(self, x, y):
        """V(l_i) for the batch `(x, y)`, the losses from the model in inference mode (numpy)."""
        y_pred = self.model(x, training=False)
        losses = _core.per_example_loss(self.base_loss, tf.convert_to_tensor(y), y_pred, type(self).__name__)
        return self._weigh(losses).numpy()

    def get_config(self):
        config = super().get_config()
        config.update(meta_weight_decay=self.meta_weight_decay)
        return config
