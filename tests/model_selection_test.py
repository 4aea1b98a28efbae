"""Susceptibility in the benchmark and the model-selection report: worked by hand on a constructed folder, end to end
on a tiny real benchmark (search.benchmark --susceptibility, then search.model_selection)."""

import json
import os
import subprocess

import numpy as np
import pytest

from tests.benchmark_helpers import REPO, rows_of, script, tiny_runs, whole_row
from tfrobust import benchmark

# Two runs on one noisy training set, three epochs each: six candidate models.
CURVES = {
    "ce": {"noisy_train_accuracy": [0.5, 0.7, 0.9], "susceptibility": [0.1, 0.3, 0.5],
           "test_accuracy": [0.60, 0.75, 0.65], "corrupted_predicted_noisy": [0.1, 0.3, 0.6]},
    "gce": {"noisy_train_accuracy": [0.4, 0.6, 0.8], "susceptibility": [0.05, 0.1, 0.2],
            "test_accuracy": [0.55, 0.70, 0.80], "corrupted_predicted_noisy": [0.05, 0.1, 0.2]},
}


def _write_folder(output_dir, with_susceptibility=("ce", "gce")):
    runs = tiny_runs(noise=("symmetric:0.4",), epochs=3)
    rows, lines = [], []
    for run in runs:
        rows.append(whole_row(run))
        curve = {"run_id": run.run_id, **{k: list(v) for k, v in CURVES[run.method].items()},
                 "clean_train_accuracy": [0.5] * 3, "corrupted_predicted_clean": [0.5] * 3}
        if run.method not in with_susceptibility:
            del curve["susceptibility"]
        lines.append(json.dumps(curve))
    benchmark.write_results(os.path.join(output_dir, benchmark.RESULTS_CSV), rows)
    with open(os.path.join(output_dir, benchmark.CURVES), "w") as handle:
        handle.write("\n".join(lines) + "\n")


def test_report_on_a_constructed_folder_by_hand(tmp_path):
    _write_folder(str(tmp_path))
    groups = benchmark.candidate_models(str(tmp_path))
    assert list(groups) == [("digits", "none", "symmetric:0.4", 0)] and len(groups[list(groups)[0]]) == 6
    selections, paths = benchmark.model_selection_report(str(tmp_path))
    (selection,) = selections
    # Mean train accuracy (0.5+0.7+0.9+0.4+0.6+0.8)/6 = 0.65; mean zeta (0.1+0.3+0.5+0.05+0.1+0.2)/6 = 0.2083.
    # Region 1 (accuracy >= 0.65, zeta <= 0.2083): gce @ 3 (0.8, 0.2) only; ce @ 2 has zeta 0.3.
    assert selection.chosen == "gce @ 3" and selection.region_one_models == 1
    assert selection.chosen_test_accuracy == pytest.approx(0.80)
    assert selection.region_one_test_accuracy == pytest.approx(0.80)
    assert selection.most_accurate_on_train == pytest.approx(0.65)  # ce @ 3, train 0.9
    assert selection.best_test_accuracy == pytest.approx(0.80)
    assert selection.median_test_accuracy == pytest.approx((0.65 + 0.70) / 2)  # of .55 .60 .65 .70 .75 .80
    zeta = np.array([0.1, 0.3, 0.5, 0.05, 0.1, 0.2])
    memorised = np.array([0.1, 0.3, 0.6, 0.05, 0.1, 0.2])  # same order as zeta: a perfect rank agreement
    assert np.array_equal(np.argsort(zeta, kind="stable"), np.argsort(memorised, kind="stable"))
    assert selection.spearman_memorisation == pytest.approx(1.0)
    assert selection.spearman_memorisation_within_runs == pytest.approx(1.0)  # each run's 3 epochs agree too
    with open(paths["table"]) as handle:
        table = handle.read()
    assert "| digits | symmetric:0.4 | 0 | 6 (2) | gce @ 3 | 0.800 | 0.800 (1) | 0.650 | 0.800 | 0.675 | 1.000 | 1.000 |" in table
    with open(paths["plot"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"


def test_runs_without_susceptibility_are_left_out_and_none_at_all_is_named(tmp_path):
    _write_folder(str(tmp_path), with_susceptibility=("gce",))
    (candidates,) = benchmark.candidate_models(str(tmp_path)).values()
    assert {c["method"] for c in candidates} == {"gce"}
    empty = tmp_path / "empty"
    empty.mkdir()
    _write_folder(str(empty), with_susceptibility=())
    with pytest.raises(ValueError, match="--susceptibility"):
        benchmark.model_selection_report(str(empty))


def test_tiny_benchmark_records_zeta_without_changing_training_then_the_script_reports(tmp_path):
    grid = ["--methods=ce,l2rw", "--datasets=digits", "--architectures=linear", "--noise=symmetric:0.4",
            "--seeds=0", "--epochs=2", "--learning_rate=0.01"]
    with_zeta, without = str(tmp_path / "with"), str(tmp_path / "without")
    command, options = script(*grid, "--susceptibility", f"--output_dir={with_zeta}")
    subprocess.run(command, check=True, capture_output=True, **options)
    # The same grid without zeta, in process (l2rw: fit trains a wrapper; zeta probes the network inside).
    config = benchmark.BenchmarkConfig(output_dir=without, methods=("ce", "l2rw"), datasets=("digits",),
                                       architectures=("linear",), noise=("symmetric:0.4",), seeds=(0,), epochs=2,
                                       learning_rate=0.01)
    assert not config.susceptibility
    benchmark.run_benchmark(config, printer=lambda line: None)

    curves = benchmark.read_curves(os.path.join(with_zeta, benchmark.CURVES))
    plain = benchmark.read_curves(os.path.join(without, benchmark.CURVES))
    assert set(curves) == set(plain) and len(curves) == 2
    for run_id, curve in curves.items():
        zeta = curve["susceptibility"]
        assert len(zeta) == 2 and np.isfinite(zeta).all()
        assert "susceptibility" not in plain[run_id]
        assert max(curve["test_accuracy"]) > 0.2  # above chance (0.1): the runs trained
        for name in ("test_accuracy", "noisy_train_accuracy", "corrupted_predicted_noisy"):
            assert curve[name] == plain[run_id][name]  # training untouched by the probe
    columns = ("run_id", "final_test_accuracy", "corrupted_predicted_noisy")
    assert [[r[c] for c in columns] for r in rows_of(with_zeta)] == [[r[c] for c in columns] for r in rows_of(without)]

    command, options = script("--output_dir=" + with_zeta)
    command[2] = "search.model_selection"
    finished = subprocess.run(command, check=True, capture_output=True, **{**options, "cwd": REPO})
    assert "| digits | symmetric:0.4 | 0 | 4 (2) |" in finished.stdout
    assert "**mean over 1**" in finished.stdout
    assert os.path.getsize(os.path.join(with_zeta, "model_selection.png")) > 5000


def test_a_fresh_probe_optimizer_records_its_own_zeta_and_bad_specs_are_named(tmp_path):
    grid = dict(methods=("ce",), datasets=("digits",), architectures=("linear",), noise=("symmetric:0.4",),
                seeds=(0,), epochs=2, learning_rate=0.01, susceptibility=True)
    zeta = {}
    for probe in ("", "sgd:0.05"):
        folder = str(tmp_path / (probe.replace(":", "_") or "own"))
        benchmark.run_benchmark(benchmark.BenchmarkConfig(output_dir=folder, susceptibility_probe=probe, **grid),
                                printer=lambda line: None)
        (curve,) = benchmark.read_curves(os.path.join(folder, benchmark.CURVES)).values()
        assert max(curve["test_accuracy"]) > 0.2 and np.isfinite(curve["susceptibility"]).all()
        zeta[probe] = curve["susceptibility"]
    # Adam's step (lr 0.01, trained moments) and a fresh SGD step (lr 0.05) lower the random labels' loss
    # by different amounts.
    assert all(value > 0 for value in zeta["sgd:0.05"]) and zeta["sgd:0.05"] != zeta[""]
    with pytest.raises(ValueError, match="--susceptibility"):
        benchmark.BenchmarkConfig(susceptibility_probe="sgd:0.05").validate()
    with pytest.raises(ValueError, match="OPTIMIZER:LEARNING_RATE"):
        benchmark.BenchmarkConfig(susceptibility=True, susceptibility_probe="sgd").validate()
