"""Fitness aggregation (tfrobust.search.fitness): grammar, each statistic against numpy, the wiring through
evaluate_generation and run_search with a fake executor, and one real cross-entropy reference."""

import dataclasses
import json

import numpy as np
import pytest

from tfrobust.search import evaluation
from tfrobust.search import evolve
from tfrobust.search import fitness
from tfrobust.search.tasks import Task, TaskInstance

# Three candidates on four task instances, and cross-entropy's accuracy on each instance.
ACCURACIES = np.array([
    [0.90, 0.50, 0.70, 0.30],
    [0.55, 0.56, 0.54, 0.55],
    [0.95, 0.20, 0.99, 0.10],
])
CROSS_ENTROPY = np.array([0.80, 0.40, 0.75, 0.05])
INSTANCES = [TaskInstance(Task("digits", "linear", f"symmetric:0.{k + 2}", steps=5), seed=k) for k in range(4)]


def _quantile(values, q):
    """Linear-interpolation quantile worked out by hand (numpy's default method)."""
    ordered = sorted(values)
    position = q * (len(ordered) - 1)
    low = int(np.floor(position))
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (position - low) * (ordered[high] - ordered[low])


def _expected(spec):
    rows = []
    for accuracies in ACCURACIES:
        if spec.startswith("ce_gain/"):
            scores = [a - c for a, c in zip(accuracies, CROSS_ENTROPY)]
        elif spec.startswith("ce_ratio/"):
            scores = [a / max(c, 0.01) for a, c in zip(accuracies, CROSS_ENTROPY)]
        else:
            scores = list(accuracies)
        statistic = spec.split("/")[-1]
        mean = sum(scores) / len(scores)
        if statistic == "mean":
            rows.append(mean)
        elif statistic.startswith("quantile:"):
            rows.append(_quantile(scores, float(statistic.split(":")[1])))
        else:
            spread = np.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))
            rows.append(mean - float(statistic.split(":")[1]) * spread)
    return np.array(rows)


def _fake_run_job(table=ACCURACIES, reference=CROSS_ENTROPY, failing_reference=None):
    column = {instance.key: k for k, instance in enumerate(INSTANCES)}
    calls = []

    def run(job):
        calls.append(job)
        k = column[job.instance.key]
        if job.reference:
            if failing_reference == k:
                raise RuntimeError("cross-entropy broke")
            return np.array([reference[k]]), np.array([True]), 2.0
        members = list(job.members)
        return table[members, k], np.isfinite(table[members, k]), 1.0

    return run, calls


SPECS = ["mean", "quantile:0.25", "quantile:0.5", "mean_minus_std:1", "ce_gain/mean", "ce_gain/quantile:0.25",
         "ce_ratio/mean", "ce_ratio/mean_minus_std:0.5"]


@pytest.mark.parametrize("spec", SPECS)
def test_each_aggregation_matches_numpy_through_evaluate_generation(spec):
    run, calls = _fake_run_job()
    results, _ = evaluation.evaluate_generation(np.zeros((3, 8)), INSTANCES, evaluation.InlineExecutor(run),
                                                evaluator="vectorized", aggregation=spec)
    expected = _expected(spec)
    assert np.isfinite(expected).all()
    np.testing.assert_allclose([r.fitness for r in results], expected, atol=1e-12)
    assert all(r.status == "ok" for r in results)
    # One candidate job per instance (vectorised), plus one cross-entropy job per instance when referenced.
    references = [job for job in calls if job.reference]
    assert len(references) == (4 if spec.startswith("ce_") else 0)
    assert len(calls) - len(references) == 4
    if spec.startswith("ce_"):
        assert results[0].reference_accuracies == {i.key: c for i, c in zip(INSTANCES, CROSS_ENTROPY)}


@pytest.mark.parametrize("pooling", ["fused", "reshape_max"])
def test_the_population_pooling_reaches_every_vectorised_job(pooling):
    run, calls = _fake_run_job()
    evaluation.evaluate_generation(np.zeros((3, 8)), INSTANCES, evaluation.InlineExecutor(run),
                                   evaluator="vectorized", pooling=pooling)
    assert len(calls) == 4 and all(job.vectorized and job.pooling == pooling for job in calls)


def test_the_aggregations_rank_differently():
    # The mean favours the candidate that excels on easy tasks; a low quantile the even one.
    assert np.argmax(_expected("mean")) == 0
    assert np.argmax(_expected("quantile:0.25")) == 1
    # Within a generation the gain over cross-entropy ranks as the mean does (same reference for all).
    np.testing.assert_array_equal(np.argsort(_expected("ce_gain/mean")), np.argsort(_expected("mean")))
    # A ratio weighs most the task cross-entropy fails on (the last), where candidate 1 holds up.
    assert np.argmax(_expected("ce_ratio/mean")) == 1


def test_a_failed_reference_fails_every_candidate_and_a_diverged_candidate_scores_zero():
    run, _ = _fake_run_job(failing_reference=2)
    results, _ = evaluation.evaluate_generation(np.zeros((3, 8)), INSTANCES, evaluation.InlineExecutor(run),
                                                evaluator="vectorized", aggregation="ce_gain/mean")
    assert [r.status for r in results] == ["failed"] * 3 and [r.fitness for r in results] == [0.0] * 3
    assert "cross-entropy broke" in results[0].error and INSTANCES[2].key in results[0].error
    table = ACCURACIES.copy()
    table[1, 3] = np.nan
    run, _ = _fake_run_job(table=table)
    results, _ = evaluation.evaluate_generation(np.zeros((3, 8)), INSTANCES, evaluation.InlineExecutor(run),
                                                evaluator="vectorized", aggregation="quantile:0.25")
    assert [r.status for r in results] == ["ok", "nonfinite", "ok"] and results[1].fitness == 0.0


@pytest.mark.parametrize("spec, message", [
    ("median", "unknown statistic 'median'"),
    ("ce/mean", "unknown reference 'ce'"),
    ("mean:2", "'mean' takes no argument"),
    ("quantile", "needs a number after ':'"),
    ("quantile:1", "between 0 and 1"),
    ("mean_minus_std:-1", "at least 0"),
    (0.5, "must be a string"),
])
def test_bad_specs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match="--fitness_aggregation") as error:
        fitness.parse_aggregation(spec)
    assert message in str(error.value)
    with pytest.raises(ValueError, match="--fitness_aggregation"):
        evolve.SearchConfig(fitness_aggregation=spec).validate()


def test_parsed_specs_and_the_resume_key():
    assert fitness.parse_aggregation("ce_gain/quantile:0.25") == fitness.Aggregation("quantile", 0.25, "ce_gain")
    assert not fitness.parse_aggregation("mean").needs_reference
    assert "fitness_aggregation" not in evolve.SearchConfig().search_key()  # old checkpoints stay resumable
    assert evolve.SearchConfig(fitness_aggregation="quantile:0.25").search_key()["fitness_aggregation"] == "quantile:0.25"
    assert "population_pooling" not in evolve.SearchConfig().search_key()
    assert evolve.SearchConfig(population_pooling="reshape_max").search_key()["population_pooling"] == "reshape_max"
    assert "stratify_tasks_by" not in evolve.SearchConfig().search_key()
    assert evolve.SearchConfig(stratify_tasks_by="noise").search_key()["stratify_tasks_by"] == "noise"


def test_run_search_records_the_aggregated_fitness_and_the_reference(tmp_path, monkeypatch):
    run, _ = _fake_run_job()
    by_task = {instance.task: instance for instance in INSTANCES}

    def run_any(job):  # the suite's instances carry other seeds: score them as the same task of INSTANCES
        return run(dataclasses.replace(job, instance=by_task[job.instance.task]))

    monkeypatch.setattr(evaluation, "make_executor", lambda *a, **k: evaluation.InlineExecutor(run_any))
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "four", "tasks_per_generation": 4, "tasks": [
        {"dataset": "digits", "architecture": "linear", "noise": f"symmetric:0.{k + 2}", "steps": 5} for k in range(4)
    ]}))
    config = evolve.SearchConfig(output_dir=str(tmp_path / "run"), population_size=3, generations=1,
                                 task_suite=str(suite), fitness_aggregation="ce_gain/quantile:0.25",
                                 selection_candidates=1)
    result = evolve.run_search(config, printer=lambda line: None)
    fitnesses = [r["fitness"] for r in result.evaluations]
    assert all(np.isfinite(fitnesses)) and len(fitnesses) == 3
    # Whatever candidates CMA-ES drew, the fake scores member m with ACCURACIES[m].
    np.testing.assert_allclose(fitnesses, _expected("ce_gain/quantile:0.25"), atol=1e-12)
    definition = result.record["provenance"]["fitness_definition"]
    assert definition.startswith("0.25-quantile over task instances of the accuracy minus cross-entropy's")
    assert result.record["provenance"]["fitness_aggregation"] == "ce_gain/quantile:0.25"
    state = evolve.checkpoint.load_checkpoint(str(tmp_path / "run"))
    assert sorted(state["history"][0]["reference_accuracies"].values()) == sorted(CROSS_ENTROPY)


def test_the_cross_entropy_reference_really_trains():
    from tfrobust.search import training

    instance = TaskInstance(Task("digits", "linear", "instance:0.3", steps=100, batch_size=32, learning_rate=0.01), seed=5)
    data = training.prepare_task(instance)
    accuracy, finite = fitness.train_reference(data)
    again, _ = fitness.train_reference(data)
    assert finite and accuracy > 0.5, accuracy  # ten classes: chance is 0.1
    assert again == accuracy  # same weights, batches and optimiser: the reference is reproducible


@pytest.mark.parametrize("rule", evolve.SELECTION_RULES)
@pytest.mark.parametrize("start_is_best", [True, False])
def test_final_selection_can_keep_the_starting_point(tmp_path, monkeypatch, start_is_best, rule):
    # Every candidate scores by its distance from the start (evolved_bundled): the start scores 1.0 and
    # everything else less when start_is_best, the start 0.0 and everything else more otherwise.
    start = evolve.initial_centroid("evolved_bundled", 3)

    def run(job):
        if job.reference:
            return np.array([0.5]), np.array([True]), 1.0
        distance = np.linalg.norm(np.asarray(job.coefficients, dtype=float) - start, axis=1)
        scores = np.exp(-distance) if start_is_best else 1.0 - np.exp(-distance)
        return scores, np.ones(len(scores), bool), 1.0

    monkeypatch.setattr(evaluation, "make_executor", lambda *a, **k: evaluation.InlineExecutor(run))
    lines = []
    config = evolve.SearchConfig(output_dir=str(tmp_path / "run"), population_size=3, generations=1,
                                 task_suite="tiny", init="evolved_bundled", sigma=0.5, selection_candidates=2,
                                 selection_include_start=True, selection_rule=rule,
                                 selection_repeats=2 if rule == "guarded" else 1)
    result = evolve.run_search(config, printer=lines.append)
    selection = result.record["selection"]
    assert [entry["label"] for entry in selection] == ["centroid", "cand1", "start"]
    np.testing.assert_allclose(selection[-1]["coefficients"], start, rtol=1e-6)
    assert selection[-1]["fitness"] == pytest.approx(1.0 if start_is_best else 0.0)
    others = [entry["fitness"] for entry in selection[:-1]]
    if start_is_best:
        assert max(others) < 1.0
        np.testing.assert_allclose(result.record["coefficients"], start, rtol=1e-6)
        assert result.record["provenance"]["selected"] == "the starting point (--init=evolved_bundled)"
    else:
        assert min(others) > 0.0
        assert result.record["provenance"]["fitness"] == pytest.approx(max(others))
        assert result.record["provenance"]["selected"] != "the starting point (--init=evolved_bundled)"
    assert any(line.startswith("Final selection") and "start " in line for line in lines)
    # The final selection shows its progress: which finalists, then a line per training job, in order.
    announced = next(i for i, line in enumerate(lines) if line.startswith("Scoring the finalists"))
    assert "(centroid, cand1, start)" in lines[announced] and "suite 'tiny'" in lines[announced]
    progress = [line for line in lines[announced + 1:] if line.startswith("[")]
    jobs = len(selection[-1]["accuracies"])  # one population job per task instance (no CE reference under "mean")
    assert [line.split("]")[0] for line in progress] == [f"[{k}/{jobs}" for k in range(1, jobs + 1)]
    assert all(" on digits/linear/symmetric:0.4/20x32#" in line and "ETA" in line for line in progress)
    # Every finalist records on how many of the selection's task instances it beats the start.
    tasks = len(selection[-1]["accuracies"])
    for entry in selection[:-1]:
        assert entry["tasks_won_against_start"] == (0 if start_is_best else tasks)
        # With repeats, also the tasks on which it falls below the start's spread (0 here: both seeds score alike).
        if rule == "guarded":
            assert list(entry["tasks_below_start_spread"]) == (["digits/linear/symmetric:0.4/20x32"] if start_is_best
                                                              else [])
        else:
            assert "tasks_below_start_spread" not in entry
    # Off (the default), the start is not re-scored.
    off = evolve.run_search(dataclasses.replace(config, output_dir=str(tmp_path / "off"), selection_include_start=False,
                                                selection_rule="fitness"), printer=lambda line: None)
    assert [entry["label"] for entry in off.record["selection"]] == ["centroid", "cand1"]


def _result(fitness, accuracies):
    return evaluation.CandidateResult(coefficients=[], fitness=fitness, status="ok", seconds=0.0,
                                      accuracies={f"t{k}": a for k, a in enumerate(accuracies)})


def test_the_majority_rule_keeps_the_start_against_a_finalist_that_wins_on_few_tasks():
    start = _result(0.30, [0.5] * 6)
    few_large = _result(0.50, [0.9, 0.9, 0.5, 0.4, 0.4, 0.4])  # highest fitness, beats the start on 2 of 6 (a tie)
    most = _result(0.40, [0.6, 0.6, 0.6, 0.6, 0.4, 0.4])  # beats it on 4 of 6
    half = _result(0.45, [0.6, 0.6, 0.6, 0.4, 0.4, 0.4])  # 3 of 6 is not more than half
    assert evolve.tasks_won(few_large.accuracies, start.accuracies) == 2
    assert evolve.select_winner([few_large, most, half, start], True, "fitness") == 0
    assert evolve.select_winner([few_large, most, half, start], True, "majority") == 1
    assert evolve.select_winner([few_large, half, start], True, "majority") == 2  # none qualifies: the start
    # Beating the start on most tasks is not enough without a higher fitness.
    worse = _result(0.20, [0.6, 0.6, 0.6, 0.6, 0.0, 0.0])
    assert evolve.select_winner([worse, start], True, "majority") == 1
    # A fitness tie keeps the start under either rule; without the start the highest fitness wins.
    tie = _result(0.30, [0.6] * 6)
    assert evolve.select_winner([tie, start], True, "fitness") == 1
    assert evolve.select_winner([tie, start], True, "majority") == 1
    assert evolve.select_winner([most, few_large], False) == 1


def _repeated(fitness, per_task):
    """A result with two instances ("TASK#1", "TASK#2") of each task: per_task maps a task to its two accuracies."""
    return evaluation.CandidateResult(
        coefficients=[], fitness=fitness, status="ok", seconds=0.0,
        accuracies={f"{task}#{seed}": a for task, pair in per_task.items() for seed, a in zip((1, 2), pair)})


def test_tasks_below_the_start_spread_match_a_hand_computation():
    start = {"a/mlp#1": 0.6, "a/mlp#2": 0.8, "b/cnn#1": 0.5, "b/cnn#2": 0.5}
    # Task a: the start's mean 0.7, spread (ddof=1) sqrt(0.02) = 0.1414. Task b: spread 0.
    within = {"a/mlp#1": 0.6, "a/mlp#2": 0.6, "b/cnn#1": 0.5, "b/cnn#2": 0.5}  # a: 0.1 short, within the spread
    assert evolve.tasks_below_spread(within, start) == {}
    outside = {"a/mlp#1": 0.5, "a/mlp#2": 0.5, "b/cnn#1": 0.5, "b/cnn#2": 0.49}  # a: 0.2 short; b: 0.005 against 0
    below = evolve.tasks_below_spread(outside, start)
    assert sorted(below) == ["a/mlp", "b/cnn"]
    assert below["a/mlp"] == pytest.approx((0.2, np.sqrt(0.02)))
    assert below["b/cnn"] == pytest.approx((0.005, 0.0))
    assert evolve.tasks_below_spread(start, start) == {}  # nothing falls short of itself
    with pytest.raises(ValueError, match="selection_repeats=2"):
        evolve.tasks_below_spread({"a/mlp#1": 0.5}, {"a/mlp#1": 0.6})


def test_the_guarded_rule_rejects_a_majority_winner_that_loses_one_task_outside_the_start_spread():
    # Four tasks, two seeds each: the start's spreads are 0.05 * sqrt(2) = 0.0707 everywhere.
    start = _repeated(0.0, {t: (0.45, 0.55) for t in "abcd"})
    # Wins 6 of 8 instances and has the highest fitness, but task d falls 0.3 short.
    one_large_loss = _repeated(0.3, {"a": (0.9, 0.9), "b": (0.9, 0.9), "c": (0.9, 0.9), "d": (0.2, 0.2)})
    # Wins 6 of 8 with a smaller fitness; task d is 0.05 short, inside the spread.
    steady = _repeated(0.1, {"a": (0.6, 0.6), "b": (0.6, 0.6), "c": (0.6, 0.6), "d": (0.45, 0.45)})
    assert evolve.tasks_won(one_large_loss.accuracies, start.accuracies) == 6
    assert evolve.tasks_won(steady.accuracies, start.accuracies) == 6
    assert evolve.select_winner([one_large_loss, steady, start], True, "majority") == 0
    assert evolve.select_winner([one_large_loss, steady, start], True, "guarded") == 1
    assert evolve.select_winner([one_large_loss, start], True, "guarded") == 1  # none qualifies: the start


def test_the_guarded_rule_needs_the_start_and_repeats():
    with pytest.raises(ValueError, match="--selection_include_start"):
        evolve.SearchConfig(selection_rule="guarded", selection_repeats=2).validate()
    with pytest.raises(ValueError, match="--selection_repeats=2"):
        evolve.SearchConfig(selection_rule="guarded", selection_include_start=True).validate()
    evolve.SearchConfig(selection_rule="guarded", selection_include_start=True, selection_repeats=2).validate()


def test_the_majority_rule_needs_the_start():
    with pytest.raises(ValueError, match="--selection_include_start"):
        evolve.SearchConfig(selection_rule="majority").validate()
    with pytest.raises(ValueError, match="fitness"):
        evolve.SearchConfig(selection_rule="vote", selection_include_start=True).validate()


def test_a_search_stratified_by_noise_scores_every_noise_setting_each_generation(tmp_path, monkeypatch):
    def run(job):  # every candidate scores 0.5 on every instance: only the drawn tasks matter here
        count = 1 if job.reference else len(job.coefficients)
        return np.full(count, 0.5), np.ones(count, bool), 1.0

    monkeypatch.setattr(evaluation, "make_executor", lambda *a, **k: evaluation.InlineExecutor(run))
    noises = ["symmetric:0.8", "symmetric:0.4", "pairflip:0.3"]
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "strata", "tasks_per_generation": 9, "tasks": [
        {"dataset": "digits", "architecture": a, "noise": n, "steps": s}
        for a in ("linear", "mlp") for n in noises for s in (5, 6)
    ]}))
    lines = []
    config = evolve.SearchConfig(output_dir=str(tmp_path / "run"), population_size=2, generations=4,
                                 task_suite=str(suite), tasks_per_generation=3, stratify_tasks_by="noise",
                                 selection_candidates=1)
    result = evolve.run_search(config, printer=lines.append)
    for generation in range(4):
        keys = next(r["accuracies"] for r in result.evaluations if r["generation"] == generation)
        assert sorted(key.split("/")[2] for key in keys) == sorted(noises), keys
    assert any("3 per generation, stratified by noise" in line for line in lines)
    assert result.record["provenance"]["budget"]["task_suite"]["stratify_by"] == "noise"
    with pytest.raises(ValueError, match="Unknown --stratify_tasks_by 'seed'"):
        dataclasses.replace(config, stratify_tasks_by="seed").validate()


# The starting loss of a start_gain fitness: scored like a candidate, its row told apart by coefficient 0 (= 9).
START = np.array([0.85, 0.45, 0.60, 0.35])


def _run_by_first_coefficient(calls, failing_start=False):
    column = {instance.key: k for k, instance in enumerate(INSTANCES)}
    rows = {0: ACCURACIES[0], 1: ACCURACIES[1], 2: ACCURACIES[2], 9: START}

    def run(job):
        calls.append(job)
        ids = [int(c) for c in np.asarray(job.coefficients)[:, 0]]
        if failing_start and 9 in ids:
            raise RuntimeError("the start broke")
        return np.array([rows[i][column[job.instance.key]] for i in ids]), np.ones(len(ids), bool), 1.0

    return run


def _candidates_and_start():
    coefficients = np.zeros((3, 8))
    coefficients[:, 0] = [0, 1, 2]
    start = np.zeros(8)
    start[0] = 9
    return coefficients, start


@pytest.mark.parametrize("evaluator", ["vectorized", "per_candidate"])
@pytest.mark.parametrize("statistic", ["quantile:0.25", "mean", "mean_minus_std:1"])
def test_start_gain_scores_each_candidate_against_the_start_trained_on_the_same_instances(evaluator, statistic):
    calls = []
    coefficients, start = _candidates_and_start()
    results, _ = evaluation.evaluate_generation(coefficients, INSTANCES, evaluation.InlineExecutor(
        _run_by_first_coefficient(calls)), evaluator=evaluator, aggregation=f"start_gain/{statistic}", start=start)
    assert [r.status for r in results] == ["ok"] * 3  # the start is not returned as a candidate
    gains = ACCURACIES - START  # worked by hand below, per candidate
    if statistic == "mean":
        expected = [sum(row) / 4 for row in gains]
    elif statistic == "quantile:0.25":
        expected = [_quantile(list(row), 0.25) for row in gains]
    else:
        expected = [np.mean(row) - np.sqrt(np.mean((row - np.mean(row)) ** 2)) for row in gains]
    np.testing.assert_allclose([r.fitness for r in results], expected, atol=1e-12)
    assert results[0].start_accuracies == {i.key: s for i, s in zip(INSTANCES, START)}
    assert results[0].reference_accuracies == {}  # no cross-entropy job is trained for start_gain
    assert not any(job.reference for job in calls)
    started = [job for job in calls if 9 in np.asarray(job.coefficients)[:, 0]]
    assert len(started) == 4 and {job.instance.key for job in started} == {i.key for i in INSTANCES}
    if evaluator == "vectorized":  # one more population member, in the same job
        assert all(job.members == (0, 1, 2, 3) for job in calls)


def test_start_gain_ranks_by_the_task_where_a_candidate_falls_furthest_behind_the_start():
    # Candidate 2 gains more over the start on average than candidate 1, and falls furthest behind it on one
    # task (0.10 against 0.35): the mean ranks it above candidate 1, a lower quantile last.
    calls = []
    coefficients, start = _candidates_and_start()
    scored = {spec: [r.fitness for r in evaluation.evaluate_generation(
        coefficients, INSTANCES, evaluation.InlineExecutor(_run_by_first_coefficient(calls)), evaluator="vectorized",
        aggregation=spec, start=start)[0]] for spec in ("start_gain/mean", "start_gain/quantile:0.25")}
    assert all(np.isfinite(v).all() for v in scored.values())
    assert np.argsort(scored["start_gain/mean"]).tolist() == np.argsort(_expected("mean")).tolist()
    mean, low = scored["start_gain/mean"], scored["start_gain/quantile:0.25"]
    assert mean[2] > mean[1] and np.argmin(low) == 2


def test_a_failed_start_fails_every_candidate_and_start_gain_needs_a_start():
    coefficients, start = _candidates_and_start()
    results, _ = evaluation.evaluate_generation(coefficients, INSTANCES, evaluation.InlineExecutor(
        _run_by_first_coefficient([], failing_start=True)), evaluator="per_candidate",
        aggregation="start_gain/quantile:0.25", start=start)
    assert [r.status for r in results] == ["failed"] * 3 and [r.fitness for r in results] == [0.0] * 3
    assert all("the starting loss" in r.error and "the start broke" in r.error for r in results)
    with pytest.raises(ValueError, match="pass its coefficients as `start`"):
        evaluation.evaluate_generation(coefficients, INSTANCES, evaluation.InlineExecutor(lambda job: None),
                                       aggregation="start_gain/mean")
    with pytest.raises(ValueError, match="The start has 4 coefficients and the candidates 8"):
        evaluation.evaluate_generation(coefficients, INSTANCES, evaluation.InlineExecutor(lambda job: None),
                                       aggregation="start_gain/mean", start=np.zeros(4))
    parsed = fitness.parse_aggregation("start_gain/quantile:0.25")
    assert parsed.needs_start and not parsed.needs_reference
    assert "starting loss" in parsed.describe()
    with pytest.raises(ValueError, match="needs the starting loss's accuracies"):
        parsed(ACCURACIES)
    with pytest.raises(ValueError, match="--init=zeros is a constant loss"):
        evolve.SearchConfig(fitness_aggregation="start_gain/mean", init="zeros").validate()


def test_run_search_under_start_gain_scores_against_the_init_loss_and_records_it(tmp_path, monkeypatch):
    start = evolve.initial_centroid("evolved_bundled", 3)
    column = {instance.task: k for k, instance in enumerate(INSTANCES)}

    def run(job):  # a loss scores the closer to the start's coefficients the better, on every task
        rows = np.asarray(job.coefficients, dtype=float)
        distance = np.linalg.norm(rows - start, axis=1)
        k = column[job.instance.task]
        return 0.9 - distance / (k + 2), np.ones(len(rows), bool), 1.0

    monkeypatch.setattr(evaluation, "make_executor", lambda *a, **k: evaluation.InlineExecutor(run))
    suite = tmp_path / "suite.json"
    suite.write_text(json.dumps({"name": "four", "tasks_per_generation": 4, "tasks": [
        {"dataset": "digits", "architecture": "linear", "noise": f"symmetric:0.{k + 2}", "steps": 5} for k in range(4)
    ]}))
    config = evolve.SearchConfig(output_dir=str(tmp_path / "run"), population_size=3, generations=1,
                                 task_suite=str(suite), init="evolved_bundled", sigma=0.3,
                                 fitness_aggregation="start_gain/quantile:0.25", selection_candidates=2,
                                 selection_include_start=True)
    result = evolve.run_search(config, printer=lambda line: None)
    evaluations = result.evaluations
    assert len(evaluations) == 3 and all(e["status"] == "ok" for e in evaluations)
    for entry in evaluations:  # each candidate's worst task against the start (0.9 exactly) decides
        distance = np.linalg.norm(np.asarray(entry["coefficients"]) - start)
        assert distance > 0 and entry["fitness"] == pytest.approx(_quantile([-distance / (k + 2) for k in range(4)],
                                                                            0.25))
    history = evolve.checkpoint.load_checkpoint(config.output_dir)["history"]
    assert list(history[0]["start_accuracies"].values()) == pytest.approx([0.9] * 4)
    # In the final selection, the start re-scored against itself gains nothing, and beats every finalist.
    selection = {entry["label"]: entry for entry in result.record["selection"]}
    assert selection["start"]["fitness"] == pytest.approx(0.0)
    assert all(entry["fitness"] < 0 for label, entry in selection.items() if label != "start")
    assert "starting loss" in result.record["provenance"]["fitness_definition"]
