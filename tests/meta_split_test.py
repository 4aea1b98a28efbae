"""NoisyDataset.meta_split: a seeded clean meta set carved from the training split."""

import numpy as np
import pytest

from tfrobust import datasets


@pytest.fixture(scope="module")
def digits():
    return datasets.load("digits", noise="symmetric:0.4", seed=3)


def _rows(x):
    return {row.tobytes() for row in x.reshape(len(x), -1)}


def test_per_class_gives_clean_balanced_meta_set_removed_from_training(digits):
    (x_meta, y_meta), rest = digits.meta_split(per_class=5, seed=0)
    assert x_meta.shape == (50,) + digits.input_shape
    assert y_meta.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(y_meta, minlength=10), np.full(10, 5))
    # Every meta example is a training example, carries its CLEAN label, and is gone from training.
    index_of = {row.tobytes(): i for i, row in enumerate(digits.x_train.reshape(len(digits.x_train), -1))}
    original = np.array([index_of[row.tobytes()] for row in x_meta.reshape(len(x_meta), -1)])
    np.testing.assert_array_equal(y_meta, digits.y_train_clean[original])
    assert digits.is_corrupted[original].any(), "the draw should include examples whose noisy label was wrong"
    assert len(rest.y_train) == len(digits.y_train) - 50
    assert not _rows(x_meta) & _rows(rest.x_train)


def test_remaining_dataset_keeps_its_invariants(digits):
    _, rest = digits.meta_split(count=40, seed=1)
    assert len(rest.x_train) == len(rest.y_train) == len(rest.y_train_clean) == len(rest.is_corrupted)
    np.testing.assert_array_equal(rest.is_corrupted, rest.y_train != rest.y_train_clean)
    np.testing.assert_array_equal(rest.noisy_labels.labels, rest.y_train)
    np.testing.assert_array_equal(rest.noisy_labels.clean_labels, rest.y_train_clean)
    np.testing.assert_allclose(rest.noisy_labels.transition_matrix.sum(axis=1), 1.0)
    # Validation and test splits are untouched.
    assert rest.x_val is digits.x_val and rest.y_test is digits.y_test
    # The original object is unchanged (frozen dataclass, new arrays).
    assert len(digits.y_train) == len(rest.y_train) + 40


def test_count_is_stratified_by_clean_label(digits):
    (_, y_meta), _ = digits.meta_split(count=100, seed=0)
    assert len(y_meta) == 100
    assert np.bincount(y_meta, minlength=10).min() >= 9


def test_seeded(digits):
    (x_a, y_a), rest_a = digits.meta_split(per_class=3, seed=7)
    (x_b, y_b), rest_b = digits.meta_split(per_class=3, seed=7)
    (x_c, _), _ = digits.meta_split(per_class=3, seed=8)
    np.testing.assert_array_equal(x_a, x_b)
    np.testing.assert_array_equal(y_a, y_b)
    np.testing.assert_array_equal(rest_a.y_train, rest_b.y_train)
    assert not np.array_equal(x_a, x_c)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "exactly one of `per_class`"),
        ({"per_class": 2, "count": 20}, "exactly one of `per_class`"),
        ({"per_class": 0}, "per_class must be a positive integer"),
        ({"count": 2.5}, "count must be a positive integer"),
        ({"per_class": 10_000}, "class 0 has"),
        ({"count": 10_000}, "would leave no training examples"),
        ({"per_class": 2, "seed": -1}, "seed"),
    ],
)
def test_bad_arguments_are_named(digits, kwargs, message):
    with pytest.raises(ValueError, match=message):
        digits.meta_split(**kwargs)
