"""FORML: Fairness Optimized Reweighting via Meta-Learning (Yan, Seto, Apostoloff, arXiv 2202.01719, DataPerf 2022)."""

import keras
import numpy as np
import tensorflow as tf

from tfrobust.reweighting import _core
from tfrobust.reweighting.l2rw import L2RW

OBJECTIVES = ("worst_group", "group_balanced")

_HOW = ("Pass meta_data=(x_meta, y_meta, groups): clean examples, their integer class labels and their integer "
        "group labels in [0, num_groups), e.g. `tfrobust.groups.load_grouped(...).meta`.")


def group_coefficients(groups, losses, num_groups, objective):
    """c_j such that sum_j c_j l_j is the fairness objective of the meta batch, with its gradient in theta.

    `groups` (m,) int and `losses` (m,) are this replica's shard; group
    counts and sums are all-reduced, so the coefficients are those of the
    GLOBAL meta batch.

        group_balanced:  (1/G') sum_g mean_{j in g} l_j   (G' groups present in the batch)
        worst_group:     max_g mean_{j in g} l_j          (the gradient of the group at the max)

    The coefficients carry no gradient: for group_balanced the objective is
    linear in the losses, and for worst_group the max selects one group
    whose mean is then linear (its gradient is the max's wherever the worst
    group is unique).
    """
    members = tf.one_hot(groups, num_groups, dtype=losses.dtype)  # (m, G)
    counts, sums = _core.all_reduce_sum(
        (tf.reduce_sum(members, axis=0), tf.reduce_sum(members * tf.stop_gradient(losses)[:, tf.newaxis], axis=0))
    )
    present = counts > 0
    safe_counts = tf.maximum(counts, 1.0)
    if objective == "group_balanced":
        per_group = tf.where(present, 1.0 / safe_counts, 0.0) / tf.reduce_sum(tf.cast(present, losses.dtype))
    else:
        means = tf.where(present, sums / safe_counts, tf.constant(-np.inf, losses.dtype))
        per_group = tf.one_hot(tf.argmax(means), num_groups, dtype=losses.dtype) / safe_counts
    return tf.stop_gradient(tf.linalg.matvec(members, per_group))


@keras.saving.register_keras_serializable(package="tfrobust")
class FORML(L2RW):
    """FORML: per-example weights learned by meta-gradient against a clean, group-labelled meta set.

    The L2RW look-ahead (Ren et al., ICML 2018) with a fairness-aware outer
    objective: at each step, for the noisy batch {(x_i, y_i)} and a clean
    meta batch {(x_j, y_j, g_j)} with group labels g_j,

        theta_hat(eps) = theta - alpha grad_theta sum_i eps_i l_i(theta),  eps = 0
        F(theta) = fairness objective of the meta batch's losses (`objective`)
        u_i = -dF(theta_hat(eps)) / d eps_i = alpha <grad l_i(theta), grad F(theta)>
        w_i = max(u_i, 0) / sum_j max(u_j, 0)     (all zero if none is positive)
        theta <- optimizer step on sum_i w_i l_i(theta)

    Yan, Seto and Apostoloff (arXiv 2202.01719) learn per-sample weights
    jointly with the network from a held-out set "representative of the
    distribution under which fairness is desired", with no weighting network,
    to balance over- and under-represented groups. Their exact outer loss
    could not be recovered from the sources available here (the abstract
    and the reference brief); this class offers two group objectives that
    follow that description, both computed on the meta batch:

        "worst_group" (default): the largest group-mean loss, max_g mean_{j in g} l_j,
            the objective of group DRO (Sagawa et al., ICLR 2020): the step's
            weights favour the examples that help the group that is worst now.
        "group_balanced": the mean over groups of the group-mean loss, so a
            minority group counts as much as the majority however few of its
            examples the meta batch holds.

    Only the meta loss differs from `L2RW`: the dot products come from one
    clean forward/backward and one noisy forward in forward mode, alpha
    cancels in the normalisation, and weights are not kept between steps
    (each batch gets fresh ones, as in L2RW). Groups are needed only on the
    meta set: the training examples carry none. TensorFlow backend only;
    the user's model is trained in place.

    Args:
        model: the classifier (see `ReweightingTrainer`).
        meta_data: `(x_meta, y_meta, groups)`, groups int in [0, num_groups);
            every group must have at least one meta example.
        num_groups: the number of groups G (default: the largest meta group
            label + 1).
        objective: "worst_group" or "group_balanced".
        loss, meta_batch_size, seed: see `ReweightingTrainer`. The meta batch
            is drawn without regard to groups; use a meta set with enough of
            every group (or meta_batch_size >= its size, the default for 100
            examples or fewer).

    Example:
        ```python
        task = groups.load_grouped("mnist5k", minority_fraction=0.05, noise="symmetric:0.2")
        trainer = reweighting.FORML(model, meta_data=task.meta)
        trainer.compile(optimizer=keras.optimizers.Adam(1e-3), metrics=["accuracy"])
        trainer.fit(task.train_dataset(64), epochs=10)
        groups.worst_group_accuracy(task.y_test, model.predict(task.x_test).argmax(-1), task.g_test)
        ```
    """

    def __init__(self, model, meta_data=None, num_groups=None, objective="worst_group", loss=None,
                 meta_batch_size=_core.DEFAULT_META_BATCH_SIZE, seed=0, **kwargs):
        if objective not in OBJECTIVES:
            raise ValueError(f"FORML objective must be one of {OBJECTIVES}; got {objective!r}.")
        if num_groups is not None and (isinstance(num_groups, bool) or not isinstance(num_groups, (int, np.integer))
                                       or num_groups < 1):
            raise ValueError(f"FORML num_groups must be a positive integer or None; got {num_groups!r}.")
        super().__init__(model, meta_data=None, loss=loss, meta_batch_size=meta_batch_size, seed=seed, **kwargs)
        self.objective = objective
        self.num_groups = None if num_groups is None else int(num_groups)
        self._num_classes = None
        if meta_data is not None:
            self.set_meta_data(meta_data)

    # ---- the grouped meta set -------------------------------------------------------------------

    def set_meta_data(self, meta_data):
        """Sets the clean meta set `(x, y, groups)`, checking labels and groups.

        Raises:
            ValueError: for a meta set without group labels, group labels that
                are not integers of shape (n,), out of [0, num_groups), or a
                group with no meta example; and everything `L2RW` checks.
        """
        x, y, groups = self._grouped_arrays(meta_data)
        super().set_meta_data((x, y))
        self._num_classes = int(self.model(self._meta_x[:1], training=False).shape[-1])
        # The group rides in the label tensor (group * C + label), so the
        # shared meta-batch draw keeps labels and groups aligned.
        self._meta_y = tf.constant(groups * self._num_classes + self._meta_y.numpy())

    def _grouped_arrays(self, meta_data):
        if meta_data is None:
            _core.meta_arrays(None, "FORML")  # raises the "no meta set" error
        if isinstance(meta_data, tf.data.Dataset) or not isinstance(meta_data, (tuple, list)):
            raise ValueError(f"FORML: cannot read a grouped meta set from {type(meta_data).__name__}. {_HOW}")
        if len(meta_data) == 2:
            raise ValueError(f"FORML: the meta set has no group labels (got (x, y)); its fairness objective "
                             f"compares groups. {_HOW}")
        if len(meta_data) != 3:
            raise ValueError(f"FORML: a meta set is (x, y, groups); got a sequence of {len(meta_data)}. {_HOW}")
        x, y = _core.meta_arrays(meta_data[:2], "FORML")
        groups = np.asarray(meta_data[2])
        if groups.ndim == 2 and groups.shape[1] == 1:
            groups = groups[:, 0]
        integral = np.issubdtype(groups.dtype, np.integer) or (
            np.issubdtype(groups.dtype, np.floating) and np.all(groups == np.round(groups)))
        if groups.shape != y.shape or not integral:
            raise ValueError(f"FORML: group labels must be integers of shape ({len(y)},), one per meta example; "
                             f"got dtype {groups.dtype} and shape {groups.shape}. {_HOW}")
        groups = groups.astype(np.int64)
        num_groups = self.num_groups if self.num_groups is not None else int(groups.max()) + 1
        if groups.min() < 0 or groups.max() >= num_groups:
            raise ValueError(f"FORML: group labels must lie in [0, {num_groups}) (num_groups={num_groups}); found "
                             f"{int(groups.min())}..{int(groups.max())}. Pass num_groups= or fix the labels.")
        missing = np.setdiff1d(np.arange(num_groups), groups)
        if len(missing):
            raise ValueError(f"FORML: groups {missing.tolist()} have no meta example, so the fairness objective "
                             "cannot see them. Give every group clean examples, or a smaller num_groups.")
        self.num_groups = num_groups
        return x, y, groups

    @property
    def meta_data(self):
        """The meta set as numpy `(x, y, groups)`, or None."""
        if self._meta_x is None:
            return None
        packed = self._meta_y.numpy()
        return self._meta_x.numpy(), packed % self._num_classes, packed // self._num_classes

    # ---- the fairness meta gradient ----------------------------------------------------------

    def _meta_gradient(self, trainable, non_trainable, meta_x, meta_y, meta_count):
        """g = grad_theta F(theta), F the fairness objective of the meta batch (packed labels decoded here)."""
        labels, groups = meta_y % self._num_classes, meta_y // self._num_classes
        with tf.GradientTape() as tape:
            tape.watch(trainable)
            y_pred = _core.lookahead_forward(self.model, trainable, non_trainable, meta_x)
            losses = _core.per_example_loss(self.base_loss, labels, y_pred, "FORML")
            objective_share = tf.reduce_sum(
                group_coefficients(groups, losses, self.num_groups, self.objective) * losses)
        gradient = tape.gradient(objective_share, trainable, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return _core.all_reduce_sum(gradient)

    def _given_meta_batch(self, meta_data):
        """(x, packed labels) of `meta_data` (x, y, groups), or of the stored meta set when None."""
        if meta_data is None:
            self._require_meta_data()
            return self._meta_x, self._meta_y
        x, y, groups = self._grouped_arrays(meta_data)
        return tf.constant(x), tf.constant(groups * self._num_classes + y)

    def example_weights(self, x, y, meta_data=None):
        """The FORML weights of the batch `(x, y)` against a grouped clean batch (numpy, sum 1).

        `meta_data` is `(x_meta, y_meta, groups)`; by default the whole stored
        meta set. Nothing in the model changes.
        """
        meta_x, meta_y = self._given_meta_batch(meta_data)
        return self._weights_and_forward(tf.convert_to_tensor(x), tf.convert_to_tensor(y), meta_x, meta_y,
                                         float(meta_y.shape[0]), tf.GradientTape())[0].numpy()

    def example_scores(self, x, y, meta_data=None):
        """<grad l_i(theta), grad F(theta)> per example: -dF(theta_hat(eps))/d eps_i at eps = 0, over alpha.

        The unnormalised signal the weights are made from (numpy (n,)).
        """
        meta_x, meta_y = self._given_meta_batch(meta_data)
        trainable = _core.variable_values(self.model.trainable_variables)
        non_trainable = _core.variable_values(self.model.non_trainable_variables)
        direction = self._meta_gradient(trainable, non_trainable, meta_x, meta_y, float(meta_y.shape[0]))
        scores = _core.directional_derivatives(self.model, self.base_loss, trainable, non_trainable,
                                               tf.convert_to_tensor(x), tf.convert_to_tensor(y), direction,
                                               "FORML")[1]
        return scores.numpy()

    def get_config(self):
        config = super().get_config()
        config.update(num_groups=self.num_groups, objective=self.objective)
        return config
