"""L2RW: Learning to Reweight Examples (Ren, Zeng, Yang, Urtasun, ICML 2018)."""

import keras
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting._trainer import ReweightingTrainer


def normalized_weights(scores):
    """w_i = max(u_i, 0) / sum_j max(u_j, 0), all zero when no score is positive.

    Ren et al. (ICML 2018), Sec. 3: the weights are clipped at zero and
    normalised to sum to one over the batch (the indicator in the
    denominator keeps a batch with no positive score at all-zero weights).
    Under a tf.distribute strategy the sum runs over the GLOBAL batch (an
    all-reduce), so the weights equal the single-device ones.
    """
    positive = tf.maximum(scores, 0.0)
    total = _core.all_reduce_sum(tf.reduce_sum(positive))
    return positive / (total + tf.cast(tf.equal(total, 0.0), total.dtype))


@keras.saving.register_keras_serializable(package="tfrobust")
class L2RW(ReweightingTrainer):
    """Learning to Reweight Examples: per-batch weights from a clean meta batch.

    At each step, for the noisy batch {(x_i, y_i)} and a clean meta batch
    (Ren et al., ICML 2018, Algorithm 1):

        theta_hat(eps) = theta - alpha grad_theta sum_i eps_i l_i(theta),  eps = 0
        u_i = -d L_meta(theta_hat(eps)) / d eps_i = alpha <grad l_i(theta), grad L_meta(theta)>
        w_i = max(u_i, 0) / sum_j max(u_j, 0)     (all zero if none is positive)
        theta <- optimizer step on sum_i w_i l_i(theta)

    Because eps = 0, theta_hat = theta and the look-ahead reduces exactly to
    a gradient dot product, and alpha cancels in the normalisation: there is
    nothing to tune and nothing learned beyond the classifier. The dot
    products come from one clean forward/backward (g = grad L_meta) and one
    noisy forward in forward mode along g; that forward is reused for the
    real update, so a step costs about two forwards and backwards plus a
    forward-mode pass.

    It runs on the TensorFlow backend only. The user's `model` is trained in
    place and is saved on its own like any Keras model.

    Args:
        model, meta_data, loss, meta_batch_size, seed: see
            `ReweightingTrainer` (meta_batch_size defaults to 100, as in the
            official code).

    Example:
        ```python
        meta, data = datasets.load("mnist5k", noise="symmetric:0.4").meta_split(per_class=10)
        trainer = reweighting.L2RW(model, meta_data=meta)
        trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
        trainer.fit(data.train_dataset(100), epochs=20)
        ```

    Pitfall (Ren et al., Sec. 3): in small batches many weights are exactly
    zero, so the effective batch shrinks.
    """

    def _weights_and_forward(self, x, y, meta_x, meta_y, meta_count, tape):
        """The L2RW weights of (x, y), with the noisy forward recorded on `tape`."""
        owner = type(self).__name__
        trainable = _core.variable_values(self.model.trainable_variables)
        non_trainable = _core.variable_values(self.model.non_trainable_variables)
        meta_gradient = self._meta_gradient(trainable, non_trainable, meta_x, meta_y, meta_count)
        with tape:
            tape.watch(trainable)
            losses, scores, y_pred, new_non_trainable, regularization = _core.directional_derivatives(
                self.model, self.base_loss, trainable, non_trainable, x, y, meta_gradient, owner
            )
            regularization = _core.regularization_share(regularization, losses.dtype)
        return normalized_weights(scores), trainable, losses, y_pred, new_non_trainable, regularization

    def _meta_gradient(self, trainable, non_trainable, meta_x, meta_y, meta_count):
        """g = grad_theta L_meta(theta), the direction the weights are read along (FORML changes L_meta)."""
        return _core.meta_loss_and_gradient(
            self.model, self.base_loss, trainable, non_trainable, meta_x, meta_y, meta_count, type(self).__name__
        )[1]

    def _reweighted_step(self, x, y):
        meta_x, meta_y, meta_count = self._draw_meta_batch(self.optimizer.iterations)
        tape = tf.GradientTape()
        weights, trainable, losses, y_pred, new_non_trainable, regularization = self._weights_and_forward(
            x, y, meta_x, meta_y, meta_count, tape
        )
        # The weights sum to one over the global batch: sum_i w_i l_i is
        # already each replica's share of the objective.
        return self._apply_weighted_update(
            tape, trainable, losses, weights, regularization, new_non_trainable, x, y, y_pred
        )

    def example_weights(self, x, y, meta_data=None):
        """The L2RW weights of the batch `(x, y)` against a clean batch (numpy, sum 1).

        `meta_data` is `(x_meta, y_meta)`; by default the whole stored meta
        set. Nothing in the model changes (the look-ahead is stateless).
        """
        if meta_data is None:
            self._require_meta_data()
            meta_x, meta_y = self._meta_x, self._meta_y
        else:
            meta_x, meta_y = _core.meta_arrays(meta_data, type(self).__name__)
        weights = self._weights_and_forward(
            tf.convert_to_tensor(x), tf.convert_to_tensor(y), meta_x, meta_y, float(len(meta_y)), tf.GradientTape()
        )[0]
        return weights.numpy()
