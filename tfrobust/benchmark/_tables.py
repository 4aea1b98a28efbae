"""The tables of results.md: mean ± std over seeds, methods as rows, noise settings as columns."""

import collections
import math
import os

import numpy as np

from tfrobust import _provenance
from tfrobust import noise as noise_lib
from tfrobust.benchmark import _results

SUMMARY_METRICS = (
    # (column, caption, higher is better)
    ("final_test_accuracy", "Clean test accuracy (%) after the last epoch", True),
    ("best_test_accuracy", "Best clean test accuracy (%) over the epochs", True),
    ("corrupted_predicted_noisy",
     "Memorisation: corrupted training examples predicted as their noisy label (%) after the last epoch", False),
)
# Training settings that split the tables (and plots) into sections.
SETTING_FIELDS = ("epochs", "batch_size", "optimizer", "learning_rate", "max_examples")


def number(text):
    """A results.csv cell as a float; NaN for an empty cell."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def noise_order(noise):
    """Sort key of a noise setting: by kind (`NOISE_KINDS` order), then rate."""
    spec = noise_lib.parse_noise_spec(noise)
    return noise_lib.NOISE_KINDS.index(spec.kind), spec.rate, spec.matrix_path or ""


def settings_text(row):
    text = f"{row['epochs']} epochs, batch {row['batch_size']}, {row['optimizer']} lr {row['learning_rate']}"
    return text + (f", at most {row['max_examples']} examples" if row.get("max_examples") else "")


def groups(rows):
    """Rows grouped by (dataset, architecture, training settings), in order of appearance."""
    grouped = collections.defaultdict(list)
    for row in rows:
        grouped[(row["dataset"], row["architecture"], tuple(row[f] for f in SETTING_FIELDS))].append(row)
    return grouped


def revisions_text(rows):
    """"Produced at revision abc1234." or, for rows from several revisions, each with its run count."""
    counts = collections.Counter((row["revision"], row["dirty"] == "True") for row in rows)
    names = {key: _provenance.short_revision({"revision": key[0], "dirty": key[1]}) for key in counts}
    if len(counts) == 1:
        return f"Produced at {names[next(iter(counts))]}."
    listed = "; ".join(f"{names[key]} ({count} runs)" for key, count in counts.items())
    return f"Rows come from {len(counts)} revisions: {listed}."


def _cell_values(rows, metric):
    """{(method, noise): [values over seeds]}, with methods and noise settings in table order."""
    cells = collections.defaultdict(list)
    for row in rows:
        cells[(row["method"], row["noise"])].append(number(row[metric]))
    methods = list(dict.fromkeys(row["method"] for row in rows))
    noises = sorted({row["noise"] for row in rows}, key=noise_order)
    return cells, methods, noises


def _table(rows, metric, higher_is_better):
    cells, methods, noises = _cell_values(rows, metric)
    runs_per_cell = max(len(values) for values in cells.values())
    text = {}
    means = {}
    for key, values in cells.items():
        values = np.array([v for v in values if not math.isnan(v)]) * 100
        if not len(values):
            text[key] = "–"
            continue
        means[key] = round(float(values.mean()), 1)
        text[key] = f"{means[key]:.1f}" + (f" ± {values.std(ddof=1):.1f}" if len(values) > 1 else "")
        if len(cells[key]) < runs_per_cell:
            text[key] += f" (n={len(cells[key])})"
    for noise in noises:
        column = [means[(m, noise)] for m in methods if (m, noise) in means]
        if column:
            best = max(column) if higher_is_better else min(column)
            for method in methods:
                if means.get((method, noise)) == best:
                    text[(method, noise)] = f"**{text[(method, noise)]}**"
    lines = ["| method | " + " | ".join(noises) + " |", "|---|" + "---|" * len(noises)]
    for method in methods:
        lines.append(f"| {method} | " + " | ".join(text.get((method, noise), "") for noise in noises) + " |")
    return "\n".join(lines), runs_per_cell


def summarize(csv_path, metrics=SUMMARY_METRICS):
    """Markdown tables of results.csv: mean ± std over seeds, methods as rows and
    noise settings as columns, one section per dataset x architecture (x training
    settings), the best mean of each column in bold (ties all bold).

    Only whole rows count (`read_results`); the text names the git revision
    the rows were produced at, or every revision when they come from several.
    `metrics` lists `(column, caption, higher_is_better)`; accuracies are shown in %.
    """
    rows = _results.read_results(csv_path)
    if not rows:
        return "# Benchmark results\n\nNo runs yet.\n"
    grouped = groups(rows)
    several_settings = len({key[2] for key in grouped}) > 1
    several_revisions = len({(row["revision"], row["dirty"]) for row in rows}) > 1
    parts = [
        "# Benchmark results",
        f"{len(rows)} runs from `{os.path.basename(csv_path)}`. {revisions_text(rows)} Accuracy is measured "
        "against the clean test labels; noise settings are the training-label noise. Forward / backward "
        "correction are given the true transition matrix of the noise (the known-T oracle setting; for "
        "instance-dependent noise, the matrix realised on the training split).",
    ]
    for (dataset, architecture, _), group in grouped.items():
        title = f"## {dataset} / {architecture}"
        parts.append(f"{title} ({settings_text(group[0])})" if several_settings else title)
        if not several_settings:
            parts.append(settings_text(group[0]) + ".")
        if several_revisions:
            parts.append(revisions_text(group))
        for metric, caption, higher_is_better in metrics:
            table, runs_per_cell = _table(group, metric, higher_is_better)
            best = "highest" if higher_is_better else "lowest"
            seeds = f"mean ± std over {runs_per_cell} seeds" if runs_per_cell > 1 else "1 seed"
            parts.append(f"**{caption}**, {seeds}; {best} per column in bold.\n\n{table}")
    return "\n\n".join(parts) + "\n"
