"""Fitness evaluation: statuses, failures with their tracebacks, and the executors agreeing with each other."""

import numpy as np
import pytest
import ray

from tests.crash_jobs import raise_for_negative, square_or_crash
from tfrobust.search import evaluation, tasks

CE3 = [1.0, 1.0, 1.0, -0.5, 1.0, 1 / 3, -0.5, 0.0]
SQUARED_ERROR = [0.0, 0.0, 0.0, -1.0, 2.0, 0.0, 0.0, 0.0]
DIVERGENT = [0.0, 0.0, 1e30, 1e30, 0.0, 0.0, 0.0, 0.0]
CHANCE = 0.1  # ten digit classes
# The digits validation split holds 144 examples: one flipped prediction moves accuracy by 1/144.
ONE_EXAMPLE = 1 / 144


def _generation(rows, architecture="mlp"):
    instance = tasks.TaskInstance(tasks.Task("digits", architecture, "symmetric:0.4", steps=30, batch_size=32), 1)
    return np.array(rows, dtype=float), [instance]


def _assert_healthy(results):
    """An equality between two runs means nothing if both failed: check each trained."""
    assert [r.status for r in results] == ["ok"] * len(results), [r.error for r in results]
    assert all(r.fitness > 2 * CHANCE for r in results), [r.fitness for r in results]


@pytest.mark.parametrize("evaluator", ["vectorized", "per_candidate"])
def test_nonfinite_candidate_gets_worst_fitness_and_others_are_unaffected(evaluator):
    coefficients, instances = _generation([CE3, DIVERGENT, CE3])
    results, modes = evaluation.evaluate_generation(
        coefficients, instances, evaluation.InlineExecutor(), evaluator=evaluator
    )
    assert set(modes.values()) == {evaluator}
    assert [r.status for r in results] == ["ok", "nonfinite", "ok"]
    assert results[1].fitness == 0.0
    assert results[0].fitness == results[2].fitness > 3 * CHANCE


def test_vectorized_and_per_candidate_agree():
    coefficients, instances = _generation([CE3, SQUARED_ERROR], "cnn")
    executor = evaluation.InlineExecutor()
    vectorized, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="vectorized")
    reference, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="per_candidate")
    _assert_healthy(vectorized)
    _assert_healthy(reference)
    # The stacked CNN sums in another order than Conv2D (float32 rounding through 30 steps), which may flip
    # the argmax of an example on the decision boundary: allow one example of the 144.
    np.testing.assert_allclose([r.fitness for r in vectorized], [r.fitness for r in reference],
                               atol=1.5 * ONE_EXAMPLE)


def test_mirrored_strategy_scores_like_one_device():
    coefficients, instances = _generation([CE3, [0.3, 0.6, 0.5, -1.2, 2.0, 0.7, -0.4, 0.25]])
    executor = evaluation.InlineExecutor()
    single, _ = evaluation.evaluate_generation(coefficients, instances, executor)
    mirrored, _ = evaluation.evaluate_generation(coefficients, instances, executor, strategy="mirrored")
    _assert_healthy(single)
    _assert_healthy(mirrored)
    # Accuracies are counts over 144 examples; the two replicas' summed gradients equal the single device's
    # to float32 rounding, far too little to flip a prediction here, so the scores are equal.
    assert [r.fitness for r in mirrored] == pytest.approx([r.fitness for r in single], abs=1e-9)


def test_a_failing_job_reports_failed_with_its_traceback():
    coefficients, _ = _generation([CE3, CE3])
    missing = tasks.TaskInstance(tasks.Task("digits", "mlp", "matrix:/nonexistent/T.npy", steps=5), 1)
    results, _ = evaluation.evaluate_generation(coefficients, [missing], evaluation.InlineExecutor())
    assert [r.status for r in results] == ["failed", "failed"]
    assert [r.fitness for r in results] == [0.0, 0.0]
    assert "/nonexistent/T.npy" in results[0].error and "#1" in results[0].error  # names the task instance
    assert "Traceback (most recent call last)" in results[0].traceback and "run_job" in results[0].traceback


def test_nan_accuracy_becomes_nonfinite_not_a_nan_fitness():
    class NanExecutor:
        def map(self, jobs):
            return [(np.full(len(job.members), np.nan), np.ones(len(job.members), bool), 0.0) for job in jobs]

    coefficients, instances = _generation([CE3, CE3])
    results, _ = evaluation.evaluate_generation(coefficients, instances, NanExecutor())
    assert [(r.status, r.fitness) for r in results] == [("nonfinite", 0.0)] * 2


# --- worker processes -------------------------------------------------------------------------

def test_process_executor_replaces_dead_workers(tmp_path):
    executor = evaluation.ProcessExecutor(num_workers=2, function=square_or_crash)
    try:
        results = executor.map([(None, 2), (str(tmp_path / "crash-once"), 3), (None, 4)])
        assert results == [4, 9, 16]
        results = executor.map([("always", 5), (None, 6)])
        assert isinstance(results[0], evaluation.JobFailure) and "died twice" in results[0].error
        assert results[1] == 36
    finally:
        executor.close()


def test_process_executor_returns_the_workers_traceback():
    executor = evaluation.ProcessExecutor(num_workers=1, function=raise_for_negative)
    try:
        results = executor.map([3, -2])
    finally:
        executor.close()
    assert results[0] == 9
    assert results[1].error == "ValueError: negative job -2"
    assert "raise_for_negative" in results[1].traceback  # the worker's frames, not only the parent's


def test_process_executor_names_a_bad_worker_count():
    with pytest.raises(ValueError, match="--num_workers must be a positive integer"):
        evaluation.ProcessExecutor(num_workers=0)


def test_process_executor_runs_real_jobs_like_inline():
    coefficients, instances = _generation([CE3, DIVERGENT])
    inline, _ = evaluation.evaluate_generation(coefficients, instances, evaluation.InlineExecutor())
    executor = evaluation.ProcessExecutor(num_workers=1)
    try:
        spawned, _ = evaluation.evaluate_generation(coefficients, instances, executor)
    finally:
        executor.close()
    assert [r.status for r in inline] == [r.status for r in spawned] == ["ok", "nonfinite"]
    assert inline[0].fitness > 2 * CHANCE
    # The same computation in another process of the same build: identical, not merely close.
    assert [r.fitness for r in spawned] == [r.fitness for r in inline]


def test_ray_executor_with_a_local_instance():
    coefficients, instances = _generation([CE3, SQUARED_ERROR])
    inline, _ = evaluation.evaluate_generation(coefficients, instances, evaluation.InlineExecutor())
    assert not ray.is_initialized()
    executor = evaluation.RayExecutor(num_cpus=2)
    try:
        remote, _ = evaluation.evaluate_generation(coefficients, instances, executor, evaluator="per_candidate")
        local, _ = evaluation.evaluate_generation(coefficients, instances, evaluation.InlineExecutor(),
                                                  evaluator="per_candidate")
        failed = executor.map([-1])
    finally:
        executor.close()
    assert not ray.is_initialized(), "close() must shut down the Ray instance the executor started"
    _assert_healthy(remote)
    _assert_healthy(inline)
    # The same per-candidate computation in a Ray worker: identical scores.
    assert [r.fitness for r in remote] == [r.fitness for r in local]
    assert isinstance(failed[0], evaluation.JobFailure) and failed[0].traceback


def test_ray_executor_leaves_an_instance_it_did_not_start_running():
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        executor = evaluation.RayExecutor(function=raise_for_negative)
        assert executor.map([3, -1])[0] == 9
        executor.close()
        assert ray.is_initialized()
    finally:
        ray.shutdown()
