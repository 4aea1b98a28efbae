"""search.evolve end to end: outputs, statuses, kill-and-resume, failures that stop the run, bad flags."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tfrobust.losses import TaylorLoss
from tfrobust.search import evolve

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUTPUTS = ("best_coefficients.json", "evaluations.jsonl", "run.json", "checkpoint.pkl", "fitness.png",
           "loss_curve.png")
CHANCE = 0.1  # ten digit classes
ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")

# Runs a search whose printer SIGKILLs the process at the first line starting with argv[2]: a real
# kill at a known point (right after a checkpoint), with no clock involved.
KILLING_SEARCH = """
import json, os, signal, sys
from tfrobust.search import evolve
def printer(line):
    print(line, flush=True)
    if sys.argv[2] and line.startswith(sys.argv[2]):
        os.kill(os.getpid(), signal.SIGKILL)
evolve.run_search(evolve.SearchConfig(**json.loads(sys.argv[1])), printer=printer)
"""


def run_evolve(*flags, timeout=300):
    return subprocess.run([sys.executable, "-m", "search.evolve", *flags], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def run_killing_search(config, kill_at="", timeout=300):
    return subprocess.run([sys.executable, "-c", KILLING_SEARCH, json.dumps(config), kill_at], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def _evaluations(folder):
    return [json.loads(line) for line in (folder / "evaluations.jsonl").read_text().splitlines()]


def test_issue_command_writes_every_output(tmp_path):
    out = tmp_path / "run"
    result = run_evolve("--population_size=4", "--generations=2", f"--output_dir={out}")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in OUTPUTS:
        assert (out / name).exists(), name
    assert list(out.glob("events.out.tfevents.*")), "no TensorBoard scalars"
    log = result.stdout + result.stderr
    assert "gen 2/2" in log and "failed 0  nonfinite" in log and "ETA" in log and "vectorized" in log
    records = _evaluations(out)
    assert len(records) == 8 and {r["generation"] for r in records} == {0, 1}
    assert [r["status"] for r in records] == ["ok"] * 8
    for record in records:
        assert set(record) >= {"generation", "coefficients", "accuracies", "fitness", "seconds", "status"}
        assert record["fitness"] == pytest.approx(np.mean(list(record["accuracies"].values())))
    assert np.mean([r["fitness"] for r in records]) > 3 * CHANCE
    best = json.loads((out / "best_coefficients.json").read_text())
    for key in ("command", "seed", "budget", "fitness", "wall_time_s", "machine", "created", "revision", "dirty"):
        assert key in best["provenance"]
    assert best["provenance"]["failed_evaluations"] == 0
    assert [s["status"] for s in best["selection"]] == ["ok"] * len(best["selection"])
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


def _suite_file(tmp_path, noise="pairflip:0.3"):
    path = tmp_path / "suite.json"
    path.write_text(json.dumps({
        "name": "resume-test",
        "tasks_per_generation": 1,
        "tasks": [
            {"dataset": "digits", "architecture": "mlp", "noise": "symmetric:0.4", "steps": 150},
            {"dataset": "digits", "architecture": "linear", "noise": noise, "steps": 150},
        ],
    }))
    return str(path)


def test_killed_run_resumes_to_the_same_result(tmp_path):
    suite = _suite_file(tmp_path)
    config = {"population_size": 4, "generations": 6, "task_suite": suite, "seed": 3}
    reference = run_killing_search({**config, "output_dir": str(tmp_path / "reference")})
    assert reference.returncode == 0, reference.stdout + reference.stderr

    interrupted = tmp_path / "interrupted"
    killed = run_killing_search({**config, "output_dir": str(interrupted)}, kill_at="gen 2/6")
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not (interrupted / "best_coefficients.json").exists()
    # What a kill inside generation 3 leaves: some of its records and a torn line.
    with open(interrupted / "evaluations.jsonl", "a") as handle:
        handle.write(json.dumps({"generation": 2, "member": 0, "status": "ok", "fitness": 0.5}) + "\n{\"gener")

    resumed = run_evolve("--population_size=4", "--generations=6", f"--task_suite={suite}", "--seed=3",
                         f"--output_dir={interrupted}", "--resume")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log
    assert "Resuming" in log and "gen 3/6" in log and "gen 6/6" in log and "/2 " not in log
    want = json.loads((tmp_path / "reference" / "best_coefficients.json").read_text())
    got = json.loads((interrupted / "best_coefficients.json").read_text())
    assert [s["status"] for s in want["selection"]] == ["ok"] * len(want["selection"])
    assert want["provenance"]["fitness"] > 3 * CHANCE
    # Same seeds, same task draws, same arithmetic: the resumed run is the uninterrupted one, exactly.
    assert got["coefficients"] == want["coefficients"]
    assert got["provenance"]["fitness"] == want["provenance"]["fitness"]
    records = _evaluations(interrupted)
    assert len(records) == 6 * 4  # the interrupted generation's partial records were dropped
    assert [r["status"] for r in records] == ["ok"] * 24


class _Stop(Exception):
    pass


def _stop_at(prefix):
    def printer(line):
        if line.startswith(prefix):
            raise _Stop(line)

    return printer


def test_resume_after_a_stop_in_generation_zero_starts_over(tmp_path):
    config = evolve.SearchConfig(output_dir=str(tmp_path), population_size=2, generations=1, task_suite="tiny",
                                 selection_candidates=1)
    with pytest.raises(_Stop):  # stopped before the first checkpoint: only run.json is there
        evolve.run_search(config, printer=_stop_at("Search:"))
    assert evolve.has_run(str(tmp_path)) and not (tmp_path / "checkpoint.pkl").exists()
    lines = []
    result = evolve.run_search(evolve.SearchConfig(**{**vars(config), "resume": True}), printer=lines.append)
    assert any("starting it over" in line for line in lines)
    assert [(e["generation"], e["status"]) for e in result.evaluations] == [(0, "ok"), (0, "ok")]
    assert result.status_counts() == {"ok": 2}


def test_resume_with_other_settings_is_refused(tmp_path):
    config = evolve.SearchConfig(output_dir=str(tmp_path), population_size=2, generations=1, task_suite="tiny",
                                 selection_candidates=1)
    evolve.run_search(config, printer=lambda *_: None)
    changed = evolve.SearchConfig(output_dir=str(tmp_path), population_size=3, generations=2, task_suite="tiny",
                                  resume=True)
    with pytest.raises(ValueError, match="differs from this run"):
        evolve.run_search(changed, printer=lambda *_: None)


def test_a_search_whose_every_evaluation_fails_exits_non_zero_and_resumes_after_the_fix(tmp_path):
    matrix = tmp_path / "T.npy"  # missing: every evaluation of the second task raises FileNotFoundError
    suite = _suite_file(tmp_path, noise=f"matrix:{matrix}")
    flags = ["--population_size=2", "--generations=1", f"--task_suite={suite}", "--tasks_per_generation=2",
             "--selection_candidates=1", f"--output_dir={tmp_path / 'run'}"]
    failed = run_evolve(*flags)
    assert failed.returncode != 0
    assert "Every evaluation of generation 1 failed" in failed.stderr and str(matrix) in failed.stderr
    assert "Traceback (most recent call last)" in failed.stdout  # the first failure's traceback, once
    assert failed.stdout.count("Traceback (most recent call last)") == 1
    assert not (tmp_path / "run" / "best_coefficients.json").exists()
    statuses = [r["status"] for r in _evaluations(tmp_path / "run")]
    assert statuses == ["failed", "failed"]

    np.save(matrix, np.full((10, 10), 0.02) + 0.8 * np.eye(10))  # the fix: a valid transition matrix
    resumed = run_evolve(*flags, "--resume")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert [r["status"] for r in _evaluations(tmp_path / "run")] == ["ok", "ok"]


def test_failure_watch_stops_on_the_run_share_of_failures():
    def result(status):
        return evolve.evaluation.CandidateResult([], {}, 0.0, status, 0.0, "E: boom" if status == "failed" else "",
                                                 "Traceback ...")

    lines = []
    watch = evolve._FailureWatch(0.4, lines.append)
    history = [{"evaluations": 4, "failed": 2}]  # with this generation 3 of 8 failed: not more than 0.4
    watch.check([result("ok"), result("failed"), result("nonfinite"), result("ok")], history, "generation 2")
    assert len(lines) == 1 and "E: boom" in lines[0]  # the first traceback, printed once
    history.append({"evaluations": 4, "failed": 1})
    with pytest.raises(evolve.SearchFailedError, match="6 of the run's 12 evaluations failed"):
        watch.check([result("failed")] * 3 + [result("ok")], history, "generation 3")
    assert len(lines) == 1


def test_bad_flags_stop_at_once_and_overwrite_nothing(tmp_path):
    result = run_evolve("--population_size=1", "--tasks_per_generation=-1", f"--output_dir={tmp_path / 'a'}")
    assert result.returncode != 0 and "--population_size must be an integer of at least 2" in result.stderr
    for flag in ("--tasks_per_generation=-1", "--num_workers=0", "--max_failure_fraction=2"):
        config = evolve.SearchConfig(output_dir=str(tmp_path / "b"))
        name, value = flag[2:].split("=")
        setattr(config, name, type(getattr(config, name))(value))
        with pytest.raises(ValueError, match=f"--{name} must be"):
            config.validate()
    with pytest.raises(ValueError, match="Unknown --executor 'dask'"):
        evolve.SearchConfig(executor="dask").validate()
    result = run_evolve("--task_suite=nope", "--resume", f"--output_dir={tmp_path / 'b'}")
    assert result.returncode != 0 and "Unknown task suite 'nope'" in result.stderr
    result = run_evolve("--resume", f"--output_dir={tmp_path / 'typo'}")
    assert result.returncode != 0 and "holds no search run: expected run.json" in result.stderr
    existing = tmp_path / "existing"
    existing.mkdir()
    (existing / "checkpoint.pkl").write_bytes(b"another run")
    result = run_evolve(f"--output_dir={existing}")
    assert result.returncode != 0 and "Pass --resume" in result.stderr
    result = run_evolve(f"--output_dir={existing}", "--resume")
    assert result.returncode != 0 and f"{existing / 'checkpoint.pkl'}" in result.stderr
    assert (existing / "checkpoint.pkl").read_bytes() == b"another run"
    assert sorted(os.listdir(existing)) == ["checkpoint.pkl"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists() and not (tmp_path / "typo").exists()


def test_script_flags_come_from_the_library():
    from absl import flags

    import search.evolve as script

    for field in evolve.dataclasses.fields(evolve.SearchConfig):
        if field.name != "command":
            assert flags.FLAGS[field.name].default == field.default
            assert flags.FLAGS[field.name].help.endswith(field.metadata["help"])  # enums prefix their choices
    assert list(flags.FLAGS["executor"].parser.enum_values) == list(evolve.evaluation.EXECUTORS)
    assert "selection_candidates" in {f.name for f in script._FIELDS}


def test_final_selection_on_a_disjoint_suite_scores_only_its_tasks(tmp_path):
    search_suite = _suite_file(tmp_path)
    selection_path = tmp_path / "selection.json"
    selection_path.write_text(json.dumps({
        "name": "selection-test",
        "tasks_per_generation": 1,
        "tasks": [{"dataset": "digits", "architecture": "linear", "noise": "symmetric:0.5", "steps": 120}],
    }))
    out = tmp_path / "run"
    config = {"population_size": 4, "generations": 2, "task_suite": search_suite, "seed": 1,
              "selection_suite": str(selection_path), "selection_candidates": 2, "output_dir": str(out)}
    result = run_killing_search(config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Final selection on all 1 tasks of suite 'selection-test'" in result.stdout
    best = json.loads((out / "best_coefficients.json").read_text())
    searched = {key.split("#")[0] for record in _evaluations(out) for key in record["accuracies"]}
    assert searched and "digits/linear/symmetric:0.5/120x64" not in searched
    for entry in best["selection"]:
        assert entry["status"] == "ok"
        assert [key.split("#")[0] for key in entry["accuracies"]] == ["digits/linear/symmetric:0.5/120x64"]
        assert list(entry["accuracies"].values())[0] > 2 * CHANCE
    assert best["provenance"]["budget"]["selection_suite"]["name"] == "selection-test"
    assert best["provenance"]["budget"]["task_suite"]["name"] == "resume-test"
    assert "suite 'selection-test'" in best["provenance"]["fitness_definition"]
    # Every finalist is a coefficient file of its own: the selection's coefficients and fitness, the search's
    # provenance, and the same loss when loaded.
    labels = [entry["label"] for entry in best["selection"]]
    assert labels == ["centroid", "cand1"]
    assert sorted(os.listdir(out / evolve.FINALISTS)) == sorted(f"{label}.json" for label in labels)
    probabilities = np.random.default_rng(0).dirichlet(np.ones(10), size=16).astype("float32")
    targets = np.arange(16) % 10
    for entry in best["selection"]:
        path = out / evolve.FINALISTS / f"{entry['label']}.json"
        finalist = json.loads(path.read_text())
        assert finalist["coefficients"] == entry["coefficients"] and finalist["order"] == best["order"]
        assert finalist["provenance"]["fitness"] == entry["fitness"]
        assert finalist["provenance"]["seed"] == 1 and finalist["provenance"]["selected"] == f"finalist {entry['label']!r}"
        values = [np.asarray(TaylorLoss(entry["coefficients"], order=best["order"], reduction=None)(targets, probabilities)),
                  np.asarray(TaylorLoss.from_file(str(path), reduction=None)(targets, probabilities))]
        assert np.isfinite(values[0]).all() and values[0].std() > 1e-4
        np.testing.assert_array_equal(values[1], values[0])
    # The same files from the record alone (a search run before finalists were written).
    (tmp_path / "copy").mkdir()
    # Files written before finalists had labels list them in the same order.
    unlabelled = {**best, "selection": [{k: v for k, v in e.items() if k != "label"} for e in best["selection"]]}
    (tmp_path / "copy" / "best_coefficients.json").write_text(json.dumps(unlabelled))
    again = evolve.export_finalists(str(tmp_path / "copy" / "best_coefficients.json"))
    assert [open(p).read() for p in again] == [(out / evolve.FINALISTS / f"{label}.json").read_text() for label in labels]
    with pytest.raises(ValueError, match="has no 'selection'"):
        evolve.write_finalists({k: v for k, v in best.items() if k != "selection"}, str(tmp_path / "none"))
    with pytest.raises(ValueError, match="Unknown task suite 'nope'"):
        evolve.SearchConfig(selection_suite="nope").validate()


def test_a_lower_order_preset_starts_a_higher_order_search_from_the_same_loss():
    order3 = np.array(TaylorLoss.preset_info("evolved_bundled")["coefficients"])
    order4 = evolve.initial_centroid("evolved_bundled", 4)
    assert order4.shape == (12,)  # 2 centres + 10 terms; the order-3 vector is its first 8
    np.testing.assert_array_equal(order4[:8], order3)
    np.testing.assert_array_equal(order4[8:], 0.0)
    # The same loss: the order-4 layout extends the order-3 one with the degree-4 terms.
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(10), size=32).astype("float32")
    labels = rng.integers(0, 10, size=32)
    values = [np.asarray(TaylorLoss(list(c), order=o, reduction=None)(labels, probabilities))
              for c, o in ((order3, 3), (order4, 4))]
    assert np.isfinite(values[0]).all() and values[0].std() > 1e-3
    np.testing.assert_allclose(values[1], values[0], rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="above --order=2"):
        evolve.initial_centroid("evolved_bundled", 2)
