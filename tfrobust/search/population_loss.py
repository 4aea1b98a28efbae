"""PopulationTaylorLoss: one TaylorLoss per population member, summed over members.

Search-only: it trains the population models of `tfrobust.search.population`,
so it lives with the search, not in the public `tfrobust.losses` namespace.
"""

import keras
import numpy as np
from keras import ops

from tfrobust.losses import taylor


class PopulationTaylorLoss(keras.losses.Loss):
    """TaylorLoss for a population model whose output is `(batch, population, classes)`.

    Member m is scored with its own coefficient row `coefficients[m]`. `call()`
    returns, per example, the *sum* of the members' TaylorLoss values: the
    members' weights are disjoint, so the gradient of that sum with respect to
    member m's weights is exactly the gradient of member m's own loss.
    `member_losses()` gives the `(batch, population)` values.

    The coefficients live in a non-trainable variable: `assign()` swaps in a
    new generation's candidates without retracing or recompiling the training
    step. Not registered for serialisation: it exists to train populations
    inside the search, not to be saved with a model.

    Args:
        coefficients: `(population, n_coefficients)` matrix, one TaylorLoss
            coefficient vector per row.
        order: polynomial order; inferred from the row length when `None`.
        reduction, name, dtype: as for `keras.losses.Loss`.
    """

    def __init__(self, coefficients, order=None, reduction="sum_over_batch_size", name="population_taylor_loss", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        values = np.asarray(coefficients, dtype="float32")
        if values.ndim != 2:
            raise ValueError(
                f"PopulationTaylorLoss takes a (population, n_coefficients) matrix; got shape {values.shape}."
            )
        self.order = taylor.order_from_length(values.shape[1]) if order is None else order
        if values.shape[1] != taylor.num_coefficients(self.order):
            raise ValueError(
                f"Order {self.order} takes {taylor.num_coefficients(self.order)} coefficients per row; "
                f"got {values.shape[1]}."
            )
        self.population_size = values.shape[0]
        self.variable = keras.Variable(values, trainable=False, name="taylor_coefficients", dtype="float32")

    def assign(self, coefficients):
        """Replaces the coefficient matrix (same shape) without recompiling."""
        values = np.asarray(coefficients, dtype="float32")
        if values.shape != tuple(self.variable.shape):
            raise ValueError(f"Expected coefficients of shape {tuple(self.variable.shape)}; got {values.shape}.")
        self.variable.assign(values)

    def member_losses(self, y_true, y_pred):
        """Per-example, per-member TaylorLoss values, shape `(batch, population)`."""
        num_classes = y_pred.shape[-1]
        labels = ops.reshape(ops.cast(y_true, "int32"), (-1,))
        targets = ops.one_hot(labels, num_classes, dtype=y_pred.dtype)[:, None, :]
        coefficients = ops.cast(self.variable, y_pred.dtype)  # slices (P, 1) broadcast against (B, P, C)
        return -ops.sum(taylor.taylor_polynomial(targets, y_pred, coefficients, self.order), axis=-1)

    def call(self, y_true, y_pred):
        if len(y_pred.shape) != 3 or y_pred.shape[1] != self.population_size:
            raise ValueError(
                f"Expected predictions of shape (batch, {self.population_size}, classes); got {tuple(y_pred.shape)}."
            )
        return ops.sum(self.member_losses(y_true, y_pred), axis=1)

    def get_config(self):
        return {
            "coefficients": np.asarray(self.variable).tolist(),
            "order": self.order,
            "reduction": self.reduction,
            "name": self.name,
            "dtype": self._dtype_policy.name,
        }


