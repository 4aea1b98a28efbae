"""What every reweighting trainer must do: Keras fit/evaluate/save, no leaked BatchNorm
statistics, named errors, a config round trip, and MirroredStrategy on two logical CPUs."""

import inspect

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfrobust import distribute
from tfrobust import reweighting
from tfrobust.losses import TaylorLoss
from tfrobust.reweighting import _core
from tests.l2rw_test import _data
from tests.l2rw_test import _model

TRAINERS = [reweighting.L2RW, reweighting.MetaWeightNet]


def _compiled(trainer_class, model=None, **kwargs):
    _, _, x_meta, y_meta = _data()
    trainer = trainer_class(model or _model(False), meta_data=(x_meta, y_meta), meta_batch_size=4, **kwargs)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    return trainer


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_lookahead_batchnorm_statistics_do_not_leak(trainer_class):
    x, y, _, _ = _data()
    model = _model(batch_norm=True)
    plain = _model(batch_norm=True)
    plain.set_weights(model.get_weights())
    plain(x, training=True)  # the one forward whose statistics the step may keep
    trainer = _compiled(trainer_class, model)
    trainer.fit(x, y, batch_size=len(y), epochs=1, shuffle=False, verbose=0)
    batch_norm = [layer for layer in model.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    reference = [layer for layer in plain.layers if isinstance(layer, keras.layers.BatchNormalization)][0]
    np.testing.assert_allclose(batch_norm.moving_mean.numpy(), reference.moving_mean.numpy(), atol=1e-7)
    np.testing.assert_allclose(batch_norm.moving_variance.numpy(), reference.moving_variance.numpy(), atol=1e-7)
    assert np.abs(reference.moving_mean.numpy()).max() > 1e-3, "the statistics must have moved at all"


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_fit_history_and_saved_model_evaluate(trainer_class, tmp_path):
    x, y, x_meta, y_meta = _data(n=24)
    model = _model(False)
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    trainer = _compiled(trainer_class, model)
    history = trainer.fit(x, y, batch_size=8, epochs=2, validation_data=(x_meta, y_meta), verbose=0)
    assert set(history.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert len(history.history["loss"]) == 2 and np.all(np.isfinite(history.history["loss"]))
    # The trainer's validation loss is the plain mean base loss of the wrapped model.
    np.testing.assert_allclose(
        history.history["val_loss"][-1], model.evaluate(x_meta, y_meta, verbose=0)[0], rtol=1e-5
    )
    path = str(tmp_path / "classifier.keras")
    model.save(path)
    restored = keras.saving.load_model(path)
    np.testing.assert_allclose(restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_config_round_trip(trainer_class):
    trainer = _compiled(trainer_class, loss=TaylorLoss.pretrained(), seed=3)
    config = trainer.get_config()
    parameters = set(inspect.signature(trainer_class.__init__).parameters) - {"self", "kwargs", "meta_data"}
    assert parameters <= set(config), f"get_config() lacks {sorted(parameters - set(config))}"
    rebuilt = trainer_class.from_config(config)
    assert rebuilt.get_config() == config
    revived = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(trainer))
    assert type(revived) is trainer_class and revived.get_config() == config
    assert revived.meta_data is None  # meta sets are data, not config


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_pretrained_taylor_loss_and_dataset_meta_set(trainer_class):
    x, y, x_meta, y_meta = _data()
    batched = tf.data.Dataset.from_tensor_slices((x_meta, y_meta)).batch(3)
    trainer = trainer_class(_model(False), meta_data=batched, loss=TaylorLoss.pretrained())
    np.testing.assert_array_equal(trainer.meta_data[1], y_meta)
    unbatched = trainer_class(_model(False), meta_data=tf.data.Dataset.from_tensor_slices((x_meta, y_meta)))
    np.testing.assert_array_equal(unbatched.meta_data[0], x_meta)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1))
    history = trainer.fit(x, y, batch_size=6, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_bad_input_is_named(trainer_class):
    x, y, x_meta, y_meta = _data()
    trainer = trainer_class(_model(False))
    trainer.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="has no meta set.*meta_split"):
        trainer.fit(x, y, epochs=1, verbose=0)
    with pytest.raises(ValueError, match=r"meta labels must lie in \[0, 3\).*found label 7"):
        trainer_class(_model(False), meta_data=(x_meta, np.full(len(y_meta), 7)))
    with pytest.raises(ValueError, match="integer class indices"):
        trainer_class(_model(False), meta_data=(x_meta, x_meta))
    one_output = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1, activation="sigmoid")])
    with pytest.raises(ValueError, match=r"output is \(batch, classes\).*\(2, 1\)"):
        trainer_class(one_output, meta_data=(x_meta, y_meta))
    mean_loss = keras.losses.sparse_categorical_crossentropy
    with pytest.raises(ValueError, match=r"one value per example.*shape \(\)"):
        trainer_class(_model(False), meta_data=(x_meta, y_meta), loss=lambda t, p: tf.reduce_mean(mean_loss(t, p)))
    good = trainer_class(_model(False), meta_data=(x_meta, y_meta))
    with pytest.raises(ValueError, match="pass the base loss to the constructor"):
        good.compile(optimizer="sgd", loss="mse")
    good.compile(optimizer="sgd")
    with pytest.raises(ValueError, match="learns the example weights itself"):
        good.fit(x, y, sample_weight=np.ones(len(y)), epochs=1, verbose=0)


def test_other_backends_are_refused(monkeypatch):
    monkeypatch.setattr(keras.backend, "backend", lambda: "jax")
    with pytest.raises(RuntimeError, match="TensorFlow backend only.*KERAS_BACKEND=tensorflow"):
        reweighting.L2RW(_model(False))


def test_meta_batches_are_seeded_by_step():
    _, _, x_meta, y_meta = _data(meta=30)
    trainer = reweighting.L2RW(_model(False), meta_data=(x_meta, y_meta), meta_batch_size=10, seed=5)
    first = trainer._draw_meta_batch(tf.constant(0, tf.int64))
    again = trainer._draw_meta_batch(tf.constant(0, tf.int64))
    other = trainer._draw_meta_batch(tf.constant(1, tf.int64))
    np.testing.assert_array_equal(first[0], again[0])
    assert first[2] == 10.0 and len(first[1]) == 10
    assert len({row.tobytes() for row in first[0].numpy()}) == 10, "drawn without replacement"
    assert not np.array_equal(first[0], other[0])


def _train_mirrored_or_not(strategy, trainer_class):
    x, y, x_meta, y_meta = _data(n=32, meta=10)
    with strategy.scope():
        model = _model(False)
        trainer = trainer_class(model, meta_data=(x_meta, y_meta), meta_batch_size=6, seed=1)
        trainer.compile(optimizer=keras.optimizers.SGD(0.2, momentum=0.9))
    history = trainer.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    return history.history["loss"], [w.numpy() for w in trainer.weights]


@pytest.mark.parametrize("trainer_class", TRAINERS)
def test_mirrored_strategy_matches_single_device(trainer_class):
    """Two replicas of 8 examples and 3 meta examples each must give the one-device weights.

    Only the order of float32 sums differs (replica partial sums are
    all-reduced, about 1e-7 relative error per sum). Measured after these
    four steps: at most 1.8e-7 absolute on weights of size up to 0.77 (L2RW),
    1.2e-7 (MetaWeightNet). The tolerance, 1e-6 + 1e-5 |w|, is five times
    that; without the all-reduces (each replica normalising over its own
    half batch and meta shard) the weights differ by 0.1 to 0.3.
    """
    mirrored = distribute.get_strategy("mirrored", devices=["/cpu:0", "/cpu:1"])
    assert mirrored.num_replicas_in_sync == 2
    single_loss, single_weights = _train_mirrored_or_not(distribute.get_strategy("off"), trainer_class)
    double_loss, double_weights = _train_mirrored_or_not(mirrored, trainer_class)
    np.testing.assert_allclose(double_loss, single_loss, rtol=1e-5)
    for after_mirrored, after_single in zip(double_weights, single_weights):
        np.testing.assert_allclose(after_mirrored, after_single, rtol=1e-5, atol=1e-6)
    initial = _model(False).get_weights()
    assert not np.allclose(single_weights[0], initial[0]), "training must have moved the weights"


def test_all_reduce_is_identity_outside_a_strategy():
    value = tf.constant([1.0, 2.0])
    assert _core.all_reduce_sum(value) is value
    assert _core.replica_context() == (0, 1)


def _train_on_noisy_digits(trainer_class, name, epochs, seed=0):
    """Trains a 64-unit MLP on `name` with 40% symmetric noise and 10 clean examples per class."""
    from tfrobust import datasets

    meta, data = datasets.load(name, noise="symmetric:0.4", seed=seed).meta_split(per_class=10, seed=seed)
    model = keras.Sequential(
        [keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(64, activation="relu"),
         keras.layers.Dense(10, activation="softmax")]
    )
    trainer = trainer_class(model, meta_data=meta, seed=seed)
    trainer.compile(optimizer=keras.optimizers.SGD(0.1, momentum=0.9), metrics=["accuracy"])
    trainer.fit(data.train_dataset(100, seed=seed), epochs=epochs, verbose=0)
    accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)[1]
    return trainer, data, accuracy


def _training_set_weights(trainer, data):
    """The trainer's example weights on the whole training set, over training batches of 100."""
    return np.concatenate([trainer.example_weights(data.x_train[i : i + 100], data.y_train[i : i + 100])
                           for i in range(0, len(data.y_train), 100)])


def test_l2rw_end_to_end_on_noisy_digits():
    # L2RW's weights at one moment swing with the last few steps: corrupted / clean mean weight after single
    # epochs 6-10 ranged from 0.08 to 1.18 (seeds 0-2, TensorFlow 2.21), and one snapshot after epoch 10, which
    # this test used to take, went from 0.46-0.55 to 0.92 on seed 0 with a new TensorFlow. Pooled over the
    # snapshots after epochs 6-10 it is 0.32-0.49 (seeds 0-2; test accuracy 0.86-0.94, chance 0.1).
    trainer, data, _ = _train_on_noisy_digits(reweighting.L2RW, "digits", epochs=5)
    snapshots = []
    for _ in range(5):
        trainer.fit(data.train_dataset(100, seed=0), epochs=1, verbose=0)
        snapshots.append(_training_set_weights(trainer, data))
    accuracy = trainer.model.evaluate(data.x_test, data.y_test, verbose=0)[1]
    assert accuracy > 0.5
    weights = np.stack(snapshots)
    assert np.isfinite(weights).all() and weights[:, ~data.is_corrupted].mean() > 0
    assert weights[:, data.is_corrupted].mean() < 0.75 * weights[:, ~data.is_corrupted].mean()


def test_meta_weight_net_end_to_end_on_noisy_mnist5k():
    # Measured over seeds 0-2 (3 epochs): test accuracy 0.84-0.86; corrupted / clean
    # mean weight 0.52-0.60. On the much smaller "digits" set (12 steps an
    # epoch) the meta-net had not yet learned to down-weight high losses.
    trainer, data, accuracy = _train_on_noisy_digits(reweighting.MetaWeightNet, "mnist5k", epochs=3)
    assert accuracy > 0.5
    weights = trainer.example_weights(data.x_train, data.y_train)
    assert weights[data.is_corrupted].mean() < 0.8 * weights[~data.is_corrupted].mean()
