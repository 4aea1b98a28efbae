"""Population models: member m of the stacked model computes exactly what single model m computes."""

import numpy as np
import pytest

from tfrobust import models
from tfrobust.search import population


@pytest.mark.parametrize("architecture", ["mlp", "cnn"])
def test_forward_pass_matches_single_models(architecture):
    rng = np.random.default_rng(1)
    x = rng.random((9, 8, 8, 1)).astype("float32")
    stacked = population.build_population_model(architecture, (8, 8, 1), 10, 3)
    singles = [models.build_model(architecture, (8, 8, 1), 10, seed=10 * m) for m in range(3)]
    for member, single in enumerate(singles):
        population.set_member_weights(stacked, member, single.get_weights())
    outputs = np.asarray(stacked(x))
    for member, single in enumerate(singles):
        # einsum / one stacked convolution vs Dense / Conv2D: the same sums in another order (float32 rounding).
        np.testing.assert_allclose(outputs[:, member], np.asarray(single(x)), rtol=1e-5, atol=1e-6)
        for a, b in zip(population.member_weights(stacked, member), single.get_weights()):
            np.testing.assert_array_equal(a, b)
