"""Evaluation under label noise: clean accuracy and memorisation of corrupted labels.

Predicting a corrupted training example as its noisy (wrong) label can only
come from learning that label by heart, so the share of corrupted examples
predicted as their noisy label measures memorisation (Arpit et al., "A closer
look at memorization in deep networks", ICML 2017; Liu et al., "Early-learning
regularization prevents memorization of noisy labels", NeurIPS 2020).

`EpochMetrics` is a Keras callback that records these after every epoch of
any `model.fit`; the benchmark uses it for its curves, and a user's own fit
can use it the same way:

    tracker = EpochMetrics(data)  # a tfrobust.datasets.NoisyDataset
    model.fit(data.x_train, data.y_train, epochs=20, callbacks=[tracker])
    tracker.curves["corrupted_predicted_noisy"]  # one value per epoch

Without clean labels: `Susceptibility` (a callback) tracks memorisation from
unlabeled inputs alone (Forouzesh et al., ICLR 2023), and `select_model`
picks, among trained models, one that fits the noisy training set well but
is not susceptible to random labels (the paper's quadrant rule);
`plot_model_selection` draws the picture.
"""

import math

import keras
import numpy as np

from tfrobust._model_selection import ModelSelection, plot_model_selection, select_model  # noqa: F401
from tfrobust._susceptibility import SUSCEPTIBILITY_CURVE, Susceptibility  # noqa: F401

# The per-epoch series `EpochMetrics` records, in this order (the keys of its `curves`).
CURVE_METRICS = (
    "test_accuracy", "noisy_train_accuracy", "clean_train_accuracy",
    "corrupted_predicted_clean", "corrupted_predicted_noisy",
)


def predicted_classes(model, x, batch_size=1024):
    """argmax predictions of `model` on `x`; -1 (never a class) where a prediction is not finite.

    A diverged model therefore scores 0 accuracy instead of predicting class 0.
    Calls `predict_on_batch` on slices: `model.predict` costs about 0.1 s of
    set-up per call, more than the prediction itself at these sizes.
    """
    chunks = []
    for start in range(0, len(x), batch_size):
        probabilities = np.asarray(model.predict_on_batch(x[start : start + batch_size]))
        classes = np.argmax(probabilities, axis=-1)
        classes[~np.isfinite(probabilities).all(axis=-1)] = -1
        chunks.append(classes)
    return np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)


def memorisation_metrics(predicted, noisy_labels, clean_labels):
    """How predictions on the training split relate to its noisy and clean labels.

    Returns a dict of
        noisy_train_accuracy: share of training examples predicted as their noisy label.
        clean_train_accuracy: share predicted as their clean label.
        corrupted_predicted_clean: among examples whose label was corrupted,
            the share predicted as their CLEAN label (robustness).
        corrupted_predicted_noisy: among them, the share predicted as their
            NOISY label (memorisation).
    The two `corrupted_*` values are NaN when no label was corrupted.

    Raises:
        ValueError: when the three arrays differ in length.
    """
    predicted, noisy_labels, clean_labels = (np.asarray(a).reshape(-1) for a in (predicted, noisy_labels, clean_labels))
    if not len(predicted) == len(noisy_labels) == len(clean_labels):
        raise ValueError(
            "predicted, noisy_labels and clean_labels need one entry per training example; got lengths "
            f"{len(predicted)}, {len(noisy_labels)} and {len(clean_labels)}."
        )
    corrupted = noisy_labels != clean_labels

    def share_of_corrupted(labels):
        return float(np.mean(predicted[corrupted] == labels[corrupted])) if corrupted.any() else math.nan

    return {
        "noisy_train_accuracy": float(np.mean(predicted == noisy_labels)),
        "clean_train_accuracy": float(np.mean(predicted == clean_labels)),
        "corrupted_predicted_clean": share_of_corrupted(clean_labels),
        "corrupted_predicted_noisy": share_of_corrupted(noisy_labels),
    }


class EpochMetrics(keras.callbacks.Callback):
    """Records, after every epoch, the clean test accuracy and the memorisation metrics
    (`memorisation_metrics`) of the training split; `curves[name]` lists them by epoch.

    Args:
        data: a `tfrobust.datasets.NoisyDataset` (or anything with `x_train`,
            `y_train` (noisy), `y_train_clean`, `x_test` and `y_test`).
    """

    def __init__(self, data):
        super().__init__()
        self.data = data
        self.curves = {name: [] for name in CURVE_METRICS}

    def measure(self):
        """Appends the current model's metrics to `curves`."""
        test_accuracy = float(np.mean(predicted_classes(self.model, self.data.x_test) == self.data.y_test))
        train = memorisation_metrics(
            predicted_classes(self.model, self.data.x_train), self.data.y_train, self.data.y_train_clean
        )
        for name, value in {"test_accuracy": test_accuracy, **train}.items():
            self.curves[name].append(value)

    def on_epoch_end(self, epoch, logs=None):
        self.measure()
