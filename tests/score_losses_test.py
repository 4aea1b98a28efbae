"""search.score_losses: TaylorLosses scored on a suite's final-selection instances with a search's fitness."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust.losses import TaylorLoss, taylor
from tfrobust.search import evaluation, evolve
from tfrobust.search import tasks as tasks_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_lower_order_losses_are_padded_without_changing_them(tmp_path):
    path = tmp_path / "order4.json"
    order4 = np.linspace(-0.5, 0.5, 12)
    taylor.write_json_atomic(str(path), taylor.preset_record("o4", "an order-4 loss", order4.tolist(), 4, {}))
    vectors = evolve.loss_coefficients(["taylor:evolved_bundled", f"taylor_file:{path}"])
    assert vectors.shape == (2, 12)
    np.testing.assert_array_equal(vectors[1], order4)
    bundled = TaylorLoss.pretrained("evolved_bundled")
    np.testing.assert_array_equal(vectors[0, 8:], 0.0)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(16, 10)).astype("float32")
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = np.eye(10, dtype="float32")[rng.integers(0, 10, 16)]
    padded = TaylorLoss(vectors[0].tolist(), order=4)
    np.testing.assert_allclose(np.asarray(padded(labels, probs)), np.asarray(bundled(labels, probs)), rtol=1e-5)


def test_scores_are_accuracy_gains_over_cross_entropy_and_repeatable():
    lines = []
    instances, results = evolve.score_losses(["evolved_bundled", "taylor:evolved_bundled", "mae"], "tiny",
                                             printer=lines.append)
    assert [r.status for r in results] == ["ok"] * 3 and len(instances) == 1
    key = instances[0].key
    reference = results[0].reference_accuracies[key]
    assert 0.1 < reference <= 1.0 and all(0.1 < r.accuracies[key] <= 1.0 for r in results)  # trained, above chance
    for result in results:
        assert result.fitness == np.float64(result.accuracies[key] - reference)
    assert results[0].accuracies == results[1].accuracies  # one loss, named two ways: the same seeded run
    assert len(lines) == 2 and lines[-1].startswith("[2/2] cross-entropy on ")


def test_script_prints_the_table_and_names_bad_input(tmp_path):
    out = tmp_path / "scores.md"
    command = [sys.executable, "-m", "search.score_losses", "--suite=tiny", "--losses=evolved_bundled,mae",
               f"--output={out}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| task | cross-entropy | evolved_bundled | mae |" in result.stdout
    assert "| status | | ok | ok |" in result.stdout
    assert out.read_text().strip() == result.stdout[result.stdout.index("Suite 'tiny'"):].strip()
    raw = json.loads((tmp_path / "scores.json").read_text())
    [(key, first)] = raw["losses"]["evolved_bundled"]["accuracies"].items()
    second = raw["losses"]["mae"]["accuracies"][key]
    assert 0.1 < first <= 1.0 and 0.1 < second <= 1.0  # both trained above chance (ten classes)
    assert f"| tasks where it beats the first loss | | (first) | {int(second > first)}/1 |" in result.stdout
    assert raw["population_pooling"] == "fused"
    assert "would keep: fitness: " in result.stdout and "guarded" not in result.stdout.split("would keep:")[1]
    assert "Seed noise" not in result.stdout  # one instance per task: no spread to report
    repeated = subprocess.run(command[:5] + ["--repeats=2", f"--output={tmp_path / 'repeated.md'}"], cwd=REPO,
                              capture_output=True, text=True, timeout=300)
    assert repeated.returncode == 0, repeated.stderr
    raw = json.loads((tmp_path / "repeated.json").read_text())["losses"]
    assert [raw[name]["status"] for name in ("evolved_bundled", "mae")] == ["ok", "ok"]
    gains = [raw["mae"]["accuracies"][key] - raw["evolved_bundled"]["accuracies"][key]
             for key in raw["mae"]["accuracies"]]
    assert len(gains) == 2  # the tiny suite's one task, twice: the sd of two gains is their gap over sqrt(2)
    assert (f"Seed noise of one instance's gain over the start: {100 * abs(gains[0] - gains[1]) / np.sqrt(2):.1f} "
            "points (standard deviation pooled over the other losses and repeated tasks, 1 degree of freedom"
            in repeated.stdout)
    bad = subprocess.run(command[:3] + ["--losses=taylor:nonexistent"], cwd=REPO, capture_output=True, text=True,
                         timeout=300)
    assert bad.returncode == 1 and "nonexistent" in bad.stderr
    # The raw results go beside --output as .json: never over the suite file they were scored on.
    suite = tmp_path / "probe.json"
    suite.write_text(json.dumps(tasks_lib.SUITES["tiny"].to_dict()))
    clash = subprocess.run(command[:3] + [command[4], f"--suite={suite}", f"--output={tmp_path / 'probe.md'}"], cwd=REPO,
                           capture_output=True, text=True, timeout=300)
    assert clash.returncode == 1 and "the --suite file itself: give --output another name" in clash.stderr
    assert json.loads(suite.read_text()) == tasks_lib.SUITES["tiny"].to_dict()


def test_the_table_counts_tasks_below_the_first_loss_spread_when_tasks_repeat():
    task_a, task_b = (tasks_lib.Task("digits", arch, "symmetric:0.4", steps=20, batch_size=32) for arch in ("mlp", "cnn"))
    instances = [tasks_lib.TaskInstance(task, seed) for seed in (1, 2) for task in (task_a, task_b)]

    def result(values):
        return evaluation.CandidateResult(coefficients=[], fitness=0.0, status="ok", seconds=0.0,
                                          accuracies={i.key: v for i, v in zip(instances, values)})

    # First loss: task a at 0.6 and 0.8 (spread 0.141), task b at 0.5 twice (spread 0). The second falls
    # 0.2 short on a and 0.01 on b: below both; the third 0.1 short on a only: within its spread.
    first, second, third = result([0.6, 0.5, 0.8, 0.5]), result([0.5, 0.49, 0.5, 0.49]), result([0.6, 0.5, 0.6, 0.5])
    table = evolve.format_scores(["first", "second", "third"], instances, [first, second, third])
    assert ("| tasks where it falls below the first loss by more than that loss's seed spread | (first) | 2/2 | 0/2 |"
            in table)
    assert "| tasks where it beats the first loss | (first) | 0/4 | 0/4 |" in table
    # As a start with two finalists: neither wins a majority, so every rule that compares keeps the start; the
    # fitness rule with all fitnesses tied keeps it too.
    assert evolve.rule_picks(["first", "second", "third"], instances, [first, second, third]) == {
        "fitness": "first", "majority": "first", "guarded": "first"}
    better = result([0.9, 0.9, 0.9, 0.9])
    better.fitness = 0.1
    assert evolve.rule_picks(["first", "better"], instances, [first, better]) == {
        "fitness": "better", "majority": "better", "guarded": "better"}
    assert "guarded" not in evolve.rule_picks(["first", "better"], instances[:2], [first, better])
    single = evolve.format_scores(["first", "third"], instances[:2], [result([0.6, 0.5]), result([0.5, 0.5])])
    assert "seed spread" not in single  # one instance per task: no spread, no row


def _selection_record():
    heavy = "procedural:templates:classes=10,difficulty=0.2,seed=8/mlp/symmetric:0.8/800x64/momentum@0.1"
    pair = "digits/cnn_bn/pairflip:0.3/800x64"
    start = {f"{heavy}#1": 0.40, f"{heavy}#2": 0.50, f"{pair}#3": 0.80, f"{pair}#4": 0.80}
    finalist = {f"{heavy}#1": 0.20, f"{heavy}#2": 0.30, f"{pair}#3": 0.90, f"{pair}#4": 0.95}
    return {"selection": [{"label": "cand1", "fitness": 0.031, "accuracies": finalist, "status": "ok"},
                          {"label": "start", "fitness": 0.012, "accuracies": start, "status": "ok"}],
            "provenance": {"selected": "the starting point (--init=evolved_bundled)"}}


def test_the_selection_report_gives_each_finalist_its_gain_over_the_start_per_noise_setting():
    lines = evolve.selection_report(_selection_record()).splitlines()
    assert lines[0] == ("| loss | fitness (x100) | instances won | tasks below spread | gain at symmetric:0.8 | "
                        "gain at pairflip:0.3 |")
    # By hand: wins on the two pair-flip instances; at 80% the start's mean is 45.0 with spread 7.07 and the
    # finalist's 25.0, so 20 points below (more than the spread); pair-flip gains 10 and 15 points.
    assert lines[2] == "| cand1 | +3.10 | 2/4 | 1/2 | -20.0 | +12.5 |"
    assert lines[3] == "| start | +1.20 | (start) | (start) | 0.0 | 0.0 |"
    assert lines[-1] == "Selected: the starting point (--init=evolved_bundled)."
    without_start = {**_selection_record(), "selection": _selection_record()["selection"][:1]}
    with pytest.raises(ValueError, match="--selection_include_start"):
        evolve.selection_report(without_start)


def test_the_gain_noise_is_the_pooled_seed_spread_of_the_gains_over_the_start():
    record = _selection_record()
    finalist, start = (entry["accuracies"] for entry in record["selection"])
    # By hand: at 80% the gains are -0.20 and -0.20 (no spread); at pair-flip 0.10 and 0.15, a sum of squares
    # about their mean of 2 x 0.025^2 = 0.00125 on 1 degree of freedom. Pooled: 0.00125 / 2 = 0.000625, sd 0.025.
    noise = evolve.gain_noise(start, [finalist])
    assert noise["all"][1] == 2 and noise["all"][0] == pytest.approx(0.025)
    assert noise["symmetric:0.8"] == (pytest.approx(0.0), 1)
    assert noise["pairflip:0.3"] == (pytest.approx(np.sqrt(0.00125)), 1)
    # Two losses pool their squares and degrees of freedom: the same finalist twice gives the same sd on 4.
    twice = evolve.gain_noise(start, [finalist, finalist])["all"]
    assert twice[1] == 4 and twice[0] == pytest.approx(0.025)
    # One instance per task: nothing to pool.
    with pytest.raises(ValueError, match="--selection_repeats=2"):
        evolve.gain_noise({key: start[key] for key in list(start)[::2]}, [finalist])
    # (2 x 2.5 / 1)^2 = 25 instances for 1 point; (2 x 13.8)^2 = 761.76, rounded up; never fewer than 1.
    assert evolve.instances_to_resolve(2.5, 1.0) == 25
    assert evolve.instances_to_resolve(13.8, 1.0) == 762
    assert evolve.instances_to_resolve(2.5, 5.0) == 1 and evolve.instances_to_resolve(0.0, 1.0) == 1
    assert evolve.instances_to_resolve(2.5, 1.0, z=1.0) == 7  # 6.25 rounded up
    with pytest.raises(ValueError, match="positive gain"):
        evolve.instances_to_resolve(2.5, 0.0)
    lines = evolve.selection_report(record).splitlines()
    assert ("Seed noise of one instance's gain over the start: 2.5 points (standard deviation pooled over the other "
            "losses and repeated tasks, 2 degrees of freedom; by noise setting: symmetric:0.8 0.0, pairflip:0.3 "
            "3.5). A mean gain of 1 point stands 2 standard errors from none with 25 instances per loss; here each "
            "loss has 4.") in lines
    assert "with 1 instance per loss" in evolve.selection_report(record, resolution=5.0)
    # Left out, the 80% instances take their zero spread with them: only pair-flip's 3.5 on 1 degree remains.
    dropped = evolve.selection_report(record, drop="symmetric")
    assert "3.5 points (standard deviation pooled over the other losses and repeated tasks, 1 degree of" in dropped


def test_the_selection_report_can_leave_out_tasks_and_recount_the_rest():
    # Without the 80% SGD instances, only the pair-flip ones remain: the finalist wins both (2/2), falls below the
    # start's spread on none (0/1), and the 80% column is gone; the fitness stays the recorded one.
    lines = evolve.selection_report(_selection_record(), drop=r"symmetric:0\.8/.*momentum").splitlines()
    assert lines[0] == ("| loss | fitness (x100), all instances | instances won | tasks below spread | "
                        "gain at pairflip:0.3 |")
    assert lines[2] == "| cand1 | +3.10 | 2/2 | 0/1 | +12.5 |"
    assert lines[-1] == ("Left out: the 2 instances matching `symmetric:0\\.8/.*momentum` (wins, tasks below "
                         "spread and gains are over the other 2).")
    for pattern in ("nothing matches this", "/"):  # no instance, or every instance: nothing to compare
        with pytest.raises(ValueError, match="must leave out some and keep some"):
            evolve.selection_report(_selection_record(), drop=pattern)


def test_the_selection_report_script_reads_a_run_folder_and_names_a_missing_one(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "best_coefficients.json").write_text(json.dumps(_selection_record()))
    command = [sys.executable, "-m", "search.selection_report", f"--runs={tmp_path / 'run'}",
               f"--output={tmp_path / 'report.md'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "| cand1 | +3.10 | 2/4 | 1/2 | -20.0 | +12.5 |" in result.stdout
    assert "| cand1 | +3.10 |" in (tmp_path / "report.md").read_text()
    missing = subprocess.run(command[:3] + [f"--runs={tmp_path / 'nothing'}"], cwd=REPO, capture_output=True,
                             text=True, timeout=300)
    assert missing.returncode != 0
    assert f"{tmp_path / 'nothing'} does not exist" in missing.stderr and "a finished search.evolve run" in missing.stderr
    dropped = subprocess.run(command[:4] + ["--drop_tasks=momentum"], cwd=REPO, capture_output=True, text=True,
                             timeout=300)
    assert dropped.returncode == 0, dropped.stderr
    assert "| cand1 | +3.10 | 2/2 | 0/1 | +12.5 |" in dropped.stdout and "Left out: the 2 instances" in dropped.stdout
    resolved = subprocess.run(command[:4] + ["--gain_resolution=5"], cwd=REPO, capture_output=True, text=True,
                              timeout=300)
    assert resolved.returncode == 0, resolved.stderr
    assert "A mean gain of 5 points stands 2 standard errors from none with 1 instance per loss" in resolved.stdout
    bad = subprocess.run(command[:4] + ["--drop_tasks=("], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode != 0 and "unterminated subpattern" in bad.stderr
