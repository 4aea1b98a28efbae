"""The benchmark's result files: results.csv (one row per run) and curves.jsonl (per-epoch metrics).

results.csv is the record of what is done: a run counts as finished only when
its row is whole (`is_whole_row`). A row torn by a full disk or an external
edit (missing fields, empty metrics, a tear inside the run id) is not
returned by `read_results`, so the run is trained again and the torn row is
never written back.
"""

import csv
import io
import math
import os
import re

from tfrobust import _io
from tfrobust.benchmark._config import KEY_FIELDS, run_id_matches
from tfrobust.metrics import CURVE_METRICS

RESULTS_CSV = "results.csv"
CURVES = "curves.jsonl"

# The memorisation columns are the last value of each training-split curve.
MEMORISATION_FIELDS = tuple(name for name in CURVE_METRICS if name != "test_accuracy")
# `clean_examples`: the clean (meta-set) examples the method was given, 0 for
# a method that uses none; a row without it does not say, so it is torn.
# Balanced and rarest-classes accuracy: see `tfrobust.imbalance`.
RESULT_FIELDS = (
    "noise_kind", "noise_rate", "realised_noise_rate", "num_train", "num_corrupted", "clean_examples",
    "transition_matrix", "epochs_trained", "finite", "final_test_accuracy", "best_test_accuracy", "best_epoch",
    "balanced_test_accuracy", "rarest_classes_test_accuracy",
    *MEMORISATION_FIELDS,
    "seconds",
)
# Where the row came from (`tfrobust._provenance.git_revision`); last, so a row
# torn at its end loses its revision and is caught.
PROVENANCE_FIELDS = ("revision", "dirty")
CSV_FIELDS = KEY_FIELDS + RESULT_FIELDS + PROVENANCE_FIELDS

# Columns that are legitimately empty: no example cap; a method that does not
# read the transition matrix; "matrix" noise has no rate; memorisation is
# undefined (NaN) without corrupted labels; the rarest classes may have no
# test example; `dirty` is unknown outside git.
_MAY_BE_EMPTY = {"max_examples", "transition_matrix", "noise_rate", "corrupted_predicted_clean",
                 "corrupted_predicted_noisy", "rarest_classes_test_accuracy", "dirty"}
_NUMERIC_FIELDS = ("noise_rate", "realised_noise_rate", "num_train", "num_corrupted", "clean_examples",
                   "epochs_trained", "final_test_accuracy", "best_test_accuracy", "best_epoch",
                   "balanced_test_accuracy", "rarest_classes_test_accuracy", *MEMORISATION_FIELDS, "seconds")
_REVISION = re.compile(r"[0-9a-f]{40}|unknown")


def _is_number(text):
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def is_whole_row(row):
    """Whether a results.csv row (a dict of strings) is a finished run's complete record.

    Every column must be present (a row written before `imbalance`,
    `clean_examples` or the balanced accuracies existed is not whole: it does
    not say whether its method used clean data), those that are never empty
    must not be, numbers must parse, the run id must be the hash of the row's
    key columns, and the revision must be a whole git hash (or "unknown").
    """
    if any(not isinstance(row.get(field), str) for field in CSV_FIELDS):
        return False
    if any(row[field] == "" for field in CSV_FIELDS if field not in _MAY_BE_EMPTY):
        return False
    if any(row[field] and not _is_number(row[field]) for field in _NUMERIC_FIELDS):
        return False
    return (run_id_matches(row) and row["finite"] in ("True", "False")
            and row["dirty"] in ("True", "False", "") and bool(_REVISION.fullmatch(row["revision"])))


def partition_results(csv_path):
    """`(whole, torn)`: the rows of results.csv that are whole (`is_whole_row`) and those that are not.

    Both are lists of dicts of strings; both empty when there is no file. A
    row of a file written before results.csv had its revision columns
    counts as torn: it does not say which code produced it.
    """
    if not os.path.exists(csv_path):
        return [], []
    with open(csv_path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    whole = [row for row in rows if is_whole_row(row)]
    return whole, [row for row in rows if not is_whole_row(row)]


def read_results(csv_path):
    """The whole rows of results.csv as dicts of strings (see `partition_results`)."""
    return partition_results(csv_path)[0]


def _csv_value(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else repr(value)
    return str(value)


def write_results(csv_path, rows):
    """Rewrites results.csv with every row, atomically: a reader (or a benchmark
    killed mid-write) sees the old file or the new one, never a torn one."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, restval="", extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: _csv_value(value) for key, value in row.items()})
    _io.write_text(csv_path, text.getvalue())


def append_curves(path, run_id, curves):
    """Appends one run's curves as a JSON line (NaN as null), synced to disk."""
    record = {"run_id": run_id, **{k: [None if math.isnan(v) else v for v in values] for k, values in curves.items()}}
    _io.append_jsonl(path, [record])


def read_curves(path):
    """run_id -> curves (None back to NaN); a torn last line is skipped, a rerun's line wins."""
    curves = {}
    for record in _io.read_jsonl(path):
        run_id = record.pop("run_id", None)
        if run_id is not None:
            curves[run_id] = {k: [math.nan if v is None else v for v in values] for k, values in record.items()}
    return curves
