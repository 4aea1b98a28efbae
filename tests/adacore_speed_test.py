"""tfrobust.selection.speed and search.adacore_speed: accuracy against training time, files and their content."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.benchmark_helpers import REPO
from tfrobust.selection import speed


def test_compare_training_speed_writes_curves_table_and_plot(tmp_path):
    rows = speed.compare_training_speed(dataset="digits", architecture="linear", fractions=(0.25,), epochs=2,
                                        subset_epochs=3, seeds=(0,), batch_size=64, optimizer="adam",
                                        learning_rate=0.01, every=2, output_dir=str(tmp_path), log=lambda line: None)
    assert {(row["method"], row["fraction"]) for row in rows} == {("full", 1.0), ("adacore", 0.25),
                                                                  ("random", 0.25)}
    by_method = {method: [row for row in rows if row["method"] == method] for method in ("full", "adacore", "random")}
    assert [row["epoch"] for row in by_method["full"]] == [1, 2]
    assert [row["epoch"] for row in by_method["adacore"]] == [1, 2, 3]
    for curve in by_method.values():
        seconds = [row["train_seconds"] for row in curve]
        assert all(b > a > 0 for a, b in zip(seconds, seconds[1:]))  # a clock that only runs forward
        assert all(0 <= row["test_accuracy"] <= 1 for row in curve)
    assert by_method["full"][-1]["test_accuracy"] > 0.5  # chance is 0.1
    # digits has 1293 training examples: 21 batches of 64; a quarter is 323 examples, 6 batches.
    assert by_method["full"][-1]["steps"] == 2 * 21 and by_method["random"][-1]["steps"] == 3 * 6
    assert by_method["adacore"][-1]["selection_seconds"] > 0 and by_method["random"][-1]["selection_seconds"] >= 0
    with open(tmp_path / speed.CURVES_CSV) as handle:
        written = list(csv.DictReader(handle))
    assert len(written) == len(rows) and float(written[-1]["test_accuracy"]) == pytest.approx(rows[-1]["test_accuracy"])
    table = open(tmp_path / speed.SPEED_MD).read()
    full_final = by_method["full"][-1]["test_accuracy"]
    assert f"Target: {0.99 * full_final:.4f}" in table
    assert f"| full | 1 | 2 | 42 | {full_final:.4f} ± 0.0000 |" in table and "1.00x" in table
    assert table.count("\n| adacore | 0.25 | 3 | 18 |") == 1 and table.count("\n| random | 0.25 | 3 | 18 |") == 1
    png = open(tmp_path / speed.SPEED_PLOT, "rb").read()
    assert png.startswith(b"\x89PNG") and len(png) > 5000
    assert not [name for name in os.listdir(tmp_path) if ".tmp." in name]  # atomic writes leave nothing behind


def test_summary_times_to_target_from_hand_made_curves():
    rows = [dict(method=m, fraction=f, seed=0, epoch=e, steps=10 * e, train_seconds=s, selection_seconds=0.0,
                 test_accuracy=a)
            for m, f, curve in (("full", 1.0, [(1, 4.0, 0.80), (2, 8.0, 0.90)]),
                                ("adacore", 0.1, [(1, 1.0, 0.85), (2, 2.0, 0.895), (3, 3.0, 0.88)]),
                                ("random", 0.1, [(1, 1.0, 0.70), (2, 2.0, 0.75)]))
            for e, s, a in curve]
    summary = {entry["method"]: entry for entry in speed.summarize(rows, target_ratio=0.99)}
    assert summary["full"]["target"] == pytest.approx(0.891)
    assert summary["full"]["seconds_to_target"] == 8.0 and summary["adacore"]["seconds_to_target"] == 2.0
    assert summary["adacore"]["speedup"] == pytest.approx(4.0) and summary["random"]["seconds_to_target"] is None
    assert summary["adacore"]["accuracy"] == pytest.approx(0.88)  # the final epoch's, not the best
    with pytest.raises(ValueError, match=r"in \(0, 1\]"):
        speed.compare_training_speed(fractions=(1.5,))


@pytest.mark.slow
def test_adacore_speed_script_prints_and_writes_its_outputs(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "search.adacore_speed", "--dataset=digits", "--architecture=linear",
               "--fractions=0.5", "--epochs=1", "--optimizer=adam", "--batch_size=128", f"--output_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    table = open(tmp_path / speed.SPEED_MD).read()
    assert table in result.stdout and "[3/3] random 0.5 seed 0" in result.stdout
    assert "| adacore | 0.5 | 1 |" in table and (tmp_path / speed.SPEED_PLOT).exists()
    accuracies = [float(row["test_accuracy"]) for row in csv.DictReader(open(tmp_path / speed.CURVES_CSV))]
    assert len(accuracies) == 3 and np.all(np.isfinite(accuracies))
