"""Tables of small studies (one row per run): results.csv and a markdown table of mean ± std over seeds.

Used by `fairness_benchmark` and `imbalance_study`; every file is written atomically.
"""

import csv
import io
import os

import numpy as np

from tfrobust import _io

RESULTS_CSV = "results.csv"
RESULTS_MD = "results.md"


def write_csv(rows, path):
    """`rows` (dicts with the same keys) as CSV at `path`, atomically; floats with 6 significant digits."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: f"{value:.6g}" if isinstance(value, float) else value for key, value in row.items()})
    _io.write_text(path, buffer.getvalue())


def mean_std_table(rows, keys, values, value_titles=None):
    """A markdown table: one line per distinct `keys` tuple (first-seen order), `mean ± std (n)` of each of `values`.

    std is the sample standard deviation over the rows of that line (over seeds); 0 for one row.
    """
    titles = value_titles or values
    groups = {}
    for row in rows:
        groups.setdefault(tuple(row[key] for key in keys), []).append(row)
    lines = ["| " + " | ".join(list(keys) + list(titles)) + " |", "|" + "---|" * (len(keys) + len(values))]
    for key, members in groups.items():
        cells = [str(part) for part in key]
        for value in values:
            numbers = np.array([member[value] for member in members], dtype=float)
            spread = numbers.std(ddof=1) if len(numbers) > 1 else 0.0
            cells.append(f"{numbers.mean():.3f} ± {spread:.3f} ({len(numbers)})")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(rows, output_dir, header, table):
    """results.csv and results.md (`header`, then `table`) under `output_dir`; returns their paths."""
    os.makedirs(output_dir, exist_ok=True)
    csv_path = os.path.join(output_dir, RESULTS_CSV)
    md_path = os.path.join(output_dir, RESULTS_MD)
    write_csv(rows, csv_path)
    _io.write_text(md_path, header.rstrip() + "\n\n" + table)
    return csv_path, md_path


class Progress:
    """Prints `[done/total] what (seconds, ETA)` after each run, with a rate from the runs so far."""

    def __init__(self, total, clock, printer=print):
        self.total, self.clock, self.printer = total, clock, printer
        self.start = clock()
        self.done = 0

    def tick(self, what):
        self.done += 1
        elapsed = self.clock() - self.start
        remaining = elapsed / self.done * (self.total - self.done)
        self.printer(f"[{self.done}/{self.total}] {what} ({elapsed:.0f} s elapsed, ETA {remaining:.0f} s)",
                     flush=True)
