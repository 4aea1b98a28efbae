"""The benchmark's plots: accuracy against the noise rate, and memorisation epoch by epoch.

Figures are made with `matplotlib.figure.Figure`, never pyplot, so they do
not touch a notebook's pyplot state or need a display.
"""

import collections

import numpy as np

from tfrobust import _io
from tfrobust.benchmark._tables import column_label, column_sort_key, groups, imbalance_of, number


def _method_colors(methods):
    import matplotlib

    palette = matplotlib.colormaps["tab10" if len(methods) <= 10 else "tab20"]
    return {method: palette(index % palette.N) for index, method in enumerate(methods)}


_PANEL_SIZE = (4.6, 3.6)  # inches
_LEGEND_WIDTH = 2.6
_LEGEND_ENTRY_HEIGHT = 0.22


def _panels(count, legend_entries):
    """A pyplot-free figure with `count` panels (at most 3 a row) and room on the right
    for a legend of `legend_entries` lines."""
    from matplotlib.figure import Figure

    columns = min(count, 3)
    rows = -(-count // columns)
    height = max(_PANEL_SIZE[1] * rows, _LEGEND_ENTRY_HEIGHT * legend_entries + 0.8)
    figure = Figure(figsize=(_PANEL_SIZE[0] * columns + _LEGEND_WIDTH, height))
    axes = figure.subplots(rows, columns, squeeze=False).flat
    for axis in axes[count:]:
        axis.set_visible(False)
    return figure, list(axes)


def _finish(figure, axes, title):
    """Title over the panels and one legend for all of them in the space `_panels` kept free."""
    panels_share = 1 - _LEGEND_WIDTH / figure.get_figwidth()
    figure.suptitle(title, x=panels_share / 2)
    figure.tight_layout(rect=(0, 0, panels_share, 1))
    # Every panel's entries, once each: a method may appear in some panels only.
    entries = {}
    for axis in axes:
        for handle, label in zip(*axis.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    figure.legend(list(entries.values()), list(entries), loc="center left", bbox_to_anchor=(panels_share, 0.5), fontsize="small")


def plot_accuracy_vs_noise(rows, path):
    """Final clean test accuracy against the symmetric noise rate ("none" at 0), a line per
    method (mean ± std over seeds), a panel per dataset x architecture. Returns the path,
    or None when no row has symmetric or no noise. Imbalanced runs are left out (their
    accuracy is not comparable with a balanced run's)."""
    rows = [row for row in rows if row["noise_kind"] in ("none", "symmetric") and imbalance_of(row) == "none"]
    if not rows:
        return None
    grouped = groups(rows)
    methods = list(dict.fromkeys(row["method"] for row in rows))
    colours = _method_colors(methods)
    figure, axes = _panels(len(grouped), len(methods))
    for axis, ((dataset, architecture, _), group) in zip(axes, grouped.items()):
        by_method = collections.defaultdict(lambda: collections.defaultdict(list))
        for row in group:
            by_method[row["method"]][number(row["noise_rate"])].append(number(row["final_test_accuracy"]))
        for method in methods:
            if method not in by_method:
                continue
            rates = sorted(by_method[method])
            values = [np.array(by_method[method][rate]) for rate in rates]
            axis.errorbar(rates, [v.mean() for v in values], yerr=[v.std() for v in values], marker="o",
                          markersize=3, capsize=2, elinewidth=0.8, label=method, color=colours[method])
        axis.set_title(f"{dataset} / {architecture}")
        axis.set_xlabel("symmetric noise rate")
        axis.set_ylabel("clean test accuracy")
        axis.grid(alpha=0.3)
    _finish(figure, axes, "Clean test accuracy under symmetric label noise")
    return _io.save_figure(figure, path)


def plot_memorisation(rows, curves, path, title):
    """Per-epoch share of corrupted training examples predicted with their noisy label,
    a line per method (mean over seeds), a panel per noise (and imbalance) setting with
    corrupted labels. Returns the path, or None when no run had corrupted labels."""
    rows = [row for row in rows if number(row["num_corrupted"]) > 0 and row["run_id"] in curves]
    if not rows:
        return None
    methods = list(dict.fromkeys(row["method"] for row in rows))
    sort_keys = {column_label(row): column_sort_key(row) for row in rows}
    noises = sorted(sort_keys, key=sort_keys.get)
    colours = _method_colors(methods)
    figure, axes = _panels(len(noises), len(methods))
    for axis, noise in zip(axes, noises):
        for method in methods:
            series = [curves[row["run_id"]]["corrupted_predicted_noisy"] for row in rows
                      if column_label(row) == noise and row["method"] == method]
            if not series:
                continue
            length = min(len(values) for values in series)
            mean = np.mean([values[:length] for values in series], axis=0)
            axis.plot(np.arange(1, length + 1), mean, label=method, color=colours[method])
        axis.set_title(noise)
        axis.set_xlabel("epoch")
        axis.xaxis.get_major_locator().set_params(integer=True)
        axis.set_ylabel("corrupted examples predicted as noisy label")
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    _finish(figure, axes, title)
    return _io.save_figure(figure, path)


