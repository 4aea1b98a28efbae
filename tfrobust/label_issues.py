"""Finding the wrong labels in a data set: K-fold out-of-fold probabilities from a robust loss,
then confident learning.

    from tfrobust import label_issues, models

    result = label_issues.find_label_issues(
        lambda: models.build_model("mlp", (8, 8, 1), 10), x, y, num_folds=5)
    result.ranked_indices[:20]      # the 20 labels most likely wrong
    result.is_label_issue           # boolean mask over all examples
    result.label_quality            # one score per example, lower = more likely wrong

How it works
------------
1. The examples are split into `num_folds` stratified folds (seeded). For
   each fold a fresh model from `model_fn()` is trained on the other folds
   with a noise-robust loss (default: `TaylorLoss.pretrained()`) and predicts
   class probabilities for the held-out fold, so every example gets
   probabilities from a model that never saw its (possibly wrong) label.
   A robust loss memorises fewer wrong labels than cross-entropy, so the
   held-out probabilities of mislabelled examples point more often to their
   true class.
2. Confident learning (Northcutt, Jiang & Chuang, JAIR 2021) estimates how
   many labels are wrong: per-class thresholds, then the examples
   confidently in a class other than their label. The default rule,
   `filter_by="low_self_confidence"` (cleanlab has it under that name), flags
   that many examples with the lowest self-confidence p(given label).
   The robust loss's probabilities rank the wrong labels first; pruning by
   noise rate (`filter_by="prune_by_noise_rate"`, cleanlab's default) picks
   per class pair instead, and on the bundled data it flagged more clean
   examples with these probabilities (README, "Finding the wrong labels").
   See `tfrobust._confident_learning` for every rule and how each compares
   with cleanlab.
3. The flagged examples are ranked by a label-quality score,
   self-confidence p(given label) or the normalised margin.

Already have out-of-sample probabilities? `issues_from_probabilities(labels,
pred_probs)` does steps 2 and 3 alone.

Input
-----
`x` and `y` may be numpy arrays (`y` integer class indices), or `x` may be a
`tf.data.Dataset` with `y=None`, batched or not, whose elements are
`(features, label)` pairs (`tfds.load(..., as_supervised=True)`) or dicts
(`tfds.load(...)`, read with `feature_key` / `label_key`, by default "image"
and "label"). A dataset is read into memory once, since K-fold training
indexes it; its features are used as they are, so scale images first
(`dataset.map(...)`) if the model expects floats in [0, 1].
"""

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf
from sklearn import model_selection

from tfrobust import _confident_learning as cl
from tfrobust.optimizers import make_optimizer

from tfrobust._confident_learning import FILTERS, RANKINGS  # noqa: F401  (re-exported)
from tfrobust._confident_learning import confident_joint, confident_thresholds  # noqa: F401
from tfrobust._confident_learning import normalized_margin, self_confidence  # noqa: F401

__all__ = [
    "DEFAULT_LOSS",
    "FILTERS",
    "RANKINGS",
    "LabelIssues",
    "confident_joint",
    "confident_thresholds",
    "find_label_issues",
    "issues_from_probabilities",
    "normalized_margin",
    "out_of_fold_probabilities",
    "self_confidence",
]

# `loss=DEFAULT_LOSS` (the default) trains every fold with `TaylorLoss.pretrained()`.
DEFAULT_LOSS = "taylor_pretrained"


@dataclasses.dataclass(frozen=True, eq=False)
class LabelIssues:
    """What `find_label_issues` found.

    Attributes:
        ranked_indices: indices of the flagged examples, the most likely wrong first
            (ascending `label_quality`).
        is_label_issue: bool (n,), True for a flagged example.
        label_quality: float (n,) in [0, 1], the `rank_by` score of every
            example; lower means the label is more likely wrong.
        self_confidence: float (n,), p(given label).
        normalized_margin: float (n,), (p(given) - max other p + 1) / 2.
        pred_probs: float (n, C), the out-of-fold predicted probabilities.
        labels: int64 (n,), the given labels.
        predicted_labels: int64 (n,), argmax of `pred_probs` (a suggested relabelling).
        folds: int64 (n,), the fold each example was held out in (-1 if the
            probabilities were passed in).
        thresholds: float (C,), the per-class confident thresholds t_j.
        joint: float (C, C), the calibrated confident joint (rows: given label,
            columns: estimated true class).
        filter_by, rank_by: the methods used.
    """

    ranked_indices: np.ndarray
    is_label_issue: np.ndarray
    label_quality: np.ndarray
    self_confidence: np.ndarray
    normalized_margin: np.ndarray
    pred_probs: np.ndarray
    labels: np.ndarray
    predicted_labels: np.ndarray
    folds: np.ndarray
    thresholds: np.ndarray
    joint: np.ndarray
    filter_by: str
    rank_by: str

    @property
    def estimated_noise_rate(self):
        """The fraction of labels the calibrated confident joint estimates wrong."""
        return float(1.0 - np.trace(self.joint) / max(self.joint.sum(), 1e-12))

    def ranking(self):
        """All example indices, the most likely wrong first (flagged or not)."""
        return np.argsort(self.label_quality, kind="stable")


def issues_from_probabilities(labels, pred_probs, *, filter_by="low_self_confidence",
                              rank_by="self_confidence", folds=None):
    """Confident learning on given out-of-sample probabilities (steps 2 and 3 of the module doc).

    Args:
        labels: (n,) integer class indices.
        pred_probs: (n, C) out-of-sample predicted probabilities (rows sum to 1).
        filter_by: one of `FILTERS` (see `tfrobust._confident_learning.flag_label_issues`).
        rank_by: one of `RANKINGS`.
        folds: optional (n,) fold of each example, kept in the result.

    Returns:
        A `LabelIssues`.
    """
    if rank_by not in RANKINGS:
        raise ValueError(f"Unknown rank_by {rank_by!r}; choose one of {RANKINGS}.")
    if filter_by not in FILTERS:
        raise ValueError(f"Unknown filter_by {filter_by!r}; choose one of {FILTERS}.")
    labels, pred_probs = cl.check_probabilities(labels, pred_probs)
    thresholds = cl.confident_thresholds(labels, pred_probs)
    joint = cl.confident_joint(labels, pred_probs, thresholds)
    mask = cl.flag_label_issues(labels, pred_probs, filter_by, joint=joint)
    quality = cl.label_quality(labels, pred_probs, rank_by)
    flagged = np.flatnonzero(mask)
    ranked = flagged[np.argsort(quality[flagged], kind="stable")]
    return LabelIssues(
        ranked_indices=ranked,
        is_label_issue=mask,
        label_quality=quality,
        self_confidence=cl.self_confidence(labels, pred_probs),
        normalized_margin=cl.normalized_margin(labels, pred_probs),
        pred_probs=pred_probs,
        labels=labels,
        predicted_labels=pred_probs.argmax(axis=1).astype(np.int64),
        folds=np.full(len(labels), -1, np.int64) if folds is None else np.asarray(folds, np.int64),
        thresholds=thresholds,
        joint=joint,
        filter_by=filter_by,
        rank_by=rank_by,
    )


def find_label_issues(model_fn, x, y=None, *, num_folds=5, loss=DEFAULT_LOSS, epochs=20, batch_size=64,
                      optimizer="adam", learning_rate=1e-3, num_classes=None, from_logits=False, seed=0,
                      filter_by="low_self_confidence", rank_by="self_confidence", feature_key="image",
                      label_key="label", fit_kwargs=None, verbose=True, printer=print):
    """Ranks the examples of `(x, y)` by how likely their label is wrong.

    Args:
        model_fn: a function of no arguments returning a new Keras model that
            outputs class probabilities (softmax), or logits with
            `from_logits=True`. Called once per fold.
        x, y: numpy features and integer labels, or a `tf.data.Dataset` as `x`
            with `y=None` (see the module doc).
        num_folds: K >= 2, the number of folds.
        loss: the loss every fold trains with: `DEFAULT_LOSS` for
            `TaylorLoss.pretrained()`, any Keras loss (instance or name, for
            sparse integer labels), or None to train the model `model_fn`
            returns as the caller compiled it (a `tfrobust.reweighting`
            trainer, a custom optimizer...).
        epochs, batch_size: training of each fold.
        optimizer, learning_rate: see `tfrobust.optimizers.make_optimizer`
            (unused with `loss=None`).
        num_classes: the number of classes (default: the model's output width).
        from_logits: the model outputs logits (softmax is applied to its
            predictions, and the default loss reads logits).
        seed: seeds the folds and, through `keras.utils.set_random_seed(seed
            + fold)` before each fold, the models and their shuffling (this
            sets Python's, numpy's and the backend's global seeds).
        filter_by, rank_by: see `issues_from_probabilities`.
        feature_key, label_key: the keys of a dict-valued dataset.
        fit_kwargs: extra `model.fit` arguments (callbacks, ...).
        verbose, printer: a progress line per fold (fold i/K, rate, ETA).

    Returns:
        A `LabelIssues` with the out-of-fold probabilities in `pred_probs`.

    Raises:
        ValueError: x and y of different lengths, labels that are not class
            indices in range, K < 2, or a class with fewer examples than folds.
    """
    x, labels = _as_arrays(x, y, feature_key, label_key)
    pred_probs, folds = out_of_fold_probabilities(
        model_fn, x, labels, num_folds=num_folds, loss=loss, epochs=epochs, batch_size=batch_size,
        optimizer=optimizer, learning_rate=learning_rate, num_classes=num_classes, from_logits=from_logits,
        seed=seed, fit_kwargs=fit_kwargs, verbose=verbose, printer=printer)
    return issues_from_probabilities(labels, pred_probs, filter_by=filter_by, rank_by=rank_by, folds=folds)


def out_of_fold_probabilities(model_fn, x, y=None, *, num_folds=5, loss=DEFAULT_LOSS, epochs=20, batch_size=64,
                              optimizer="adam", learning_rate=1e-3, num_classes=None, from_logits=False, seed=0,
                              feature_key="image", label_key="label", fit_kwargs=None, verbose=True,
                              printer=print):
    """Held-out class probabilities of every example from K-fold training (step 1 of the module doc).

    Arguments as for `find_label_issues`. Returns `(pred_probs, folds)`:
    float64 (n, C) probabilities, row i for example i of the input, and the
    int64 fold each example was held out in.
    """
    x, labels = _as_arrays(x, y, feature_key, label_key)
    if isinstance(num_folds, bool) or not isinstance(num_folds, (int, np.integer)) or num_folds < 2:
        raise ValueError(f"num_folds must be an integer >= 2 (K-fold needs a held-out fold); got {num_folds!r}.")
    if num_classes is not None:
        labels = cl.check_labels(labels, num_classes)
    _check_folds_fit(labels, num_folds)
    split = model_selection.StratifiedKFold(n_splits=int(num_folds), shuffle=True, random_state=seed)
    folds = np.full(len(labels), -1, np.int64)
    pred_probs = None
    started = time.perf_counter()
    for fold, (train, held_out) in enumerate(split.split(np.zeros(len(labels)), labels)):
        folds[held_out] = fold
        keras.utils.set_random_seed(seed + fold)
        model = _compiled_model(model_fn, loss, optimizer, learning_rate, from_logits)
        width = int(model.output_shape[-1])
        if pred_probs is None:
            num_classes = width if num_classes is None else num_classes
            if width != num_classes:
                raise ValueError(f"model_fn's model has {width} outputs but num_classes={num_classes}.")
            labels = cl.check_labels(labels, num_classes)
            pred_probs = np.zeros((len(labels), num_classes))
        model.fit(x[train], labels[train], epochs=epochs, batch_size=batch_size, verbose=0, **(fit_kwargs or {}))
        outputs = np.asarray(model.predict(x[held_out], batch_size=max(batch_size, 256), verbose=0), np.float64)
        pred_probs[held_out] = _softmax(outputs) if from_logits else outputs
        if verbose:
            elapsed = time.perf_counter() - started
            rate = (fold + 1) * epochs * len(train) / elapsed
            eta = elapsed / (fold + 1) * (num_folds - fold - 1)
            printer(f"fold {fold + 1}/{num_folds}: trained on {len(train)} examples, held out {len(held_out)} | "
                    f"{rate:,.0f} examples/s, ETA {eta:.0f}s")
    return cl.check_probabilities(labels, pred_probs)[1], folds


def _compiled_model(model_fn, loss, optimizer, learning_rate, from_logits):
    model = model_fn()
    if not isinstance(model, keras.Model):
        raise TypeError(f"model_fn must return a keras.Model; it returned {type(model).__name__}.")
    if loss is None:
        if getattr(model, "optimizer", None) is None:
            raise ValueError("With loss=None, model_fn must return a compiled model (call model.compile in it).")
        return model
    if isinstance(loss, str) and loss == DEFAULT_LOSS:
        from tfrobust.losses import TaylorLoss

        loss = TaylorLoss.pretrained(from_logits=from_logits)
    model.compile(optimizer=make_optimizer(optimizer, learning_rate), loss=loss)
    return model


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def _check_folds_fit(labels, num_folds):
    classes, counts = np.unique(labels, return_counts=True)
    small = classes[counts < num_folds]
    if len(small):
        described = ", ".join(f"class {c}: {n}" for c, n in zip(classes, counts) if c in set(small))
        raise ValueError(
            f"Every class needs at least num_folds={num_folds} examples for stratified K-fold, but {described}. "
            "Use fewer folds, or drop or merge the rare classes."
        )


def _as_arrays(x, y, feature_key, label_key):
    """`(features, labels)` as numpy arrays from numpy input or a tf.data.Dataset."""
    if isinstance(x, tf.data.Dataset):
        if y is not None:
            raise ValueError("With a tf.data.Dataset as x, leave y=None: the labels are read from the dataset.")
        features, labels = [], []
        for element in x.as_numpy_iterator():
            if isinstance(element, dict):
                missing = [key for key in (feature_key, label_key) if key not in element]
                if missing:
                    raise ValueError(f"Dataset elements have keys {sorted(element)}, not {missing}; "
                                     "pass feature_key= and label_key=.")
                element = (element[feature_key], element[label_key])
            if not isinstance(element, tuple) or len(element) < 2:
                raise ValueError("Dataset elements must be (features, label) pairs or dicts of them.")
            features.append(element[0])
            labels.append(element[1])
        if not labels:
            raise ValueError("The dataset is empty.")
        batched = np.ndim(labels[0]) >= 1
        join = np.concatenate if batched else np.stack
        x, y = join(features), join(labels)
    if y is None:
        raise ValueError("Pass labels y (integer class indices) with numpy features x.")
    x, y = np.asarray(x), np.asarray(y)
    if len(x) != len(y):
        raise ValueError(f"x has {len(x)} examples but y has {len(y)} labels; they must be aligned.")
    if len(y) == 0:
        raise ValueError("No examples: x and y are empty.")
    labels = cl.check_labels(y)
    return x, labels


def plot_label_issues(x, result, path=None, *, count=24, columns=8, true_labels=None, class_names=None):
    """A grid of the `count` flagged images most likely mislabelled, titled "given -> predicted".

    Args:
        x: the images, (n, H, W) or (n, H, W, 1 or 3), aligned with the result.
        result: a `LabelIssues`.
        path: where to save a PNG (atomically); None only returns the figure.
        true_labels: the true labels if known (a benchmark); a title is then
            green when the given label really is wrong, red when it is right.
        class_names: names for the class indices.

    Returns:
        The matplotlib `Figure`.
    """
    from matplotlib.figure import Figure

    from tfrobust import _io

    x = np.asarray(x)
    if x.ndim not in (3, 4):
        raise ValueError(f"plot_label_issues needs images (n, H, W[, C]); got shape {x.shape}.")
    shown = result.ranked_indices[:count]
    name = (lambda c: str(c)) if class_names is None else (lambda c: str(class_names[c]))
    rows = max(1, -(-len(shown) // columns))
    figure = Figure(figsize=(1.3 * columns, 1.5 * rows + 0.3))
    axes = figure.subplots(rows, columns, squeeze=False)
    for slot, axis in enumerate(axes.flat):
        axis.axis("off")
        if slot >= len(shown):
            continue
        index = shown[slot]
        image = x[index]
        image = image[..., 0] if image.ndim == 3 and image.shape[-1] == 1 else image
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
        color = "black"
        if true_labels is not None:
            color = "green" if true_labels[index] != result.labels[index] else "red"
        axis.set_title(f"#{index}: {name(result.labels[index])}\u2192{name(result.predicted_labels[index])}",
                       fontsize=8, color=color)
    subtitle = " (green: really mislabelled)" if true_labels is not None else ""
    figure.suptitle(f"Most likely mislabelled: given\u2192predicted{subtitle}", fontsize=9)
    figure.tight_layout()
    if path is not None:
        _io.save_figure(figure, path)
    return figure
