"""Shared pieces of the benchmark tests: a tiny grid, the script's command line, and whole synthetic rows."""

import csv
import os
import sys

from tfrobust import benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "methods": ("ce", "gce"),
    "datasets": ("digits",),
    "architectures": ("linear",),
    "noise": ("none", "symmetric:0.4"),
    "seeds": (0,),
    "epochs": 2,
}
REVISION = "0123456789abcdef0123456789abcdef01234567"


def rows_of(output_dir):
    """Every row of results.csv as written, whole or not (csv.DictReader)."""
    with open(os.path.join(output_dir, benchmark.RESULTS_CSV), newline="") as handle:
        return list(csv.DictReader(handle))


def script(*flags):
    """(command, subprocess options) that run `python -m search.benchmark` with `flags` from the repository."""
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return [sys.executable, "-m", "search.benchmark", *flags], {"cwd": REPO, "env": env, "text": True}


def whole_row(run, final_test_accuracy=0.8, revision=REVISION, dirty=False, **overrides):
    """A complete results.csv row (dict of strings) for `run` (a RunSpec), as a finished run writes it."""
    corrupted = run.noise != "none"
    row = {
        **run.fields(),
        "noise_kind": run.noise.partition(":")[0], "noise_rate": run.noise.partition(":")[2] or "0.0",
        "realised_noise_rate": "0.4" if corrupted else "0.0", "num_train": "100",
        "num_corrupted": "40" if corrupted else "0", "clean_examples": "0", "transition_matrix": "",
        "epochs_trained": str(run.epochs), "finite": "True", "final_test_accuracy": repr(final_test_accuracy),
        "best_test_accuracy": "0.9", "best_epoch": "1", "balanced_test_accuracy": repr(final_test_accuracy),
        "rarest_classes_test_accuracy": "0.5", "noisy_train_accuracy": "0.7", "clean_train_accuracy": "0.7",
        "corrupted_predicted_clean": "0.5" if corrupted else "", "corrupted_predicted_noisy": "0.3" if corrupted else "",
        "seconds": "1.5", "revision": revision, "dirty": str(dirty),
    }
    row.update(overrides)
    return row


def tiny_runs(**changes):
    """The RunSpecs of the TINY grid (with `changes` to its config)."""
    return benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, **changes}).runs()
