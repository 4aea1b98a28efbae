"""Issue 10's shipping rule for a searched loss, applied to a benchmark's results.csv.

A candidate loss becomes the default only if, on the held-out grid, (1) its mean accuracy over the
grid's columns is above every peer's, and (2) in no column is it worse than the best peer of that
column by more than that peer's seed spread (the standard deviation over seeds). A column is a
(dataset, architecture, noise) cell; its value for a method is the mean over seeds.
"""

import collections
import dataclasses
import json
import math
import os
import re

import numpy as np

from tfrobust.benchmark import _tables


@dataclasses.dataclass(frozen=True)
class Cell:
    """One method in one column: mean and standard deviation (ddof=1) over its seeds, in accuracy units."""

    mean: float
    std: float
    runs: int
    nonfinite: int


@dataclasses.dataclass(frozen=True)
class Verdict:
    """The rule's outcome: `passed`, and `reasons` naming every way the candidate failed it."""

    candidate: str
    peers: tuple
    metric: str
    columns: tuple
    cells: dict  # {(method, column): Cell}
    means: dict  # {method: mean over the columns}
    passed: bool
    reasons: tuple
    outside: tuple = ()  # the columns where the candidate is below the best peer by more than its spread

    def markdown(self):
        """A table (methods as rows, columns and their mean as columns, per-column best peer in bold) and the verdict."""
        methods = (self.candidate,) + self.peers
        header = "| method | " + " | ".join(self.columns) + " | mean |"
        lines = [header, "|---|" + "---|" * (len(self.columns) + 1)]
        best = {column: max(self.cells[(p, column)].mean for p in self.peers) for column in self.columns}
        best_mean = max(self.means[p] for p in self.peers)
        for method in methods:
            texts = []
            for column in self.columns:
                cell = self.cells[(method, column)]
                text = f"{100 * cell.mean:.1f} ± {100 * cell.std:.1f}"
                if cell.nonfinite:
                    text += f" ({cell.nonfinite} non-finite)"
                texts.append(f"**{text}**" if method in self.peers and cell.mean == best[column] else text)
            mean = f"{100 * self.means[method]:.1f}"
            texts.append(f"**{mean}**" if method in self.peers and self.means[method] == best_mean else mean)
            label = f"{method} (candidate)" if method == self.candidate else method
            lines.append(f"| {label} | " + " | ".join(texts) + " |")
        runs = sorted({cell.runs for cell in self.cells.values()})
        outcome = ("**Passes**: the candidate may ship as the default." if self.passed else
                   "**Fails**: " + "; ".join(self.reasons) + ".")
        return "\n".join([
            f"Metric `{self.metric}` (%), mean ± std over {'/'.join(map(str, runs))} seeds per cell; the best peer of "
            "each column in bold.",
            "",
            *lines,
            "",
            outcome,
        ])


def _cells(rows, metric):
    """{(method, column): Cell} and the columns: data sets and architectures in order of appearance, then noise."""
    values = collections.defaultdict(list)
    nonfinite = collections.Counter()
    order = {}
    datasets = list(dict.fromkeys(row["dataset"] for row in rows))
    architectures = list(dict.fromkeys(row["architecture"] for row in rows))
    for row in rows:
        column = f"{row['dataset']}/{row['architecture']} {_tables.column_label(row)}"
        order.setdefault(column, (datasets.index(row["dataset"]), architectures.index(row["architecture"]),
                                  _tables.column_sort_key(row)))
        values[(row["method"], column)].append(_tables.number(row[metric]))
        nonfinite[(row["method"], column)] += row.get("finite") != "True"
    cells = {}
    for key, vals in values.items():
        vals = np.array(vals, dtype=float)
        if np.isnan(vals).any():
            raise ValueError(f"{key[0]} in column {key[1]!r} has runs without a {metric!r} value; rerun them "
                             "(search.benchmark retrains torn or missing rows) before applying the rule.")
        std = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
        cells[key] = Cell(float(vals.mean()), std, len(vals), int(nonfinite[key]))
    return cells, tuple(sorted(order, key=order.get))


def shipping_verdict(rows, candidate, peers, metric="final_test_accuracy"):
    """Applies the rule (see the module docstring) to benchmark rows (dicts of results.csv strings).

    Raises:
        ValueError: the candidate is also a peer, a method has no runs, a method lacks a column
            another has, a cell lacks values, or a peer's spread is undefined (a single seed).
    """
    peers = tuple(dict.fromkeys(peers))
    if not peers:
        raise ValueError("Give at least one peer method to compare the candidate with.")
    if candidate in peers:
        raise ValueError(f"The candidate {candidate!r} is also listed as a peer; leave it out of the peers.")
    methods = (candidate,) + peers
    rows = [row for row in rows if row["method"] in methods]
    if rows and metric not in rows[0]:
        raise ValueError(f"The results have no column {metric!r}; choose one of {sorted(rows[0])}.")
    present = {row["method"] for row in rows}
    missing = [m for m in methods if m not in present]
    if missing:
        raise ValueError(f"No runs of {missing} in the results; run them (search.benchmark --methods=...) first.")
    cells, columns = _cells(rows, metric)
    for method in methods:
        lacking = [c for c in columns if (method, c) not in cells]
        if lacking:
            raise ValueError(f"{method} has no runs in column(s) {lacking}: the rule compares whole grids.")
    means = {m: float(np.mean([cells[(m, c)].mean for c in columns])) for m in methods}
    reasons, outside = [], []
    for peer in peers:
        if means[candidate] <= means[peer]:
            reasons.append(f"mean {100 * means[candidate]:.1f} is not above {peer}'s {100 * means[peer]:.1f}")
    for column in columns:
        best_peer = max(peers, key=lambda p: cells[(p, column)].mean)
        best = cells[(best_peer, column)]
        if math.isnan(best.std):
            raise ValueError(f"{best_peer} has a single seed in column {column!r}: the rule needs its seed spread.")
        shortfall = best.mean - cells[(candidate, column)].mean
        if shortfall > best.std:
            outside.append(column)
            reasons.append(f"{column}: {100 * shortfall:.1f} points below {best_peer} (its spread "
                           f"{100 * best.std:.1f})")
    return Verdict(candidate, peers, metric, columns, cells, means, not reasons, tuple(reasons), tuple(outside))


def search_facts(method):
    """What a `taylor_file:` candidate's file records of the search that made it: `{"order", "suite", "seed",
    "fitness", "fitness_definition", "selection_fitness"}` (None where the file or the field is missing, and
    for any other method). `fitness` is the search's `--fitness_aggregation`, from the record or, in files
    written before it was recorded, from the command line."""
    from tfrobust.benchmark import _methods

    facts = dict.fromkeys(("order", "suite", "seed", "fitness", "fitness_definition", "selection_fitness"))
    if not method.startswith(_methods.TAYLOR_FILE_PREFIX):
        return facts
    try:
        with open(method[len(_methods.TAYLOR_FILE_PREFIX):]) as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return facts
    provenance = record.get("provenance") or {}
    fitness = provenance.get("fitness_aggregation")
    if fitness is None:
        match = re.search(r"--fitness_aggregation=(\S+)", str(provenance.get("command", "")))
        fitness = match.group(1) if match else None
    suite = ((provenance.get("budget") or {}).get("task_suite") or {}).get("name")
    facts.update(order=record.get("order"), suite=suite, seed=provenance.get("seed"), fitness=fitness,
                 fitness_definition=provenance.get("fitness_definition"), selection_fitness=provenance.get("fitness"))
    return facts


def compare_candidates(verdicts):
    """Several candidates judged on one grid (one `Verdict` each, same peers) as a Markdown table.

    Each row: the candidate's search (order, task suite, fitness, seed and final-selection score, from
    its file), its held-out mean, its distance from the best peer's mean, how many columns fall outside
    the best peer's spread, and the verdict. Then, for each search setting (order, suite and fitness)
    with more than one candidate, the mean and spread (std, ddof=1) of their held-out means: how much a
    search's outcome depends on its seed."""
    if not verdicts:
        raise ValueError("Give at least one verdict to compare.")
    peers = verdicts[0].peers
    if any(v.peers != peers or v.columns != verdicts[0].columns for v in verdicts):
        raise ValueError("Compare candidates judged against the same peers on the same columns.")
    best_peer = max(peers, key=lambda p: verdicts[0].means[p])
    best_mean = verdicts[0].means[best_peer]
    lines = [
        f"Held-out mean over {len(verdicts[0].columns)} columns (%); best peer {best_peer} at {100 * best_mean:.1f}. "
        "Selection fitness (x100): the search's final-selection score, as its file records it.",
        "",
        "| candidate | order | suite | fitness | search seed | selection fitness | held-out mean | vs best peer | "
        "columns outside the spread | verdict |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    by_setting = collections.defaultdict(list)
    for verdict in verdicts:
        facts = search_facts(verdict.candidate)
        mean = verdict.means[verdict.candidate]
        if facts["order"] is not None and facts["fitness_definition"] is not None:
            by_setting[(facts["order"], facts["suite"], facts["fitness"] or facts["fitness_definition"])].append(mean)
        fitness = facts["selection_fitness"]
        cells = [_short(verdict.candidate), facts["order"], facts["suite"], facts["fitness"], facts["seed"],
                 "" if fitness is None else f"{100 * fitness:+.2f}", f"{100 * mean:.1f}",
                 f"{100 * (mean - best_mean):+.1f}", len(verdict.outside), "passes" if verdict.passed else "fails"]
        lines.append("| " + " | ".join("" if c is None else str(c) for c in cells) + " |")
    spreads = [f"order {order}, suite {suite}, {fitness}: {100 * np.mean(means):.1f} ± "
               f"{100 * np.std(means, ddof=1):.1f} over {len(means)} searches"
               for (order, suite, fitness), means in by_setting.items() if len(means) > 1]
    if spreads:
        lines += ["", "Held-out mean over the search seeds of each order, suite and fitness, mean ± std: "
                  + "; ".join(spreads) + "."]
    return "\n".join(lines)


def _short(method):
    """A legend label: a search result's file is named by its run folder."""
    from tfrobust.benchmark import _methods

    if method.startswith(_methods.TAYLOR_FILE_PREFIX):
        path = method[len(_methods.TAYLOR_FILE_PREFIX):]
        return _methods.TAYLOR_FILE_PREFIX + (os.path.basename(os.path.dirname(path)) or os.path.basename(path))
    return method


def plot_verdict(verdict, path):
    """A PNG with the verdict's accuracies (left: each column, the candidate against every peer) and, when
    the candidate and some peers are losses, their shapes (right: `tfrobust.plotting.plot_loss_curves`'s
    normalised curves). Returns `path`."""
    import keras
    from matplotlib.figure import Figure

    from tfrobust import _io
    from tfrobust import plotting
    from tfrobust.benchmark import _methods

    shapes = {}
    for method in (verdict.candidate,) + verdict.peers:
        try:
            found = _methods.get_method(method)
        except (ValueError, FileNotFoundError):  # another registry's method, or a moved file: no shape to draw
            continue
        if isinstance(found, _methods.LossMethod) and (method == verdict.candidate or method.startswith(
                (_methods.TAYLOR_PRESET_PREFIX, _methods.TAYLOR_FILE_PREFIX)) or method in ("ce", "mae")):
            # The benchmark's ce is Keras's sparse loss; plotting feeds one-hot labels, as its dense twin takes.
            shapes[method] = keras.losses.CategoricalCrossentropy() if method == "ce" else found.loss_factory(10, None)
    figure = Figure(figsize=(12 if len(shapes) > 1 else 7, 6))
    axes = figure.subplots(1, 2 if len(shapes) > 1 else 1, squeeze=False)[0]
    positions = np.arange(len(verdict.columns))
    for index, method in enumerate((verdict.candidate,) + verdict.peers):
        means = np.array([100 * verdict.cells[(method, c)].mean for c in verdict.columns])
        if method == verdict.candidate:
            axes[0].plot(positions, means, "k*", markersize=14, label=f"{_short(method)} (candidate)", zorder=3)
        else:
            axes[0].plot(positions + 0.04 * (index - len(verdict.peers) / 2), means, "o", alpha=0.75,
                         label=_short(method))
    labels = [c.replace("procedural:", "").replace("/", "\n").replace(" ", "\n") for c in verdict.columns]
    axes[0].set_xticks(positions, labels, fontsize=7)
    axes[0].set_ylabel(f"{verdict.metric} (%), mean over seeds")
    axes[0].set_title("Held-out columns: " + ("passes" if verdict.passed else "fails") + " the shipping rule")
    axes[0].grid(alpha=0.3)
    axes[0].legend(fontsize=7, ncol=2, loc="upper center", bbox_to_anchor=(0.5, -0.2))
    if len(shapes) > 1:
        p = np.linspace(0.01, 1.0, 200)
        for method, loss in shapes.items():
            values = plotting.loss_curve_values(loss, p)
            values = (values - values.min()) / max(values.max() - values.min(), 1e-12)
            style = dict(color="k", linewidth=2.5) if method == verdict.candidate else dict(alpha=0.8)
            axes[1].plot(p, values, label=_short(method), **style)
        axes[1].set_xlabel("probability of the true class (10 classes)")
        axes[1].set_ylabel("loss (normalised to [0, 1])")
        axes[1].set_title("The losses' shapes")
        axes[1].grid(alpha=0.3)
        axes[1].legend(fontsize=7)
    figure.tight_layout()
    return _io.save_figure(figure, path, dpi=110)
