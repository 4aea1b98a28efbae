"""Label-quality scores and confident learning on a matrix of predicted probabilities.

Everything here is numpy on `labels` (n,) and `pred_probs` (n, C), the
out-of-sample probabilities `tfrobust.label_issues` computes by K-fold
training. Confident learning follows Northcutt, Jiang & Chuang, "Confident
Learning: Estimating Uncertainty in Dataset Labels", JAIR 70, 2021:

* per-class thresholds t_j: the mean predicted probability of class j over
  the examples labelled j (Eq. 2);
* the confident joint C[i][j]: how many examples labelled i are confidently
  of class j, that is p_j >= t_j; an example above the threshold of several
  classes counts for the one of them it gives the highest probability
  (Eq. 1);
* its calibration to the label counts, C~[i][j] = C[i][j] / sum_j C[i][j] *
  n_i (Eq. 3), an estimate of how many examples labelled i truly are j;
* pruning by noise rate (Section 3.2, "prune by noise rate"): for every pair
  i != j, flag the round(C~[i][j]) examples labelled i with the largest
  margin p_j - p_i.

Two choices that make the results agree with cleanlab's
`find_label_issues(filter_by="prune_by_noise_rate")` are kept and said here:
every diagonal count of the confident joint is at least 1 (a class is never
emptied), and an example whose given label is the model's own prediction is
never flagged. One difference remains: cleanlab sends an example above the
threshold of several classes to the argmax over ALL classes, this module to
the argmax over the classes whose threshold it passes, as Eq. 1 of the paper
says; the two differ only when the overall argmax is below its own threshold.
And where two entries of a row of the calibrated joint are exactly equal and
rounding must take one of them down, which one cleanlab picks depends on
floating-point noise in its arithmetic; then the two flag a different
example or two (about 3% of small random matrices; tests/label_issues_test.py).
"""

import numpy as np

from tfrobust import _noise_checks

FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_self_confidence", "low_normalized_margin")
RANKINGS = ("self_confidence", "normalized_margin")

# Slack when comparing a probability with a threshold: a class with one example
# has a threshold exactly equal to that example's probability, which must pass.
_THRESHOLD_SLACK = 1e-6
# An example is only an issue if another class beats its given label by more than this.
_TIE_SLACK = 1e-6


def check_probabilities(labels, pred_probs, num_classes=None):
    """`(labels, pred_probs)` as int64 (n,) and float64 (n, C), after checking them.

    Raises:
        ValueError: shapes that disagree, probabilities outside [0, 1] or rows
            that do not sum to 1, labels that are not integers in [0, C).
    """
    pred_probs = np.asarray(pred_probs, dtype=np.float64)
    if pred_probs.ndim != 2 or pred_probs.shape[1] < 2:
        raise ValueError(f"pred_probs must have shape (examples, classes >= 2); got {pred_probs.shape}.")
    if num_classes is not None and pred_probs.shape[1] != num_classes:
        raise ValueError(f"pred_probs has {pred_probs.shape[1]} columns but num_classes={num_classes}.")
    if not np.all(np.isfinite(pred_probs)) or pred_probs.min() < 0 or pred_probs.max() > 1 + 1e-6:
        raise ValueError("pred_probs must hold finite probabilities in [0, 1] (a softmax output, not logits).")
    row_sums = pred_probs.sum(axis=1)
    if not np.allclose(row_sums, 1.0, atol=1e-3):
        worst = int(np.argmax(np.abs(row_sums - 1)))
        raise ValueError(
            f"Every row of pred_probs must sum to 1; row {worst} sums to {row_sums[worst]:.4f}. "
            "Pass probabilities (a softmax output), or from_logits=True to the finder."
        )
    labels = check_labels(labels, pred_probs.shape[1])
    if len(labels) != len(pred_probs):
        raise ValueError(f"labels has {len(labels)} entries but pred_probs has {len(pred_probs)} rows.")
    return labels, pred_probs


def check_labels(labels, num_classes=None):
    """`labels` as an int64 vector of class indices in [0, num_classes) (inferred if None), or a clear ValueError."""
    return _noise_checks.check_labels(labels, num_classes)[0]


def self_confidence(labels, pred_probs):
    """p(given label): lower means the label is more likely wrong."""
    return pred_probs[np.arange(len(labels)), labels]


def normalized_margin(labels, pred_probs):
    """(p(given label) - max over other classes p(k) + 1) / 2, in [0, 1]; lower is more likely wrong."""
    others = pred_probs.copy()
    others[np.arange(len(labels)), labels] = -np.inf
    return (self_confidence(labels, pred_probs) - others.max(axis=1) + 1.0) / 2.0


def label_quality(labels, pred_probs, rank_by="self_confidence"):
    """The label-quality score named `rank_by` (one of `RANKINGS`)."""
    if rank_by == "self_confidence":
        return self_confidence(labels, pred_probs)
    if rank_by == "normalized_margin":
        return normalized_margin(labels, pred_probs)
    raise ValueError(f"Unknown rank_by {rank_by!r}; choose one of {RANKINGS}.")


def confident_thresholds(labels, pred_probs):
    """t_j, the mean p_j over the examples labelled j; +inf for a class nobody is labelled with."""
    num_classes = pred_probs.shape[1]
    thresholds = np.full(num_classes, np.inf)
    for j in range(num_classes):
        members = labels == j
        if members.any():
            thresholds[j] = pred_probs[members, j].mean()
    return thresholds


def confident_classes(pred_probs, thresholds):
    """For each example, the class it is confidently in (-1 if none): the most probable class
    among those whose threshold it reaches."""
    above = pred_probs >= thresholds - _THRESHOLD_SLACK
    masked = np.where(above, pred_probs, -np.inf)
    return np.where(above.any(axis=1), masked.argmax(axis=1), -1)


def confident_joint(labels, pred_probs, thresholds=None, calibrate=True):
    """The C x C confident joint, rows the given label, columns the confident class.

    With `calibrate`, rows are rescaled to the label counts (Eq. 3 of
    Northcutt et al.), so entry [i, j] estimates how many examples labelled i
    truly belong to j and the matrix sums to the number of examples (classes
    with no labelled examples keep a zero row).
    """
    num_classes = pred_probs.shape[1]
    if thresholds is None:
        thresholds = confident_thresholds(labels, pred_probs)
    confident = confident_classes(pred_probs, thresholds)
    counted = confident >= 0
    joint = np.zeros((num_classes, num_classes))
    np.add.at(joint, (labels[counted], confident[counted]), 1.0)
    # Every class keeps at least one confidently-correct example, so no row is empty and
    # calibration never divides by zero.
    np.fill_diagonal(joint, np.maximum(joint.diagonal(), 1.0))
    if not calibrate:
        return joint
    label_counts = np.bincount(labels, minlength=num_classes)
    calibrated = joint / joint.sum(axis=1, keepdims=True) * label_counts[:, None]
    # Eq. 3 then normalises the joint to sum to the number of examples (the rows already nearly do).
    return calibrated / calibrated.sum() * label_counts.sum()


def prune_counts(calibrated_joint, min_kept=1):
    """Integer counts to prune: the calibrated joint rounded with each row's total kept, and at
    least `min_kept` examples of every given label left unflagged (the missing diagonal mass
    is taken evenly from that row's non-zero off-diagonal entries)."""
    counts = np.array(calibrated_joint, dtype=np.float64)
    for i, row in enumerate(counts):
        raise_by = max(min_kept - row[i], 0.0)
        if raise_by > 0:
            off = np.flatnonzero(row > 0)
            off = off[off != i]
            row[off] = np.maximum(row[off] - raise_by / max(len(off), 1), 0.0)
            row[i] = max(row[i], float(min_kept))
    return np.stack([_round_keeping_total(row) for row in counts])


def _round_keeping_total(values):
    """Integers close to `values` with the same (rounded) total.

    Each value is rounded to the nearest integer; if the total is then off
    by d, the |d| entries whose rounding moved them furthest in the wrong
    direction are moved back by one; among equal errors a decrement goes to
    the first entry, an increment to the last.
    """
    rounded = np.round(values)
    short = int(round(values.sum() - rounded.sum()))
    error = values - rounded
    if short > 0:
        rounded[np.argsort(error, kind="stable")[::-1][:short]] += 1
    elif short < 0:
        rounded[np.argsort(error, kind="stable")[:-short]] -= 1
    return rounded.astype(np.int64)


def _prune_by_noise_rate(labels, pred_probs, counts):
    flagged = np.zeros(len(labels), dtype=bool)
    for i in range(pred_probs.shape[1]):
        members = np.flatnonzero(labels == i)
        for j in np.flatnonzero(counts[i]):
            if j == i:
                continue
            margin = pred_probs[members, j] - pred_probs[members, i]
            flagged[members[np.argsort(-margin, kind="stable")[: counts[i, j]]]] = True
    return flagged


def _prune_by_class(labels, pred_probs, counts):
    flagged = np.zeros(len(labels), dtype=bool)
    for i in range(pred_probs.shape[1]):
        members = np.flatnonzero(labels == i)
        number = len(members) - counts[i, i]
        if number > 0:
            flagged[members[np.argsort(pred_probs[members, i], kind="stable")[:number]]] = True
    return flagged


def flag_label_issues(labels, pred_probs, filter_by="prune_by_noise_rate", joint=None):
    """Boolean mask of the examples whose label confident learning judges wrong.

    filter_by:
        "prune_by_noise_rate": for each i != j, the round(C~[i][j]) examples
            labelled i with the largest p_j - p_i (the default; Northcutt et
            al.'s best-performing variant).
        "prune_by_class": for each class i, the n_i - C~[i][i] examples
            labelled i with the lowest p_i.
        "both": flagged by both of the above.
        "confident_learning": the off-diagonal examples of the uncalibrated
            confident joint (confidently in a class other than their label).
        "predicted_neq_given": the argmax is not the given label.
        "low_self_confidence", "low_normalized_margin": the n examples with
            the lowest score of that name, n being how many examples
            "confident_learning" flags (cleanlab's `num_label_issues`, whose
            count these two filters of cleanlab's `find_label_issues` use).
            The count comes from confident learning, the choice of examples
            from the ranking alone; unlike the other filters, an example
            may be flagged though its given label is the model's argmax (as
            in cleanlab). Equal scores keep their index order.
    """
    if filter_by not in FILTERS:
        raise ValueError(f"Unknown filter_by {filter_by!r}; choose one of {FILTERS}.")
    if filter_by == "predicted_neq_given":
        return pred_probs.argmax(axis=1) != labels
    if filter_by.startswith("low_"):
        count = int(flag_label_issues(labels, pred_probs, "confident_learning").sum())
        scores = label_quality(labels, pred_probs, filter_by[len("low_"):])
        flagged = np.zeros(len(labels), dtype=bool)
        flagged[np.argsort(scores, kind="stable")[:count]] = True
        return flagged
    if filter_by == "confident_learning":
        confident = confident_classes(pred_probs, confident_thresholds(labels, pred_probs))
        flagged = (confident >= 0) & (confident != labels)
    else:
        counts = prune_counts(confident_joint(labels, pred_probs) if joint is None else joint)
        if filter_by == "prune_by_noise_rate":
            flagged = _prune_by_noise_rate(labels, pred_probs, counts)
        elif filter_by == "prune_by_class":
            flagged = _prune_by_class(labels, pred_probs, counts)
        else:
            flagged = _prune_by_noise_rate(labels, pred_probs, counts) & _prune_by_class(labels, pred_probs, counts)
    # An example the model itself assigns to its given label is not an issue (near-ties go to the label).
    given = self_confidence(labels, pred_probs)
    return flagged & (pred_probs.max(axis=1) > given + _TIE_SLACK)
