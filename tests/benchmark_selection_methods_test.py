"""tfrobust.benchmark._selection_methods: AdaCore on the method axis, through `run_one`."""

import numpy as np
import pytest

from tfrobust import benchmark, datasets, selection
from tfrobust.benchmark import _selection_methods

PROVENANCE = {"revision": "unknown", "dirty": ""}


def _run(epochs=3, seed=0):
    return benchmark.RunSpec("digits", "mlp", "symmetric:0.2", "adacore", seed, epochs, 64, "adam", 1e-3, None,
                             "none")


@pytest.fixture(scope="module")
def noisy_digits():
    return datasets.load("digits", noise="symmetric:0.2", seed=0)


def test_adacore_is_registered_out_of_the_default_grid():
    assert "adacore" in benchmark.method_names()
    assert "adacore" not in benchmark.default_methods()
    assert benchmark.BenchmarkConfig(methods=("ce", "adacore")).methods == ("ce", "adacore")


def test_adacore_trainer_fits_the_benchmark_model_on_a_noisy_label_coreset(noisy_digits):
    method = benchmark.get_method("adacore")
    run = _run()
    model = method.build_model(run, noisy_digits)
    fit_model, batches, schedule = method.trainer(model, noisy_digits, run)
    coreset = schedule[0]
    assert fit_model is model and isinstance(coreset, selection.AdaCore)
    assert coreset.size == round(_selection_methods.ADACORE_FRACTION * len(noisy_digits.y_train))
    np.testing.assert_array_equal(coreset.y, noisy_digits.y_train)  # the labels a user has
    assert len(batches) == -(-coreset.size // run.batch_size)


def test_adacore_run_trains_above_chance_and_records_a_whole_row(noisy_digits):
    row, curves = benchmark.run_one(_run(epochs=4), noisy_digits, provenance=PROVENANCE)
    assert row["epochs_trained"] == 4 and row["finite"]
    assert row["final_test_accuracy"] > 0.3, row  # chance is 0.1; 4 epochs on 30% of noisy digits
    assert row["clean_examples"] == 0 and row["num_train"] == len(noisy_digits.y_train)
    assert benchmark.is_whole_row({key: benchmark._results._csv_value(value) for key, value in row.items()})
