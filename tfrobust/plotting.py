"""Plots of losses as functions of the true-class probability (matplotlib, PNG)."""

import numpy as np

from tfrobust import _io


def loss_curve_values(loss, probabilities, num_classes=10):
    """The loss of one example whose true class gets probability p.

    The remaining mass 1 - p is spread evenly over the other classes. Losses
    built with `from_logits=True` are given log-probabilities as logits
    (softmax(log p) = p).
    """
    p = np.asarray(probabilities, dtype="float32")
    rest = (1.0 - p) / (num_classes - 1)
    predictions = np.repeat(rest[:, None], num_classes, axis=1)
    predictions[:, 0] = p
    if getattr(loss, "from_logits", False):
        predictions = np.log(np.clip(predictions, 1e-12, 1.0))
    # One-hot labels: every tfrobust loss and Keras's categorical losses take them.
    labels = np.zeros_like(predictions)
    labels[:, 0] = 1.0
    config = loss.get_config()
    config["reduction"] = None
    per_example = type(loss).from_config(config)(labels, predictions)
    return np.asarray(per_example, dtype="float64")


def plot_loss_curves(losses, path, num_classes=10, normalize=True, title=None):
    """Writes a PNG of each loss against the true-class probability.

    Args:
        losses: mapping from a legend label to a `keras.losses.Loss`.
        path: where to write the PNG (the folder is created).
        num_classes: classes of the toy example (other classes share 1 - p).
        normalize: shift and scale each curve to [0, 1] over p in [0.01, 1]:
            adding a constant to a loss or scaling it does not change what a
            model learns (beyond the learning rate), so normalised curves
            compare shapes.
        title: optional plot title.

    Returns the path written.
    """
    p = np.linspace(0.01, 1.0, 200)
    figure, axis = _io.new_figure()
    for label, loss in losses.items():
        values = loss_curve_values(loss, p, num_classes)
        if normalize:
            span = values.max() - values.min()
            values = (values - values.min()) / (span if span > 0 else 1.0)
        axis.plot(p, values, label=label)
    axis.set_xlabel("probability of the true class")
    axis.set_ylabel("loss (normalised to [0, 1])" if normalize else "loss")
    axis.set_title(title or f"Losses against the true-class probability ({num_classes} classes)")
    axis.grid(alpha=0.3)
    axis.legend()
    figure.tight_layout()
    return _io.save_figure(figure, path, dpi=120)
