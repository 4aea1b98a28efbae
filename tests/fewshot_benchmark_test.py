"""The MAML vs NestedMAML episodic benchmark: its summary arithmetic, and the real script end to end."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust import fewshot_benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_summary_and_table_are_mean_and_std_over_seeds():
    rows = [{"method": "maml", "support_noise": 0.2, "seed": seed, "query_accuracy": accuracy}
            for seed, accuracy in enumerate([0.6, 0.8])]
    rows.append({"method": "nested_maml", "support_noise": 0.2, "seed": 0, "query_accuracy": 0.5})
    summary = fewshot_benchmark.summarize(rows)
    assert summary[("maml", 0.2)] == pytest.approx((0.7, 0.1, 2))
    table = fewshot_benchmark.results_table(rows, fewshot_benchmark.FewShotConfig())
    assert "| maml | 0.700 ± 0.100 (n=2) |" in table and "| nested_maml | 0.500 ± 0.000 (n=1) |" in table
    assert "20% noisy support" in table
    noisy_query = fewshot_benchmark.FewShotConfig(noisy_query=True)
    assert "20% noisy support and query" in fewshot_benchmark.results_table(rows, noisy_query)
    with pytest.raises(ValueError, match="Unknown few-shot methods"):
        fewshot_benchmark.run_fewshot_benchmark(fewshot_benchmark.FewShotConfig(methods=("reptile",)))


@pytest.mark.slow
def test_fewshot_script_writes_table_csv_and_plot(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "search.fewshot_benchmark", "--ways=2", "--shots=2", "--queries=2",
               "--test_queries=3", "--train_episodes=8", "--validation_episodes=4", "--test_episodes=6",
               "--meta_batch_size=2", "--epochs=1", "--inner_steps=1", "--hidden_units=8", "--noise_rates=0,0.4",
               "--seeds=0", f"--output_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    assert "[4/4] nested_maml support_noise=0.40 seed=0" in result.stdout
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert [(row["method"], float(row["support_noise"])) for row in rows] == [
        ("maml", 0.0), ("nested_maml", 0.0), ("maml", 0.4), ("nested_maml", 0.4)]
    accuracies = np.array([float(row["query_accuracy"]) for row in rows])
    # 6 episodes x 6 queries: every accuracy is a multiple of 1/36 in [0, 1].
    assert np.all((accuracies >= 0) & (accuracies <= 1))
    np.testing.assert_allclose(accuracies * 36, np.round(accuracies * 36), atol=1e-4)
    table = open(tmp_path / "results.md").read()
    assert table in result.stdout and "| nested_maml |" in table and "40% noisy support" in table
    assert open(tmp_path / "fewshot.png", "rb").read(8) == b"\x89PNG\r\n\x1a\n"
