"""tfrobust.metrics: memorisation metrics, argmax predictions and the per-epoch callback, against hand-worked values."""

import math
import types

import keras
import numpy as np
import pytest

from tfrobust import metrics


def test_memorisation_metrics_by_hand():
    metrics_ = metrics.memorisation_metrics([0, 1, 2, 2], noisy_labels=[0, 1, 1, 0], clean_labels=[0, 2, 1, 2])
    # Predicted as noisy label: examples 0, 1 (2 of 4). As clean label: examples 0, 3 (2 of 4).
    # Corrupted: examples 1 (noisy 1, clean 2) and 3 (noisy 0, clean 2), predicted 1 and 2:
    # one predicted as its noisy label, one as its clean label.
    assert metrics_ == {
        "noisy_train_accuracy": 0.5, "clean_train_accuracy": 0.5,
        "corrupted_predicted_clean": 0.5, "corrupted_predicted_noisy": 0.5,
    }
    uneven = metrics.memorisation_metrics([1, 1, 1, 0, 2], [1, 1, 0, 0, 2], [1, 2, 0, 1, 0])
    # Corrupted: 1 (noisy 1, clean 2), 3 (noisy 0, clean 1), 4 (noisy 2, clean 0); predicted 1, 0, 2:
    # all three predicted as their noisy label, none as the clean one.
    assert uneven["corrupted_predicted_noisy"] == 1.0 and uneven["corrupted_predicted_clean"] == 0.0
    assert uneven["noisy_train_accuracy"] == 0.8 and uneven["clean_train_accuracy"] == 0.2
    clean = metrics.memorisation_metrics([0, 1], [0, 1], [0, 1])
    assert math.isnan(clean["corrupted_predicted_noisy"]) and math.isnan(clean["corrupted_predicted_clean"])
    assert clean["noisy_train_accuracy"] == clean["clean_train_accuracy"] == 1.0


def test_memorisation_metrics_reject_arrays_of_different_lengths():
    with pytest.raises(ValueError, match=r"one entry per training example; got lengths 3, 2 and 2"):
        metrics.memorisation_metrics([0, 1, 2], [0, 1], [0, 1])


class FixedOutputs(keras.Model):
    """A model whose prediction for input row i is `outputs[i]` (inputs are row indices)."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs_table = np.asarray(outputs, dtype="float32")

    def call(self, x):
        return keras.ops.take(self.outputs_table, keras.ops.cast(x[:, 0], "int32"), axis=0)


def test_predicted_classes_are_argmax_and_minus_one_where_not_finite():
    outputs = [[0.1, 0.9], [0.8, 0.2], [np.nan, 1.0], [0.3, 0.7], [np.inf, 0.0]]
    model = FixedOutputs(outputs)
    x = np.arange(5, dtype="float32")[:, None]
    # batch_size 2 splits the input into slices 2 + 2 + 1: the pieces must join in order.
    np.testing.assert_array_equal(metrics.predicted_classes(model, x, batch_size=2), [1, 0, -1, 1, -1])
    assert metrics.predicted_classes(model, x[:0]).shape == (0,)


def test_epoch_metrics_record_every_epoch_of_a_fit():
    # Three test examples, four training examples of which two are corrupted; the model
    # predicts class 1 for every example, whatever it learns (zero learning rate).
    data = types.SimpleNamespace(
        x_train=np.zeros((4, 2), "float32"), y_train=np.array([1, 1, 0, 1]), y_train_clean=np.array([1, 0, 1, 1]),
        x_test=np.zeros((3, 2), "float32"), y_test=np.array([1, 0, 1]),
    )
    bias = keras.initializers.Constant([0.0, 1.0])
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax", bias_initializer=bias)])
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss="sparse_categorical_crossentropy")
    tracker = metrics.EpochMetrics(data)
    model.fit(data.x_train, data.y_train, epochs=3, verbose=0, callbacks=[tracker])
    assert list(tracker.curves) == list(metrics.CURVE_METRICS)
    assert tracker.curves["test_accuracy"] == pytest.approx([2 / 3] * 3)
    assert tracker.curves["noisy_train_accuracy"] == [0.75] * 3  # examples 0, 1, 3 are labelled 1
    assert tracker.curves["clean_train_accuracy"] == [0.75] * 3  # examples 0, 2, 3 are clean-labelled 1
    # Corrupted: example 1 (noisy 1, clean 0) and 2 (noisy 0, clean 1), both predicted 1.
    assert tracker.curves["corrupted_predicted_noisy"] == [0.5] * 3
    assert tracker.curves["corrupted_predicted_clean"] == [0.5] * 3
