"""uninformed_prediction: where a loss sends a network that gives every input the same prediction."""

import keras
import numpy as np
import pytest

from tfrobust.losses import MeanAbsoluteError, TaylorLoss, uninformed_prediction

# The noisy label shares of the 8-class MLP task at 50% instance-dependent noise (broad2_selection,
# seed 0) on which evolved_bundled predicts one class for every input.
SHARES = np.array([0.088, 0.151, 0.077, 0.060, 0.230, 0.142, 0.123, 0.128])
SHARES = SHARES / SHARES.sum()


@pytest.mark.parametrize("loss", [keras.losses.CategoricalCrossentropy(), keras.losses.MeanSquaredError()],
                         ids=["cross_entropy", "brier"])
def test_a_strictly_proper_loss_settles_on_the_label_shares(loss):
    # -sum q log p and sum_y q_y |e_y - p|^2 = 1 - 2 q.p + |p|^2 are both minimised at p = q.
    np.testing.assert_allclose(uninformed_prediction(loss, SHARES), SHARES, atol=2e-3)


def test_mean_absolute_error_runs_to_the_most_frequent_label():
    # sum_y q_y |e_y - p|_1 = 2 - 2 q.p is linear in p: its minimum is the corner of argmax q.
    prediction = uninformed_prediction(MeanAbsoluteError(), SHARES)
    assert np.argmax(prediction) == np.argmax(SHARES) and prediction.max() > 0.999


def test_the_taylor_expansion_of_cross_entropy_hedges_and_evolved_bundled_does_not():
    np.testing.assert_allclose(uninformed_prediction(TaylorLoss.pretrained("cross_entropy_taylor3"), SHARES), SHARES,
                               atol=0.01)
    bundled = uninformed_prediction(TaylorLoss.pretrained("evolved_bundled"), SHARES)
    assert np.argmax(bundled) == np.argmax(SHARES) and bundled.max() > 0.999


def test_relabelling_the_classes_relabels_the_prediction():
    order = np.random.default_rng(0).permutation(len(SHARES))
    loss = TaylorLoss.pretrained("evolved_bundled_long")
    first, relabelled = uninformed_prediction(loss, SHARES), uninformed_prediction(loss, SHARES[order])
    assert 0.2 < first.max() < 0.5  # an interior minimum, sharper than the shares
    np.testing.assert_allclose(relabelled, first[order], atol=2e-3)


@pytest.mark.parametrize("shares, message", [([0.5, 0.6], "sum to 1"), ([1.0], "at least 2"),
                                             ([1.5, -0.5], "non-negative"), ([[0.5, 0.5]], "1-D")])
def test_bad_shares_name_the_problem(shares, message):
    with pytest.raises(ValueError, match=message):
        uninformed_prediction(MeanAbsoluteError(), shares)
