"""search.fairness_benchmark end to end on tiny settings, and the study tables it writes."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust import _study_tables, fairness_benchmark

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_script_writes_one_row_per_run_and_a_table_of_their_means(tmp_path):
    output = tmp_path / "fairness"
    completed = subprocess.run(
        [sys.executable, "-m", "search.fairness_benchmark", "--dataset=digits", "--max_examples=400", "--epochs=2",
         "--seeds=0", "--noise=symmetric:0.2", f"--output_dir={output}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "[3/3] symmetric:0.2 forml seed 0" in completed.stdout and "ETA" in completed.stdout
    with open(output / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == list(fairness_benchmark.METHODS)
    for row in rows:
        accuracy, worst = float(row["test_accuracy"]), float(row["worst_group_accuracy"])
        groups = float(row["majority_accuracy"]), float(row["minority_accuracy"])
        assert 0.0 <= worst == pytest.approx(min(groups), abs=1e-5)
        # The test split is half of each group (80 examples: 40 and 40), so accuracy is the groups' mean.
        assert accuracy == pytest.approx(np.mean(groups), abs=1e-5)
        assert int(row["clean_examples"]) == (0 if row["method"] == "ce" else 100)
    assert max(float(row["majority_accuracy"]) for row in rows) > 0.2  # chance is 0.1
    table = (output / "results.md").read_text()
    assert f"| symmetric:0.2 | forml | {float(rows[2]['test_accuracy']):.3f} ± 0.000 (1)" in table
    assert (output / fairness_benchmark.FIGURE_PNG).read_bytes()[:4] == b"\x89PNG"


def test_mean_std_table_worked_by_hand():
    rows = [{"noise": "none", "method": "ce", "accuracy": value} for value in (0.5, 0.7)]
    rows.append({"noise": "none", "method": "forml", "accuracy": 0.9})
    table = _study_tables.mean_std_table(rows, ("noise", "method"), ("accuracy",))
    assert "| none | ce | 0.600 ± 0.141 (2) |" in table  # sample std of (0.5, 0.7) = 0.1414
    assert "| none | forml | 0.900 ± 0.000 (1) |" in table


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="Unknown or no methods"):
        fairness_benchmark.FairnessConfig(methods=("ce", "mwn")).validate()
    with pytest.raises(ValueError, match="objective must be one of"):
        fairness_benchmark.FairnessConfig(objective="mean").validate()
