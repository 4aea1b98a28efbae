"""How well susceptibility picks models on the benchmark: the quadrant rule against the best and median model.

Every (run, epoch) of a benchmark that recorded susceptibility
(`BenchmarkConfig.susceptibility`) is a candidate model: its accuracy on the
NOISY training labels, its zeta(t), and, for judging only, its clean test
accuracy and the share of corrupted training examples it predicts as their
noisy label (memorisation, from the clean labels the benchmark injected).
Models trained on the same noisy training set (dataset, imbalance, noise,
seed) compete: `tfrobust.metrics.select_model` picks one of them without
clean labels. `python -m search.model_selection` is the command line.
"""

import collections
import dataclasses
import math
import os

import numpy as np

from tfrobust import _io
from tfrobust._model_selection import draw_model_selection, select_model
from tfrobust.benchmark._results import CURVES, RESULTS_CSV, read_curves, read_results
from tfrobust.metrics import SUSCEPTIBILITY_CURVE

MODEL_SELECTION_MD = "model_selection.md"
MODEL_SELECTION_PLOT = "model_selection.png"
_MAX_PANELS = 12


@dataclasses.dataclass(frozen=True)
class GroupSelection:
    """The quadrant rule on the models of one noisy training set.

    Test accuracies are on the clean test split; `region_one_test_accuracy`
    is the mean over Region 1 (the paper's measure), `most_accurate_on_train`
    the test accuracy of the model with the highest noisy-training accuracy
    (the pick without zeta), `spearman_memorisation` the rank correlation of
    zeta with the share of corrupted examples predicted as their noisy label
    (NaN without corrupted labels) over all the group's models, and
    `spearman_memorisation_within_runs` the same over each run's epochs,
    averaged over runs (free of differences between methods).
    """

    dataset: str
    imbalance: str
    noise: str
    seed: int
    models: int
    runs: int
    chosen: str  # "method @ epoch", or "" when Region 1 is empty
    chosen_test_accuracy: float
    region_one_models: int
    region_one_test_accuracy: float
    most_accurate_on_train: float
    best_test_accuracy: float
    median_test_accuracy: float
    spearman_memorisation: float
    spearman_memorisation_within_runs: float


def _spearman(first, second):
    """Spearman's rank correlation (average ranks for ties); NaN for fewer than 3 pairs or a constant side."""
    first, second = np.asarray(first, dtype=np.float64), np.asarray(second, dtype=np.float64)
    keep = np.isfinite(first) & np.isfinite(second)
    if keep.sum() < 3:
        return math.nan
    from scipy.stats import rankdata

    ranks = [rankdata(values[keep]) for values in (first, second)]
    if any(np.ptp(r) == 0 for r in ranks):
        return math.nan
    return float(np.corrcoef(*ranks)[0, 1])


def candidate_models(output_dir):
    """`{(dataset, imbalance, noise, seed): [candidate, ...]}` from a benchmark folder.

    A candidate is a dict with method, architecture, run_id, epoch,
    train_accuracy (noisy labels), susceptibility, test_accuracy and
    memorisation (corrupted predicted noisy). Runs whose curves have no
    susceptibility (trained without it) are left out.
    """
    rows = read_results(os.path.join(output_dir, RESULTS_CSV))
    curves = read_curves(os.path.join(output_dir, CURVES))
    groups = collections.defaultdict(list)
    for row in rows:
        curve = curves.get(row["run_id"])
        if not curve or not curve.get(SUSCEPTIBILITY_CURVE):
            continue
        key = (row["dataset"], row.get("imbalance", "none"), row["noise"], int(row["seed"]))
        epochs = min(len(curve[SUSCEPTIBILITY_CURVE]), len(curve["test_accuracy"]))
        for epoch in range(epochs):
            groups[key].append({
                "method": row["method"], "architecture": row["architecture"], "run_id": row["run_id"],
                "epoch": epoch + 1,
                "train_accuracy": curve["noisy_train_accuracy"][epoch],
                "susceptibility": curve[SUSCEPTIBILITY_CURVE][epoch],
                "test_accuracy": curve["test_accuracy"][epoch],
                "memorisation": curve["corrupted_predicted_noisy"][epoch],
            })
    return dict(groups)


def _column(candidates, name):
    return np.array([candidate[name] for candidate in candidates], dtype=np.float64)


def evaluate_group(key, candidates):
    """The `GroupSelection` of one noisy training set's candidates (see `candidate_models`)."""
    selection = select_model(_column(candidates, "train_accuracy"), _column(candidates, "susceptibility"))
    test = _column(candidates, "test_accuracy")
    known = selection.regions > 0
    chosen = selection.chosen
    train = np.where(known, _column(candidates, "train_accuracy"), -np.inf)
    return GroupSelection(
        *key, models=int(known.sum()), runs=len({c["run_id"] for c in candidates}),
        chosen="" if chosen is None else f"{candidates[chosen]['method']} @ {candidates[chosen]['epoch']}",
        chosen_test_accuracy=math.nan if chosen is None else float(test[chosen]),
        region_one_models=len(selection.region_one),
        region_one_test_accuracy=float(np.mean(test[list(selection.region_one)])) if selection.region_one else math.nan,
        most_accurate_on_train=float(test[int(np.argmax(train))]),
        best_test_accuracy=float(np.max(test[known])), median_test_accuracy=float(np.median(test[known])),
        spearman_memorisation=_spearman(_column(candidates, "susceptibility"), _column(candidates, "memorisation")),
        spearman_memorisation_within_runs=_nanmean([
            _spearman(_column(run, "susceptibility"), _column(run, "memorisation"))
            for run in _by_run(candidates).values()]),
    )


def _by_run(candidates):
    runs = collections.defaultdict(list)
    for candidate in candidates:
        runs[candidate["run_id"]].append(candidate)
    return runs


def _cell(value):
    return "–" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"


def _nanmean(values):
    values = [value for value in values if not math.isnan(value)]
    return float(np.mean(values)) if values else math.nan


def selection_table(selections):
    """Markdown: a row per noisy training set, then the mean over them (NaNs skipped)."""
    header = ("| dataset | noise | seed | models (runs) | chosen: method @ epoch | chosen test acc | Region 1 mean "
              "test acc (n) | max-train-acc model's test acc | best test acc | median test acc | "
              "Spearman(ζ, memorisation) | within runs |")
    lines = [header, "|" + "---|" * (header.count("|") - 1)]
    for s in selections:
        noise = s.noise if s.imbalance == "none" else f"{s.noise}, {s.imbalance}"
        lines.append(
            f"| {s.dataset} | {noise} | {s.seed} | {s.models} ({s.runs}) | {s.chosen or 'Region 1 empty'} | "
            f"{_cell(s.chosen_test_accuracy)} | {_cell(s.region_one_test_accuracy)} ({s.region_one_models}) | "
            f"{_cell(s.most_accurate_on_train)} | {_cell(s.best_test_accuracy)} | {_cell(s.median_test_accuracy)} | "
            f"{_cell(s.spearman_memorisation)} | {_cell(s.spearman_memorisation_within_runs)} |"
        )
    if selections:
        means = {name: _nanmean([getattr(s, name) for s in selections]) for name in (
            "chosen_test_accuracy", "region_one_test_accuracy", "most_accurate_on_train", "best_test_accuracy",
            "median_test_accuracy", "spearman_memorisation", "spearman_memorisation_within_runs")}
        lines.append(
            f"| **mean over {len(selections)}** | | | | | **{_cell(means['chosen_test_accuracy'])}** | "
            f"{_cell(means['region_one_test_accuracy'])} | {_cell(means['most_accurate_on_train'])} | "
            f"{_cell(means['best_test_accuracy'])} | {_cell(means['median_test_accuracy'])} | "
            f"{_cell(means['spearman_memorisation'])} | {_cell(means['spearman_memorisation_within_runs'])} |"
        )
    return "\n".join(lines) + "\n"


def plot_selections(groups, path):
    """A panel per noisy training set (at most `_MAX_PANELS`, the first in sorted order): noisy-training
    accuracy against zeta, a colour per method, the chosen model circled. Returns `path`."""
    from matplotlib.figure import Figure

    keys = sorted(groups)[:_MAX_PANELS]
    columns = min(len(keys), 3)
    rows = -(-len(keys) // columns)
    figure = Figure(figsize=(4.8 * columns, 3.9 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for axis in axes[len(keys):]:
        axis.set_visible(False)
    for axis, key in zip(axes, keys):
        candidates = groups[key]
        dataset, imbalance, noise, seed = key
        draw_model_selection(axis, _column(candidates, "train_accuracy"), _column(candidates, "susceptibility"),
                             labels=[c["method"] for c in candidates],
                             title=f"{dataset} {noise}{'' if imbalance == 'none' else ' ' + imbalance} seed {seed}")
    axes[0].legend(fontsize="x-small", loc="lower right")
    figure.suptitle("Quadrant rule (Forouzesh et al., ICLR 2023): a point per method x epoch; circled: chosen")
    figure.tight_layout()
    return _io.save_figure(figure, path)


def model_selection_report(output_dir, report_dir=None):
    """Reads a benchmark folder, writes model_selection.md and model_selection.png to `report_dir`
    (default: the benchmark folder); returns `(selections, {"table": path, "plot": path})`.

    Raises:
        ValueError: when no run of the folder recorded susceptibility.
    """
    groups = candidate_models(output_dir)
    if not groups:
        raise ValueError(
            f"No run in {output_dir} recorded susceptibility: run the benchmark with --susceptibility "
            "(BenchmarkConfig(susceptibility=True)) first; runs already done are skipped, so use a fresh output_dir."
        )
    selections = [evaluate_group(key, groups[key]) for key in sorted(groups)]
    report_dir = report_dir or output_dir
    text = (
        "# Model selection with susceptibility\n\n"
        f"Benchmark folder `{output_dir}`. Each (run, epoch) is a candidate model; models trained on the same "
        "noisy training set compete. The quadrant rule (lines at the mean noisy-training accuracy and the mean "
        "susceptibility) selects Region 1; the chosen model is Region 1's highest noisy-training accuracy. "
        "Test accuracies are on clean test labels, used only to judge. Memorisation: share of corrupted "
        "training examples predicted as their noisy label.\n\n" + selection_table(selections)
    )
    os.makedirs(report_dir, exist_ok=True)
    table_path = os.path.join(report_dir, MODEL_SELECTION_MD)
    _io.write_text(table_path, text)
    return selections, {"table": table_path,
                        "plot": plot_selections(groups, os.path.join(report_dir, MODEL_SELECTION_PLOT))}
