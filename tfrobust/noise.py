"""Label-noise injection: symmetric, pair-flip, swap, transition matrix, instance-dependent.

Everything here works on numpy arrays and is seeded: the same labels, rate and
seed give the same noisy labels on every machine. Each generator returns a
`NoisyLabels` record that keeps the clean labels, which examples changed and
the transition matrix that was really realised, next to the noisy labels.

How labels are drawn
--------------------
Every generator draws each example's noisy label independently from a row of
probabilities (`from_transition_matrix` and its special cases `symmetric` and
`pair_flip` use row `T[clean]` of the transition matrix; `instance_dependent`
builds one row per example). The number of corrupted examples is therefore
binomial around `noise_rate * n`, not exactly `round(noise_rate * n)`, and
the realised transition matrix differs from the requested one by sampling
error (standard deviation `sqrt(p (1 - p) / n_i)` for a cell with
probability `p` in a class with `n_i` examples). This is what a transition
matrix means, it keeps a single code path for all generators, and it lets
`tf_noise_fn` reproduce the same distribution inside `tf.data`. Read the
realised figures from `NoisyLabels.realised_rate` and
`NoisyLabels.transition_matrix` when reporting results.

Noise rates
-----------
A noise rate is the probability that an example's label CHANGES. For
symmetric noise the new label is uniform over the other C - 1 classes. Some
papers and code bases instead "resample" the label uniformly over all C
classes with probability r', which keeps the true label with probability
1/C; their r' corresponds to our rate r = r' (C - 1) / C, that is
r' = r C / (C - 1).
"""

import dataclasses
import json
import os

import numpy as np

from tfrobust._noise_checks import MATRIX_FILE_EXTENSIONS, ROW_SUM_TOLERANCE, check_transition_matrix
from tfrobust._noise_checks import check_features, check_labels, check_mapping, check_matrix_path
from tfrobust._noise_checks import check_num_classes, check_rate, seeded_rng
from tfrobust._noise_tf import tf_noise_fn
from tfrobust._specs import KindSpecSyntax

__all__ = [
    "CIFAR10_ASYMMETRIC_MAPPING",
    "INSTANCE_FLIP_RATE_STD",
    "MATRIX_FILE_EXTENSIONS",
    "NOISE_KINDS",
    "ROW_SUM_TOLERANCE",
    "NoiseSpec",
    "NoisyLabels",
    "check_transition_matrix",
    "from_transition_matrix",
    "instance_dependent",
    "load_transition_matrix",
    "pair_flip",
    "pair_flip_transition_matrix",
    "parse_noise_spec",
    "swap_mapping",
    "swap_transition_matrix",
    "symmetric",
    "symmetric_transition_matrix",
    "tf_noise_fn",
]

# Standard deviation of the per-example flip rate of `instance_dependent`
# (Xia et al., NeurIPS 2020, use 0.1 in all their experiments).
INSTANCE_FLIP_RATE_STD = 0.1

# Asymmetric CIFAR-10 noise of Patrini et al. (CVPR 2017): truck -> automobile,
# bird -> airplane, deer -> horse, cat <-> dog. Pass it as `mapping` to
# `pair_flip` with the CIFAR-10 class order of TFDS and Keras.
CIFAR10_ASYMMETRIC_MAPPING = {9: 1, 2: 0, 4: 7, 3: 5, 5: 3}

NOISE_KINDS = ("none", "symmetric", "pairflip", "swap", "instance", "matrix")

_VALID_SPECS = (
    "'none', 'symmetric:RATE', 'pairflip:RATE', 'swap:RATE', 'instance:RATE' or "
    "'matrix:PATH' (RATE a number in [0, 1); PATH a .npy, .csv or .json file "
    "holding a C x C transition matrix)"
)
_SPEC_SYNTAX = KindSpecSyntax("noise spec", _VALID_SPECS)


@dataclasses.dataclass(frozen=True, eq=False)
class NoisyLabels:
    """Noisy labels together with the clean ones and what the noise really did.

    Attributes:
        labels: noisy labels, int64, shape `(n,)`.
        clean_labels: the labels before corruption, int64, shape `(n,)`.
        is_corrupted: bool `(n,)`, `labels != clean_labels`.
        transition_matrix: the realised `(C, C)` matrix: row `i` is the
            empirical distribution of the noisy label over the examples whose
            clean label is `i` (the identity row for classes with no example).
        num_classes: C.
    """

    labels: np.ndarray
    clean_labels: np.ndarray
    is_corrupted: np.ndarray
    transition_matrix: np.ndarray
    num_classes: int

    @property
    def realised_rate(self) -> float:
        """Fraction of examples whose label was changed (0.0 for no examples)."""
        return float(self.is_corrupted.mean()) if self.is_corrupted.size else 0.0

    def subset(self, indices) -> "NoisyLabels":
        """The record of the examples at `indices`, its realised matrix
        recomputed on them (e.g. the training part of a corrupted pool)."""
        return _noisy_labels(self.clean_labels[indices], self.labels[indices], self.num_classes)


def symmetric_transition_matrix(noise_rate, num_classes) -> np.ndarray:
    """The symmetric-noise matrix `(1 - r) I + r / (C - 1)` off the diagonal.

    `noise_rate` r is the probability that a label CHANGES; the new label is
    uniform over the other C - 1 classes. To match papers that resample the
    label uniformly over all C classes with probability r', use
    r = r' (C - 1) / C (see the module docstring).

    Raises:
        ValueError: if `num_classes < 2`, or `noise_rate` is not in
            [0, (C - 1) / C): at r = (C - 1) / C every noisy label is uniform
            whatever the true class, and above it a wrong class is more likely
            than the true one.
    """
    num_classes = check_num_classes(num_classes)
    limit = (num_classes - 1) / num_classes
    noise_rate = check_rate(
        noise_rate,
        upper=limit,
        why=(
            f"with {num_classes} classes, symmetric noise at rate >= (C - 1) / C = "
            f"{limit:.4g} makes a wrong label at least as likely as the true one"
        ),
    )
    matrix = np.full((num_classes, num_classes), noise_rate / (num_classes - 1))
    np.fill_diagonal(matrix, 1.0 - noise_rate)
    return matrix


def pair_flip_transition_matrix(noise_rate, num_classes, mapping=None) -> np.ndarray:
    """The pair-flip matrix: class `s` keeps its label with probability 1 - r
    and becomes `mapping[s]` with probability r.

    The default mapping is `c -> (c + 1) mod C` for every class (the "pair
    flip" of Han et al., Co-teaching, NeurIPS 2018). A dict `{source: target}`
    gives dataset-specific asymmetric noise (e.g. `CIFAR10_ASYMMETRIC_MAPPING`);
    classes that are not keys of the dict stay clean.

    Raises:
        ValueError: if `noise_rate` is not in [0, 0.5) (at 0.5 a source class
            is labelled as its target as often as as itself, so the two
            cannot be told apart), or `mapping` names classes outside
            [0, C) or maps a class to itself.
    """
    num_classes = check_num_classes(num_classes)
    noise_rate = check_rate(
        noise_rate,
        upper=0.5,
        why="at rate >= 0.5 a flipped class is labelled as its target at least as often as as itself",
    )
    mapping = check_mapping(mapping, num_classes)
    matrix = np.eye(num_classes)
    for source, target in mapping.items():
        matrix[source, source] = 1.0 - noise_rate
        matrix[source, target] = noise_rate
    return matrix


def swap_mapping(num_classes) -> dict:
    """The class pairs of swap noise: 0 <-> 1, 2 <-> 3, ...; with an odd C the last class stays clean."""
    num_classes = check_num_classes(num_classes)
    pairs = {}
    for first in range(0, num_classes - 1, 2):
        pairs[first], pairs[first + 1] = first + 1, first
    return pairs


def swap_transition_matrix(noise_rate, num_classes) -> np.ndarray:
    """Swap noise: the classes are paired (`swap_mapping`) and each class of a pair is labelled as
    the other with probability `noise_rate`, both ways (a <-> b). Unlike pair flip, whose flips
    run round a cycle c -> c + 1, every confusion here is mutual, as between two look-alike
    classes; the rate must stay below 0.5 for the same reason."""
    return pair_flip_transition_matrix(noise_rate, num_classes, mapping=swap_mapping(num_classes))


def symmetric(labels, noise_rate, num_classes=None, *, seed) -> NoisyLabels:
    """Symmetric noise: each label changes with probability `noise_rate`, to a
    class drawn uniformly from the other C - 1 (see
    `symmetric_transition_matrix` for the rate convention).

    `num_classes` defaults to `max(labels) + 1`. Labels are drawn per example
    from the transition matrix, so the realised rate is binomial around
    `noise_rate` (see the module docstring).
    """
    labels, num_classes = check_labels(labels, num_classes)
    matrix = symmetric_transition_matrix(noise_rate, num_classes)
    return from_transition_matrix(labels, matrix, seed=seed)


def pair_flip(labels, noise_rate, num_classes=None, *, mapping=None, seed) -> NoisyLabels:
    """Pair-flip (asymmetric) noise: see `pair_flip_transition_matrix`.

    `num_classes` defaults to `max(labels) + 1`; give it explicitly when the
    labels may miss the last classes (the default mapping depends on C).
    """
    labels, num_classes = check_labels(labels, num_classes)
    matrix = pair_flip_transition_matrix(noise_rate, num_classes, mapping)
    return from_transition_matrix(labels, matrix, seed=seed)


def from_transition_matrix(labels, transition_matrix, *, seed) -> NoisyLabels:
    """Noisy labels drawn per example: `P(noisy = j | clean = i) = T[i, j]`.

    Args:
        labels: integer class indices, shape `(n,)` (or `(n, 1)`).
        transition_matrix: `(C, C)`, non-negative, rows summing to 1.
        seed: non-negative int; the same seed gives the same noisy labels.

    Raises:
        ValueError: for a malformed matrix or labels outside [0, C).
    """
    matrix = check_transition_matrix(transition_matrix)
    labels, num_classes = check_labels(labels, matrix.shape[0])
    rng = seeded_rng(seed)
    noisy = _sample_rows(matrix[labels], rng)
    return _noisy_labels(labels, noisy, num_classes)


def instance_dependent(labels, features, noise_rate, num_classes=None, *, seed) -> NoisyLabels:
    """Instance-dependent noise, the generator of Xia et al. (NeurIPS 2020).

    Xia, Liu, Han, Wang, Gong, Liu, Niu, Tao and Sugiyama, "Part-dependent
    label noise: towards instance-dependent label noise", NeurIPS 2020
    (Algorithm 2, the instance-dependent generator also used in their code
    and in later work):

    1. For every example draw a flip rate `q_n` from the normal distribution
       N(noise_rate, 0.1^2) truncated to [0, 1].
    2. Draw one projection `W_c` of shape `(d, C)` per class `c`, with
       standard-normal entries.
    3. For example n with flattened features `x_n` (length d) and clean label
       `y_n`, compute the scores `p = x_n W_{y_n}`, set `p[y_n] = -inf` and
       take the softmax, so that the true class gets probability 0.
    4. The example's row is `q_n * softmax(p)` plus `1 - q_n` on its true
       class; the noisy label is drawn from that row.

    The per-example flip probability is `q_n`, so the expected rate is the
    mean of the truncated normal: `noise_rate` within 0.001 for rates in
    [0.3, 0.7], but pulled towards 0.5 near the ends (0.1 -> 0.129,
    0.2 -> 0.206, 0.8 -> 0.794, 0.9 -> 0.871). `noise_rate=0` is taken to
    mean clean labels (q_n = 0), where the reference generator would still
    flip about 8% of the labels. Where a wrong label goes depends on the
    features: examples of one class with different features flip towards
    different classes.
    The scale of the features sets how peaked the softmax is; Xia et al. use
    images normalised per channel, as the network sees them.

    Args:
        labels: integer class indices, shape `(n,)`.
        features: array with `n` rows (any trailing shape; flattened).
        noise_rate: mean flip rate, in [0, 1).
        num_classes: defaults to `max(labels) + 1`; at least 2.
        seed: non-negative int.
    """
    labels, num_classes = check_labels(labels, num_classes)
    check_num_classes(num_classes)
    noise_rate = check_rate(noise_rate)
    features = check_features(features, len(labels))
    rng = seeded_rng(seed)

    if noise_rate == 0.0:
        return _noisy_labels(labels, labels.copy(), num_classes)
    flip_rates = _truncated_normal(noise_rate, INSTANCE_FLIP_RATE_STD, len(labels), rng)
    projections = rng.standard_normal((num_classes, features.shape[1], num_classes))
    scores = np.empty((len(labels), num_classes))
    for label in range(num_classes):
        of_class = labels == label
        scores[of_class] = features[of_class] @ projections[label]
    rows = np.arange(len(labels))
    scores[rows, labels] = -np.inf
    scores -= scores.max(axis=1, keepdims=True)
    wrong_class = np.exp(scores)
    wrong_class /= wrong_class.sum(axis=1, keepdims=True)
    probabilities = flip_rates[:, None] * wrong_class
    probabilities[rows, labels] += 1.0 - flip_rates
    noisy = _sample_rows(probabilities, rng)
    return _noisy_labels(labels, noisy, num_classes)


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    """A kind of label noise as written in a CLI flag (see `parse_noise_spec`).

    Attributes:
        kind: one of "none", "symmetric", "pairflip", "swap", "instance", "matrix".
        rate: the noise rate (0.0 for "none" and "matrix").
        matrix_path: the transition-matrix file for "matrix", else None.
    """

    kind: str
    rate: float = 0.0
    matrix_path: str | None = None

    def __post_init__(self):
        if self.kind not in NOISE_KINDS:
            raise ValueError(f"Unknown noise kind {self.kind!r}; valid noise specs are {_VALID_SPECS}.")
        if self.kind in ("none", "matrix"):
            if self.rate != 0.0:
                raise ValueError(f"Noise kind {self.kind!r} takes no rate; got rate={self.rate!r}.")
        else:
            upper = 0.5 if self.kind in ("pairflip", "swap") else 1.0
            object.__setattr__(self, "rate", check_rate(self.rate, upper=upper))
        if self.kind == "matrix":
            check_matrix_path(self.matrix_path)
        elif self.matrix_path is not None:
            raise ValueError(f"Only noise kind 'matrix' takes a matrix_path; got kind {self.kind!r}.")

    def transition_matrix(self, num_classes):
        """The true `(C, C)` matrix the labels are drawn from, T[i, j] = P(noisy = j | clean = i).

        Returns the identity for "none", the matrix of `symmetric_transition_matrix`,
        `pair_flip_transition_matrix` or `swap_transition_matrix` for those kinds, and the file's matrix
        for "matrix". Returns None for "instance": instance-dependent noise has
        no class-level matrix (each example has its own row); read the matrix
        realised on a sample from `NoisyLabels.transition_matrix` instead.

        Raises:
            ValueError: for a bad `num_classes` or a matrix file of another size.
            FileNotFoundError: for a missing matrix file.
        """
        num_classes = check_num_classes(num_classes)
        if self.kind == "instance":
            return None
        if self.kind == "symmetric":
            return symmetric_transition_matrix(self.rate, num_classes)
        if self.kind == "pairflip":
            return pair_flip_transition_matrix(self.rate, num_classes)
        if self.kind == "swap":
            return swap_transition_matrix(self.rate, num_classes)
        if self.kind == "matrix":
            matrix = load_transition_matrix(self.matrix_path)
            if matrix.shape[0] != num_classes:
                raise ValueError(
                    f"The transition matrix in {self.matrix_path} is {matrix.shape[0]} x "
                    f"{matrix.shape[0]}, but the labels have {num_classes} classes."
                )
            return matrix
        return np.eye(num_classes)

    def apply(self, labels, num_classes, *, seed, features=None) -> NoisyLabels:
        """Corrupts `labels` (classes in [0, num_classes)); `features` only for "instance"."""
        if self.kind == "instance":
            return instance_dependent(labels, features, self.rate, num_classes, seed=seed)
        if self.kind == "none":
            labels, num_classes = check_labels(labels, num_classes)
            return _noisy_labels(labels, labels.copy(), num_classes)
        # Checking the labels first names a bad label before a bad class count.
        labels, num_classes = check_labels(labels, num_classes)
        return from_transition_matrix(labels, self.transition_matrix(num_classes), seed=seed)

    def __str__(self):
        if self.kind == "none":
            return "none"
        if self.kind == "matrix":
            return f"matrix:{self.matrix_path}"
        return f"{self.kind}:{self.rate!r}"


def parse_noise_spec(spec) -> NoiseSpec:
    """Parses "none", "symmetric:0.4", "pairflip:0.2", "swap:0.3", "instance:0.4" or
    "matrix:/path/to/T.npy" (also .csv, .json) into a `NoiseSpec`.

    `str(spec)` parses back to an equal spec. A `NoiseSpec` is returned as it
    is. The matrix file is read when the spec is applied, not here.

    Raises:
        ValueError: naming the valid forms, for anything else.
    """
    if isinstance(spec, NoiseSpec):
        return spec
    kind, has_argument, argument = _SPEC_SYNTAX.split(spec)
    if kind == "none" and not has_argument:
        return NoiseSpec("none")
    if kind == "matrix" and argument:
        return NoiseSpec("matrix", matrix_path=argument)
    if kind in ("symmetric", "pairflip", "swap", "instance") and has_argument:
        return NoiseSpec(kind, _SPEC_SYNTAX.number(spec, argument))
    raise _SPEC_SYNTAX.unparseable(spec)


def load_transition_matrix(path) -> np.ndarray:
    """Reads and checks a `(C, C)` transition matrix from a .npy, .csv
    (comma-separated rows) or .json (a list of rows) file."""
    path = check_matrix_path(os.fspath(path))
    if not os.path.exists(path):
        raise FileNotFoundError(f"Transition-matrix file {path} does not exist.")
    extension = os.path.splitext(path)[1].lower()
    if extension == ".npy":
        matrix = np.load(path, allow_pickle=False)
    elif extension == ".csv":
        matrix = np.loadtxt(path, delimiter=",", ndmin=2)
    else:
        with open(path) as file:
            matrix = json.load(file)
    return check_transition_matrix(matrix, source=path)

def _noisy_labels(clean, noisy, num_classes):
    noisy = noisy.astype(np.int64)
    counts = np.bincount(clean * num_classes + noisy, minlength=num_classes**2)
    counts = counts.reshape(num_classes, num_classes).astype(np.float64)
    class_sizes = counts.sum(axis=1, keepdims=True)
    realised = np.where(class_sizes > 0, counts / np.maximum(class_sizes, 1), np.eye(num_classes))
    return NoisyLabels(
        labels=noisy,
        clean_labels=clean,
        is_corrupted=noisy != clean,
        transition_matrix=realised,
        num_classes=num_classes,
    )


def _sample_rows(probabilities, rng):
    """One draw per row of `probabilities` (n, C) by inverting the cumulative sum.

    Normalising by the last cumulative value makes it exactly 1, so a draw
    never runs past the last class and a zero-probability class (an empty
    interval) is never drawn.
    """
    cumulative = np.cumsum(probabilities, axis=1)
    cumulative /= cumulative[:, -1:]
    uniforms = rng.random(len(probabilities))
    return (cumulative <= uniforms[:, None]).sum(axis=1)


def _truncated_normal(mean, std, size, rng):
    """Draws from N(mean, std^2) truncated to [0, 1], by rejection."""
    values = rng.normal(mean, std, size)
    outside = (values < 0) | (values > 1)
    while outside.any():
        values[outside] = rng.normal(mean, std, outside.sum())
        outside = (values < 0) | (values > 1)
    return values
