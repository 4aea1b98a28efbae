import keras
import numpy as np
import pytest

from tests import loss_helpers
from tfrobust import datasets
from tfrobust.losses import BatchReweighting


def bare_reference(labels, probs, kappa):
    """Kept mask and kept-mean CE from the rule of Patel & Sastry, in numpy (unbiased std, as torch.std)."""
    probs = probs.astype(np.float64)
    mean, std = probs.mean(axis=0), probs.std(axis=0, ddof=1)
    true_prob = probs[np.arange(len(labels)), labels]
    kept = true_prob >= mean[labels] + kappa * std[labels]
    ce = -np.log(true_prob)
    return kept, (ce[kept].mean() if kept.any() else ce.mean())


def test_selection_by_hand():
    # Class-0 probabilities 0.9, 0.6, 0.3, 0.2: mean 0.5, unbiased std sqrt(0.3 / 3) = 0.31623.
    # Threshold for label 0 is 0.81623: only the first example (0.9) passes; the others have labels 0 or 1.
    # Class-1 probabilities 0.1, 0.4, 0.7, 0.8: mean 0.5, same std; the fourth (0.8, label 1) stays below 0.816.
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], dtype="float32")
    labels = np.array([0, 0, 1, 1])
    values = np.asarray(BatchReweighting(reduction=None)(labels, probs))
    np.testing.assert_allclose(values, [-np.log(0.9) * 4, 0, 0, 0], rtol=1e-6)
    np.testing.assert_allclose(float(BatchReweighting()(labels, probs)), -np.log(0.9), rtol=1e-6)
    # kappa = 0: keep at or above the class mean: examples 1 (0.9) and 2 (0.6), 3 (0.7), 4 (0.8).
    values = np.asarray(BatchReweighting(kappa=0.0, reduction=None)(labels, probs))
    np.testing.assert_allclose(values, -np.log([0.9, 0.6, 0.7, 0.8]), rtol=1e-6)


def test_random_batches_against_numpy():
    hits = 0
    for seed in range(20):
        labels, probs, logits = loss_helpers.random_batch(num_classes=4, batch=16, seed=seed)
        for kappa in (1.0, 0.5, -0.5):
            kept, expected = bare_reference(labels, probs, kappa)
            hits += kept.any()
            for from_logits, y_pred in ((False, probs), (True, logits)):
                values = np.asarray(BatchReweighting(kappa=kappa, from_logits=from_logits, reduction=None)(labels, y_pred))
                assert np.array_equal(values > 0, kept) or not kept.any()
                np.testing.assert_allclose(values.mean(), expected, rtol=1e-5)
    assert hits > 30  # the cases exercise selection, not only the all-rejected fallback


def test_none_kept_falls_back_to_full_batch():
    # Two examples a < b: the threshold (a + b) / 2 + (b - a) / sqrt(2) lies above b, so none is kept.
    probs = np.array([[0.9, 0.1], [0.7, 0.3]], dtype="float32")
    labels = np.array([1, 1])
    values = np.asarray(BatchReweighting(reduction=None)(labels, probs))
    np.testing.assert_allclose(values, -np.log([0.1, 0.3]), rtol=1e-6)


def test_batch_of_one_is_a_named_error():
    with pytest.raises(ValueError, match="BatchReweighting needs at least two examples per batch"):
        BatchReweighting()([0], [[0.6, 0.4]])
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss=BatchReweighting())
    # 5 examples in batches of 2: the last batch has one example, caught inside the compiled step.
    with pytest.raises(Exception, match="BatchReweighting needs at least two examples per batch"):
        model.fit(np.zeros((5, 3), "float32"), np.zeros(5), batch_size=2, epochs=1, verbose=0)


def test_standard_loss_checks(tmp_path):
    loss_helpers.check_standard(BatchReweighting, {"kappa": 0.5}, tmp_path, {"kappa": 2.0, "from_logits": True,
                                                                            "name": "b"})


def test_bad_kappa_raises():
    with pytest.raises(ValueError, match=r"BatchReweighting argument `kappa` must be a finite number"):
        BatchReweighting(kappa=float("nan"))


def test_trains_above_chance_on_noisy_digits():
    data = datasets.load("digits", noise="symmetric:0.4", seed=0)
    model = keras.Sequential([keras.Input(data.input_shape), keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=BatchReweighting(), metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=15, batch_size=64, verbose=0)
    assert model.evaluate(data.x_test, data.y_test, verbose=0)[1] > 0.6  # chance is 0.1
