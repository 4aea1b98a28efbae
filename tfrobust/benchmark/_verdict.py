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


def read_grid(paths, preset=""):
    """The whole rows of several results.csv files read as one grid, kept to `preset`'s grid when given
    (any method; see `BenchmarkConfig.select`).

    Raises:
        FileNotFoundError: a path holds no file (naming it and the command that writes it).
    """
    from tfrobust.benchmark import _config
    from tfrobust.benchmark import _results

    rows = []
    for path in paths:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No results file at {path!r}: run python -m search.benchmark first.")
        rows += _results.read_results(path)
    return _config.BenchmarkConfig.from_preset(preset).select(rows) if preset else rows


def grid_name(preset, fallback="benchmark"):
    """How tables and plots name a preset's grid: "held-out" for issue 10's protocol, `fallback` for none."""
    return {"heldout": "held-out", "": fallback}.get(preset, preset)


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


@dataclasses.dataclass(frozen=True)
class Agreement:
    """How two benchmark grids rank the same methods (`grid_agreement`).

    `means` maps each method to its mean over the columns of each grid; `rho` and `p_value` are
    Spearman's rank correlation of those means over `methods` (scipy.stats.spearmanr), and
    `candidate_rho` the same over `candidates` alone (NaN with fewer than 3).
    """

    names: tuple  # the two grids' names, e.g. ("validation", "held-out")
    metric: str
    methods: tuple  # in order of the first grid's mean, best first
    candidates: tuple
    means: dict  # {method: (mean on the first grid, mean on the second)}
    rho: float
    p_value: float
    candidate_rho: float

    def rank(self, method, grid):
        """1 for the best mean on `grid` (0 or 1) among `methods`."""
        return 1 + sum(self.means[m][grid] > self.means[method][grid] for m in self.methods)

    def pick(self, grid):
        """The candidate with the best mean on `grid` (0 or 1)."""
        return max(self.candidates, key=lambda m: self.means[m][grid])

    def markdown(self):
        first, second = self.names
        lines = [
            f"Mean `{self.metric}` (%) over each grid's columns, and the rank among {len(self.methods)} methods "
            f"(candidates marked *).",
            "",
            f"| method | {first} mean | {first} rank | {second} mean | {second} rank |",
            "|---|---|---|---|---|",
        ]
        for method in self.methods:
            label = _short(method) + (" *" if method in self.candidates else "")
            a, b = self.means[method]
            lines.append(f"| {label} | {100 * a:.1f} | {self.rank(method, 0)} | {100 * b:.1f} | {self.rank(method, 1)} |")
        lines += ["", f"Spearman's rank correlation of the two means over all {len(self.methods)} methods: "
                  f"{self.rho:+.2f} (p = {self.p_value:.2g})."]
        if self.candidates:
            if len(self.candidates) >= 3:
                lines[-1] += f" Over the {len(self.candidates)} candidates alone: {self.candidate_rho:+.2f}."
            pick, best = self.pick(0), self.pick(1)
            lines.append(
                f"The {first} grid picks {_short(pick)} ({100 * self.means[pick][1]:.1f} on the {second} grid, rank "
                f"{self.rank(pick, 1)}); the best candidate there is {_short(best)} ({100 * self.means[best][1]:.1f})."
            )
        return "\n".join(lines)


def grid_agreement(rows, other_rows, names=("first", "second"), candidates=(), metric="final_test_accuracy"):
    """Whether one benchmark grid ranks methods as another does: `Agreement` over the methods with every column
    of both grids (rows are results.csv dicts, each list one grid). `candidates` are the methods a search would
    choose among (for `Agreement.pick`); they must be among those methods.

    Raises:
        ValueError: fewer than 3 methods have whole rows on both grids, a cell lacks values, or a candidate
            is missing from either grid.
    """
    from scipy import stats

    means = []
    for grid in (rows, other_rows):
        cells, columns = _cells(grid, metric) if grid else ({}, ())
        methods = {method for method, _ in cells}
        means.append({m: float(np.mean([cells[(m, c)].mean for c in columns])) for m in methods
                      if all((m, c) in cells for c in columns)})
    missing = [c for c in candidates if c not in means[0] or c not in means[1]]
    if missing:
        raise ValueError(f"Candidate(s) {missing} lack whole rows on the {names[0]} or {names[1]} grid: run "
                         "search.benchmark for them on both first.")
    shared = sorted(set(means[0]) & set(means[1]), key=lambda m: -means[0][m])
    if len(shared) < 3:
        raise ValueError(f"Only {len(shared)} method(s) have whole rows on both grids; a rank correlation needs 3.")
    both = {m: (means[0][m], means[1][m]) for m in shared}
    rho, p_value = stats.spearmanr([both[m][0] for m in shared], [both[m][1] for m in shared])
    candidates = tuple(dict.fromkeys(candidates))
    candidate_rho = (float(stats.spearmanr([both[m][0] for m in candidates], [both[m][1] for m in candidates])[0])
                     if len(candidates) >= 3 else math.nan)
    return Agreement(tuple(names), metric, tuple(shared), candidates, both, float(rho), float(p_value), candidate_rho)


def plot_agreement(agreement, path):
    """A PNG scatter of each method's mean on the first grid (x) against the second (y); candidates as stars,
    the first grid's pick circled. Returns `path`."""
    from matplotlib.figure import Figure

    from tfrobust import _io

    figure = Figure(figsize=(7.5, 6))
    axes = figure.subplots()
    pick = agreement.pick(0) if agreement.candidates else None
    for method in agreement.methods:
        x, y = (100 * v for v in agreement.means[method])
        candidate = method in agreement.candidates
        axes.plot(x, y, "k*" if candidate else "o", markersize=11 if candidate else 7, alpha=0.85)
        if method == pick:
            axes.plot(x, y, "o", markersize=20, markerfacecolor="none", markeredgecolor="r")
        axes.annotate(_short(method).replace("taylor_file:", "").replace("taylor:", ""), (x, y), fontsize=7,
                      xytext=(4, 3), textcoords="offset points")
    first, second = agreement.names
    axes.set_xlabel(f"{first} grid: mean {agreement.metric} (%)")
    axes.set_ylabel(f"{second} grid: mean {agreement.metric} (%)")
    axes.set_title(f"Spearman rho {agreement.rho:+.2f} over {len(agreement.methods)} methods"
                   + (f" (stars: candidates, {agreement.candidate_rho:+.2f}; red: the {first} grid's pick)"
                      if len(agreement.candidates) >= 3 else ""), fontsize=9)
    axes.grid(alpha=0.3)
    figure.tight_layout()
    return _io.save_figure(figure, path, dpi=110)


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


def compare_candidates(verdicts, grid="held-out"):
    """Several candidates judged on one grid (one `Verdict` each, same peers) as a Markdown table.

    Each row: the candidate's search (order, task suite, fitness, seed and final-selection score, from
    its file), its mean on the grid (named by `grid`), its distance from the best peer's mean, how many columns fall outside
    the best peer's spread, and the verdict. Then, for each search setting (order, suite and fitness)
    with more than one candidate, the mean and spread (std, ddof=1) of their means: how much a
    search's outcome depends on its seed."""
    if not verdicts:
        raise ValueError("Give at least one verdict to compare.")
    peers = verdicts[0].peers
    if any(v.peers != peers or v.columns != verdicts[0].columns for v in verdicts):
        raise ValueError("Compare candidates judged against the same peers on the same columns.")
    best_peer = max(peers, key=lambda p: verdicts[0].means[p])
    best_mean = verdicts[0].means[best_peer]
    lines = [
        f"{grid.capitalize()} mean over {len(verdicts[0].columns)} columns (%); best peer {best_peer} at "
        f"{100 * best_mean:.1f}. "
        "Selection fitness (x100): the search's final-selection score, as its file records it.",
        "",
        f"| candidate | order | suite | fitness | search seed | selection fitness | {grid} mean | vs best peer | "
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
        lines += ["", f"{grid.capitalize()} mean over the search seeds of each order, suite and fitness, mean ± std: "
                  + "; ".join(spreads) + "."]
    return "\n".join(lines)


def _short(method):
    """A legend label: a search result's file is named by its run folder."""
    from tfrobust.benchmark import _methods

    if method.startswith(_methods.TAYLOR_FILE_PREFIX):
        path = method[len(_methods.TAYLOR_FILE_PREFIX):]
        return _methods.TAYLOR_FILE_PREFIX + (os.path.basename(os.path.dirname(path)) or os.path.basename(path))
    return method


def plot_verdict(verdict, path, grid="held-out"):
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
    axes[0].set_title(f"{grid.capitalize()} columns: " + ("passes" if verdict.passed else "fails") + " the shipping rule")
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
