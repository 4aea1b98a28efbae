"""Issue 10's shipping rule, checked on hand-made results whose outcome is worked out by hand."""

import json
import os
import subprocess
import sys

import pytest

from tfrobust import benchmark

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rows(accuracies):
    """results.csv rows: {method: {(dataset, noise): [accuracy per seed]}}, whole (valid run ids)."""
    rows = []
    for method, columns in accuracies.items():
        for (dataset, noise), values in columns.items():
            for seed, value in enumerate(values):
                spec = benchmark.RunSpec(dataset, "mlp2", noise, method, seed, 40, 64, "adam", 1e-3, None)
                row = {field: "0" for field in benchmark.CSV_FIELDS}
                row.update(spec.fields(), noise_kind=noise.split(":")[0], noise_rate=noise.split(":")[1],
                           transition_matrix="", max_examples="", finite="True", final_test_accuracy=repr(value),
                           revision="unknown", dirty="False")
                rows.append(row)
    return rows


A = ("mnist5k", "symmetric:0.8")
B = ("procedural:strokes", "swap:0.3")
PEERS = {
    # Column A: ce mean 0.50 (std 0.1), gce 0.60 (std 0.05). Column B: ce 0.80 (std 0.02), gce 0.70 (std 0.1).
    "ce": {A: [0.4, 0.5, 0.6], B: [0.78, 0.80, 0.82]},
    "gce": {A: [0.55, 0.60, 0.65], B: [0.6, 0.7, 0.8]},
}


def test_a_candidate_above_every_peer_and_within_each_columns_spread_passes():
    # Mean (0.62 + 0.79) / 2 = 0.705 > ce 0.65, gce 0.65; column B: 0.80 - 0.79 = 0.01 <= ce's spread 0.02.
    rows = _rows({"cand": {A: [0.61, 0.62, 0.63], B: [0.78, 0.79, 0.80]}, **PEERS})
    verdict = benchmark.shipping_verdict(rows, "cand", ["ce", "gce"])
    assert verdict.passed and not verdict.reasons
    assert verdict.means["cand"] == pytest.approx(0.705) and verdict.means["ce"] == pytest.approx(0.65)
    assert verdict.columns == ("mnist5k/mlp2 symmetric:0.8", "procedural:strokes/mlp2 swap:0.3")
    assert verdict.cells[("gce", verdict.columns[0])].std == pytest.approx(0.05)
    text = verdict.markdown()
    assert "| cand (candidate) | 62.0 ± 1.0 | 79.0 ± 1.0 | 70.5 |" in text
    assert "**80.0 ± 2.0**" in text and "**Passes**" in text


def test_a_higher_mean_does_not_excuse_a_column_below_the_best_peers_spread():
    # Mean (0.90 + 0.75) / 2 = 0.825 is highest, but column B is 0.05 below ce, whose spread is 0.02.
    rows = _rows({"cand": {A: [0.89, 0.90, 0.91], B: [0.74, 0.75, 0.76]}, **PEERS})
    verdict = benchmark.shipping_verdict(rows, "cand", ["ce", "gce"])
    assert not verdict.passed
    assert verdict.reasons == ("procedural:strokes/mlp2 swap:0.3: 5.0 points below ce (its spread 2.0)",)
    assert "**Fails**" in verdict.markdown()


def test_a_mean_not_above_a_peer_fails_even_within_every_spread():
    # sce is never a column's best (A 0.59 < gce 0.60, B 0.79 < ce 0.80) but has the best mean, 0.69. The
    # candidate is within every spread (A: 0.60 - 0.58 <= 0.05; B: 0.80 - 0.79 <= 0.02), its mean 0.685 below sce's.
    sce = {A: [0.58, 0.59, 0.60], B: [0.78, 0.79, 0.80]}
    rows = _rows({"cand": {A: [0.57, 0.58, 0.59], B: [0.78, 0.79, 0.80]}, **PEERS, "sce": sce})
    verdict = benchmark.shipping_verdict(rows, "cand", ["ce", "gce", "sce"])
    assert not verdict.passed
    assert verdict.reasons == ("mean 68.5 is not above sce's 69.0",)


def test_bad_inputs_are_named():
    rows = _rows({"cand": {A: [0.6, 0.6, 0.6]}, **PEERS})
    with pytest.raises(ValueError, match=r"cand has no runs in column\(s\) \['procedural:strokes/mlp2 swap:0.3'\]"):
        benchmark.shipping_verdict(rows, "cand", ["ce", "gce"])
    with pytest.raises(ValueError, match=r"No runs of \['mae'\]"):
        benchmark.shipping_verdict(rows, "cand", ["ce", "mae"])
    with pytest.raises(ValueError, match="also listed as a peer"):
        benchmark.shipping_verdict(rows, "ce", ["ce", "gce"])
    single = _rows({"cand": {A: [0.6]}, "ce": {A: [0.5]}})
    with pytest.raises(ValueError, match="single seed"):
        benchmark.shipping_verdict(single, "cand", ["ce"])
    with pytest.raises(ValueError, match="no column 'nope'"):
        benchmark.shipping_verdict(rows, "cand", ["ce"], metric="nope")


def test_script_reads_a_results_file_and_writes_the_verdict(tmp_path):
    csv_path = tmp_path / "results.csv"
    benchmark.write_results(str(csv_path), _rows({"cand": {A: [0.61, 0.62, 0.63], B: [0.78, 0.79, 0.80]}, **PEERS}))
    assert len(benchmark.read_results(str(csv_path))) == 18  # whole rows, so the rule sees every run
    out = tmp_path / "verdict.md"
    command = [sys.executable, "-m", "search.heldout_verdict", f"--results={csv_path}", "--candidate=cand",
               "--peers=ce,gce,cand", f"--output={out}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "**Passes**" in result.stdout and out.read_text().strip() == result.stdout.strip()
    # The candidate's runs in a second file, read with the peers' as one grid.
    all_rows = benchmark.read_results(str(csv_path))
    benchmark.write_results(str(csv_path), [r for r in all_rows if r["method"] != "cand"])
    benchmark.write_results(str(tmp_path / "cand.csv"), [r for r in all_rows if r["method"] == "cand"])
    split = subprocess.run(command[:3] + [f"--results={csv_path},{tmp_path / 'cand.csv'}"] + command[4:-1],
                           cwd=REPO, capture_output=True, text=True, timeout=120)
    assert split.returncode == 0 and split.stdout.strip() == result.stdout.strip(), split.stderr
    result = subprocess.run(command[:4] + ["--candidate=nobody", "--peers=ce,gce"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "No runs of ['nobody']" in result.stderr


def test_plot_draws_the_columns_and_the_shapes_of_the_losses(tmp_path):
    from matplotlib import image

    rows = _rows({"taylor:evolved_bundled_long": {A: [0.61, 0.62, 0.63], B: [0.78, 0.79, 0.80]}, **PEERS})
    verdict = benchmark.shipping_verdict(rows, "taylor:evolved_bundled_long", ["ce", "gce"])
    pixels = image.imread(benchmark.plot_verdict(verdict, str(tmp_path / "verdict.png")))
    assert pixels.shape[1] == 12 * 110 and pixels.std() > 0.05  # two panels, not blank
    only_columns = benchmark.shipping_verdict(_rows({"cand": PEERS["gce"], "ce": PEERS["ce"]}), "cand", ["ce"])
    assert image.imread(benchmark.plot_verdict(only_columns, str(tmp_path / "one.png"))).shape[1] == 7 * 110


def test_several_candidates_are_compared_with_their_searches_and_the_spread_over_seeds(tmp_path):
    names = []
    definition = {"fitness_definition": "mean gain over CE", "budget": {"task_suite": {"name": "broad"}}}
    for stem, order, seed, provenance in (
            # a file written before the aggregation was recorded: read from the command line
            ("a", 3, 0, {"fitness": 0.10, "command": "python -m search.evolve --fitness_aggregation=ce_gain/mean", **definition}),
            ("b", 3, 1, {"fitness": 0.05, "fitness_aggregation": "ce_gain/mean", **definition}),
            ("c", 4, 0, {"fitness_aggregation": "ce_gain/mean", **definition})):
        provenance["seed"] = seed
        (tmp_path / stem).mkdir()
        (tmp_path / stem / "best.json").write_text(json.dumps({"order": order, "provenance": provenance}))
        names.append(benchmark.TAYLOR_FILE_PREFIX + str(tmp_path / stem / "best.json"))
    # a: mean 0.705, inside every spread; b: mean 0.825, column B 5 points below ce (spread 2); c: as a.
    rows = _rows({names[0]: {A: [0.61, 0.62, 0.63], B: [0.78, 0.79, 0.80]},
                  names[1]: {A: [0.89, 0.90, 0.91], B: [0.74, 0.75, 0.76]},
                  names[2]: {A: [0.61, 0.62, 0.63], B: [0.78, 0.79, 0.80]}, **PEERS})
    verdicts = [benchmark.shipping_verdict(rows, name, ["ce", "gce"]) for name in names]
    assert [v.passed for v in verdicts] == [True, False, True]
    assert verdicts[1].outside == ("procedural:strokes/mlp2 swap:0.3",) and verdicts[0].outside == ()
    assert benchmark.search_facts(names[0]) == {"order": 3, "suite": "broad", "seed": 0, "fitness": "ce_gain/mean",
                                                "fitness_definition": "mean gain over CE", "selection_fitness": 0.10}
    assert set(benchmark.search_facts("ce").values()) == {None}
    text = benchmark.compare_candidates(verdicts)
    # ce and gce tie at 0.65: the first listed is named. Order 3: (70.5 + 82.5) / 2 = 76.5, std 12 / sqrt(2) = 8.5.
    assert "best peer ce at 65.0" in text
    assert "| taylor_file:a | 3 | broad | ce_gain/mean | 0 | +10.00 | 70.5 | +5.5 | 0 | passes |" in text
    assert "| taylor_file:b | 3 | broad | ce_gain/mean | 1 | +5.00 | 82.5 | +17.5 | 1 | fails |" in text
    assert "| taylor_file:c | 4 | broad | ce_gain/mean | 0 |  | 70.5 | +5.5 | 0 | passes |" in text
    spread = text.split("mean ± std: ")[1]
    assert spread == "order 3, suite broad, ce_gain/mean: 76.5 ± 8.5 over 2 searches."  # order 4: one search
    other_peers = benchmark.shipping_verdict(rows, names[0], ["ce"])
    with pytest.raises(ValueError, match="same peers"):
        benchmark.compare_candidates([verdicts[0], other_peers])

    csv_path = tmp_path / "results.csv"
    benchmark.write_results(str(csv_path), rows)
    command = [sys.executable, "-m", "search.heldout_verdict", f"--results={csv_path}", "--peers=ce,gce",
               "--preset=", "--candidate=" + ",".join(names)]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("**Fails**") == 1 and result.stdout.count("**Passes**") == 2
    assert "### The candidates compared" in result.stdout and "order 3, suite broad, ce_gain/mean: 76.5 ± 8.5" in result.stdout
    result = subprocess.run(command + [f"--plot={tmp_path / 'v.png'}"], cwd=REPO, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 1 and "--plot draws one candidate" in result.stderr
    assert not (tmp_path / "v.png").exists()


def test_grid_agreement_ranks_methods_on_two_grids_as_worked_by_hand(tmp_path):
    first = {"ce": 0.50, "gce": 0.60, "c1": 0.70, "c2": 0.80, "c3": 0.65}
    second = {"ce": 0.40, "gce": 0.55, "c1": 0.90, "c2": 0.85, "c3": 0.30}
    rows = _rows({m: {A: [v - 0.01, v + 0.01]} for m, v in first.items()})
    # A method with a column missing on the second grid is left out of the comparison.
    other = _rows({m: {B: [v, v], ("digits", "pairflip:0.3"): [v, v]} for m, v in second.items()}
                  | {"partial": {B: [0.99, 0.99]}})
    agreement = benchmark.grid_agreement(rows, other, ("validation", "held-out"), ["c1", "c2", "c3"])
    assert agreement.methods == ("c2", "c1", "c3", "gce", "ce")  # best first on the first grid
    assert agreement.means["c3"] == pytest.approx((0.65, 0.30))
    # Ranks 1-5 against 2,1,5,3,4: sum d^2 = 1+1+4+1+1 = 8, rho = 1 - 6*8/(5*24) = 0.6. Candidates alone:
    # ranks 1,2,3 against 2,1,3: rho = 1 - 6*2/(3*8) = 0.5.
    assert agreement.rho == pytest.approx(0.6) and agreement.candidate_rho == pytest.approx(0.5)
    assert agreement.pick(0) == "c2" and agreement.pick(1) == "c1" and agreement.rank("c2", 1) == 2
    text = agreement.markdown()
    assert "| c2 * | 80.0 | 1 | 85.0 | 2 |" in text and "| ce | 50.0 | 5 | 40.0 | 4 |" in text
    assert "The validation grid picks c2 (85.0 on the held-out grid, rank 2)" in text and "+0.60" in text
    with pytest.raises(ValueError, match=r"Candidate\(s\) \['partial'\]"):
        benchmark.grid_agreement(rows, other, candidates=["partial"])
    with pytest.raises(ValueError, match="needs 3"):
        benchmark.grid_agreement(rows[:4], other)

    from matplotlib import image

    paths = [tmp_path / "first.csv", tmp_path / "second.csv"]
    for path, grid in zip(paths, (rows, other)):
        benchmark.write_results(str(path), grid)
    command = [sys.executable, "-m", "search.grid_agreement", f"--results={paths[0]}", f"--against={paths[1]}",
               "--preset=", "--against_preset=", f"--output={tmp_path / 'agreement.md'}",
               f"--plot={tmp_path / 'agreement.png'}"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    # Default candidates: the methods of both grids that are not held-out peers (partial is on one only).
    assert "Over the 3 candidates alone: +0.50." in result.stdout
    assert "| c2 * | 80.0 | 1 | 85.0 | 2 |" in (tmp_path / "agreement.md").read_text()
    assert image.imread(str(tmp_path / "agreement.png")).std() > 0.05
