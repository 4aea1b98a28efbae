"""Population training must give each member exactly the update it gets alone."""

import numpy as np
import pytest

from tfrobust import models, population
from tfrobust.losses import TaylorLoss
from tfrobust.losses.population_taylor import PopulationTaylorLoss
from tfrobust.search import tasks, training

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
        np.testing.assert_allclose(values[:, member], expected, rtol=1e-5, atol=1e-6)


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
        np.testing.assert_allclose(outputs[:, member], np.asarray(single(x)), rtol=1e-5, atol=1e-6)
        for a, b in zip(population.member_weights(stacked, member), single.get_weights()):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("architecture, optimizer", [("mlp", "adam"), ("cnn", "sgd"), ("linear", "rmsprop")])
def test_member_update_equals_standalone_training(architecture, optimizer):
    task = tasks.Task("digits", architecture, "symmetric:0.4", steps=15, batch_size=16, optimizer=optimizer,
                      learning_rate=0.01)
    data = training.prepare_task(tasks.TaskInstance(task, 5))
    singles = [models.build_model(architecture, data.input_shape, 10, seed=100 + 7 * m) for m in range(3)]
    initial = [np.stack(ws) for ws in zip(*[s.get_weights() for s in singles])]
    trainer = training.PopulationTrainer(task, data.input_shape, 10, 3, 3)
    trainer.train(data, COEFFICIENTS, initial_weights=initial)
    for member, single in enumerate(singles):
        single.compile(optimizer=training.make_optimizer(optimizer, 0.01), loss=TaylorLoss(COEFFICIENTS[member]))
        single.fit(data.x_stream, data.y_stream, batch_size=16, epochs=1, shuffle=False, verbose=0)
        for got, want in zip(population.member_weights(trainer.model, member), single.get_weights()):
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
