"""Input checks shared by the label-noise generators (`tfrobust.noise`) and its TF sampler.

Every rule about what a label array, a noise rate, a seed or a transition
matrix may be lives here once; each check returns the value in canonical form
or raises a ValueError that names the problem and the fix. `tfrobust.noise`
re-exports the public ones (`check_transition_matrix`, `ROW_SUM_TOLERANCE`,
`MATRIX_FILE_EXTENSIONS`).
"""

import math
import numbers
import os

import numpy as np

# How far a row of a transition matrix may sum from 1: loose enough for
# probabilities rounded to 5 decimals in a hand-written file (1/3 as 0.33333).
# Sampling renormalises every row, so the slack never biases a draw.
ROW_SUM_TOLERANCE = 1e-4

MATRIX_FILE_EXTENSIONS = (".npy", ".csv", ".json")


def check_transition_matrix(transition_matrix, *, source="The transition matrix") -> np.ndarray:
    """`transition_matrix` as a float64 array, or a ValueError saying what is wrong and how to fix it.

    The one set of rules for every transition matrix in tfrobust (noise
    generators, matrix files, loss corrections): T[i, j] = P(noisy label = j |
    clean label = i) is square with at least 2 classes, finite, non-negative,
    and each row sums to 1 within `ROW_SUM_TOLERANCE`. `source` names the
    matrix in the message (a file path, or a loss's argument).
    """
    try:
        matrix = np.asarray(transition_matrix, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(
            f"{source} must be a square matrix of numbers (a nested list or array); got {transition_matrix!r}."
        ) from None
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1] or matrix.shape[0] < 2:
        raise ValueError(
            f"{source} must be square, (C, C) with at least 2 classes (row i: clean class i, column j: "
            f"noisy class j); got shape {matrix.shape}."
        )
    if not np.all(np.isfinite(matrix)):
        raise ValueError(f"{source} must be finite; it has non-finite entries (NaN or inf).")
    if np.any(matrix < 0):
        row, column = np.argwhere(matrix < 0)[0]
        raise ValueError(
            f"{source} entries are probabilities and must be >= 0; got negative probabilities, e.g. "
            f"T[{row}, {column}] = {float(matrix[row, column]):.10g}."
        )
    row_sums = matrix.sum(axis=1)
    bad_rows = np.flatnonzero(np.abs(row_sums - 1.0) > ROW_SUM_TOLERANCE)
    if bad_rows.size:
        sums = ", ".join(f"{total:.6g}" for total in row_sums[bad_rows])
        message = (
            f"{source} rows must sum to 1 within {ROW_SUM_TOLERANCE:g} (row i is the distribution of the noisy "
            f"label given clean class i); rows {bad_rows.tolist()} sum to [{sums}]."
        )
        if np.all(np.abs(matrix.sum(axis=0) - 1.0) <= ROW_SUM_TOLERANCE):
            message += " Its columns sum to 1: pass the transpose."
        else:
            message += " Normalise the rows."
        raise ValueError(message)
    return matrix



def check_labels(labels, num_classes):
    array = np.asarray(labels)
    if array.ndim == 2 and array.shape[1] == 1:
        array = array[:, 0]
    if array.ndim != 1:
        raise ValueError(
            f"Labels must be integer class indices of shape (n,) or (n, 1); got shape {array.shape}. "
            "Convert one-hot labels with argmax first."
        )
    if array.dtype == bool or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise ValueError(f"Labels must be integer class indices; got dtype {array.dtype}.")
    if np.issubdtype(array.dtype, np.floating):
        fractional = ~np.isfinite(array) | (array != np.round(array))
        if fractional.any():
            raise ValueError(
                "Labels must be integer class indices; got non-integer values such as "
                f"{float(array[fractional][0]):.10g} (at index {np.flatnonzero(fractional)[0]})."
            )
    array = array.astype(np.int64)
    if num_classes is None:
        if array.size == 0:
            raise ValueError("num_classes cannot be inferred from empty labels; pass num_classes.")
        num_classes = int(array.max()) + 1
    num_classes = check_num_classes(num_classes, minimum=1)
    out_of_range = (array < 0) | (array >= num_classes)
    if out_of_range.any():
        raise ValueError(
            f"Labels must lie in [0, {num_classes}) for {num_classes} classes; got "
            f"{array[out_of_range][0]} at index {np.flatnonzero(out_of_range)[0]}."
        )
    return array, num_classes


def check_num_classes(num_classes, minimum=2):
    if not is_integer(num_classes) or num_classes < minimum:
        raise ValueError(f"num_classes must be an integer >= {minimum}; got {num_classes!r}.")
    return int(num_classes)


def check_rate(noise_rate, upper=1.0, why=None):
    if (
        isinstance(noise_rate, bool)
        or not isinstance(noise_rate, numbers.Real)
        or not math.isfinite(noise_rate)
        or not 0.0 <= noise_rate < upper
    ):
        reason = f" ({why})" if why else ""
        raise ValueError(f"noise_rate must be a number in [0, {upper:.4g}){reason}; got {noise_rate!r}.")
    return float(noise_rate)


def check_mapping(mapping, num_classes):
    if mapping is None:
        return {source: (source + 1) % num_classes for source in range(num_classes)}
    if not isinstance(mapping, dict):
        raise ValueError(f"mapping must be a dict {{source_class: target_class}}; got {mapping!r}.")
    checked = {}
    for source, target in mapping.items():
        for value in (source, target):
            if not is_integer(value) or not 0 <= value < num_classes:
                raise ValueError(
                    f"mapping entry {source!r}: {target!r} names a class outside [0, {num_classes}); "
                    "keys and values must be class indices."
                )
        if source == target:
            raise ValueError(
                f"mapping maps class {source} to itself; leave clean classes out of the mapping."
            )
        checked[int(source)] = int(target)
    return checked


def check_features(features, num_examples):
    if features is None:
        raise ValueError(
            "Instance-dependent noise needs the features of the examples (an array with one row "
            "per label); got features=None."
        )
    array = np.asarray(features)
    # float32 stays float32: a large image set would double in float64.
    if not np.issubdtype(array.dtype, np.floating):
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(
                f"Features for instance-dependent noise must be numeric; got dtype {array.dtype}."
            ) from None
    if array.ndim == 0 or len(array) != num_examples:
        raise ValueError(
            f"Features must have one row per label: {num_examples} labels but features of "
            f"shape {array.shape}."
        )
    array = array.reshape(num_examples, -1)
    if not np.all(np.isfinite(array)):
        raise ValueError("Features for instance-dependent noise contain NaN or inf.")
    return array


def check_seed(seed):
    if not is_integer(seed) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a non-negative integer (below 2**63); got {seed!r}.")
    return int(seed)


def is_integer(value):
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def seeded_rng(seed):
    return np.random.default_rng(check_seed(seed))


def check_matrix_path(path):
    if not isinstance(path, str) or not path:
        raise ValueError(f"Noise kind 'matrix' needs the path of a matrix file; got {path!r}.")
    if os.path.splitext(path)[1].lower() not in MATRIX_FILE_EXTENSIONS:
        raise ValueError(
            f"Transition-matrix file {path!r} must end in one of {', '.join(MATRIX_FILE_EXTENSIONS)}."
        )
    return path
