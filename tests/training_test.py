"""Population training must give each member exactly the update it gets alone."""

import numpy as np
import pytest

from tfrobust import models
from tfrobust.losses import TaylorLoss
from tfrobust.optimizers import make_optimizer
from tfrobust.search import population, tasks, training

COEFFICIENTS = np.array(
    [
        [1.0, 1.0, 1.0, -0.5, 1.0, 1 / 3, -0.5, 0.0],  # cubic CE expansion
        [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0],  # squared error
        [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25],  # arbitrary
    ]
)


@pytest.mark.parametrize("architecture, optimizer, pooling", [
    ("mlp", "adam", "fused"), ("cnn", "momentum", "fused"), ("cnn", "momentum", "reshape_max"),
    ("linear", "rmsprop", "fused"),
])
def test_member_update_equals_standalone_training(architecture, optimizer, pooling):
    task = tasks.Task("digits", architecture, "symmetric:0.4", steps=15, batch_size=16, optimizer=optimizer,
                      learning_rate=0.01)
    data = training.prepare_task(tasks.TaskInstance(task, 5))
    singles = [models.build_model(architecture, data.input_shape, 10, seed=100 + 7 * m) for m in range(3)]
    initial = [np.stack(ws) for ws in zip(*[s.get_weights() for s in singles])]
    trainer = training.PopulationTrainer(task, data.input_shape, 10, 3, 3, pooling=pooling)
    trainer.train(data, COEFFICIENTS, initial_weights=initial)
    for member, single in enumerate(singles):
        single.compile(optimizer=make_optimizer(optimizer, 0.01), loss=TaylorLoss(COEFFICIENTS[member]))
        single.fit(data.x_stream, data.y_stream, batch_size=16, epochs=1, shuffle=False, verbose=0)
        for got, want in zip(population.member_weights(trainer.model, member), single.get_weights()):
            # float32: the stacked einsum sums in another order than Dense's matmul, and 15 steps compound
            # the rounding; 1e-4 relative is ~1000 ulps, far below what a wrong update would move.
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)
        # And the weights did move: the comparison is not between two untrained models.
        assert not np.allclose(single.get_weights()[0], [w[member] for w in initial][0])


def test_trainer_reuse_resets_state():
    """A reused (compiled) trainer gives the same result as a fresh one."""
    task = tasks.Task("digits", "mlp", "symmetric:0.2", steps=20, batch_size=32)
    data = training.prepare_task(tasks.TaskInstance(task, 2))
    trainer = training.PopulationTrainer(task, data.input_shape, 10, 3, 3)
    first, _ = trainer.train(data, COEFFICIENTS)
    trainer.train(data, COEFFICIENTS[::-1])
    again, _ = trainer.train(data, COEFFICIENTS)
    fresh, _ = training.PopulationTrainer(task, data.input_shape, 10, 3, 3).train(data, COEFFICIENTS)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first, fresh)
