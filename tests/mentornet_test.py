import os

import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust import datasets
from tfrobust.losses import MentorDataRecorder
from tfrobust.losses import MentorNet
from tfrobust.losses import MentorNetDD
from tfrobust.losses import MentorNetPD
from tfrobust.losses import MentorNetSchedule
from tfrobust.losses import mentor_training_data
from tfrobust.losses import train_mentor
from tfrobust.losses.mentornet import progress_percent

# Probabilities of the labelled class exp(-l) for losses l = 0.5, 1, 2, 3 (label 0 of two classes).
LOSSES = np.array([0.5, 1.0, 2.0, 3.0])
PROBS = np.stack([np.exp(-LOSSES), 1 - np.exp(-LOSSES)], axis=1).astype("float32")
LABELS = np.zeros(4, dtype=int)


def weights_of(loss, labels=LABELS, probs=PROBS):
    values = np.asarray(loss(labels, probs), dtype=np.float64)
    return values / -np.log(probs[np.arange(len(labels)), labels].astype(np.float64))


def test_pd_two_batches_by_hand_at_each_stage():
    # 70th percentile of (0.5, 1, 2, 3), linear: 2 + 0.1 * (3 - 2) = 2.1.
    # Batch 1: l_pt = 0.5 * 0 + 0.5 * 2.1 = 1.05. Batch 2: l_pt = 0.5 * 1.05 + 0.5 * 2.1 = 1.575.
    stages = {
        10: ([1, 1, 1, 1], [1, 1, 1, 1]),  # burn-in (progress < 19)
        50: ([1, 1, 0, 0], [1, 1, 0, 0]),  # self-paced: 1[l <= l_pt]
        95: ([1, 1, 0.05, 0], [1, 1, 0.575, 0]),  # SPCL-linear: clip(1 - (l - l_pt), 0, 1)
    }
    for progress, (first, second) in stages.items():
        loss = MentorNetPD(reduction=None)
        loss.progress.assign(progress)
        np.testing.assert_allclose(weights_of(loss), first, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(loss.moving_percentile), 1.05, rtol=1e-6)
        np.testing.assert_allclose(weights_of(loss), second, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(float(loss.moving_percentile), 1.575, rtol=1e-6)


def pd_reference(batches, progress, percentile, decay, gamma):
    moving, weights = 0.0, []
    for losses in batches:
        moving = decay * moving + (1 - decay) * np.percentile(losses, 100 * percentile)
        gap = losses - moving
        if progress < 19:
            v = np.ones_like(losses)
        elif progress < 90:
            v = (gap <= 0).astype(float)
        else:
            v = np.clip(1 - gap / gamma, 0, 1)
        weights.append(v)
    return weights


def test_pd_random_batches_against_numpy():
    batches = [loss_helpers.random_batch(num_classes=4, batch=9, seed=seed) for seed in range(3)]
    losses = [-np.log(probs[np.arange(9), labels].astype(np.float64)) for labels, probs, _ in batches]
    for progress in (5, 40, 93):
        loss = MentorNetPD(percentile=0.6, moving_average_decay=0.3, spcl_gamma=2.0, reduction=None)
        loss.progress.assign(progress)
        for (labels, probs, _), want in zip(batches, pd_reference(losses, progress, 0.6, 0.3, 2.0)):
            np.testing.assert_allclose(weights_of(loss, labels, probs), want, rtol=1e-5, atol=1e-6)


def test_schedule_maps_epochs_to_percent_and_freezes_during_validation():
    assert [progress_percent(e, 10) for e in (0, 1, 9)] == [0, 10, 90]
    assert progress_percent(199, 200) == 99 and progress_percent(5, 3) == 99
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3)).astype("float32")
    y = rng.integers(0, 2, size=40)
    loss = MentorNetPD()
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss=loss)
    seen = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: seen.append((float(loss.progress), float(loss.moving_percentile))))
    # The validation pass runs between the training batches and on_epoch_end: were it not frozen, a
    # validation set of huge losses would move the percentile far above the training losses.
    x_val, y_val = x[:8] * 100, 1 - y[:8]
    model.fit(x, y, epochs=4, batch_size=8, verbose=0, validation_data=(x_val, y_val),
              callbacks=[MentorNetSchedule(4), record])
    assert [progress for progress, _ in seen] == [0, 25, 50, 75]
    train_losses = -np.log(np.clip(model.predict(x, verbose=0)[np.arange(40), y], 1e-7, 1))
    assert seen[-1][1] < 2 * train_losses.max()


def test_pd_standard_loss_checks(tmp_path):
    # No memory (decay 0) and no burn-in, so the shared checks, which call the loss repeatedly, apply.
    kwargs = {"moving_average_decay": 0.0, "burn_in_fraction": 0.0}
    config = {"percentile": 0.5, "moving_average_decay": 0.9, "burn_in_fraction": 0.1, "spcl_fraction": 0.8,
              "spcl_gamma": 2.0, "from_logits": True, "name": "pd"}
    loss_helpers.check_standard(MentorNetPD, kwargs, tmp_path, config)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"percentile": 1.5}, r"MentorNetPD argument `percentile` must be a finite number in \[0, 1\]"),
        ({"moving_average_decay": 1.0}, r"MentorNetPD argument `moving_average_decay` must be a finite number in \[0, 1\)"),
        ({"spcl_gamma": 0.0}, r"MentorNetPD argument `spcl_gamma` must be a finite number in \(0, inf\)"),
    ],
)
def test_pd_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MentorNetPD(**kwargs)


def test_mentor_training_data_against_numpy():
    losses = np.array([0.1, 0.4, 2.0, 0.2, 0.3, 5.0])
    progress = np.array([0, 0, 0, 50, 50, 50])
    noisy = np.array([1, 2, 3, 1, 2, 3])
    clean = np.array([1, 2, 0, 1, 0, 3])
    features, targets = mentor_training_data(losses, noisy, clean, progress, percentile=0.5)
    # Medians per progress value: 0.4 and 0.3.
    np.testing.assert_allclose(features[:, 1], [-0.3, 0.0, 1.6, -0.1, 0.0, 4.7], rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(features[:, 2], 0)
    np.testing.assert_array_equal(features[:, 3], progress)
    np.testing.assert_array_equal(targets, [1, 1, 0, 1, 0, 1])
    labelled, _ = mentor_training_data(losses, noisy, clean, progress, use_labels=True)
    np.testing.assert_array_equal(labelled[:, 2], noisy)


@pytest.fixture(scope="module")
def trained_mentor():
    """A mentor learnt from a student on a clean-labelled subset of digits with 40% symmetric noise."""
    keras.utils.set_random_seed(0)
    data = datasets.load("digits", noise="symmetric:0.4", seed=0)
    subset = slice(0, 400)
    epochs = 6
    recorder = MentorDataRecorder(data.x_train[subset], data.y_train[subset], data.y_train_clean[subset], epochs)
    student = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                                keras.layers.Dense(10, activation="softmax")])
    student.compile(optimizer=keras.optimizers.Adam(1e-2), loss="sparse_categorical_crossentropy")
    student.fit(data.x_train[subset], data.y_train[subset], epochs=epochs, batch_size=32, verbose=0,
                callbacks=[recorder])
    features, targets = recorder.training_data()
    mentor = train_mentor(features, targets, epochs=2, seed=0)
    return data, mentor, features, targets


def test_mentor_learns_which_labels_are_clean(trained_mentor):
    _, mentor, features, targets = trained_mentor
    assert features.shape == (400 * 6, 4)
    weights = 1 / (1 + np.exp(-np.asarray(mentor.predict(features, verbose=0))))
    # Clean labels get higher weights than corrupted ones, on average and by rank (AUC).
    clean, noisy = weights[targets == 1], weights[targets == 0]
    assert clean.mean() > noisy.mean() + 0.2
    auc = (clean[:, None] > noisy[None, :]).mean()
    assert auc > 0.8


def test_mentor_saves_and_loads(trained_mentor, tmp_path):
    _, mentor, features, _ = trained_mentor
    path = os.path.join(tmp_path, "mentor.keras")
    mentor.save(path)
    reloaded = keras.models.load_model(path)
    assert isinstance(reloaded, MentorNet)
    np.testing.assert_allclose(reloaded.predict(features[:50], verbose=0), mentor.predict(features[:50], verbose=0),
                               rtol=1e-6)
    # A MentorNetDD takes the path too.
    np.testing.assert_allclose(MentorNetDD(path).mentor.get_weights()[0], mentor.get_weights()[0])


def test_dd_weights_are_the_mentor_on_the_paper_features(trained_mentor):
    _, mentor, _, _ = trained_mentor
    loss = MentorNetDD(mentor, reduction=None)
    loss.progress.assign(30)
    labels, probs, _ = loss_helpers.random_batch(num_classes=4, batch=8, seed=4)
    losses = -np.log(probs[np.arange(8), labels].astype(np.float64))
    moving = 0.0
    for _ in range(2):
        moving = 0.5 * moving + 0.5 * np.percentile(losses, 70)
        features = np.stack([losses, losses - moving, np.zeros(8), np.full(8, 30.0)], axis=1).astype("float32")
        expected = 1 / (1 + np.exp(-np.asarray(mentor(features))))
        np.testing.assert_allclose(weights_of(loss, labels, probs), expected, rtol=1e-4, atol=1e-6)


def test_dd_config_round_trip_and_student_save_load(trained_mentor, tmp_path):
    data, mentor, _, _ = trained_mentor
    loss = MentorNetDD(mentor, percentile=0.6, moving_average_decay=0.0, burn_in_fraction=0.0)
    loss_helpers.check_config_round_trip(loss)
    loss_helpers.check_save_load(MentorNetDD(mentor, moving_average_decay=0.0), tmp_path)


def test_dd_rejects_a_non_mentor():
    with pytest.raises(ValueError, match="MentorNetDD argument `mentor` must be a MentorNet model"):
        MentorNetDD(mentor=3)


def test_pd_and_dd_students_train_above_chance(trained_mentor):
    data = trained_mentor[0]
    for loss in (MentorNetPD(), MentorNetDD(trained_mentor[1])):
        model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(),
                                  keras.layers.Dense(10, activation="softmax")])
        model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=loss, metrics=["accuracy"])
        model.fit(data.x_train, data.y_train, epochs=6, batch_size=64, verbose=0, callbacks=[MentorNetSchedule(6)])
        accuracy = model.evaluate(data.x_test, data.y_test, verbose=0)[1]
        assert accuracy > 0.6, loss.name  # chance is 0.1
