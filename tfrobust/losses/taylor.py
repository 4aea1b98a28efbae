"""TaylorLoss: the Taylor-polynomial loss family that `search/` evolves."""

import datetime
import json
from importlib import resources

import keras
import numpy as np
from keras import ops

from tfrobust import _io
from tfrobust.losses import _base

MIN_ORDER = 1
MAX_ORDER = 8


def term_powers(order):
    """The (i, j) powers of the kept terms (y - a)^i (p - b)^j, in vector order.

    Terms are ordered by total degree i + j, then by the power i of the label
    term. Terms with j = 0 do not depend on p, so their gradient is zero and
    they are left out. For order 3:

        index  2      3        4             5        6               7
        term   (p-b)  (p-b)^2  (y-a)(p-b)    (p-b)^3  (y-a)(p-b)^2    (y-a)^2(p-b)
        (i,j)  (0,1)  (0,2)    (1,1)         (0,3)    (1,2)           (2,1)

    (indices 0 and 1 of the flat vector are the centre a and b).
    """
    _check_order(order)
    return [(degree - j, j) for degree in range(1, order + 1) for j in range(degree, 0, -1)]


def num_coefficients(order):
    """Length of the flat coefficient vector: 2 centre values + order(order+1)/2 terms."""
    _check_order(order)
    return 2 + order * (order + 1) // 2


def _check_order(order):
    if not isinstance(order, (int, np.integer)) or not MIN_ORDER <= order <= MAX_ORDER:
        raise ValueError(
            f"TaylorLoss order must be an integer in [{MIN_ORDER}, {MAX_ORDER}]; got {order!r}."
        )


def order_from_length(length):
    """The order whose flat coefficient vector has `length` entries."""
    for order in range(MIN_ORDER, MAX_ORDER + 1):
        if num_coefficients(order) == length:
            return order
    valid = ", ".join(f"{num_coefficients(k)} (order {k})" for k in range(MIN_ORDER, MAX_ORDER + 1))
    raise ValueError(
        f"A TaylorLoss coefficient vector has one of the lengths {valid}; got {length} numbers."
    )


def taylor_polynomial(targets, probs, coefficients, order):
    """f(y, p) = sum_k theta_k (y - a)^i_k (p - b)^j_k, elementwise.

    `coefficients` is either a flat Python sequence (one loss: the numbers
    become constants of the graph, and zero terms cost nothing) or a tensor
    whose last axis is the flat vector and whose leading axes broadcast
    against `targets` (the population loss passes one row per member).

    Evaluated by nested Horner schemes, f = P_0(v) + u (P_1(v) + u (...)),
    P_i(v) = v (theta_i1 + v (theta_i2 + ...)) with u = y - a, v = p - b:
    about half the operations of summing the terms one by one.
    """
    if isinstance(coefficients, (list, tuple)):
        coefficient = coefficients.__getitem__
    else:

        def coefficient(index):
            return coefficients[..., index : index + 1]

    index_of = {power: 2 + k for k, power in enumerate(term_powers(order))}
    label_offset = targets - coefficient(0)
    prob_offset = probs - coefficient(1)
    value = None
    for i in reversed(range(order)):
        inner = None
        for j in reversed(range(1, order - i + 1)):
            theta = coefficient(index_of[(i, j)])
            inner = theta if inner is None else theta + prob_offset * inner
        term = prob_offset * inner
        value = term if value is None else term + label_offset * value
    return value


@keras.saving.register_keras_serializable(package="tfrobust")
class TaylorLoss(_base.ClassificationLoss):
    """A classification loss parameterised as a bivariate Taylor polynomial.

    For one example with one-hot label y and predicted probabilities p, the
    loss is

        L(y, p) = - sum_c f(y_c, p_c),
        f(y, p) = sum_{i + j <= order, j >= 1} theta_ij (y - a)^i (p - b)^j,

    a polynomial expanded about the centre (a, b). Terms with j = 0 have no
    gradient in p and are omitted. The flat coefficient vector is
    `[a, b, theta_1, ..., theta_m]` with the terms in the order given by
    `term_powers(order)`; at order 3 it has 8 entries, the form searched by
    TaylorGLO (Gonzalez & Miikkulainen, GECCO 2021) and by Gao, Gouk &
    Hospedales (ICCV 2021). Being a polynomial of bounded inputs, the loss
    needs no clipping: it is finite for every p in [0, 1].

    Args:
        coefficients: the flat vector `[a, b, theta_1, ...]`, of length
            `2 + order * (order + 1) / 2`.
        order: the polynomial order (1 to 8). Inferred from the number of
            coefficients when `None`.
        from_logits: whether `y_pred` holds logits (softmax is applied)
            rather than probabilities (rows in [0, 1] summing to 1; other
            values give meaningless losses, see `ClassificationLoss`).
        reduction: Type of reduction to apply to the loss. Defaults to
            `"sum_over_batch_size"`; `None` returns one value per example.
        name: Optional name for the loss instance.
        dtype: The dtype of the loss's computations. Defaults to `None`,
            meaning `keras.backend.floatx()`.

    Example:

    >>> loss = TaylorLoss.pretrained("squared_error")
    >>> loss([1], [[0.2, 0.8]])  # (0.2^2 + 0.2^2) - 1: squared error less a constant
    -0.92

    Use `TaylorLoss.pretrained()` for the shipped evolved loss,
    `TaylorLoss.presets()` to list named presets and `TaylorLoss.from_file()`
    for the `best_coefficients.json` a search run writes.
    """

    def __init__(
        self,
        coefficients,
        order=None,
        from_logits=False,
        reduction="sum_over_batch_size",
        name="taylor_loss",
        dtype=None,
    ):
        super().__init__(from_logits=from_logits, reduction=reduction, name=name, dtype=dtype)
        values = np.asarray(coefficients, dtype=np.float64)
        if values.ndim != 1:
            raise ValueError(
                f"TaylorLoss coefficients must be a flat vector; got an array of shape {values.shape}."
            )
        if order is None:
            order = order_from_length(values.size)
        _check_order(order)
        if values.size != num_coefficients(order):
            raise ValueError(
                f"TaylorLoss of order {order} takes {num_coefficients(order)} coefficients "
                f"(a, b and {num_coefficients(order) - 2} terms); got {values.size}."
            )
        if not np.all(np.isfinite(values)):
            raise ValueError(f"TaylorLoss coefficients must be finite; got {values.tolist()}.")
        self.order = int(order)
        self.coefficients = values.tolist()

    def compute(self, targets, y_pred):
        probs = _base.probabilities(y_pred, self.from_logits)
        value = taylor_polynomial(targets, probs, list(self.coefficients), self.order)
        return -ops.sum(value, axis=-1)

    # ---- presets and files -------------------------------------------------

    @staticmethod
    def presets():
        """Names and one-line descriptions of the shipped presets."""
        return {name: spec["description"] for name, spec in _load_presets().items()}

    @staticmethod
    def preset_info(name=None):
        """The full preset record (coefficients, order, provenance) of `name`."""
        return dict(_preset(name))

    @classmethod
    def pretrained(cls, name=None, **kwargs):
        """The loss stored as preset `name` (the default preset when `None`).

        Keyword arguments (`from_logits`, `reduction`, ...) go to the
        constructor.
        """
        spec = _preset(name)
        kwargs.setdefault("name", f"taylor_{spec['name']}")
        return cls(spec["coefficients"], order=spec["order"], **kwargs)

    @classmethod
    def from_file(cls, path, **kwargs):
        """Loads a coefficient file: a search run's `best_coefficients.json` or a preset."""
        try:
            with open(path) as handle:
                spec = json.load(handle)
        except FileNotFoundError:
            raise FileNotFoundError(f"No TaylorLoss coefficient file at {path!r}.") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path!r} is not valid JSON ({error}).") from None
        if not isinstance(spec, dict) or "coefficients" not in spec:
            raise ValueError(
                f"{path!r} has no 'coefficients' entry: expected a file written by "
                "search.evolve (best_coefficients.json) or a TaylorLoss preset."
            )
        return cls(spec["coefficients"], order=spec.get("order"), **kwargs)


def preset_record(name, description, coefficients, order, provenance, default=False):
    """A preset / coefficient-file record, with the term layout spelled out."""
    return {
        "name": name,
        "description": description,
        "default": bool(default),
        "order": int(order),
        "coefficients": [float(c) for c in coefficients],
        "layout": ["a", "b"] + [f"(y-a)^{i}(p-b)^{j}" for i, j in term_powers(order)],
        "provenance": provenance,
    }


def write_json_atomic(path, record):
    """Writes `record` as JSON to `path` through a temporary file and a rename."""
    _io.write_json(path, record)


_PRESETS = None


def _load_presets():
    global _PRESETS
    if _PRESETS is None:
        presets = {}
        folder = resources.files("tfrobust.losses") / "presets"
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.name.endswith(".json"):
                spec = json.loads(entry.read_text())
                presets[spec["name"]] = spec
        defaults = [name for name, spec in presets.items() if spec.get("default")]
        if len(defaults) != 1:
            raise RuntimeError(f"Exactly one TaylorLoss preset must be the default; found {defaults}.")
        _PRESETS = presets
    return _PRESETS


def _preset(name):
    presets = _load_presets()
    if name is None:
        name = next(n for n, spec in presets.items() if spec.get("default"))
    if name not in presets:
        raise ValueError(
            f"Unknown TaylorLoss preset {name!r}. Available presets: {sorted(presets)} "
            "(see TaylorLoss.presets()); for a search result use TaylorLoss.from_file(path)."
        )
    return presets[name]


def derived_presets(created=None):
    """The exactly derived presets, each with its derivation.

    `tfrobust.search.presets` writes them as JSON (adding the command and the
    git revision to the provenance); `python -m search.make_presets` runs it.
    """
    created = created or datetime.date.today().isoformat()

    def provenance(derivation):
        return {
            "method": "derived analytically (no search)",
            "derivation": derivation,
            "created": created,
            "seed": None,
            "budget": None,
            "fitness": None,
        }

    # Order-3 terms: (p-b), (p-b)^2, (y-a)(p-b), (p-b)^3, (y-a)(p-b)^2, (y-a)^2(p-b).
    return [
        preset_record(
            "squared_error",
            "Squared error sum_c (y_c - p_c)^2 less the constant 1: same gradients as the Brier score.",
            [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0],
            3,
            provenance(
                "sum_c (y_c - p_c)^2 = sum_c y_c^2 - sum_c (2 y_c p_c - p_c^2); with one-hot y the "
                "first sum is 1, so f(y, p) = 2 y p - p^2 about (0, 0): theta(1,1) = 2, theta(0,2) = -1."
            ),
        ),
        preset_record(
            "mae",
            "Mean absolute error sum_c |y_c - p_c| = 2 - 2 p_true, less the constant 1.",
            [0.0, 0.0, -1.0, 0.0, 2.0, 0.0, 0.0, 0.0],
            3,
            provenance(
                "For one-hot y and p in [0, 1], |y - p| = y + p - 2 y p, so f(y, p) = 2 y p - p about "
                "(0, 0): theta(0,1) = -1, theta(1,1) = 2; the loss is 1 - 2 p_true."
            ),
        ),
        preset_record(
            "cross_entropy_taylor3",
            "Third-order bivariate Taylor expansion of cross-entropy's y log p about (y, p) = (1, 1).",
            [1.0, 1.0, 1.0, -0.5, 1.0, 1.0 / 3.0, -0.5, 0.0],
            3,
            provenance(
                "g(y, p) = y log p at (a, b) = (1, 1): g_p = a/b = 1, g_pp/2 = -a/(2b^2) = -1/2, "
                "g_yp = 1/b = 1, g_ppp/6 = a/(3b^3) = 1/3, g_ypp/2 = -1/(2b^2) = -1/2, g_yyp/2 = 0. "
                "For the true class -f = (1-p) + (1-p)^2/2 + (1-p)^3/3 (Taylor cross-entropy, "
                "Feng et al. 2020, t = 3); for the other classes -f = (1-p)^3/3."
            ),
            default=True,
        ),
    ]

