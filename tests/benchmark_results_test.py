"""tfrobust.benchmark._results: results.csv rows are taken as finished only when whole; curves.jsonl round trip."""

import math

import pytest

from tests.benchmark_helpers import REVISION, tiny_runs, whole_row
from tfrobust import benchmark


def _write(path, rows):
    benchmark.write_results(str(path), rows)
    return str(path)


def _lines(path):
    return open(path).read().splitlines()


def test_whole_rows_round_trip(tmp_path):
    rows = [whole_row(run) for run in tiny_runs()]
    path = _write(tmp_path / "results.csv", rows)
    assert _lines(path)[0] == ",".join(benchmark.CSV_FIELDS)
    assert benchmark.read_results(path) == rows
    assert benchmark.partition_results(path) == (rows, [])
    assert benchmark.read_results(str(tmp_path / "missing.csv")) == []


def test_a_torn_last_row_is_not_taken_as_finished(tmp_path):
    rows = [whole_row(run) for run in tiny_runs()]
    path = _write(tmp_path / "results.csv", rows)
    text = open(path).read()
    # Disk full mid-write: the last row stops after its accuracy columns.
    last = _lines(path)[-1]
    torn = text[: text.rindex(last)] + last[: last.index(",0.8,") + 5]
    open(path, "w").write(torn)
    whole, not_whole = benchmark.partition_results(path)
    assert whole == rows[:-1] and len(not_whole) == 1
    # Torn inside the revision (the last column): a partial hash is not a revision.
    open(path, "w").write(text[:-10] + "\n")
    assert benchmark.read_results(path) == rows[:-1]


def test_a_tear_inside_the_run_id_is_not_a_run(tmp_path):
    rows = [whole_row(run) for run in tiny_runs()]
    path = _write(tmp_path / "results.csv", rows)
    lines = _lines(path)
    lines.insert(2, lines[2][:5])  # a line holding half a run id, every other column missing
    open(path, "w").write("\n".join(lines) + "\n")
    whole, not_whole = benchmark.partition_results(path)
    assert whole == rows and len(not_whole) == 1 and not_whole[0]["dataset"] is None


@pytest.mark.parametrize(
    "change",
    [
        {"final_test_accuracy": ""},  # an empty metric
        {"seconds": "1.2.3"},  # a number that does not parse
        {"run_id": "0123456789ab"},  # a run id that is not the hash of the key columns
        {"seed": "7"},  # a key column edited by hand: the id no longer matches
        {"revision": "unknown1"},
        {"dirty": "maybe"},
        {"finite": ""},
    ],
)
def test_rows_that_are_not_whole(change):
    run = tiny_runs()[1]
    assert benchmark.is_whole_row(whole_row(run))
    assert not benchmark.is_whole_row({**whole_row(run), **change})
    row = whole_row(run)
    del row["dirty"]  # a results.csv written before the revision columns
    assert not benchmark.is_whole_row(row)


def test_empty_cells_that_are_legitimate():
    clean, noisy = tiny_runs()[0], tiny_runs()[2]
    assert clean.noise == "none" and noisy.noise == "symmetric:0.4"
    # No corrupted labels: memorisation undefined. Outside git: dirty unknown, revision "unknown".
    assert benchmark.is_whole_row(whole_row(clean, revision="unknown", dirty=""))
    assert not benchmark.is_whole_row(whole_row(noisy, noisy_train_accuracy=""))


def test_values_are_written_as_text(tmp_path):
    run = tiny_runs()[0]
    row = {**whole_row(run), "noise_rate": math.nan, "final_test_accuracy": 0.5, "finite": True, "dirty": None}
    path = _write(tmp_path / "results.csv", [row])
    (read,) = benchmark.read_results(path)
    assert read["noise_rate"] == "" and read["final_test_accuracy"] == "0.5" and read["finite"] == "True"
    assert read["dirty"] == "" and read["revision"] == REVISION


def test_curves_round_trip_with_nan_and_a_torn_line(tmp_path):
    path = str(tmp_path / "curves.jsonl")
    benchmark.append_curves(path, "a", {"test_accuracy": [0.5, 0.6], "corrupted_predicted_noisy": [math.nan, 0.1]})
    benchmark.append_curves(path, "b", {"test_accuracy": [0.1]})
    benchmark.append_curves(path, "a", {"test_accuracy": [0.7], "corrupted_predicted_noisy": [0.2]})  # a rerun wins
    with open(path, "a") as handle:
        handle.write('{"run_id": "c", "test_acc')  # torn by a kill
    curves = benchmark.read_curves(path)
    assert curves == {"a": {"test_accuracy": [0.7], "corrupted_predicted_noisy": [0.2]}, "b": {"test_accuracy": [0.1]}}
    benchmark.append_curves(path + "2", "n", {"x": [math.nan]})
    assert math.isnan(benchmark.read_curves(path + "2")["n"]["x"][0])


def test_rows_without_provenance_of_clean_data_or_imbalance_are_torn():
    run = tiny_runs()[0]
    for column in ("clean_examples", "imbalance", "balanced_test_accuracy"):
        row = whole_row(run)
        del row[column]  # a results.csv written before the column existed
        assert not benchmark.is_whole_row(row), column
    assert not benchmark.is_whole_row(whole_row(run, clean_examples=""))
    assert benchmark.is_whole_row(whole_row(run, clean_examples="100"))
    # The rarest classes may have no test example: an empty cell is whole.
    assert benchmark.is_whole_row(whole_row(run, rarest_classes_test_accuracy=""))
