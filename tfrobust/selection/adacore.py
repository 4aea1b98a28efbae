"""AdaCore: weighted coresets whose Hessian-preconditioned gradients match the full data's.

Pooladzandi, Davini and Mirzasoleiman, "Adaptive Second Order Coresets for
Data-efficient Machine Learning", ICML 2022. Every few epochs AdaCore picks,
per class, the examples whose preconditioned gradients H^-1 g best cover
those of the whole class (greedy facility location, `facility_location`),
weights each by the size of its cluster, and training runs on that weighted
coreset. H is an exponentially averaged diagonal Hessian estimate.

What is computed here (the authors' code is not released, so these are our
choices where the paper leaves room; each is the paper's own quantity or its
closed form):

* Gradients are taken with respect to the logits, g = p - onehot(y) for
  softmax cross-entropy: the cheap last-layer proxy CRAIG (Mirzasoleiman et
  al., ICML 2020) introduced and AdaCore keeps. It needs one forward pass
  over the data and no backward pass.
* The Hessian diagonal with respect to the logits is p * (1 - p) (the
  diagonal of diag(p) - p p^T). The paper estimates the diagonal with
  Hutchinson's method, z * (H z) for Rademacher z, whose expectation this is:
  the closed form is the estimate without its sampling noise.
* The per-example diagonal is averaged across selections as AdaHessian (Yao
  et al., AAAI 2021) averages its estimate, an Adam-like second moment:
  v <- b v + (1 - b) D^2, H = sqrt(v / (1 - b^t)). Optionally the gradient
  too (m <- a m + (1 - a) g, bias-corrected; `gradient_decay=0`, the default,
  uses the current gradient, the quantity the coreset has to approximate).
  The preconditioned gradient is m / (H + epsilon).
* Sample weights are cluster sizes scaled by size / n, so they average 1 over
  the coreset: a mean-reduced loss over a coreset batch then estimates the
  mean over the full data, and learning rates carry over from full-data
  training. `cluster_sizes` keeps the raw counts.
"""

import numbers

import numpy as np
import tensorflow as tf

from tfrobust.selection._subset import SubsetSchedule
from tfrobust.selection.facility_location import greedy_facility_location


def logit_gradients(probabilities, labels):
    """d CE / d logits per example: `probabilities - onehot(labels)`, shape `(n, classes)`."""
    probabilities = np.asarray(probabilities, np.float64)
    gradients = probabilities.copy()
    gradients[np.arange(len(labels)), labels] -= 1.0
    return gradients


def logit_hessian_diagonal(probabilities):
    """The diagonal of d^2 CE / d logits^2 = diag(p) - p p^T per example: `p * (1 - p)`."""
    probabilities = np.asarray(probabilities, np.float64)
    return probabilities * (1.0 - probabilities)


class CurvatureAverage:
    """Per-example exponential averages of the gradient and the squared Hessian diagonal (AdaHessian's moments).

    Args:
        shape: `(examples, outputs)`.
        hessian_decay: b in v <- b v + (1 - b) D^2, in [0, 1).
        gradient_decay: a in m <- a m + (1 - a) g, in [0, 1); 0 uses the latest gradient.
        epsilon: added to the averaged Hessian before dividing.
    """

    def __init__(self, shape, hessian_decay, gradient_decay=0.0, epsilon=1e-4):
        for name, value in (("hessian_decay", hessian_decay), ("gradient_decay", gradient_decay)):
            if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0 <= value < 1:
                raise ValueError(f"{name} must be in [0, 1); got {value!r}.")
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or not epsilon > 0:
            raise ValueError(f"epsilon must be a positive number; got {epsilon!r}.")
        self.hessian_decay = float(hessian_decay)
        self.gradient_decay = float(gradient_decay)
        self.epsilon = float(epsilon)
        self.step = 0
        self.gradient_average = np.zeros(shape)
        self.hessian_square_average = np.zeros(shape)

    def hessian(self):
        """The bias-corrected averaged diagonal, sqrt(v / (1 - b^t))."""
        return np.sqrt(self.hessian_square_average / (1.0 - self.hessian_decay ** self.step))

    def gradient(self):
        """The bias-corrected averaged gradient, m / (1 - a^t)."""
        return self.gradient_average / (1.0 - self.gradient_decay ** self.step)

    def update(self, gradients, hessian_diagonals):
        """Folds in one selection's `(gradients, hessian_diagonals)`; returns the preconditioned gradients."""
        self.step += 1
        a, b = self.gradient_decay, self.hessian_decay
        self.gradient_average = a * self.gradient_average + (1.0 - a) * gradients
        self.hessian_square_average = b * self.hessian_square_average + (1.0 - b) * np.square(hessian_diagonals)
        return self.gradient() / (self.hessian() + self.epsilon)


class AdaCore(SubsetSchedule):
    """A Keras callback and data source that trains on AdaCore coresets (Pooladzandi et al., ICML 2022).

    At the start of epochs 0, every, 2 * every, ... it predicts the whole
    training set, updates the averaged curvature, and picks per class the
    greedy facility-location coreset of the preconditioned logit gradients
    (class budgets proportional to the class counts, `class_budgets`).
    `dataset()` yields `(x, y, sample_weight)` from the current coreset:

        coreset = AdaCore(x_train, y_train, fraction=0.1, every=1)
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        model.fit(coreset.dataset(32), epochs=10, callbacks=[coreset])

    The model must predict class probabilities (softmax output) or, with
    `from_logits=True`, logits; the loss is the user's, but the coreset
    approximates the gradients of softmax cross-entropy.

    Args:
        x, y: training features and integer labels (the labels trained on).
        fraction / size: the coreset's size, as in `SubsetSchedule`.
        every: epochs between selections.
        from_logits: whether the model outputs logits.
        hessian_decay: the Hessian average's decay (`CurvatureAverage`). Default
            0.9: AdaHessian's 0.999 spans ~1000 optimizer steps, while this
            average is updated once per selection, tens of times per run.
        gradient_decay: the gradient average's decay; 0 (default) uses the
            current gradient.
        epsilon: added to the averaged Hessian diagonal before dividing.
        predict_batch_size: batch size of the forward pass over the data.
        seed: seeds the initial random subset and the batch order.

    Attributes (besides `SubsetSchedule`'s):
        curvature: the `CurvatureAverage`.
        cluster_sizes: int64 counts aligned with `indices` (summing to each
            class's size within the class); `weights` is them times size / n.

    Raises:
        ValueError: a coreset larger than the data or smaller than the number
            of classes, `fraction` outside (0, 1], bad decays or labels.
    """

    def __init__(self, x, y, *, fraction=None, size=None, every=1, from_logits=False, hessian_decay=0.9,
                 gradient_decay=0.0, epsilon=1e-4, predict_batch_size=1024, seed=0):
        super().__init__(x, y, fraction=fraction, size=size, every=every, seed=seed)
        self.from_logits = bool(from_logits)
        self.predict_batch_size = int(predict_batch_size)
        self.curvature = CurvatureAverage((len(self.y), self.num_classes), hessian_decay, gradient_decay, epsilon)
        self.cluster_sizes = None
        self._forward = None  # (model, its traced forward pass)

    def probabilities(self, model):
        """The model's class probabilities on all of `x`, `(n, classes)` float64, checked."""
        # A traced forward pass in chunks: model.predict builds a data pipeline per call and an eager call
        # runs layer by layer, each costing more than the pass itself on the small data a selection reads.
        if self._forward is None or self._forward[0] is not model:
            self._forward = (model, tf.function(lambda inputs: model(inputs, training=False), reduce_retracing=True))
        forward = self._forward[1]
        outputs = np.concatenate([
            np.asarray(forward(tf.constant(self.x[start:start + self.predict_batch_size])))
            for start in range(0, len(self.x), self.predict_batch_size)
        ]).astype(np.float64)
        if outputs.ndim != 2 or outputs.shape[1] < self.num_classes:
            raise ValueError(f"AdaCore needs one output per class ({self.num_classes} or more columns); the model "
                             f"predicts shape {outputs.shape}.")
        if self.from_logits:
            outputs = np.exp(outputs - outputs.max(axis=1, keepdims=True))
            return outputs / outputs.sum(axis=1, keepdims=True)
        if outputs.min() < 0 or not np.allclose(outputs.sum(axis=1), 1.0, atol=1e-3):
            raise ValueError("The model's outputs are not probabilities (rows must be >= 0 and sum to 1); for a "
                             "model that outputs logits pass AdaCore(..., from_logits=True).")
        return outputs

    def preconditioned_gradients(self, model):
        """Folds the model's current curvature into the average; returns H^-1 g per example, `(n, classes)`."""
        probabilities = self.probabilities(model)[:, : self.num_classes]
        return self.curvature.update(logit_gradients(probabilities, self.y), logit_hessian_diagonal(probabilities))

    def _choose(self, model):
        if model is None:
            raise ValueError("AdaCore.select needs a model: pass it, or let fit call the callback.")
        features = self.preconditioned_gradients(model)
        indices, sizes = [], []
        for members, budget in zip(self.members, self.budgets):
            if budget:
                chosen, cluster_sizes = greedy_facility_location(features[members], int(budget))
                indices.append(members[chosen])
                sizes.append(cluster_sizes)
        self.cluster_sizes = np.concatenate(sizes)
        return np.concatenate(indices), self.cluster_sizes * (self.size / len(self.y))
