"""tfrobust.benchmark._tables, _plots and _report: results.md and the figures, from whole rows only."""

import os

import numpy as np
from matplotlib import image

from tests.benchmark_helpers import REVISION, tiny_runs, whole_row
from tfrobust import benchmark


def _accuracy_rows():
    values = {("ce", "none"): [0.90, 0.92], ("gce", "none"): [0.80, 0.82],
              ("ce", "symmetric:0.4"): [0.70, 0.72], ("gce", "symmetric:0.4"): [0.76, 0.78]}
    rows = []
    for seed in (0, 1):
        for run in tiny_runs(seeds=(seed,)):
            accuracy = values[(run.method, run.noise)][seed]
            rows.append(whole_row(run, final_test_accuracy=accuracy, best_test_accuracy="0.5"))
    return rows


def test_summarize_mean_std_bold_and_ties(tmp_path):
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, _accuracy_rows())
    markdown = benchmark.summarize(path)
    assert "| ce | **91.0 ± 1.4** | 71.0 ± 1.4 |" in markdown
    assert "| gce | 81.0 ± 1.4 | **77.0 ± 1.4** |" in markdown
    # The best-accuracy column is a tie: both bold. The memorisation cells under "none" read "–".
    assert "| ce | **50.0 ± 0.0** | **50.0 ± 0.0** |" in markdown
    assert "| ce | – | **30.0 ± 0.0** |" in markdown
    assert "## digits / linear" in markdown and "2 epochs, batch 64, adam lr 0.001." in markdown


def test_results_md_names_the_revision(tmp_path):
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, _accuracy_rows())
    markdown = benchmark.summarize(path)
    assert f"8 runs from `results.csv`. Produced at revision {REVISION[:7]}." in markdown
    assert "Rows come from" not in markdown


def test_results_md_lists_every_revision_when_rows_come_from_several(tmp_path):
    rows = _accuracy_rows()
    other = "fedcba9876543210fedcba9876543210fedcba98"
    rows[:3] = [{**row, "revision": other, "dirty": "True"} for row in rows[:3]]
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, rows)
    markdown = benchmark.summarize(path)
    expected = f"Rows come from 2 revisions: revision fedcba9 (dirty) (3 runs); revision {REVISION[:7]} (5 runs)."
    assert markdown.count(expected) == 2  # once for the file, once for its only section


def test_a_row_of_nones_never_appears_in_results_md(tmp_path):
    rows = _accuracy_rows()
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, rows)
    with open(path) as handle:
        lines = handle.read().splitlines()
    lines.insert(3, lines[3][:6])  # a tear inside a run id: that line parses as a row of Nones
    lines[-1] = lines[-1].replace(",1.5,", ",,")  # a row with an empty "seconds"
    with open(path, "w") as handle:
        handle.write("\n".join(lines) + "\n")
    markdown = benchmark.summarize(path)
    assert "None" not in markdown and "nan" not in markdown
    assert markdown.startswith("# Benchmark results\n\n7 runs from")
    assert "(n=1)" in markdown  # the cell that lost its torn row says it has fewer seeds


def test_no_runs_yet(tmp_path):
    assert "No runs yet." in benchmark.summarize(str(tmp_path / "missing.csv"))
    assert benchmark.write_report(str(tmp_path)) == {"results.md": str(tmp_path / "results.md")}


def test_report_files_from_rows_and_curves(tmp_path):
    rows = _accuracy_rows()
    benchmark.write_results(str(tmp_path / benchmark.RESULTS_CSV), rows)
    for index, row in enumerate(rows):
        corrupted = row["noise"] != "none"
        benchmark.append_curves(str(tmp_path / benchmark.CURVES), row["run_id"], {
            "test_accuracy": [0.5, 0.6, 0.7],
            "corrupted_predicted_noisy": list(np.linspace(0.1, 0.5 + index / 20, 3)) if corrupted else [np.nan] * 3,
        })
    report = benchmark.write_report(str(tmp_path))
    assert set(report) == {"results.md", "accuracy_vs_noise", "memorisation_digits_linear"}
    assert open(report["results.md"]).read() == benchmark.summarize(str(tmp_path / benchmark.RESULTS_CSV))
    for name in ("accuracy_vs_noise", "memorisation_digits_linear"):
        assert os.path.basename(report[name]) == name + ".png"
        picture = image.imread(report[name])
        assert picture.ndim == 3 and picture.shape[0] > 200 and picture.shape[1] > 300
        assert picture.std() > 0.01  # not a blank canvas


def test_clean_data_methods_are_marked_listed_last_and_not_bold(tmp_path):
    rows = _accuracy_rows()
    # l2rw beats both under noise, with 100 clean examples: it must not take the bold.
    for seed in (0, 1):
        for run in tiny_runs(seeds=(seed,), methods=("l2rw",)):
            rows.append(whole_row(run, final_test_accuracy=0.95, clean_examples="100"))
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, rows)
    markdown = benchmark.summarize(path)
    table = markdown.split("after the last epoch")[1].split("**Best")[0]
    assert table.index("| gce |") < table.index("| l2rw † | 95.0 ± 0.0 | 95.0 ± 0.0 |")
    assert "| gce | 81.0 ± 1.4 | **77.0 ± 1.4** |" in table
    assert "† Uses clean data" in markdown and "l2rw (100)" in markdown


def test_imbalanced_runs_get_their_columns_and_balanced_accuracy(tmp_path):
    rows = []
    for imbalance in ("none", "longtail:10"):
        for run in tiny_runs(imbalance=(imbalance,)):
            accuracy = 0.9 if imbalance == "none" else 0.6
            rows.append(whole_row(run, final_test_accuracy=accuracy, balanced_test_accuracy=str(accuracy - 0.1)))
    path = str(tmp_path / "results.csv")
    benchmark.write_results(path, rows)
    markdown = benchmark.summarize(path)
    header = "| method | none | symmetric:0.4 | longtail:10 | longtail:10 + symmetric:0.4 |"
    assert header in markdown
    assert "Balanced clean test accuracy" in markdown and "rarest 20% of classes" in markdown
    balanced = markdown.split("Balanced clean test accuracy")[1].split("rarest 20% of classes")[0]
    assert "| ce | **80.0** | **80.0** | **50.0** | **50.0** |" in balanced
    # Without imbalanced runs the tables are as before: no balanced-accuracy table.
    benchmark.write_results(path, _accuracy_rows())
    assert "Balanced clean test accuracy" not in benchmark.summarize(path)
