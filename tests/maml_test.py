"""MAML and NestedMAML against computations written out here: the inner SGD step in numpy, the
task-weight meta-gradient by explicit nested tapes, and meta-learning on easy episodes."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import episodes
from tfrobust.reweighting.maml import MAML
from tfrobust.reweighting.nested_maml import NestedMAML


@pytest.fixture
def float64():
    policy, floatx = keras.config.dtype_policy(), keras.config.floatx()
    keras.config.set_floatx("float64")
    keras.config.set_dtype_policy("float64")
    yield
    keras.config.set_floatx(floatx)
    keras.config.set_dtype_policy(policy)


def _softmax(logits):
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def test_adaptation_equals_a_hand_written_sgd_step(float64):
    """Softmax regression: grad_W of the mean CE is X^T (P - Y) / n, grad_b is mean(P - Y)."""
    rng = np.random.default_rng(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])  # logits: Keras clips probabilities
    kernel, bias = rng.normal(size=(4, 3)), rng.normal(size=3)
    model.set_weights([kernel, bias])
    x, y = rng.normal(size=(6, 4)), np.array([0, 1, 2, 0, 1, 2])
    trainer = MAML(model, inner_learning_rate=0.3, loss=_cross_entropy_from_logits())
    trainable = [tf.constant(kernel), tf.constant(bias)]
    adapted = trainer.adapt(trainable, [], tf.constant(x), tf.constant(y), steps=2)

    expected_kernel, expected_bias = kernel, bias
    for _ in range(2):
        residual = _softmax(x @ expected_kernel + expected_bias) - np.eye(3)[y]
        expected_kernel = expected_kernel - 0.3 * x.T @ residual / len(y)
        expected_bias = expected_bias - 0.3 * residual.mean(axis=0)
    assert np.all(np.isfinite(adapted[0].numpy())) and not np.allclose(adapted[0].numpy(), kernel)
    np.testing.assert_allclose(adapted[0].numpy(), expected_kernel, atol=1e-12)
    np.testing.assert_allclose(adapted[1].numpy(), expected_bias, atol=1e-12)


def _cross_entropy_from_logits():
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)


def _mlp(ways=3, features=4, hidden=5):
    """A tanh MLP with logit outputs (the trainers then take `_cross_entropy_from_logits()`)."""
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(hidden, activation="tanh"),
                             keras.layers.Dense(ways)])


def _random_tasks(rng, tasks, ways=3, per_class=2, features=4):
    labels = np.tile(np.repeat(np.arange(ways), per_class), (tasks, 1))
    return {"support_x": rng.normal(size=(tasks, ways * per_class, features)), "support_y": labels,
            "query_x": rng.normal(size=(tasks, ways * per_class, features)),
            "query_y": rng.permutation(labels.T).T, "task_index": np.arange(tasks)}


def _explicit_query_losses(params, task, alpha, steps):
    """The MAML query losses of one task for the tanh MLP, written with tf ops and nested tapes."""
    def forward(weights, x):
        kernel1, bias1, kernel2, bias2 = weights
        return tf.matmul(tf.tanh(tf.matmul(x, kernel1) + bias1), kernel2) + bias2

    def cross_entropy(weights, x, y):
        log_probabilities = tf.nn.log_softmax(forward(weights, x))
        return -tf.gather(log_probabilities, y, axis=1, batch_dims=1)

    weights = list(params)
    for _ in range(steps):
        with tf.GradientTape() as tape:
            tape.watch(weights)
            support_loss = tf.reduce_mean(cross_entropy(weights, task["support_x"], task["support_y"]))
        weights = [w - alpha * g for w, g in zip(weights, tape.gradient(support_loss, weights))]
    return cross_entropy(weights, task["query_x"], task["query_y"])


@pytest.mark.parametrize("weighting", ["task", "instance"])
def test_weight_meta_gradient_equals_explicit_nested_tapes(float64, weighting):
    """dL_val(theta_hat(W))/dW: the trainer's forward-mode dot products vs nested tapes through W."""
    rng = np.random.default_rng(1)
    model = _mlp()
    train, validation = _random_tasks(rng, 2), _random_tasks(rng, 2)
    alpha, eta, steps = 0.4, 0.7, 2
    trainer = NestedMAML(model, validation, num_training_tasks=2, query_size=6, weighting=weighting,
                         inner_learning_rate=alpha, inner_steps=steps, lookahead_learning_rate=eta,
                         loss=_cross_entropy_from_logits())
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    weights = rng.uniform(0.5, 1.5, size=(2,) if weighting == "task" else (2, 6))
    weight_matrix = np.tile(weights[:, None], (1, 6)) if weighting == "task" else weights
    as_tensors = lambda tasks: {key: tf.constant(value) for key, value in tasks.items()}  # noqa: E731
    instance_gradient, validation_loss, _, _ = trainer.weight_meta_gradient(
        theta, as_tensors(train), tf.constant(weight_matrix), as_tensors(validation))
    got = instance_gradient.numpy() if weighting == "instance" else instance_gradient.numpy().sum(axis=1)

    w = tf.Variable(weights)
    with tf.GradientTape() as outer:
        with tf.GradientTape() as inner:
            inner.watch(theta)
            matrix = tf.tile(w[:, None], [1, 6]) if weighting == "task" else w
            objective = sum(tf.reduce_sum(matrix[i] * _explicit_query_losses(
                theta, {k: v[i] for k, v in train.items()}, alpha, steps)) for i in range(2)) / 2
        lookahead = [t - eta * g for t, g in zip(theta, inner.gradient(objective, theta))]
        expected_loss = tf.reduce_mean(tf.stack([_explicit_query_losses(
            lookahead, {k: v[i] for k, v in validation.items()}, alpha, steps) for i in range(2)]))
    expected = outer.gradient(expected_loss, w).numpy()
    assert np.all(np.isfinite(got)) and np.abs(expected).max() > 1e-4
    np.testing.assert_allclose(validation_loss.numpy(), expected_loss.numpy(), rtol=1e-10)
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-9)


def test_weights_follow_the_official_update_rule_and_fit_runs():
    rng = np.random.default_rng(2)
    model = _mlp()
    train = {k: (v.astype("float32") if v.dtype.kind == "f" else v) for k, v in _random_tasks(rng, 4).items()}
    validation = {k: (v.astype("float32") if v.dtype.kind == "f" else v) for k, v in _random_tasks(rng, 2).items()}
    trainer = NestedMAML(model, validation, num_training_tasks=4, weight_learning_rate=50.0, inner_steps=1,
                         loss=_cross_entropy_from_logits())
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    theta = [tf.convert_to_tensor(v) for v in model.trainable_variables]
    batch = {k: tf.constant(v[:2]) for k, v in train.items()}
    instance_gradient, *_ = trainer.weight_meta_gradient(theta, batch, tf.fill([2, 6], 0.005),
                                                         {k: tf.constant(v) for k, v in validation.items()})
    expected = np.maximum(0.005 - 50.0 * np.maximum(instance_gradient.numpy().sum(axis=1), -10.0), 0.0)
    expected = np.where(expected == 0.0, 1e-5, expected)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices(train).batch(2, drop_remainder=True), epochs=1,
                          verbose=0)
    assert np.isfinite(history.history["loss"][0]) and np.isfinite(history.history["validation_loss"][0])
    # The first step's weights were computed at the initial theta, before its update.
    np.testing.assert_allclose(trainer.task_weights.numpy()[:2], expected, rtol=1e-4, atol=1e-8)
    assert np.all(trainer.task_weights.numpy() > 0)


def test_maml_beats_chance_on_easy_episodes_and_meta_training_helps():
    split = episodes.load_fewshot("digits", test_classes=(6, 7, 8, 9), seed=0)
    train = episodes.sample_episodes(split.x_train, split.y_train, ways=2, shots=3, queries=3, num_episodes=120,
                                     seed=0)
    test = episodes.sample_episodes(split.x_test, split.y_test, ways=2, shots=3, queries=5, num_episodes=60, seed=1)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                              keras.layers.Dense(16, activation="relu"), keras.layers.Dense(2, activation="softmax")])
    trainer = MAML(model, inner_learning_rate=0.5, inner_steps=1)
    before = trainer.evaluate_episodes(test).mean()
    trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
    trainer.fit(train.dataset(4, seed=0), epochs=3, verbose=0)
    after = trainer.evaluate_episodes(test)
    assert after.shape == (60,)
    # Meta-test classes 6-9 were never trained on. Measured (seeded): 0.74 before meta-training, 0.78 after;
    # chance is 0.5.
    assert after.mean() > 0.72 and after.mean() > before + 0.02


def test_bad_input_is_named():
    model = _mlp()
    with pytest.raises(ValueError, match="num_training_tasks"):
        NestedMAML(model, None)
    with pytest.raises(ValueError, match="needs `query_size`"):
        NestedMAML(model, None, num_training_tasks=3, weighting="instance")
    with pytest.raises(ValueError, match="`weighting` must be one of"):
        NestedMAML(model, None, num_training_tasks=3, weighting="example")
    with pytest.raises(ValueError, match="inner_learning_rate"):
        MAML(model, inner_learning_rate=-1.0)
    with pytest.raises(TypeError, match="wraps a keras.Model"):
        MAML(lambda x: x)
    with pytest.raises(ValueError, match="validation_episodes must be"):
        NestedMAML(model, {"support_x": np.zeros((1, 2, 4))}, num_training_tasks=3)
    trainer = MAML(model)
    with pytest.raises(ValueError, match="missing"):
        trainer.query_losses([tf.convert_to_tensor(v) for v in model.trainable_variables], {"support_x": 0})
    nested = NestedMAML(model, None, num_training_tasks=3)
    nested.compile()
    with pytest.raises(ValueError, match="has no validation tasks"):
        nested.fit(tf.data.Dataset.from_tensor_slices(_random_tasks(np.random.default_rng(0), 2)).batch(
            2, drop_remainder=True), verbose=0)


def test_config_round_trip():
    trainer = NestedMAML(_mlp(), None, num_training_tasks=5, query_size=6, weighting="instance", inner_steps=3,
                         first_order=True, lookahead_learning_rate=0.2)
    config = trainer.get_config()
    revived = NestedMAML.from_config(config)
    for key in ("num_training_tasks", "query_size", "weighting", "inner_steps", "first_order",
                "lookahead_learning_rate", "weight_init", "threshold"):
        assert getattr(revived, key) == getattr(trainer, key)
    assert revived.task_weights.shape == (5, 6)


def test_trained_trainers_save_and_load_as_keras_files(tmp_path):
    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 4)).astype("float32")
    y = np.repeat(np.arange(6), 20)
    train = episodes.sample_episodes(x, y, ways=3, shots=2, queries=2, num_episodes=4, seed=0)
    validation = episodes.sample_episodes(x, y, ways=3, shots=2, queries=2, num_episodes=2, seed=1)
    for trainer in (MAML(_mlp(), inner_steps=1, loss=_cross_entropy_from_logits()),
                    NestedMAML(_mlp(), validation, num_training_tasks=4, inner_steps=1,
                               weight_learning_rate=50.0, loss=_cross_entropy_from_logits())):
        trainer.compile(optimizer=keras.optimizers.Adam(1e-2))
        history = trainer.fit(train.dataset(2, seed=0), epochs=1, verbose=0)
        assert np.isfinite(history.history["loss"][0])
        before = trainer.evaluate_episodes(validation, batch_size=2)
        path = tmp_path / f"{type(trainer).__name__}.keras"
        trainer.save(path)
        revived = keras.models.load_model(path)
        assert type(revived) is type(trainer)
        np.testing.assert_array_equal(revived.evaluate_episodes(validation, batch_size=2), before)
        for saved, loaded in zip(trainer.model.weights, revived.model.weights):
            np.testing.assert_array_equal(saved.numpy(), loaded.numpy())
        if isinstance(trainer, NestedMAML):  # the learned task weights travel with the trainer
            assert not np.allclose(trainer.task_weights.numpy(), trainer.weight_init)
            np.testing.assert_array_equal(revived.task_weights.numpy(), trainer.task_weights.numpy())
        # The wrapped model alone is an ordinary .keras file too.
        trainer.model.save(tmp_path / "model.keras")
        np.testing.assert_array_equal(keras.models.load_model(tmp_path / "model.keras").predict(x[:8], verbose=0),
                                      trainer.model.predict(x[:8], verbose=0))
