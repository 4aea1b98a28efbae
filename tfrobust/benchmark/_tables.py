"""The tables of results.md: mean ± std over seeds, methods as rows, noise (and imbalance) settings as columns."""

import collections
import math
import os

import numpy as np

from tfrobust import _provenance
from tfrobust import imbalance as imbalance_lib
from tfrobust import noise as noise_lib
from tfrobust.benchmark import _results

SUMMARY_METRICS = (
    # (column, caption, higher is better)
    ("final_test_accuracy", "Clean test accuracy (%) after the last epoch", True),
    ("best_test_accuracy", "Best clean test accuracy (%) over the epochs", True),
    ("corrupted_predicted_noisy",
     "Memorisation: corrupted training examples predicted as their noisy label (%) after the last epoch", False),
)
# Shown besides, in the sections that have imbalanced runs.
IMBALANCE_METRICS = (
    ("balanced_test_accuracy", "Balanced clean test accuracy (%, mean of the per-class accuracies)", True),
    ("rarest_classes_test_accuracy",
     f"Clean test accuracy of the rarest {imbalance_lib.RAREST_CLASS_FRACTION:.0%} of classes (%, mean of their "
     "per-class accuracies; rarest by training examples)", True),
)
# Marks the methods that were given clean examples (a meta set).
CLEAN_DATA_MARK = "†"
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


def imbalance_of(row):
    """The row's imbalance spec ("none" for a row of a results.csv without the column)."""
    return row.get("imbalance") or "none"


def column_label(row):
    """The table column of a row: its noise setting, prefixed by its imbalance when there is one."""
    imbalance = imbalance_of(row)
    if imbalance == "none":
        return row["noise"]
    return imbalance if row["noise"] == "none" else f"{imbalance} + {row['noise']}"


def column_sort_key(row):
    """Sort key of a row's column: by imbalance (kind, ratio), then noise (`noise_order`)."""
    spec = imbalance_lib.parse_imbalance_spec(imbalance_of(row))
    return (imbalance_lib.IMBALANCE_KINDS.index(spec.kind), spec.ratio) + noise_order(row["noise"])


def clean_data_methods(rows):
    """{method: clean examples} for the methods whose runs were given clean examples (largest count)."""
    counts = collections.defaultdict(int)
    for row in rows:
        clean = number(row.get("clean_examples"))
        if clean > 0:
            counts[row["method"]] = max(counts[row["method"]], int(clean))
    return dict(counts)


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
    """{(method, column): [values over seeds]}, with methods (clean-data methods last) and columns in table order."""
    cells = collections.defaultdict(list)
    order = {}
    for row in rows:
        cells[(row["method"], column_label(row))].append(number(row[metric]))
        order.setdefault(column_label(row), column_sort_key(row))
    clean = clean_data_methods(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    methods = [m for m in methods if m not in clean] + [m for m in methods if m in clean]
    return cells, methods, sorted(order, key=order.get), clean


def _table(rows, metric, higher_is_better):
    cells, methods, columns, clean = _cell_values(rows, metric)
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
    # The best of each column among the methods that use no clean data: a
    # method given clean examples is not competing on the same terms.
    competing = [m for m in methods if m not in clean] or methods
    for column in columns:
        values = [means[(m, column)] for m in competing if (m, column) in means]
        if values:
            best = max(values) if higher_is_better else min(values)
            for method in competing:
                if means.get((method, column)) == best:
                    text[(method, column)] = f"**{text[(method, column)]}**"
    lines = ["| method | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    for method in methods:
        label = f"{method} {CLEAN_DATA_MARK}" if method in clean else method
        lines.append(f"| {label} | " + " | ".join(text.get((method, column), "") for column in columns) + " |")
    return "\n".join(lines), runs_per_cell


def _clean_data_note(rows):
    clean = clean_data_methods(rows)
    if not clean:
        return None
    listed = ", ".join(f"{method} ({count})" for method, count in clean.items())
    return (f"{CLEAN_DATA_MARK} Uses clean data: these methods were given a meta set of examples with their true "
            f"labels (examples per run: {listed}; carved from the training split and not trained on, or on "
            "imbalanced runs drawn from the examples the imbalance left out), which the other methods do not get. "
            "They are listed last and left out of the bold best of each column.")


def summarize(csv_path, metrics=SUMMARY_METRICS):
    """Markdown tables of results.csv: mean ± std over seeds, methods as rows and
    noise (and imbalance) settings as columns, one section per dataset x
    architecture (x training settings), the best mean of each column in bold
    (ties all bold). Sections with imbalanced runs add balanced and
    rarest-classes accuracy; methods given clean data are marked, listed last,
    not in bold, and named in a note under the section.

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
        imbalanced = any(imbalance_of(row) != "none" for row in group)
        for metric, caption, higher_is_better in tuple(metrics) + (IMBALANCE_METRICS if imbalanced else ()):
            table, runs_per_cell = _table(group, metric, higher_is_better)
            best = "highest" if higher_is_better else "lowest"
            seeds = f"mean ± std over {runs_per_cell} seeds" if runs_per_cell > 1 else "1 seed"
            parts.append(f"**{caption}**, {seeds}; {best} per column in bold.\n\n{table}")
        note = _clean_data_note(group)
        if note:
            parts.append(note)
    return "\n\n".join(parts) + "\n"
