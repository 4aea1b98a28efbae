"""PopulationTaylorLoss: each member's loss is its own TaylorLoss."""

import numpy as np
import pytest

from tfrobust.losses import TaylorLoss
from tfrobust.search.population_loss import PopulationTaylorLoss

COEFFICIENTS = np.array(
    [
        [1.0, 1.0, 1.0, -0.5, 1.0, 1 / 3, -0.5, 0.0],  # cubic CE expansion
        [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0],  # squared error
        [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25],  # arbitrary
    ]
)


def test_population_loss_matches_taylor_loss_per_member():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(5), size=(7, 3)).astype("float32")  # (batch, population, classes)
    labels = rng.integers(0, 5, size=7)
    values = np.asarray(PopulationTaylorLoss(COEFFICIENTS).member_losses(labels.astype("float32"), probs))
    for member, row in enumerate(COEFFICIENTS):
        expected = np.asarray(TaylorLoss(row, reduction=None)(labels, probs[:, member]))
        # Same polynomial, broadcast over a population axis: only float32 rounding may differ.
        np.testing.assert_allclose(values[:, member], expected, rtol=1e-5, atol=1e-6)


def test_population_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match="population, n_coefficients"):
        PopulationTaylorLoss(np.zeros(8))
    with pytest.raises(ValueError, match="Order 2 takes 5"):
        PopulationTaylorLoss(np.zeros((2, 8)), order=2)
    loss = PopulationTaylorLoss(COEFFICIENTS)
    with pytest.raises(ValueError, match=r"shape \(batch, 3, classes\)"):
        loss(np.zeros(4), np.full((4, 2, 10), 0.1, dtype="float32"))
    with pytest.raises(ValueError, match="Expected coefficients of shape"):
        loss.assign(np.zeros((2, 8)))
