"""search.evolve end to end: outputs, kill-and-resume, faults, bad flags, executors."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.crash_jobs import square_or_crash
from tfrobust.losses import TaylorLoss
from tfrobust.search import evaluation, evolve, tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = ("best_coefficients.json", "evaluations.jsonl", "checkpoint.pkl", "fitness.png", "loss_curve.png")


def run_evolve(*flags, timeout=300):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.run(
        [sys.executable, "-m", "search.evolve", *flags], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


def start_evolve(*flags):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.Popen(
        [sys.executable, "-m", "search.evolve", *flags], cwd=REPO, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def test_issue_command_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = run_evolve("--population_size=4", "--generations=2", f"--output_dir={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in OUTPUTS:
        assert (out / name).exists(), name
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard scalars"
    log = result.stdout + result.stderr
    assert "gen 2/2" in log and "ETA" in log and "evals/s" in log and "vectorized" in log
    records = [json.loads(line) for line in (out / "evaluations.jsonl").read_text().splitlines()]
    assert len(records) == 8 and {r["generation"] for r in records} == {0, 1}
    for record in records:
        assert set(record) >= {"generation", "coefficients", "accuracies", "fitness", "seconds", "status"}
        assert record["fitness"] == pytest.approx(np.mean(list(record["accuracies"].values())))
    best = json.loads((out / "best_coefficients.json").read_text())
    for key in ("command", "seed", "budget", "fitness", "wall_time_s", "machine", "created"):
        assert key in best["provenance"]
    # The result loads into TaylorLoss and trains a model.
    import keras

    from tfrobust import datasets, models

    loss = TaylorLoss.from_file(str(out / "best_coefficients.json"))
    data = datasets.load("digits", noise="symmetric:0.2", seed=0)
    model = models.build_model("mlp", data.input_shape, data.num_classes, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss=loss, metrics=["accuracy"])
    model.fit(data.x_train, data.y_train, epochs=3, batch_size=64, verbose=0)
    assert model.evaluate(data.x_test, data.y_test, verbose=0)[1] > 0.5
    from matplotlib import image

    assert image.imread(str(out / "fitness.png")).shape[0] > 100


def _suite_file(tmp_path):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({
        "name": "resume-test",
        "tasks_per_generation": 1,
        "tasks": [
            {"dataset": "digits", "architecture": "mlp", "noise": "symmetric:0.4", "steps": 150},
            {"dataset": "digits", "architecture": "linear", "noise": "pairflip:0.3", "steps": 150},
        ],
    }))
    return str(path)


def test_killed_run_resumes_to_the_same_result(tmp_path):
    suite = _suite_file(tmp_path)
    common = ["--population_size=4", "--generations=6", f"--task_suite={suite}", "--seed=3"]
    reference = run_evolve(*common, f"--output_dir={tmp_path / 'reference'}")
    assert reference.returncode == 0, reference.stdout + reference.stderr

    interrupted = tmp_path / "interrupted"
    process = start_evolve(*common, f"--output_dir={interrupted}")
    evaluations = interrupted / "evaluations.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline:
        if evaluations.exists() and len(evaluations.read_text().splitlines()) >= 8:  # 2 generations done
            break
        time.sleep(0.05)
    time.sleep(0.2)  # into generation 3
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (interrupted / "best_coefficients.json").exists(), "the run finished before it was killed"

    resumed = run_evolve(*common, f"--output_dir={interrupted}", "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Resuming" in resumed.stdout + resumed.stderr
    want = json.loads((tmp_path / "reference" / "best_coefficients.json").read_text())
    got = json.loads((interrupted / "best_coefficients.json").read_text())
    assert got["coefficients"] == want["coefficients"]
    assert got["provenance"]["fitness"] == want["provenance"]["fitness"]
    lines = (interrupted / "evaluations.jsonl").read_text().splitlines()
    assert len(lines) == 6 * 4  # the interrupted generation's partial records were dropped


def test_bad_flags_stop_at_once_and_overwrite_nothing(tmp_path):
    result = run_evolve("--population_size=1", f"--output_dir={tmp_path / 'a'}")
    assert result.returncode != 0 and "population_size must be at least 2" in result.stderr
    result = run_evolve("--task_suite=nope", f"--output_dir={tmp_path / 'b'}")
    assert result.returncode != 0 and "Unknown task suite 'nope'" in result.stderr
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "checkpoint.pkl").write_bytes(b"another run")
    before = (existing / "checkpoint.pkl").stat().st_mtime_ns
    result = run_evolve(f"--output_dir={existing}")
    assert result.returncode != 0 and "Pass --resume" in result.stderr
    assert (existing / "checkpoint.pkl").read_bytes() == b"another run"
    assert (existing / "checkpoint.pkl").stat().st_mtime_ns == before
    assert sorted(os.listdir(existing)) == ["checkpoint.pkl"]


def test_resume_with_other_settings_is_refused(tmp_path):
    config = evolve.SearchConfig(output_dir=str(tmp_path), population_size=2, generations=1, task_suite="tiny",
                                 selection_candidates=1)
    evolve.run_search(config, printer=lambda *_: None)
    changed = evolve.SearchConfig(output_dir=str(tmp_path), population_size=3, generations=2, task_suite="tiny",
                                  resume=True)
    with pytest.raises(ValueError, match="differs from this run"):
        evolve.run_search(changed, printer=lambda *_: None)


def _generation(rows, architecture="mlp"):
    instance = tasks.TaskInstance(tasks.Task("digits", architecture, "symmetric:0.4", steps=30, batch_size=32), 1)
    return np.array(rows, dtype=float), [instance]


CE3 = [1.0, 1.0, 1.0, -0.5, 1.0, 1 / 3, -0.5, 0.0]
DIVERGENT = [0.0, 0.0, 1e30, 1e30, 0.0, 0.0, 0.0, 0.0]


@pytest.mark.parametrize("evaluator", ["vectorized", "per_candidate"])
def test_nonfinite_candidate_gets_worst_fitness_and_others_are_unaffected(evaluator):
    coefficients, instances = _generation([CE3, DIVERGENT, CE3])
    results, modes = evaluation.evaluate_generation(
        coefficients, instances, evaluation.InlineExecutor(), evaluator=evaluator
    )
    assert set(modes.values()) == {evaluator}
    assert [r.status for r in results] == ["ok", "nonfinite", "ok"]
    assert results[1].fitness == 0.0
    assert results[0].fitness == results[2].fitness > 0.3


def test_vectorized_and_per_candidate_agree():
    coefficients, instances = _generation([CE3, [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0]], "cnn")
    executor = evaluation.InlineExecutor()
    vectorized, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="vectorized")
    reference, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="per_candidate")
    np.testing.assert_allclose([r.fitness for r in vectorized], [r.fitness for r in reference], atol=1.5 / 144)


def test_mirrored_strategy_scores_like_one_device():
    coefficients, instances = _generation([CE3, [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25]])
    executor = evaluation.InlineExecutor()
    single, _ = evaluation.evaluate_generation(coefficients, instances, executor)
    mirrored, _ = evaluation.evaluate_generation(coefficients, instances, executor, strategy="mirrored")
    assert [r.fitness for r in mirrored] == pytest.approx([r.fitness for r in single], abs=1e-9)


# --- worker processes -------------------------------------------------------------------------

def test_process_executor_replaces_dead_workers(tmp_path):
    executor = evaluation.ProcessExecutor(num_workers=2, function=square_or_crash)
    try:
        results = executor.map([(None, 2), (str(tmp_path / "crash-once"), 3), (None, 4)])
        assert results == [4, 9, 16]
        results = executor.map([("always", 5), (None, 6)])
        assert isinstance(results[0], RuntimeError) and "died twice" in str(results[0])
        assert results[1] == 36
    finally:
        executor.close()


def test_process_executor_runs_real_jobs_like_inline():
    coefficients, instances = _generation([CE3, DIVERGENT])
    inline, _ = evaluation.evaluate_generation(coefficients, instances, evaluation.InlineExecutor())
    executor = evaluation.ProcessExecutor(num_workers=1)
    try:
        spawned, _ = evaluation.evaluate_generation(coefficients, instances, executor)
    finally:
        executor.close()
    assert [r.fitness for r in spawned] == pytest.approx([r.fitness for r in inline], abs=1e-9)
    assert [r.status for r in spawned] == ["ok", "nonfinite"]


def test_ray_executor_with_a_local_instance():
    ray = pytest.importorskip("ray")
    coefficients, instances = _generation([CE3, [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0]])
    inline, _ = evaluation.evaluate_generation(coefficients, instances, evaluation.InlineExecutor())
    executor = evaluation.RayExecutor(num_cpus=2)
    try:
        remote, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="per_candidate")
        crashed = executor.map([("always", 1)])
        assert isinstance(crashed[0], Exception)
    finally:
        ray.shutdown()
    assert [r.fitness for r in remote] == pytest.approx([r.fitness for r in inline], abs=1e-9)
