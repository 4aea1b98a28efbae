import numpy as np
import pytest

from tfrobust import datasets
from tfrobust import imbalance


def test_long_tail_profile_against_formula():
    # n_c = floor(n_max * rho^(-c / (C - 1))) with n_max = 100, rho = 100, C = 10: 100, 59, 35, 21, 12, 7, 4, 2, 1, 1.
    counts = imbalance.long_tail_counts(100, 10, 100)
    expected = np.floor(100 * 100.0 ** (-np.arange(10) / 9) + 1e-9)
    np.testing.assert_array_equal(counts, expected)
    np.testing.assert_array_equal(imbalance.long_tail_counts(500, 5, 10), [500, 281, 158, 88, 50])
    assert counts[0] == 100 and counts[-1] == 1


def test_step_profile():
    np.testing.assert_array_equal(imbalance.step_counts(100, 10, 10), [100] * 5 + [10] * 5)
    np.testing.assert_array_equal(imbalance.step_counts(100, 5, 4), [100, 100, 25, 25, 25])
    np.testing.assert_array_equal(imbalance.step_counts(10, 4, 100), [10, 10, 1, 1])  # at least one


@pytest.mark.parametrize("text", ["none", "longtail:100", "step:10", "longtail:2.5"])
def test_parse_round_trip(text):
    spec = imbalance.parse_imbalance_spec(text)
    assert imbalance.parse_imbalance_spec(str(spec)) == spec and str(spec) == text


@pytest.mark.parametrize("text", ["longtail", "longtail:x", "longtail:0.5", "step:-3", "zipf:10", "none:3", 7])
def test_bad_specs_raise(text):
    with pytest.raises(ValueError, match="(imbalance spec|Imbalance ratio|takes no ratio)"):
        imbalance.parse_imbalance_spec(text)


def test_subsample_is_seeded_and_keeps_the_profile():
    labels = np.repeat(np.arange(4), 30)
    spec = imbalance.parse_imbalance_spec("longtail:10")
    kept = spec.subsample(labels, 4, seed=1)
    np.testing.assert_array_equal(np.bincount(labels[kept], minlength=4), imbalance.long_tail_counts(30, 4, 10))
    np.testing.assert_array_equal(kept, spec.subsample(labels, 4, seed=1))
    assert not np.array_equal(kept, spec.subsample(labels, 4, seed=2))
    assert np.all(np.diff(kept) > 0)


def test_load_imbalances_only_the_training_split_and_combines_with_noise():
    balanced = datasets.load("digits", noise="symmetric:0.4", seed=3)
    data = datasets.load("digits", noise="symmetric:0.4", seed=3, imbalance="longtail:10")
    counts = imbalance.class_counts(data.y_train_clean, 10)
    n_max = imbalance.class_counts(balanced.y_train_clean, 10).min()
    np.testing.assert_array_equal(counts, imbalance.long_tail_counts(int(n_max), 10, 10))
    assert str(data.imbalance) == "longtail:10"
    # Validation and test splits are those of the balanced load; the training split is a subset of its.
    np.testing.assert_array_equal(data.y_val, balanced.y_val)
    np.testing.assert_array_equal(data.y_test, balanced.y_test)
    rows = {row.tobytes(): (noisy, clean) for row, noisy, clean in
            zip(balanced.x_train.reshape(len(balanced.x_train), -1), balanced.y_train, balanced.y_train_clean)}
    for row, noisy, clean in zip(data.x_train.reshape(len(data.x_train), -1), data.y_train, data.y_train_clean):
        assert rows[row.tobytes()] == (noisy, clean)  # same example, same noisy label as in the balanced set
    np.testing.assert_array_equal(data.is_corrupted, data.y_train != data.y_train_clean)
    assert 0.3 < data.is_corrupted.mean() < 0.5
    np.testing.assert_array_equal(data.noisy_labels.labels, data.y_train)
    step = datasets.load("digits", seed=3, imbalance="step:10")
    assert sorted(set(imbalance.class_counts(step.y_train, 10))) == [int(n_max) // 10, int(n_max)]
    with pytest.raises(ValueError, match="Cannot parse imbalance spec"):
        datasets.load("digits", imbalance="longtail")


def test_per_class_and_balanced_accuracy_by_hand():
    y_true = np.array([0, 0, 0, 0, 1, 2, 2])
    y_pred = np.array([0, 0, 0, 1, 0, 2, 0])
    np.testing.assert_allclose(imbalance.per_class_accuracy(y_true, y_pred, 4), [0.75, 0.0, 0.5, np.nan])
    np.testing.assert_allclose(imbalance.balanced_accuracy(y_true, y_pred, 4), (0.75 + 0 + 0.5) / 3)
    scores = np.eye(4)[y_pred]
    np.testing.assert_allclose(imbalance.balanced_accuracy(y_true, scores, 4), (0.75 + 0 + 0.5) / 3)


def test_rarest_classes_and_their_accuracy_by_hand():
    counts = [100, 50, 50, 10, 10]  # five classes: ceil(0.2 * 5) = 1 rarest class; ties go to the larger index
    np.testing.assert_array_equal(imbalance.rarest_classes(counts), [4])
    np.testing.assert_array_equal(imbalance.rarest_classes(counts, fraction=0.5), [4, 3, 2])
    np.testing.assert_array_equal(imbalance.rarest_classes([5] * 10), [9, 8])  # balanced: the last classes
    y_true = np.array([0, 0, 1, 2, 3, 3, 4, 4, 4, 4])
    y_pred = np.array([0, 1, 1, 2, 3, 0, 4, 4, 0, 0])
    # Class 4: 2 of 4 right. Classes 3 and 4 (fraction 0.4): (1/2 + 2/4) / 2.
    assert imbalance.rarest_classes_accuracy(y_true, y_pred, counts) == 0.5
    assert imbalance.rarest_classes_accuracy(y_true, y_pred, counts, fraction=0.4) == 0.5
    assert imbalance.rarest_classes_accuracy(y_true, y_pred, [5, 5, 1, 100, 5], fraction=0.2) == 1.0  # class 2
    with pytest.raises(ValueError, match="fraction"):
        imbalance.rarest_classes(counts, fraction=0.0)


def test_load_keeps_what_the_imbalance_left_out_apart_from_training():
    balanced = datasets.load("digits", seed=1)
    data = datasets.load("digits", seed=1, imbalance="longtail:10", noise="symmetric:0.2")
    assert balanced.imbalance_left_out is None
    x_left, y_left = data.imbalance_left_out
    assert len(y_left) + len(data.y_train) == len(balanced.y_train)
    np.testing.assert_array_equal(
        np.bincount(y_left, minlength=10) + np.bincount(data.y_train_clean, minlength=10),
        np.bincount(balanced.y_train, minlength=10),
    )
    # Every left-out example is one of the balanced training split's, and none is trained on
    # (digits repeats no image within a training split, so features identify examples).
    pool = {row.tobytes() for row in balanced.x_train}
    assert len(pool) == len(balanced.x_train)
    trained = {row.tobytes() for row in data.x_train}
    left = {row.tobytes() for row in x_left}
    assert left <= pool and not left & trained
