"""tfrobust.imbalance_study: the 4-vs-9 task's construction, and search.l2rw_imbalance end to end on tiny settings."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust import datasets, imbalance_study

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def mnist5k():
    return datasets.load("mnist5k", seed=0, validation_fraction=0.0)


@pytest.mark.parametrize("proportion", [0.9, 0.995])
def test_binary_task_has_the_asked_proportion_a_balanced_unseen_meta_set_and_a_two_class_test_set(proportion,
                                                                                                  mnist5k):
    config = imbalance_study.ImbalanceStudyConfig()
    task = imbalance_study.binary_task(config, proportion, seed=0, data=mnist5k)
    majority = np.sum(task.y_train == 1)
    assert majority == np.sum(mnist5k.y_train == 9) - 5  # every 9 but the 5 clean ones
    assert np.sum(task.y_train == 0) == round(majority * (1 - proportion) / proportion)
    np.testing.assert_array_equal(np.bincount(task.meta[1], minlength=2), [5, 5])
    trained = {row.tobytes() for row in task.x_train}
    assert not any(row.tobytes() in trained for row in task.meta[0])
    np.testing.assert_array_equal(np.bincount(task.y_test), [np.sum(mnist5k.y_test == 4), np.sum(mnist5k.y_test == 9)])
    again = imbalance_study.binary_task(config, proportion, seed=0, data=mnist5k)
    np.testing.assert_array_equal(again.x_train, task.x_train)


def test_bad_configs_are_named():
    with pytest.raises(ValueError, match="two different digits"):
        imbalance_study.ImbalanceStudyConfig(majority_class=4).validate()
    with pytest.raises(ValueError, match=r"lie in \[0.5, 1\)"):
        imbalance_study.ImbalanceStudyConfig(proportions=(1.0,)).validate()
    with pytest.raises(ValueError, match="Unknown or no methods"):
        imbalance_study.ImbalanceStudyConfig(methods=("mwn",)).validate()


def test_script_writes_one_row_per_run_and_the_table(tmp_path):
    output = tmp_path / "imbalance"
    completed = subprocess.run(
        [sys.executable, "-m", "search.l2rw_imbalance", "--proportions=0.9", "--seeds=0", "--steps=20",
         "--batch_size=50", f"--output_dir={output}"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "[2/2] p=0.9 l2rw seed 0" in completed.stdout
    with open(output / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["method"], row["clean_examples"]) for row in rows] == [("ce", "0"), ("l2rw", "10")]
    for row in rows:
        accuracy = float(row["test_accuracy"])
        assert np.isfinite(accuracy) and 0.0 <= float(row["minority_recall"]) <= 1.0
    assert max(float(row["test_accuracy"]) for row in rows) > 0.6  # chance on the balanced test set is 0.5
    assert f"| 0.9 | l2rw | 44.000 ± 0.000 (1) | {float(rows[1]['test_accuracy']):.3f}" in (output / "results.md").read_text()
    assert (output / imbalance_study.FIGURE_PNG).read_bytes()[:4] == b"\x89PNG"
