"""tfrobust.optimizers: one meaning per optimizer name."""

import keras
import pytest

from tfrobust import optimizers


def test_sgd_is_plain_and_momentum_is_sgd_with_momentum():
    sgd = optimizers.make_optimizer("sgd", 0.1)
    assert type(sgd) is keras.optimizers.SGD and sgd.momentum == 0.0
    momentum = optimizers.make_optimizer("momentum", 0.1)
    assert type(momentum) is keras.optimizers.SGD and momentum.momentum == optimizers.MOMENTUM == 0.9
    assert not momentum.nesterov


@pytest.mark.parametrize("name", optimizers.OPTIMIZERS)
def test_every_listed_name_builds_a_new_optimizer_with_the_learning_rate(name):
    optimizer = optimizers.make_optimizer(name, 0.025)
    assert isinstance(optimizer, keras.optimizers.Optimizer)
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.025)
    # A new object each call: two models never share optimizer state.
    assert optimizers.make_optimizer(name, 0.025) is not optimizer


def test_names_are_case_insensitive():
    assert type(optimizers.make_optimizer("Adam", 1e-3)) is keras.optimizers.Adam
    assert type(optimizers.make_optimizer("SGD", 1e-3)) is keras.optimizers.SGD


def test_unknown_name_lists_the_choices():
    with pytest.raises(ValueError, match=r"Unknown optimizer 'adamm'.*'sgd', 'momentum'.*'adam'"):
        optimizers.make_optimizer("adamm", 0.1)


@pytest.mark.parametrize("learning_rate", [0, -0.1, "0.1", None, True, float("inf"), float("nan")])
def test_learning_rate_must_be_positive_and_finite(learning_rate):
    with pytest.raises(ValueError, match="learning rate must be a positive finite number"):
        optimizers.make_optimizer("adam", learning_rate)


def test_numpy_learning_rates_are_accepted():
    import numpy as np

    optimizer = optimizers.make_optimizer("sgd", np.float32(0.5))
    assert float(keras.ops.convert_to_numpy(optimizer.learning_rate)) == pytest.approx(0.5)
