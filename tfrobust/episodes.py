"""N-way K-shot episodes for few-shot learning, with noisy support / query labels.

An episode (a "task") draws N classes, K labelled support examples of each
(what the learner adapts on) and Q query examples of each (what the adapted
learner is scored on), and relabels the N classes 0..N-1 in a random order,
as in Finn et al. (ICML 2017) and the NestedMAML experiments (Killamsetty et
al., AAAI 2022). Meta-training and meta-testing use disjoint classes:

    split = episodes.load_fewshot("digits", test_classes=(6, 7, 8, 9), seed=0)
    train = episodes.sample_episodes(split.x_train, split.y_train, ways=3, shots=5, queries=5,
                                     num_episodes=200, support_noise=0.4, seed=0)
    test = episodes.sample_episodes(split.x_test, split.y_test, ways=3, shots=5, queries=10,
                                    num_episodes=100, seed=1)

Label noise is symmetric WITHIN the episode: a noisy label is, with
probability `noise` independently per example, replaced by one of the other
N - 1 episode labels drawn uniformly (so the realised rate is `noise` in
expectation and tasks differ in how many labels are wrong, which is what a
per-task weight can pick up).
"""

import dataclasses

import numpy as np
import tensorflow as tf

from tfrobust import datasets

# Independent streams of one `seed`: the classes/examples of each episode, and its noise.
_EPISODE_STREAM, _NOISE_STREAM, _SPLIT_STREAM = range(3)


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Episodes:
    """A pool of episodes, stacked: the first axis is the episode.

    Attributes:
        support_x: `(episodes, ways * shots, *input_shape)` support inputs.
        support_y: `(episodes, ways * shots)` support labels in [0, ways),
            noisy where `support_noise > 0`.
        support_y_clean: the true support labels.
        query_x: `(episodes, ways * queries, *input_shape)` query inputs.
        query_y: `(episodes, ways * queries)` query labels, noisy where
            `query_noise > 0`.
        query_y_clean: the true query labels.
        classes: `(episodes, ways)` the original class of episode label
            0..ways-1.
        ways, shots, queries: N, K and Q.
    """

    support_x: np.ndarray
    support_y: np.ndarray
    support_y_clean: np.ndarray
    query_x: np.ndarray
    query_y: np.ndarray
    query_y_clean: np.ndarray
    classes: np.ndarray
    ways: int
    shots: int
    queries: int

    def __len__(self):
        return len(self.support_y)

    def __repr__(self):
        return (f"Episodes({len(self)} x {self.ways}-way {self.shots}-shot, {self.queries} queries per class, "
                f"support noise {self.support_noise_rate:.2f}, query noise {self.query_noise_rate:.2f})")

    @property
    def support_noise_rate(self):
        """The realised fraction of wrong support labels."""
        return float(np.mean(self.support_y != self.support_y_clean))

    @property
    def query_noise_rate(self):
        """The realised fraction of wrong query labels."""
        return float(np.mean(self.query_y != self.query_y_clean))

    def inputs(self, indices=None, clean_query=False):
        """The episodes as the dict of arrays that `tfrobust.reweighting.MAML` takes.

        Keys: support_x, support_y, query_x, query_y (the clean query labels
        with `clean_query=True`, for scoring) and task_index (the episode's
        row in this pool, which keys NestedMAML's persistent weights).
        """
        indices = np.arange(len(self)) if indices is None else np.asarray(indices)
        return {
            "support_x": self.support_x[indices],
            "support_y": self.support_y[indices],
            "query_x": self.query_x[indices],
            "query_y": (self.query_y_clean if clean_query else self.query_y)[indices],
            "task_index": indices.astype(np.int64),
        }

    def dataset(self, batch_size, *, shuffle=True, seed=0, repeat=False):
        """A `tf.data.Dataset` of meta-batches of `batch_size` episodes for `fit`.

        Batches are full (the last partial one is dropped): the trainers
        unroll their per-task loop over a fixed meta-batch size.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer; got {batch_size!r}.")
        if batch_size > len(self):
            raise ValueError(f"batch_size {batch_size} is larger than the {len(self)} episodes of the pool; "
                             "sample more episodes or use a smaller meta-batch.")
        dataset = tf.data.Dataset.from_tensor_slices(self.inputs())
        if shuffle:
            dataset = dataset.shuffle(len(self), seed=seed, reshuffle_each_iteration=True)
        if repeat:
            dataset = dataset.repeat()
        return dataset.batch(int(batch_size), drop_remainder=True).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True, eq=False)
class FewShotSplit:
    """Examples of a data set split by CLASS for meta-training and meta-testing.

    Attributes:
        x_train, y_train: examples of the meta-training classes (original labels).
        x_validation, y_validation: clean held-out examples of the
            meta-training classes, for validation episodes (NestedMAML).
        x_test, y_test: examples of the meta-test classes, never seen in meta-training.
        train_classes, test_classes: the two disjoint class sets.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_validation: np.ndarray
    y_validation: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    train_classes: tuple
    test_classes: tuple


def load_fewshot(name="digits", *, test_classes=(6, 7, 8, 9), validation_fraction=0.2, seed=0):
    """Splits a bundled data set ("digits", "mnist5k") by class for few-shot learning.

    Every example of the data set is used (its train, validation and test
    splits pooled): the classes in `test_classes` go to meta-testing, the
    rest to meta-training, of which a stratified `validation_fraction` is
    held out, clean, for validation episodes.

    Raises:
        ValueError: for unknown classes, or fewer than two classes on either side.
    """
    data = datasets.load(name, validation_fraction=0.1, test_fraction=0.2, seed=0)
    x = np.concatenate([data.x_train, data.x_val, data.x_test])
    y = np.concatenate([data.y_train_clean, data.y_val_clean, data.y_test])
    all_classes = set(range(data.num_classes))
    test_classes = tuple(sorted({int(c) for c in test_classes}))
    if not set(test_classes) <= all_classes:
        raise ValueError(f"test_classes {test_classes} must be classes of {name!r}, i.e. in 0..{data.num_classes - 1}.")
    train_classes = tuple(sorted(all_classes - set(test_classes)))
    if len(test_classes) < 2 or len(train_classes) < 2:
        raise ValueError(f"Few-shot learning needs at least two classes on each side; got meta-train classes "
                         f"{train_classes} and meta-test classes {test_classes}.")
    if not 0.0 < validation_fraction < 1.0:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction!r}.")
    is_test = np.isin(y, test_classes)
    train_index = np.flatnonzero(~is_test)
    rng = np.random.default_rng([seed, _SPLIT_STREAM])
    held = []
    for label in train_classes:  # stratified by hand: a fraction of each class
        members = train_index[y[train_index] == label]
        held.extend(rng.choice(members, size=max(1, int(round(validation_fraction * len(members)))), replace=False))
    held = np.sort(np.asarray(held))
    kept = np.setdiff1d(train_index, held)
    return FewShotSplit(x[kept], y[kept], x[held], y[held], x[is_test], y[is_test], train_classes, test_classes)


def sample_episodes(x, y, *, ways, shots, queries, num_episodes, seed=0, support_noise=0.0, query_noise=0.0):
    """Draws `num_episodes` N-way K-shot episodes from examples `(x, y)`.

    Each episode draws `ways` distinct classes uniformly, then `shots` support
    and `queries` query examples of each class without replacement (support
    and query disjoint), and labels the classes 0..ways-1 in the drawn order.

    Args:
        x, y: examples and their integer (original) class labels.
        ways, shots, queries: N, K and Q (per class).
        num_episodes: how many episodes.
        seed: seeds the episodes and, independently, their noise.
        support_noise, query_noise: symmetric noise rates in [0, 1) within
            each episode's N classes (see the module docstring).

    Raises:
        ValueError: naming the problem: N larger than the classes available,
            K + Q larger than a class's examples, a bad noise rate or count.
    """
    x, y = np.asarray(x), np.asarray(y)
    for value, what in ((ways, "ways"), (shots, "shots"), (queries, "queries"), (num_episodes, "num_episodes")):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{what} must be a positive integer; got {value!r}.")
    if len(x) != len(y) or y.ndim != 1:
        raise ValueError(f"x and y must hold the same examples, y of shape (n,); got {len(x)} inputs and labels "
                         f"of shape {y.shape}.")
    if ways < 2:
        raise ValueError(f"ways must be at least 2 (a 1-way task has nothing to classify); got {ways}.")
    for rate, what in ((support_noise, "support_noise"), (query_noise, "query_noise")):
        if not 0.0 <= rate < 1.0:
            raise ValueError(f"{what} must be a rate in [0, 1); got {rate!r}.")
    classes, counts = np.unique(y, return_counts=True)
    if ways > len(classes):
        raise ValueError(f"A {ways}-way episode needs {ways} classes; these examples have only {len(classes)} "
                         f"({classes.tolist()}). Use fewer ways or more classes.")
    if shots + queries > counts.min():
        smallest = classes[np.argmin(counts)]
        raise ValueError(f"shots + queries = {shots + queries} examples per class, but class {smallest} has only "
                         f"{counts.min()}. Use fewer shots or queries.")
    by_class = {label: np.flatnonzero(y == label) for label in classes}
    rng = np.random.default_rng([seed, _EPISODE_STREAM])
    episode_classes = np.stack([rng.choice(classes, size=ways, replace=False) for _ in range(num_episodes)])
    support_index = np.empty((num_episodes, ways * shots), np.int64)
    query_index = np.empty((num_episodes, ways * queries), np.int64)
    for episode, chosen in enumerate(episode_classes):
        for label, original in enumerate(chosen):
            drawn = rng.choice(by_class[original], size=shots + queries, replace=False)
            support_index[episode, label * shots:(label + 1) * shots] = drawn[:shots]
            query_index[episode, label * queries:(label + 1) * queries] = drawn[shots:]
    support_y = np.repeat(np.arange(ways), shots)[np.newaxis].repeat(num_episodes, axis=0)
    query_y = np.repeat(np.arange(ways), queries)[np.newaxis].repeat(num_episodes, axis=0)
    noise_rng = np.random.default_rng([seed, _NOISE_STREAM])
    return Episodes(
        support_x=x[support_index], support_y=_symmetric_noise(support_y, ways, support_noise, noise_rng),
        support_y_clean=support_y, query_x=x[query_index],
        query_y=_symmetric_noise(query_y, ways, query_noise, noise_rng), query_y_clean=query_y,
        classes=episode_classes, ways=int(ways), shots=int(shots), queries=int(queries),
    )


def _symmetric_noise(labels, ways, rate, rng):
    """Each label, with probability `rate`, becomes one of the other `ways - 1` labels, uniformly."""
    flip = rng.random(labels.shape) < rate
    # Adding 1..ways-1 modulo ways lands uniformly on the other labels.
    shift = rng.integers(1, ways, size=labels.shape)
    return np.where(flip, (labels + shift) % ways, labels).astype(np.int64)
