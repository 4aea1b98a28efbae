"""Class imbalance: long-tailed and step profiles, seeded subsampling, balanced accuracy.

An imbalance spec names how many training examples each class keeps:

- "longtail:RHO": the exponential profile of Cao et al. (LDAM-DRW, NeurIPS
  2019) and Shu et al. (Meta-Weight-Net, NeurIPS 2019),
  n_c = floor(n_max * RHO^(-c / (C - 1))) for classes c = 0 .. C-1, so class 0
  is the head and class C-1 keeps n_max / RHO examples.
- "step:RHO": the step profile of the same papers: the first floor(C / 2)
  classes keep n_max examples, the others n_max / RHO.
- "none": every example is kept.

RHO >= 1 is the imbalance ratio n_max / n_min. `n_max` is the size of the
smallest class of the split being subsampled, so every class can supply its
count; each count is at least 1. Counts are truncated to integers as in the
released LDAM-DRW code (`int(n_max * rho ** (-c / (C - 1)))`).

`tfrobust.datasets.load(..., imbalance="longtail:100")` applies a spec to the
training split only; validation and test splits stay balanced, so accuracy on
them is the balanced measure the papers report. The accuracy helpers here
give the per-class and balanced (per-class mean) accuracy.
"""

import dataclasses

import numpy as np

from tfrobust._specs import KindSpecSyntax

IMBALANCE_KINDS = ("none", "longtail", "step")

# The share of classes that "rarest classes accuracy" averages over (at least one class).
RAREST_CLASS_FRACTION = 0.2

_VALID_SPECS = "'none', 'longtail:RHO' or 'step:RHO' (RHO a number >= 1, the ratio n_max / n_min)"
_SPEC_SYNTAX = KindSpecSyntax("imbalance spec", _VALID_SPECS)


@dataclasses.dataclass(frozen=True)
class ImbalanceSpec:
    """A parsed imbalance spec: `kind` in IMBALANCE_KINDS and `ratio` (RHO >= 1)."""

    kind: str = "none"
    ratio: float = 1.0

    def __post_init__(self):
        if self.kind not in IMBALANCE_KINDS:
            raise ValueError(f"Unknown imbalance kind {self.kind!r}; valid imbalance specs are {_VALID_SPECS}.")
        ratio = self.ratio
        if isinstance(ratio, bool) or not isinstance(ratio, (int, float, np.number)) or not np.isfinite(ratio) or ratio < 1:
            raise ValueError(f"Imbalance ratio must be a finite number >= 1 (n_max / n_min); got {ratio!r}.")
        if self.kind == "none" and ratio != 1:
            raise ValueError(f"Imbalance 'none' takes no ratio; got ratio={ratio!r}.")

    def __str__(self):
        return "none" if self.kind == "none" else f"{self.kind}:{self.ratio:g}"

    def class_counts(self, n_max, num_classes) -> np.ndarray:
        """The number of examples each class keeps, int64 `(num_classes,)`."""
        if self.kind == "longtail":
            return long_tail_counts(n_max, num_classes, self.ratio)
        if self.kind == "step":
            return step_counts(n_max, num_classes, self.ratio)
        return np.full(num_classes, int(n_max), dtype=np.int64)

    def subsample(self, labels, num_classes, *, seed) -> np.ndarray:
        """Sorted indices into `labels` of the examples kept; all of them for "none".

        `n_max` is the count of the smallest class present in `labels`; which
        examples a class keeps is drawn uniformly without replacement, seeded.
        """
        labels = np.asarray(labels).reshape(-1)
        if self.kind == "none":
            return np.arange(len(labels))
        available = np.bincount(labels, minlength=num_classes)
        if available.min() == 0:
            raise ValueError(
                f"Imbalance {self}: class {int(np.argmin(available))} has no example to subsample; "
                "every class needs at least one."
            )
        counts = self.class_counts(int(available.min()), num_classes)
        return subsample(labels, counts, seed=seed)


def parse_imbalance_spec(spec) -> ImbalanceSpec:
    """Parses "none", "longtail:100" or "step:10" into an `ImbalanceSpec`.

    `str(spec)` parses back to an equal spec; an `ImbalanceSpec` (or None,
    meaning "none") is accepted as well.

    Raises:
        ValueError: naming the valid forms, for anything else.
    """
    if spec is None:
        return ImbalanceSpec()
    if isinstance(spec, ImbalanceSpec):
        return spec
    kind, has_argument, argument = _SPEC_SYNTAX.split(spec)
    if kind == "none" and not has_argument:
        return ImbalanceSpec()
    if kind in ("longtail", "step") and has_argument:
        return ImbalanceSpec(kind, _SPEC_SYNTAX.number(spec, argument))
    raise _SPEC_SYNTAX.unparseable(spec)


def long_tail_counts(n_max, num_classes, ratio) -> np.ndarray:
    """n_c = floor(n_max * ratio^(-c / (C - 1))), at least 1 (Cao et al., 2019)."""
    _check_counts_arguments(n_max, num_classes)
    exponents = np.arange(num_classes) / max(num_classes - 1, 1)
    counts = np.floor(n_max * float(ratio) ** (-exponents) + 1e-9)  # 1e-9: 100 * 10**-1 is 9.999...
    return np.maximum(counts, 1).astype(np.int64)


def step_counts(n_max, num_classes, ratio) -> np.ndarray:
    """n_max for the first floor(C / 2) classes, floor(n_max / ratio) (at least 1) for the rest."""
    _check_counts_arguments(n_max, num_classes)
    minority = max(int(np.floor(n_max / float(ratio) + 1e-9)), 1)
    counts = np.full(num_classes, minority, dtype=np.int64)
    counts[: num_classes // 2] = int(n_max)
    return counts


def subsample(labels, counts, *, seed) -> np.ndarray:
    """Sorted indices keeping `counts[c]` examples of each class c, drawn without replacement."""
    labels = np.asarray(labels).reshape(-1)
    rng = np.random.default_rng(seed)
    kept = []
    for label, count in enumerate(np.asarray(counts)):
        members = np.flatnonzero(labels == label)
        if count > len(members):
            raise ValueError(f"Class {label} has {len(members)} examples; cannot keep {int(count)}.")
        kept.append(rng.choice(members, size=int(count), replace=False))
    return np.sort(np.concatenate(kept)) if kept else np.arange(0)


def class_counts(labels, num_classes) -> np.ndarray:
    """Examples per class, int64 `(num_classes,)`: the `class_counts` LDAM-DRW needs."""
    return np.bincount(np.asarray(labels, dtype=np.int64).reshape(-1), minlength=num_classes)


def per_class_accuracy(y_true, y_pred, num_classes) -> np.ndarray:
    """Accuracy within each true class, float64 `(num_classes,)`; NaN for a class with no example.

    `y_pred` is class indices `(n,)` or scores `(n, num_classes)` (argmax is taken).
    """
    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred)
    if y_pred.ndim == 2:
        y_pred = np.argmax(y_pred, axis=-1)
    y_pred = y_pred.reshape(-1)
    if y_true.shape != y_pred.shape:
        raise ValueError(f"y_true has {y_true.shape[0]} examples but y_pred has {y_pred.shape[0]}.")
    totals = np.bincount(y_true, minlength=num_classes).astype(np.float64)
    correct = np.bincount(y_true[y_true == y_pred], minlength=num_classes).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, correct / totals, np.nan)


def balanced_accuracy(y_true, y_pred, num_classes) -> float:
    """Mean of the per-class accuracies over the classes present in `y_true`."""
    return float(np.nanmean(per_class_accuracy(y_true, y_pred, num_classes)))


def rarest_classes(counts, fraction=RAREST_CLASS_FRACTION) -> np.ndarray:
    """The ceil(fraction * C) classes (at least one) with the fewest training examples, rarest first.

    `counts` is examples per class (`class_counts`). Ties go to the larger
    class index, so on a balanced split and on the long-tail and step
    profiles (where class C-1 is the rarest) the last classes are taken.
    """
    counts = np.asarray(counts).reshape(-1)
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"fraction must be in (0, 1]; got {fraction!r}.")
    number = max(1, int(np.ceil(fraction * len(counts) - 1e-9)))
    # lexsort's last key is the primary one: fewest examples, then the larger index.
    order = np.lexsort((-np.arange(len(counts)), counts))
    return order[:number]


def rarest_classes_accuracy(y_true, y_pred, counts, fraction=RAREST_CLASS_FRACTION) -> float:
    """Mean per-class accuracy over the `rarest_classes(counts, fraction)` (classes without test examples
    skipped; NaN when none has one); `counts` are the TRAINING examples per class, `y_true` / `y_pred` the
    test labels and predictions."""
    per_class = per_class_accuracy(y_true, y_pred, len(np.asarray(counts).reshape(-1)))
    rarest = per_class[rarest_classes(counts, fraction)]
    rarest = rarest[~np.isnan(rarest)]
    return float(rarest.mean()) if len(rarest) else float("nan")


def _check_counts_arguments(n_max, num_classes):
    for name, value in (("n_max", n_max), ("num_classes", num_classes)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer; got {value!r}.")
