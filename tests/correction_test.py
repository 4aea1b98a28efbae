import math

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust import noise
from tfrobust.losses import BackwardCorrection
from tfrobust.losses import ForwardCorrection


def symmetric_noise(num_classes, rate):
    """T with 1 - rate on the diagonal and rate spread evenly over the other classes."""
    off = rate / (num_classes - 1)
    return np.full((num_classes, num_classes), off) + (1 - rate - off) * np.eye(num_classes)


PAIR_FLIP = [[0.7, 0.3, 0.0, 0.0], [0.0, 0.7, 0.3, 0.0], [0.0, 0.0, 0.7, 0.3], [0.3, 0.0, 0.0, 0.7]]


def test_values_by_hand():
    matrix = [[0.8, 0.2], [0.2, 0.8]]
    # Forward: p T = [0.9 * 0.8 + 0.1 * 0.2, 0.9 * 0.2 + 0.1 * 0.8] = [0.74, 0.26].
    np.testing.assert_allclose(float(ForwardCorrection(matrix)([1], [[0.9, 0.1]])), -math.log(0.26), rtol=1e-6)
    # Backward: T^{-1} = [[4, -1], [-1, 4]] / 3, so (T^{-1} l)_1 = (-l_0 + 4 l_1) / 3.
    expected = (math.log(0.8) - 4 * math.log(0.2)) / 3
    np.testing.assert_allclose(float(BackwardCorrection(matrix)([1], [[0.8, 0.2]])), expected, rtol=1e-6)


def test_values_against_numpy():
    labels, probs, logits = loss_helpers.random_batch(num_classes=4, seed=2)
    p = probs.astype("float64")
    matrix = np.asarray(PAIR_FLIP)
    forward = -np.log((p @ matrix)[np.arange(len(labels)), labels])
    per_class = -np.log(p)
    backward = np.array([np.linalg.solve(matrix, l)[y] for l, y in zip(per_class, labels)])
    kwargs = {"transition_matrix": PAIR_FLIP}
    loss_helpers.check_value(ForwardCorrection, kwargs, labels, probs, logits, forward, atol=1e-6)
    loss_helpers.check_value(BackwardCorrection, kwargs, labels, probs, logits, backward, atol=1e-6)


def test_identity_matrix_is_cross_entropy():
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, seed=3)
    cross_entropy = float(keras.losses.SparseCategoricalCrossentropy()(labels, probs))
    for loss_class in (ForwardCorrection, BackwardCorrection):
        np.testing.assert_allclose(float(loss_class(np.eye(4))(labels, probs)), cross_entropy, rtol=1e-5)


def test_backward_is_unbiased_over_the_noise():
    # sum_j T[y, j] L(j, p) = -log p_y: in expectation over noisy labels, the clean cross-entropy.
    _, probs, _ = loss_helpers.random_batch(num_classes=4, seed=4)
    matrix = symmetric_noise(4, 0.4)
    loss = BackwardCorrection(matrix, reduction=None)
    by_noisy_label = np.stack([np.asarray(loss(np.full(len(probs), j), probs)) for j in range(4)], axis=1)
    for clean in range(4):
        expected = -np.log(probs[:, clean].astype("float64"))
        np.testing.assert_allclose(by_noisy_label @ matrix[clean], expected, rtol=1e-4)


def test_matrix_is_stored_as_nested_list():
    loss = BackwardCorrection(np.asarray(PAIR_FLIP))
    assert loss.transition_matrix == PAIR_FLIP
    assert loss.get_config()["transition_matrix"] == PAIR_FLIP


@pytest.mark.parametrize("loss_class", [ForwardCorrection, BackwardCorrection])
def test_standard_loss_checks(tmp_path, loss_class):
    matrix = symmetric_noise(4, 0.3).tolist()
    config = {"transition_matrix": PAIR_FLIP, "from_logits": True, "name": "corrected"}
    loss_helpers.check_standard(loss_class, {"transition_matrix": matrix}, tmp_path, config)


@pytest.mark.parametrize("loss_class", [ForwardCorrection, BackwardCorrection])
@pytest.mark.parametrize(
    "matrix, message",
    [
        ([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], r"must be square.*got shape \(2, 3\)"),
        ([0.5, 0.5], r"must be square"),
        ([[1.0]], r"must be square.*at least 2 classes"),
        ([[1.0, 0.0], [0.5]], r"must be a square matrix of numbers"),
        ([[0.9, 0.1], [0.3, 0.6]], r"rows must sum to 1.*rows \[1\] sum to \[0\.9\]\. Normalise the rows\.$"),
        ([[0.9, 0.6], [0.1, 0.4]], r"rows must sum to 1.*rows \[0, 1\] sum to \[1\.5, 0\.5\]\. .*transpose"),
        ([[1.2, -0.2], [0.0, 1.0]], r"entries are probabilities and must be >= 0"),
        ([[float("nan"), 1.0], [0.0, 1.0]], r"must be finite"),
    ],
)
def test_bad_matrices_raise(loss_class, matrix, message):
    with pytest.raises(ValueError, match=rf"{loss_class.__name__} `transition_matrix` {message}"):
        loss_class(matrix)


def test_rows_may_be_off_by_rounding():
    ForwardCorrection([[0.33333, 0.33333, 0.33333]] * 3)  # rows sum to 0.99999


def test_backward_needs_an_invertible_matrix():
    singular = symmetric_noise(2, 0.5)  # every row [0.5, 0.5]: labels carry no information
    with pytest.raises(ValueError, match="BackwardCorrection needs an invertible `transition_matrix`"):
        BackwardCorrection(singular)
    ForwardCorrection(singular)  # the forward correction does not invert T


@pytest.mark.parametrize("loss_class", [ForwardCorrection, BackwardCorrection])
def test_matrix_size_must_match_the_predictions(loss_class):
    with pytest.raises(ValueError, match="4 x 4 transition matrix but the predictions have 3 classes"):
        loss_class(PAIR_FLIP)([0], [[0.2, 0.3, 0.5]])


@pytest.mark.parametrize(
    "matrix",
    [[[1.0]], [[0.9, 0.1], [0.3, 0.6]], [[0.33333] * 3] * 3, [[1.2, -0.2], [0.0, 1.0]], PAIR_FLIP],
)
def test_the_losses_check_a_matrix_by_the_noise_modules_rules(matrix):
    """One validator: a matrix the noise generators accept is accepted here, and the same error otherwise."""
    try:
        noise.check_transition_matrix(matrix, source="ForwardCorrection `transition_matrix`")
    except ValueError as error:
        with pytest.raises(ValueError) as raised:
            ForwardCorrection(matrix)
        assert str(raised.value) == str(error)
    else:
        ForwardCorrection(matrix)
