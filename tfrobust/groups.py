"""A grouped task from the bundled data, and per-group accuracy, for fairness-aware training (FORML).

Group 0 is the data as it is; group 1, the minority, is the same kind of
image with its intensities inverted (x -> 1 - x). Training holds few group-1
examples, so a plain classifier serves the minority worse; the test split
holds both groups in equal parts, so that its worst-group accuracy measures
how well the minority is served.
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfrobust import datasets

MAJORITY, MINORITY = 0, 1
NUM_GROUPS = 2
_GROUP_STREAM = 7  # a random stream apart from datasets' split, noise and meta streams


@dataclasses.dataclass(frozen=True)
class GroupedTask:
    """Splits with group labels. Features float32 in [0, 1]; labels and groups int64.

    Attributes:
        name: the source data set ("digits" or "mnist5k").
        x_train, y_train, y_train_clean, g_train: training features, NOISY
            labels, true labels and groups.
        x_test, y_test, g_test: the clean test split, half of each group.
        meta: `(x, y, groups)`, a clean meta set with both groups in equal
            parts, carved from the training pool and not trained on.
        num_classes, num_groups, input_shape: as named.
        noise: the noise spec string applied to the training labels.
        minority_fraction: the share of group 1 in the training split.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    y_train_clean: np.ndarray
    g_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    g_test: np.ndarray
    meta: tuple
    num_classes: int
    num_groups: int
    input_shape: tuple
    noise: str
    minority_fraction: float

    def train_dataset(self, batch_size, *, seed=0):
        """Shuffled `(x, noisy y)` batches of the training split, reshuffled every epoch, seeded."""
        dataset = tf.data.Dataset.from_tensor_slices((self.x_train, self.y_train))
        return dataset.shuffle(len(self.y_train), seed=seed, reshuffle_each_iteration=True).batch(batch_size)


def invert(images):
    """The minority group's view of `images` in [0, 1]: 1 - x."""
    return (1.0 - images).astype(images.dtype)


def load_grouped(name="digits", *, minority_fraction=0.05, noise="none", meta_per_class_and_group=5, seed=0,
                 max_examples=None):
    """A grouped task: `name` with a minority group of intensity-inverted images.

    The data set is loaded with `tfrobust.datasets.load(name, noise=noise,
    seed=seed, validation_fraction=0)` (labels are corrupted before any
    inversion, so the noise does not depend on the group). A balanced clean
    meta set of `2 * meta_per_class_and_group` examples per class is carved
    from the training split (its clean labels; half of each class
    inverted). Of the rest, a seeded `minority_fraction` of the examples
    (at least one) is inverted; half the test split, seeded, is inverted.

    Raises:
        ValueError: for a minority fraction outside (0, 0.5] or what
            `datasets.load` / `meta_split` refuse.
    """
    if not 0.0 < minority_fraction <= 0.5:
        raise ValueError(f"minority_fraction must be in (0, 0.5] (the minority is group {MINORITY}); "
                         f"got {minority_fraction!r}.")
    data = datasets.load(name, noise=noise, seed=seed, validation_fraction=0.0, max_examples=max_examples)
    (x_meta, y_meta), data = data.meta_split(per_class=2 * meta_per_class_and_group, seed=seed)
    rng = np.random.default_rng([seed, _GROUP_STREAM])
    g_meta = np.zeros(len(y_meta), np.int64)
    for label in range(data.num_classes):  # meta_split returns training order: half of each class inverted
        members = np.flatnonzero(y_meta == label)
        g_meta[rng.permutation(members)[:meta_per_class_and_group]] = MINORITY
    g_train = _draw_groups(len(data.y_train), minority_fraction, rng)
    g_test = _draw_groups(len(data.y_test), 0.5, rng)
    return GroupedTask(
        name=name,
        x_train=_apply_groups(data.x_train, g_train),
        y_train=data.y_train,
        y_train_clean=data.y_train_clean,
        g_train=g_train,
        x_test=_apply_groups(data.x_test, g_test),
        y_test=data.y_test,
        g_test=g_test,
        meta=(_apply_groups(x_meta, g_meta), y_meta, g_meta),
        num_classes=data.num_classes,
        num_groups=NUM_GROUPS,
        input_shape=data.input_shape,
        noise=str(noise),
        minority_fraction=float(minority_fraction),
    )


def _draw_groups(size, fraction, rng):
    groups = np.zeros(size, np.int64)
    groups[rng.choice(size, size=max(1, int(round(fraction * size))), replace=False)] = MINORITY
    return groups


def _apply_groups(images, groups):
    out = images.copy()
    out[groups == MINORITY] = invert(images[groups == MINORITY])
    return out


def group_accuracies(y_true, y_pred, groups, num_groups=None):
    """Accuracy of the predicted classes `y_pred` within each group (numpy (G,), NaN for an empty group)."""
    y_true, y_pred, groups = (np.asarray(values).reshape(-1) for values in (y_true, y_pred, groups))
    if not len(y_true) == len(y_pred) == len(groups):
        raise ValueError(f"group_accuracies: {len(y_true)} labels, {len(y_pred)} predictions and {len(groups)} "
                         "groups; they must be aligned.")
    num_groups = int(groups.max()) + 1 if num_groups is None else num_groups
    correct = y_true == y_pred
    return np.array([correct[groups == g].mean() if np.any(groups == g) else np.nan for g in range(num_groups)])


def worst_group_accuracy(y_true, y_pred, groups, num_groups=None):
    """The lowest accuracy over the groups that have examples."""
    return float(np.nanmin(group_accuracies(y_true, y_pred, groups, num_groups)))
