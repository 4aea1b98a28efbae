"""tfrobust.benchmark._runner and _estimate end to end: results, memorisation, resume, torn rows, kill and resume."""

import math
import os
import subprocess
import sys

import keras
import numpy as np
import pytest

from tests.benchmark_helpers import TINY, rows_of, script, whole_row
from tfrobust import _provenance, benchmark, datasets
from tfrobust.benchmark import _runner

ACCURACIES = (
    "final_test_accuracy", "best_test_accuracy", "noisy_train_accuracy", "clean_train_accuracy",
    "corrupted_predicted_clean", "corrupted_predicted_noisy",
)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("benchmark"))
    config = benchmark.BenchmarkConfig(output_dir=output_dir, save_models=True, **TINY)
    log = []
    result = benchmark.run_benchmark(config, printer=log.append)
    return config, result, log


def test_results_csv_has_one_complete_row_per_run(tiny_run):
    config, result, log = tiny_run
    rows = rows_of(config.output_dir)
    assert result.trained == 4 and result.skipped == 0 and result.torn == 0 and len(rows) == 4
    assert list(rows[0]) == list(benchmark.CSV_FIELDS)
    assert {(r["method"], r["noise"]) for r in rows} == {
        (m, n) for m in ("ce", "gce") for n in ("none", "symmetric:0.4")
    }
    assert len({r["run_id"] for r in rows}) == 4
    revision = _provenance.git_revision()
    for row in rows:
        assert benchmark.is_whole_row(row), row
        assert row["revision"] == revision["revision"] and row["dirty"] == str(revision["dirty"])
        clean = row["noise"] == "none"
        for field in benchmark.CSV_FIELDS:
            may_be_empty = field in ("max_examples", "transition_matrix") or (
                clean and field in ("corrupted_predicted_clean", "corrupted_predicted_noisy")
            )
            assert row[field] != "" or may_be_empty, (field, row)
        for field in ACCURACIES:
            if row[field]:
                assert 0.0 <= float(row[field]) <= 1.0, (field, row)
        assert float(row["best_test_accuracy"]) > 0.15, row  # trained: above chance (10 classes)
        assert float(row["best_test_accuracy"]) >= float(row["final_test_accuracy"])
        assert row["epochs_trained"] == "2" and row["finite"] == "True" and float(row["seconds"]) > 0
        data = datasets.load("digits", noise=row["noise"], seed=0)
        assert int(row["num_corrupted"]) == int(data.is_corrupted.sum())
        assert float(row["realised_noise_rate"]) == pytest.approx(data.noisy_labels.realised_rate)
        if clean:
            assert row["num_corrupted"] == "0"
            assert row["corrupted_predicted_noisy"] == "" and row["corrupted_predicted_clean"] == ""
            assert row["noisy_train_accuracy"] == row["clean_train_accuracy"]
        else:
            assert 0.3 < float(row["realised_noise_rate"]) < 0.5
    # Common random numbers: both methods saw the same noisy labels.
    noisy = [r for r in rows if r["noise"] != "none"]
    assert noisy[0]["num_corrupted"] == noisy[1]["num_corrupted"]
    assert any("[4/4]" in line and "ETA" in line and "runs/min" in line for line in log)
    assert "estimated" in log[1]
    assert set(result.report) == {"results.md", "accuracy_vs_noise", "memorisation_digits_linear"}
    markdown = open(os.path.join(config.output_dir, benchmark.RESULTS_MD)).read()
    assert _provenance.short_revision(revision) in markdown


def test_memorisation_agrees_with_an_independent_computation(tiny_run):
    config, _, _ = tiny_run
    row = next(r for r in rows_of(config.output_dir) if r["method"] == "ce" and r["noise"] == "symmetric:0.4")
    model = keras.saving.load_model(
        os.path.join(config.output_dir, "models", f"{row['run_id']}.keras"), compile=False
    )
    data = datasets.load("digits", noise="symmetric:0.4", seed=0)
    predicted = np.argmax(model.predict(data.x_train, verbose=0), axis=-1)
    corrupted = data.y_train != data.y_train_clean
    assert corrupted.sum() == int(row["num_corrupted"]) > 0
    assert float(row["corrupted_predicted_noisy"]) == pytest.approx(
        np.mean(predicted[corrupted] == data.y_train[corrupted])
    )
    assert float(row["corrupted_predicted_clean"]) == pytest.approx(
        np.mean(predicted[corrupted] == data.y_train_clean[corrupted])
    )
    assert float(row["noisy_train_accuracy"]) == pytest.approx(np.mean(predicted == data.y_train))
    test_accuracy = np.mean(np.argmax(model.predict(data.x_test, verbose=0), axis=-1) == data.y_test)
    assert float(row["final_test_accuracy"]) == pytest.approx(test_accuracy)
    # The per-epoch curves end at the row's values.
    curves = benchmark.read_curves(os.path.join(config.output_dir, benchmark.CURVES))
    assert set(curves) == {r["run_id"] for r in rows_of(config.output_dir)}
    curve = curves[row["run_id"]]
    assert len(curve["test_accuracy"]) == 2
    assert curve["corrupted_predicted_noisy"][-1] == pytest.approx(float(row["corrupted_predicted_noisy"]))
    assert max(curve["test_accuracy"]) == pytest.approx(float(row["best_test_accuracy"]))


def _no_training(*args, **kwargs):
    raise AssertionError("run_one was called: a finished run was trained again")


def test_second_run_trains_nothing(tiny_run, monkeypatch):
    config, _, _ = tiny_run
    monkeypatch.setattr(_runner, "run_one", _no_training)
    before = open(os.path.join(config.output_dir, benchmark.RESULTS_CSV)).read()
    log = []
    result = benchmark.run_benchmark(config, printer=log.append)
    assert result.trained == 0 and result.skipped == 4
    assert "4 runs already in" in log[1] and "0 to train" in log[1]
    assert not any(line.startswith("[") for line in log)
    assert open(os.path.join(config.output_dir, benchmark.RESULTS_CSV)).read() == before


def test_torn_rows_are_trained_again_and_never_written_back(tiny_run, tmp_path, monkeypatch):
    config, _, _ = tiny_run
    output_dir = tmp_path / "torn"
    output_dir.mkdir()
    with open(os.path.join(config.output_dir, benchmark.RESULTS_CSV)) as handle:
        header, *lines = handle.read().splitlines()
    # Row 1 torn inside its run id (a row of Nones); the last row torn after a few columns.
    torn = [header, lines[0], lines[1][:5], lines[2], lines[3][:60]]
    (output_dir / benchmark.RESULTS_CSV).write_text("\n".join(torn) + "\n")
    trained = []

    def fake_run_one(run, data, **kwargs):  # stands in for training: records which runs were redone
        trained.append(run.run_id)
        row = whole_row(run)  # strings, as read back; run_one returns numbers
        row.update({name: float(row[name]) if row[name] else math.nan
                    for name in ("final_test_accuracy", "best_test_accuracy", "corrupted_predicted_noisy", "seconds")})
        return row, {"test_accuracy": [0.8], "corrupted_predicted_noisy": [0.3]}

    monkeypatch.setattr(_runner, "run_one", fake_run_one)
    log = []
    result = benchmark.run_benchmark(
        benchmark.BenchmarkConfig(output_dir=str(output_dir), **TINY), printer=log.append
    )
    kept = {line.split(",")[0] for line in (lines[0], lines[2])}
    assert result.torn == 2 and result.skipped == 2 and result.trained == 2
    assert "2 torn or incomplete rows there are dropped" in log[1]
    rows = rows_of(output_dir)
    assert len(rows) == 4 and all(benchmark.is_whole_row(row) for row in rows)
    assert set(trained) == {row["run_id"] for row in rows} - kept
    assert lines[0] in open(output_dir / benchmark.RESULTS_CSV).read()  # the whole rows, unchanged
    assert "None" not in open(output_dir / benchmark.RESULTS_MD).read()


def test_same_seed_gives_the_same_run():
    data = datasets.load("digits", noise="symmetric:0.4", seed=3)
    run = benchmark.RunSpec("digits", "linear", "symmetric:0.4", "ce", 3, 5, 64, "adam", 1e-3, None)
    first_row, first_curves = benchmark.run_one(run, data)
    second_row, second_curves = benchmark.run_one(run, data)
    # Both trained (about 0.37 after 5 epochs; chance is 0.1) before they are compared.
    assert first_row["final_test_accuracy"] > 0.25 and second_row["final_test_accuracy"] > 0.25
    assert first_curves == second_curves
    assert first_row["final_test_accuracy"] == second_row["final_test_accuracy"]


# Runs search.benchmark, killed by SIGKILL right after the curves of its KILL_AT-th run are
# appended and before its row reaches results.csv: the worst moment, deterministically.
_KILLED_SCRIPT = """
import os, signal, sys
from absl import app
from tfrobust.benchmark import _results
from search import benchmark as script

KILL_AT = int(sys.argv[1])
append_curves = _results.append_curves
appended = []

def append_then_die(*args):
    append_curves(*args)
    appended.append(args[1])
    if len(appended) == KILL_AT:
        os.kill(os.getpid(), signal.SIGKILL)

_results.append_curves = append_then_die
sys.argv = ["search.benchmark", *sys.argv[2:]]
app.run(script.main)
"""


@pytest.mark.slow
def test_killed_benchmark_resumes_without_redoing_finished_runs(tmp_path):
    output_dir = tmp_path / "killed"
    flags = ("--methods=ce,gce,mae", "--datasets=digits", "--architectures=linear",
             "--noise=symmetric:0.4,pairflip:0.2", "--seeds=0", "--epochs=2", f"--output_dir={output_dir}")
    command, options = script(*flags)
    killed = subprocess.run([sys.executable, "-c", _KILLED_SCRIPT, "3", *flags], capture_output=True,
                            timeout=300, **options)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    finished = {row["run_id"]: row for row in rows_of(output_dir)}
    assert len(finished) == 2 and all(benchmark.is_whole_row(row) for row in finished.values())
    orphan_curves = set(benchmark.read_curves(str(output_dir / benchmark.CURVES))) - set(finished)
    assert len(orphan_curves) == 1  # the third run's curves, without its row

    result = subprocess.run(command, capture_output=True, timeout=300, **options)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert "2 runs already in" in log and "4 to train" in log and "[6/6]" in log and "[2/6]" not in log
    rows = rows_of(output_dir)
    assert len(rows) == len({row["run_id"] for row in rows}) == 6
    for row in rows:  # finished rows are kept as they were (their timing too), not retrained
        if row["run_id"] in finished:
            assert row == finished[row["run_id"]]
        assert benchmark.is_whole_row(row)
    assert set(benchmark.read_curves(str(output_dir / benchmark.CURVES))) == {row["run_id"] for row in rows}


def test_run_time_estimate_grows_with_the_grid():
    config = benchmark.BenchmarkConfig(output_dir="unused", **TINY)
    runs = config.runs()
    one = benchmark.estimate_run_seconds(runs[0])
    assert one > 0 and benchmark.estimate_seconds(runs) == pytest.approx(4 * one)
    longer = benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, "epochs": 4}).runs()[0]
    assert benchmark.estimate_run_seconds(longer) > one
    assert [benchmark.format_duration(s) for s in (42, 187, 7500)] == ["42s", "3m07s", "2h05m"]
