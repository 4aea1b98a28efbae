"""Model selection without clean labels: noisy-training accuracy against susceptibility.

Forouzesh, Sedghi & Thiran, "Leveraging Unlabeled Data to Track Memorization",
ICLR 2023 (arXiv 2212.04461), Section 5 and the authors' Clothing1M walk-through:
the trained models are split into four regions by two lines, the MEAN
training accuracy and the MEAN susceptibility over the models, and the
models to select are those of Region 1 (trainable and resistant to
memorisation). Public face: `tfrobust.metrics.select_model`,
`tfrobust.metrics.plot_model_selection`.
"""

import dataclasses

import numpy as np

from tfrobust import _io

# Region number -> what its models are, in the paper's numbering.
REGIONS = {
    1: "high training accuracy, low susceptibility (trainable, resists memorisation: select)",
    2: "high training accuracy, high susceptibility (trainable, memorises)",
    3: "low training accuracy, low susceptibility (resists, but does not fit)",
    4: "low training accuracy, high susceptibility (neither)",
}


@dataclasses.dataclass(frozen=True)
class ModelSelection:
    """What `select_model` decided.

    Attributes:
        train_accuracy_threshold: the mean training accuracy of the models (the horizontal line).
        susceptibility_threshold: the mean susceptibility of the models (the vertical line).
        regions: per model, its region 1-4 (`REGIONS`), 0 where a value is missing (NaN).
        region_one: indices of the Region 1 models, the paper's selection.
        chosen: one model of Region 1 (the highest training accuracy there, then the lowest
            susceptibility, then the first), or None when Region 1 is empty.
    """

    train_accuracy_threshold: float
    susceptibility_threshold: float
    regions: np.ndarray
    region_one: tuple
    chosen: int | None


def select_model(train_accuracy, susceptibility):
    """The paper's quadrant rule over a set of trained models (one value of each per model).

    A model has high training accuracy when its accuracy on the NOISY training
    labels is at least the mean over the models, and low susceptibility when
    its zeta is at most the mean zeta. Region 1 (high accuracy, low zeta) is the
    paper's selection; to name one model, `chosen` is the Region 1 model with
    the highest training accuracy (our tie-break: the paper selects the
    region). Models with a NaN value take no part (region 0).

    Raises:
        ValueError: when the two arrays differ in length or no model has both values.
    """
    accuracy = np.asarray(train_accuracy, dtype=np.float64).reshape(-1)
    zeta = np.asarray(susceptibility, dtype=np.float64).reshape(-1)
    if len(accuracy) != len(zeta):
        raise ValueError(
            f"select_model needs one training accuracy and one susceptibility per model; got {len(accuracy)} "
            f"accuracies and {len(zeta)} susceptibilities."
        )
    known = np.isfinite(accuracy) & np.isfinite(zeta)
    if not known.any():
        raise ValueError("select_model: no model has both a finite training accuracy and a finite susceptibility.")
    accuracy_line, zeta_line = float(accuracy[known].mean()), float(zeta[known].mean())
    high = accuracy >= accuracy_line
    low = zeta <= zeta_line
    regions = np.where(high, np.where(low, 1, 2), np.where(low, 3, 4))
    regions[~known] = 0
    region_one = np.flatnonzero(regions == 1)
    chosen = None
    if len(region_one):
        # lexsort: last key first; the highest accuracy, then the lowest zeta, then the first index.
        order = np.lexsort((region_one, zeta[region_one], -accuracy[region_one]))
        chosen = int(region_one[order[0]])
    return ModelSelection(accuracy_line, zeta_line, regions, tuple(int(i) for i in region_one), chosen)


def draw_model_selection(axis, train_accuracy, susceptibility, *, labels=None, selection=None, title=None):
    """Draws the selection picture on a matplotlib `axis`: a point per model (a colour per `labels`
    value), the two mean lines, the region numbers and the chosen model circled. Returns `selection`."""
    import matplotlib

    accuracy = np.asarray(train_accuracy, dtype=np.float64).reshape(-1)
    zeta = np.asarray(susceptibility, dtype=np.float64).reshape(-1)
    selection = selection or select_model(accuracy, zeta)
    labels = ["model"] * len(accuracy) if labels is None else [str(label) for label in labels]
    if len(labels) != len(accuracy):
        raise ValueError(f"plot_model_selection: {len(labels)} labels for {len(accuracy)} models.")
    names = list(dict.fromkeys(labels))
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    for index, name in enumerate(names):
        members = np.array([label == name for label in labels])
        axis.scatter(zeta[members], accuracy[members], s=12, alpha=0.75, color=palette(index % palette.N),
                     label=name)
    axis.axvline(selection.susceptibility_threshold, color="grey", linestyle="--", linewidth=0.9)
    axis.axhline(selection.train_accuracy_threshold, color="grey", linestyle="--", linewidth=0.9)
    # Region numbers in the corners of the quadrants they name.
    for region, (x, y, ha, va) in {1: (0.02, 0.98, "left", "top"), 2: (0.98, 0.98, "right", "top"),
                                   3: (0.02, 0.02, "left", "bottom"), 4: (0.98, 0.02, "right", "bottom")}.items():
        axis.text(x, y, f"Region {region}", transform=axis.transAxes, ha=ha, va=va, fontsize="small", color="grey")
    if selection.chosen is not None:
        axis.scatter([zeta[selection.chosen]], [accuracy[selection.chosen]], s=160, facecolors="none",
                     edgecolors="black", linewidths=1.6, label="chosen (Region 1)")
    axis.set_xlabel("susceptibility ζ (no clean labels)")
    axis.set_ylabel("accuracy on the noisy training labels")
    axis.set_title(title or "Model selection: training accuracy vs susceptibility", fontsize="medium")
    axis.grid(alpha=0.3)
    return selection


def plot_model_selection(train_accuracy, susceptibility, path, *, labels=None, selection=None, title=None):
    """Noisy-training accuracy against susceptibility, one point per model, with the mean lines and
    the chosen model circled (`draw_model_selection`); a colour per `labels` value (e.g. the method).
    Returns `path` (a PNG, written atomically). `selection` defaults to `select_model(...)`.
    """
    from matplotlib.figure import Figure

    figure = Figure(figsize=(6.4, 4.6))
    axis = figure.subplots()
    draw_model_selection(axis, train_accuracy, susceptibility, labels=labels, selection=selection, title=title)
    axis.legend(fontsize="x-small", loc="best")
    figure.tight_layout()
    return _io.save_figure(figure, path)
