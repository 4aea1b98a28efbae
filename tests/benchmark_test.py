"""search.benchmark end to end: results, tables, plots, memorisation, methods, resume and kill-resume."""

import csv
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
from matplotlib import image

from tfrobust import benchmark, datasets
from tfrobust import noise as noise_lib
from tfrobust.losses import TaylorLoss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = {
    "methods": ("ce", "gce"),
    "datasets": ("digits",),
    "architectures": ("linear",),
    "noise": ("none", "symmetric:0.4"),
    "seeds": (0,),
    "epochs": 2,
}
ACCURACIES = (
    "final_test_accuracy", "best_test_accuracy", "noisy_train_accuracy", "clean_train_accuracy",
    "corrupted_predicted_clean", "corrupted_predicted_noisy",
)


def _rows(output_dir):
    with open(os.path.join(output_dir, benchmark.RESULTS_CSV), newline="") as handle:
        return list(csv.DictReader(handle))


def _script(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return [sys.executable, "-m", "search.benchmark", *flags], {"cwd": REPO, "env": env, "text": True}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    output_dir = str(tmp_path_factory.mktemp("benchmark"))
    config = benchmark.BenchmarkConfig(output_dir=output_dir, save_models=True, **TINY)
    log = []
    result = benchmark.run_benchmark(config, printer=log.append)
    return config, result, log


def test_results_csv_has_one_complete_row_per_run(tiny_run):
    config, result, log = tiny_run
    rows = _rows(config.output_dir)
    assert result.trained == 4 and result.skipped == 0 and len(rows) == 4
    assert list(rows[0]) == list(benchmark.CSV_FIELDS)
    assert {(r["method"], r["noise"]) for r in rows} == {
        (m, n) for m in ("ce", "gce") for n in ("none", "symmetric:0.4")
    }
    assert len({r["run_id"] for r in rows}) == 4
    for row in rows:
        clean = row["noise"] == "none"
        for field in benchmark.CSV_FIELDS:
            may_be_empty = field in ("max_examples", "transition_matrix") or (
                clean and field in ("corrupted_predicted_clean", "corrupted_predicted_noisy")
            )
            assert row[field] != "" or may_be_empty, (field, row)
        for field in ACCURACIES:
            if row[field]:
                assert 0.0 <= float(row[field]) <= 1.0, (field, row)
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


def test_memorisation_agrees_with_an_independent_computation(tiny_run):
    config, _, _ = tiny_run
    row = next(r for r in _rows(config.output_dir) if r["method"] == "ce" and r["noise"] == "symmetric:0.4")
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
    assert set(curves) == {r["run_id"] for r in _rows(config.output_dir)}
    curve = curves[row["run_id"]]
    assert len(curve["test_accuracy"]) == 2
    assert curve["corrupted_predicted_noisy"][-1] == pytest.approx(float(row["corrupted_predicted_noisy"]))
    assert max(curve["test_accuracy"]) == pytest.approx(float(row["best_test_accuracy"]))


def test_memorisation_metrics_by_hand():
    metrics = benchmark.memorisation_metrics([0, 1, 2, 2], noisy_labels=[0, 1, 1, 0], clean_labels=[0, 2, 1, 2])
    # Corrupted: examples 1 (noisy 1, clean 2) and 3 (noisy 0, clean 2); predicted 1 and 2.
    assert metrics == {
        "noisy_train_accuracy": 0.5, "clean_train_accuracy": 0.5,
        "corrupted_predicted_clean": 0.5, "corrupted_predicted_noisy": 0.5,
    }
    clean = benchmark.memorisation_metrics([0, 1], [0, 1], [0, 1])
    assert math.isnan(clean["corrupted_predicted_noisy"]) and math.isnan(clean["corrupted_predicted_clean"])


def test_results_md_and_plots(tiny_run):
    config, result, _ = tiny_run
    markdown = open(os.path.join(config.output_dir, benchmark.RESULTS_MD)).read()
    assert markdown == benchmark.summarize(os.path.join(config.output_dir, benchmark.RESULTS_CSV))
    assert "## digits / linear" in markdown
    tables = re.findall(r"(\| method \|.*?)(?:\n\n|\Z)", markdown, flags=re.S)
    assert len(tables) == len(benchmark.SUMMARY_METRICS)
    for table in tables[:2]:  # accuracy tables: every column has a bold best
        header, _, *body = table.strip().splitlines()
        assert header.split("|")[2:-1] == [" none ", " symmetric:0.4 "]
        cells = [line.split("|")[2:-1] for line in body]
        assert [line.split("|")[1].strip() for line in body] == ["ce", "gce"]
        for column in zip(*cells):
            bold = [cell for cell in column if "**" in cell]
            assert bold, column
            values = [float(cell.strip(" *")) for cell in column]
            assert max(values) == float(bold[0].strip(" *"))
    assert "–" in tables[2]  # no corrupted labels under "none"
    for name in ("accuracy_vs_noise.png", "memorisation_digits_linear.png"):
        picture = image.imread(os.path.join(config.output_dir, name))
        assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 300
        assert picture.std() > 0.01  # not a blank canvas
    assert set(result.report) == {"results.md", "accuracy_vs_noise", "memorisation_digits_linear"}


def test_summarize_mean_std_bold_and_ties(tmp_path):
    base = {"dataset": "digits", "architecture": "mlp", "epochs": "5", "batch_size": "64", "optimizer": "adam",
            "learning_rate": "0.001", "max_examples": "", "best_test_accuracy": "0.5",
            "corrupted_predicted_noisy": ""}
    values = {("ce", "none"): [0.90, 0.92], ("mae", "none"): [0.80, 0.82],
              ("ce", "symmetric:0.4"): [0.70, 0.72], ("mae", "symmetric:0.4"): [0.76, 0.78]}
    rows = [
        {**base, "run_id": f"{method}{noise}{seed}", "method": method, "noise": noise, "seed": str(seed),
         "final_test_accuracy": value}
        for (method, noise), accuracies in values.items() for seed, value in enumerate(accuracies)
    ]
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, rows)
    markdown = benchmark.summarize(path)
    assert "| ce | **91.0 ± 1.4** | 71.0 ± 1.4 |" in markdown
    assert "| mae | 81.0 ± 1.4 | **77.0 ± 1.4** |" in markdown
    # The best-accuracy column is a tie: both bold. The empty memorisation cells read "–".
    assert "| ce | **50.0 ± 0.0** | **50.0 ± 0.0** |" in markdown
    assert "| ce | – | – |" in markdown


def test_second_run_trains_nothing(tiny_run):
    config, _, _ = tiny_run
    before = open(os.path.join(config.output_dir, benchmark.RESULTS_CSV)).read()
    log = []
    started = time.perf_counter()
    result = benchmark.run_benchmark(config, printer=log.append)
    assert result.trained == 0 and result.skipped == 4
    assert "4 runs already in" in log[1] and "0 to train" in log[1]
    assert not any(line.startswith("[") for line in log)
    assert open(os.path.join(config.output_dir, benchmark.RESULTS_CSV)).read() == before
    assert time.perf_counter() - started < 10


def test_killed_benchmark_resumes_without_redoing_finished_runs(tmp_path):
    output_dir = tmp_path / "killed"
    flags = ("--methods=ce,gce,mae", "--datasets=digits", "--architectures=linear",
             "--noise=symmetric:0.4,pairflip:0.2", "--seeds=0,1", "--epochs=3", f"--output_dir={output_dir}")
    command, options = _script(*flags)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **options)
    csv_path = output_dir / benchmark.RESULTS_CSV
    deadline = time.time() + 90
    while time.time() < deadline and not (csv_path.exists() and len(_rows(output_dir)) >= 2):
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    finished = {row["run_id"]: row for row in _rows(output_dir)}
    assert 2 <= len(finished) < 12, "the run was not stopped midway"

    result = subprocess.run(command, capture_output=True, timeout=180, **options)
    log = result.stdout + result.stderr
    assert result.returncode == 0, log
    assert f"{len(finished)} runs already in" in log and f"{12 - len(finished)} to train" in log
    assert "[12/12]" in log
    rows = _rows(output_dir)
    assert len(rows) == len({row["run_id"] for row in rows}) == 12
    for row in rows:  # finished rows are kept as they were (their timing too), not retrained
        if row["run_id"] in finished:
            assert row == finished[row["run_id"]]
    assert set(benchmark.read_curves(str(output_dir / benchmark.CURVES))) == {row["run_id"] for row in rows}


def test_presets_and_flag_overrides():
    heldout = benchmark.BenchmarkConfig.from_preset("heldout", epochs=1)
    assert heldout.epochs == 1 and heldout.architectures == ("mlp2",)
    taylor = "taylor:" + TaylorLoss.preset_info()["name"]
    assert heldout.method_list() == [
        taylor, "taylor:evolved_bundled_long", "taylor:cross_entropy_taylor3", "ce", "gce", "sce", "mae"
    ]
    assert {"symmetric:0.5", "symmetric:0.8", "instance:0.4", "pairflip:0.3"} == set(heldout.noise)
    full = benchmark.BenchmarkConfig.from_preset("full")
    assert set(full.method_list()) == set(benchmark.default_methods()) and len(full.seeds) >= 3
    assert full.architectures == ("mlp",) and set(full.noise) <= set(benchmark.ALL_NOISE) and len(full.noise) == 5
    with pytest.raises(ValueError, match="Unknown preset"):
        benchmark.BenchmarkConfig.from_preset("huge")

    command, options = _script("--preset=heldout", "--epochs=1", "--seeds=4,5", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode == 0, result.stderr
    assert f"Preset heldout: {7 * 2 * 4 * 2} runs" in result.stdout and taylor in result.stdout
    command, options = _script("--noise=bogus:1", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode != 0 and "noise spec" in result.stderr


def test_every_default_method_builds_a_finite_loss():
    data = datasets.load("digits", noise="pairflip:0.2", seed=0, max_examples=300)
    predictions = keras.ops.softmax(np.random.default_rng(0).normal(size=(8, 10)).astype("float32"))
    assert benchmark.default_methods()[0] == "ce"
    for name in benchmark.default_methods():
        loss = benchmark.get_method(name).loss(data)
        value = float(loss(data.y_train[:8], predictions))
        assert np.isfinite(value), name
    with pytest.raises(ValueError, match="Unknown method 'nope'"):
        benchmark.get_method("nope")
    with pytest.raises(ValueError, match="Unknown TaylorLoss preset"):
        benchmark.get_method("taylor:nope")


def test_taylor_file_method(tmp_path):
    path = tmp_path / "best_coefficients.json"
    path.write_text(json.dumps(TaylorLoss.preset_info("mae")))
    method = benchmark.get_method(f"taylor_file:{path}")
    data = datasets.load("digits", seed=0, max_examples=300)
    assert method.loss(data).coefficients == TaylorLoss.pretrained("mae").coefficients
    with pytest.raises(FileNotFoundError):
        benchmark.get_method(f"taylor_file:{tmp_path / 'missing.json'}")


def test_noise_context_gives_the_true_matrix_or_the_realised_one(tmp_path):
    def context(noise):
        return benchmark.NoiseContext.from_dataset(datasets.load("digits", noise=noise, seed=0, max_examples=300))

    symmetric = context("symmetric:0.4")
    assert symmetric.transition_matrix_source == "true"
    np.testing.assert_allclose(symmetric.transition_matrix, noise_lib.symmetric_transition_matrix(0.4, 10))
    pairflip = context("pairflip:0.2").transition_matrix
    np.testing.assert_allclose(pairflip, noise_lib.pair_flip_transition_matrix(0.2, 10))
    np.testing.assert_allclose(context("none").transition_matrix, np.eye(10))
    matrix = noise_lib.symmetric_transition_matrix(0.3, 10)
    np.save(tmp_path / "T.npy", matrix)
    np.testing.assert_allclose(context(f"matrix:{tmp_path / 'T.npy'}").transition_matrix, matrix)
    data = datasets.load("digits", noise="instance:0.4", seed=0, max_examples=300)
    instance = benchmark.NoiseContext.from_dataset(data)
    assert instance.transition_matrix_source == "realised"
    np.testing.assert_allclose(instance.transition_matrix, data.noisy_labels.transition_matrix)


def test_same_seed_gives_the_same_run():
    data = datasets.load("digits", noise="symmetric:0.4", seed=3)
    run = benchmark.RunSpec("digits", "linear", "symmetric:0.4", "ce", 3, 2, 64, "adam", 1e-3, None)
    first_row, first_curves = benchmark.run_one(run, data)
    second_row, second_curves = benchmark.run_one(run, data)
    assert first_curves == second_curves
    assert first_row["final_test_accuracy"] == second_row["final_test_accuracy"]


class _CleanMetaSetMethod(benchmark.Method):
    """A stand-in for a re-weighting method: its own loop, on a clean meta set carved from the training split."""

    name = "clean_meta_set"

    def train(self, model, data, run, callbacks):
        meta = np.random.default_rng(run.seed).choice(len(data.y_train), 200, replace=False)
        model.compile(optimizer=benchmark.make_optimizer(run.optimizer, run.learning_rate),
                      loss="sparse_categorical_crossentropy")
        callback_list = keras.callbacks.CallbackList(callbacks, model=model)
        for epoch in range(run.epochs):
            model.train_on_batch(data.x_train[meta], data.y_train_clean[meta])
            callback_list.on_epoch_end(epoch)


def test_a_method_with_its_own_training_loop_joins_the_grid(tmp_path, monkeypatch):
    monkeypatch.setitem(benchmark._REGISTRY, "clean_meta_set", _CleanMetaSetMethod())
    matrix_path = tmp_path / "T.csv"
    np.savetxt(matrix_path, noise_lib.pair_flip_transition_matrix(0.3, 10), delimiter=",")
    config = benchmark.BenchmarkConfig(
        output_dir=str(tmp_path / "out"),
        **{**TINY, "methods": ("forward", "clean_meta_set"), "noise": (f"matrix:{matrix_path}",)},
    )
    benchmark.run_benchmark(config, printer=lambda line: None)
    rows = {row["method"]: row for row in _rows(config.output_dir)}
    assert set(rows) == {"forward", "clean_meta_set"}
    assert rows["clean_meta_set"]["epochs_trained"] == "2" and rows["clean_meta_set"]["transition_matrix"] == ""
    assert rows["forward"]["transition_matrix"] == "true"  # the known-T oracle: the file's matrix
    assert rows["forward"]["noise_kind"] == "matrix" and rows["forward"]["noise_rate"] == ""
    assert 0.2 < float(rows["forward"]["realised_noise_rate"]) < 0.4
    assert "clean_meta_set" in open(os.path.join(config.output_dir, benchmark.RESULTS_MD)).read()


def test_bad_configs_fail_before_training(tmp_path):
    for bad in ({"architectures": ("resnet",)}, {"noise": ("symmetric:2",)}, {"seeds": (-1,)},
                {"methods": ("ce", "nope")}, {"optimizer": "nope"}, {"epochs": 0}):
        with pytest.raises(ValueError):
            benchmark.run_benchmark(benchmark.BenchmarkConfig(output_dir=str(tmp_path), **{**TINY, **bad}))
    assert not os.path.exists(tmp_path / benchmark.RESULTS_CSV)
