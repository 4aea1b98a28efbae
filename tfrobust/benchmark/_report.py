"""results.md and the plots, rebuilt from results.csv and curves.jsonl alone."""

import collections
import os
import re

from tfrobust import _io
from tfrobust.benchmark import _plots
from tfrobust.benchmark import _results
from tfrobust.benchmark import _tables

RESULTS_MD = "results.md"
ACCURACY_PLOT = "accuracy_vs_noise.png"


def _slug(text):
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text).strip("_")


def write_report(output_dir):
    """Writes results.md and the plots from results.csv and curves.jsonl alone (whole rows only).

    Returns {name: path} of the files written: "results.md", "accuracy_vs_noise"
    (when some run had symmetric or no noise) and "memorisation_<dataset>_<architecture>"
    per section with corrupted labels.
    """
    csv_path = os.path.join(output_dir, _results.RESULTS_CSV)
    rows = _results.read_results(csv_path)
    written = {}
    markdown_path = os.path.join(output_dir, RESULTS_MD)
    _io.write_text(markdown_path, _tables.summarize(csv_path))
    written["results.md"] = markdown_path
    if not rows:
        return written
    accuracy_plot = _plots.plot_accuracy_vs_noise(rows, os.path.join(output_dir, ACCURACY_PLOT))
    if accuracy_plot:
        written["accuracy_vs_noise"] = accuracy_plot
    curves = _results.read_curves(os.path.join(output_dir, _results.CURVES))
    grouped = _tables.groups(rows)
    pairs = collections.Counter((dataset, architecture) for dataset, architecture, _ in grouped)
    for (dataset, architecture, settings), group in grouped.items():
        name = f"memorisation_{_slug(dataset)}_{_slug(architecture)}"
        if pairs[(dataset, architecture)] > 1:
            name += "_" + _slug("_".join(settings))
        title = f"Memorisation of corrupted labels: {dataset} / {architecture} ({_tables.settings_text(group[0])})"
        path = _plots.plot_memorisation(group, curves, os.path.join(output_dir, name + ".png"), title)
        if path:
            written[name] = path
    return written
