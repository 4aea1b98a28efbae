"""Where a loss sends a network that cannot yet tell its inputs apart: a hedge, or one class for every input?

Early in training a network gives nearly the same prediction `p` for every
input, and its loss is then the expected loss over the labels it is shown,
`sum_y q_y L(y, p)` for label shares `q`. Descending that from the uniform
prediction (an untrained network's) shows where training goes before the
network has learnt features:

- a strictly proper loss (cross-entropy, the Brier score) settles on `q`
  itself, a hedge that keeps the gradients alive;
- mean absolute error, whose expected loss `2 - 2 q.p` is linear in `p`, runs
  to the corner of the most frequent label: one class for every input with
  full confidence, where the softmax saturates and a loss of `p` alone (not
  `log p`) gives almost no gradient to leave it.

A TaylorLoss is a polynomial in `p` and can go either way; `uninformed_prediction`
tells which, for given label shares.
"""

import keras
import numpy as np
from scipy.special import softmax


def uninformed_prediction(loss, label_shares, *, steps=2000, learning_rate=0.05):
    """The prediction that gradient descent on `sum_y q_y loss(one_hot(y), p)` reaches from the uniform one.

    Args:
        loss: a Keras loss taking one-hot targets and probabilities (any
            `tfrobust.losses` loss, `keras.losses.CategoricalCrossentropy()`,
            ...); its per-example values (`loss.call`) are weighted by `q`.
        label_shares: `q`, the share of each class among the (noisy)
            training labels: non-negative, summing to 1.
        steps, learning_rate: Adam on the softmax logits, from zero logits
            (the uniform prediction), as training would move a network's
            shared output, with the rate decayed linearly to zero. The
            gradient is a central difference (step 1e-3: losses compute in
            float32).

    Returns:
        A float64 array of class probabilities. Where the loss has both a
        hedged minimum and a lower corner, this is the one the descent
        reaches first, as training would; a corner comes back with its
        probability above 0.999.
    """
    shares = np.asarray(label_shares, dtype="float64")
    if shares.ndim != 1 or len(shares) < 2 or not np.isfinite(shares).all() or (shares < 0).any():
        raise ValueError(f"label_shares must be a 1-D array of at least 2 non-negative numbers; got {label_shares!r}.")
    if abs(shares.sum() - 1.0) > 1e-6:
        raise ValueError(f"label_shares must sum to 1 (they sum to {shares.sum():.6g}); divide them by their sum.")
    classes = len(shares)
    step = 1e-3
    offsets = np.concatenate([np.eye(classes), -np.eye(classes)]) * step
    targets = np.tile(np.eye(classes, dtype="float32"), (2 * classes, 1))

    def gradient(logits):
        shifted = logits + offsets  # (2C, C): each logit moved up, then down
        probabilities = softmax(shifted, axis=-1)
        predictions = np.repeat(probabilities, classes, axis=0).astype("float32")  # row i * C + y
        values = keras.ops.convert_to_numpy(loss.call(targets, predictions)).astype("float64")
        expected = values.reshape(2 * classes, classes) @ shares
        return (expected[:classes] - expected[classes:]) / (2 * step)

    logits, first, second = np.zeros(classes), np.zeros(classes), np.zeros(classes)
    for t in range(1, steps + 1):
        g = gradient(logits)
        first = 0.9 * first + 0.1 * g
        second = 0.999 * second + 0.001 * g * g
        rate = learning_rate * (1 - (t - 1) / steps)  # decayed to zero, so the descent settles
        update = rate * (first / (1 - 0.9**t)) / (np.sqrt(second / (1 - 0.999**t)) + 1e-8)
        logits = np.clip(logits - update, -30.0, 30.0)
    return softmax(logits)
