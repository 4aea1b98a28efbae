"""Training on a subset of the data that a callback re-chooses every few epochs.

`SubsetSchedule` is both halves of the mechanism: a Keras callback that
chooses the subset (`indices`) and its per-example weights at the start of
every `every`-th epoch, and `dataset()`, the `tf.data` batches `model.fit`
trains on, which read the current choice from two variables each time an
epoch's iterator starts. The model, the loss and `fit` stay the user's own:

    coreset = AdaCore(x_train, y_train, fraction=0.1)
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    model.fit(coreset.dataset(batch_size=32), epochs=10, callbacks=[coreset])

Subclasses implement `_choose(model)`; `RandomSubset` (a stratified uniform
draw, weights 1) is the baseline a coreset has to beat.
"""

import numbers
import time

import keras
import numpy as np
import tensorflow as tf


def class_budgets(labels, size):
    """Examples to keep per class: `size` split in proportion to the class counts, at least one per class present.

    The split is by largest remainder (after raising empty budgets to one), so
    the budgets sum to `size` exactly and no class gets more than it has.

    Returns:
        int64 array, one budget per class index up to `labels.max()` (0 for absent classes).

    Raises:
        ValueError: `size` below the number of classes present or above the number of examples.
    """
    counts = np.bincount(labels)
    present = counts > 0
    if size < present.sum():
        raise ValueError(f"A subset of {size} examples cannot keep one example of each of the "
                         f"{int(present.sum())} classes present; ask for at least {int(present.sum())}.")
    if size > len(labels):
        raise ValueError(f"A subset of {size} examples is larger than the data ({len(labels)} examples); "
                         f"ask for at most {len(labels)} (or a fraction in (0, 1]).")
    quota = size * counts / len(labels)
    budgets = np.where(present, np.maximum(np.floor(quota), 1), 0).astype(np.int64)
    while budgets.sum() > size:  # the classes raised to one example are paid for by the most over-quota class
        over = np.where(budgets > 1, budgets - quota, -np.inf)
        budgets[np.argmax(over)] -= 1
    remainder = quota - budgets
    for label in np.argsort(-remainder, kind="stable")[: size - budgets.sum()]:
        budgets[label] += 1
    return budgets


def _subset_size(num_examples, fraction, size):
    if (fraction is None) == (size is None):
        raise ValueError("Give the subset's size as exactly one of fraction= (in (0, 1]) or size= (a count).")
    if fraction is not None:
        if isinstance(fraction, bool) or not isinstance(fraction, numbers.Real) or not 0 < fraction <= 1:
            raise ValueError(f"fraction must be a number in (0, 1]; got {fraction!r}.")
        return max(1, int(round(fraction * num_examples)))
    if isinstance(size, bool) or not isinstance(size, numbers.Integral) or size < 1:
        raise ValueError(f"size must be a positive integer; got {size!r}.")
    return int(size)


class SubsetSchedule(keras.callbacks.Callback):
    """Base class: a subset of `(x, y)` and its sample weights, re-chosen at the start of every `every`-th epoch.

    Pass the object to `fit` as a callback and train on `dataset()`. Before
    the first choice (and if `fit` is run without the callback) the subset is
    a stratified random draw with weights 1.

    Args:
        x: training features, an array with one row per example.
        y: integer class labels, shape `(n,)` (the labels trained on).
        fraction: the subset's size as a fraction of the examples, in (0, 1].
        size: the subset's size as a count (give `fraction` or `size`).
        every: choose a new subset at epochs 0, every, 2 * every, ...
        seed: seeds the initial draw and the batch order.

    Attributes:
        indices: int64 array, the examples of the current subset, grouped by class.
        weights: float32 array aligned with `indices`, the sample weights.
        budgets: examples per class (fixed: the subset's size never changes).
        selections: how many times a subset was chosen by the callback.
        selection_seconds: wall-clock seconds spent choosing, in total.
    """

    def __init__(self, x, y, *, fraction=None, size=None, every=1, seed=0):
        super().__init__()
        x = np.asarray(x)
        y = np.asarray(y)
        if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"y must be integer class labels of shape (n,); got dtype {y.dtype} and shape "
                             f"{y.shape} (one-hot labels: pass np.argmax(y, axis=-1)).")
        if len(x) != len(y):
            raise ValueError(f"x and y must have one row per example; got {len(x)} and {len(y)}.")
        if len(y) == 0 or y.min() < 0:
            raise ValueError("y must be non-empty with class labels >= 0.")
        if isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1:
            raise ValueError(f"every must be a positive number of epochs; got {every!r}.")
        self.x = x
        self.y = y.astype(np.int64)
        self.num_classes = int(self.y.max()) + 1
        self.every = int(every)
        self.seed = seed
        self.budgets = class_budgets(self.y, _subset_size(len(y), fraction, size))
        self.size = int(self.budgets.sum())
        self.members = [np.flatnonzero(self.y == label) for label in range(self.num_classes)]
        self.selections = 0
        self.selection_seconds = 0.0
        self._rng = np.random.default_rng(seed)
        indices = self._random_draw()
        self._indices = tf.Variable(indices, trainable=False, dtype=tf.int64, name="subset_indices")
        self._weights = tf.Variable(np.ones(self.size, np.float32), trainable=False, name="subset_weights")

    @property
    def indices(self):
        return self._indices.numpy()

    @property
    def weights(self):
        return self._weights.numpy()

    def _random_draw(self):
        return np.concatenate([
            self._rng.choice(members, size=budget, replace=False)
            for members, budget in zip(self.members, self.budgets) if budget
        ]).astype(np.int64)

    def _choose(self, model):
        """`(indices, weights)` of the next subset, `self.size` of each, grouped by class."""
        raise NotImplementedError

    def select(self, model=None):
        """Chooses a new subset now (the callback calls this); returns `(indices, weights)`."""
        start = time.perf_counter()
        indices, weights = self._choose(model if model is not None else self.model)
        if len(indices) != self.size or len(weights) != self.size:  # the dataset's length is fixed
            raise RuntimeError(f"{type(self).__name__} chose {len(indices)} examples; the subset has {self.size}.")
        self._indices.assign(np.asarray(indices, np.int64))
        self._weights.assign(np.asarray(weights, np.float32))
        self.selections += 1
        self.selection_seconds += time.perf_counter() - start
        return self.indices, self.weights

    def on_epoch_begin(self, epoch, logs=None):
        if epoch % self.every == 0 or self.selections == 0:
            self.select(self.model)

    def dataset(self, batch_size, *, seed=None):
        """Batches `(x, y, sample_weight)` of the current subset, reshuffled every epoch, for `model.fit`.

        The examples are looked up when an epoch's iterator starts, so a subset
        chosen at the start of an epoch is what that epoch trains on.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
        features = tf.constant(self.x)
        labels = tf.constant(self.y)
        indices, weights = self._indices, self._weights

        def lookup(positions):
            chosen = tf.gather(indices, positions)
            return tf.gather(features, chosen), tf.gather(labels, chosen), tf.gather(weights, positions)

        order = tf.data.Dataset.range(self.size).shuffle(
            self.size, seed=self.seed if seed is None else seed, reshuffle_each_iteration=True
        )
        return order.batch(batch_size).map(lookup).prefetch(tf.data.AUTOTUNE)


class RandomSubset(SubsetSchedule):
    """A stratified uniform random subset of the same per-class sizes, weights 1, redrawn every `every` epochs.

    The baseline of the coreset papers: AdaCore should beat it at equal size.
    Arguments as `SubsetSchedule`.
    """

    def _choose(self, model):
        return self._random_draw(), np.ones(self.size, np.float32)
