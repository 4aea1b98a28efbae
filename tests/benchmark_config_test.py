"""tfrobust.benchmark._config and the search.benchmark flags: presets, overrides, validation, help built from the library."""

import os
import subprocess

import pytest

from tests.benchmark_helpers import TINY, script
from tfrobust import benchmark
from tfrobust.losses import TaylorLoss


def test_presets_and_overrides():
    heldout = benchmark.BenchmarkConfig.from_preset("heldout", epochs=1)
    assert heldout.epochs == 1 and heldout.architectures == ("mlp2", "resnet_tiny")
    assert heldout.method_list() == [
        "ce", "gce", "sce", "nce_rce", "mae", "taylor_ce", "poly1", "bootstrap_soft", "taylor:evolved_bundled",
        "taylor:evolved_bundled_long",
    ]
    assert {"symmetric:0.8", "swap:0.3"} == set(heldout.noise)
    # The protocol leaves out what the broad search saw: its data set families, architectures and noise kinds
    # (instance noise only at a rate it did not use).
    from tfrobust.search import tasks

    broad = tasks.load_suite("broad").tasks + tasks.load_suite("broad2").tasks
    assert not {tasks.dataset_family(d) for d in heldout.datasets} & {tasks.dataset_family(t.dataset) for t in broad}
    assert not set(heldout.architectures) & {t.architecture for t in broad}
    assert not set(heldout.noise) & {t.noise for t in broad}
    cells = {(run.dataset, run.architecture) for run in heldout.runs()}
    assert cells == {("mnist5k", "mlp2"), ("procedural:strokes", "mlp2"), ("procedural:strokes", "resnet_tiny")}
    row = {**heldout.runs()[0].fields(), "method": "taylor_file:anything.json"}
    assert heldout.select([row]) == [row]  # any method
    for column, value in (("noise", "instance:0.5"), ("architecture", "resnet_tiny"), ("epochs", "20"),
                          ("seed", "7")):
        assert heldout.select([{**row, column: value}]) == [], column
    with pytest.raises(ValueError, match="skip entry 'digits/cnn' names no cell"):
        benchmark.BenchmarkConfig.from_preset("heldout", skip=("digits/cnn",)).validate()
    full = benchmark.BenchmarkConfig.from_preset("full")
    assert set(full.method_list()) == set(benchmark.default_methods()) and len(full.seeds) >= 3
    assert full.architectures == ("mlp",) and set(full.noise) <= set(benchmark.ALL_NOISE) and len(full.noise) == 5
    assert benchmark.BenchmarkConfig.from_preset("default") == benchmark.BenchmarkConfig()
    with pytest.raises(ValueError, match="Unknown preset"):
        benchmark.BenchmarkConfig.from_preset("huge")


def test_describe_preset_is_derived_from_the_preset():
    for name in benchmark.PRESETS:
        config = benchmark.BenchmarkConfig.from_preset(name)
        text = benchmark.describe_preset(name)
        assert text.startswith(f"{name}: ") and f"({len(config.runs())} runs:" in text
        assert f"{config.epochs} epochs" in text and config.output_dir in text


def test_run_ids_are_stable_and_distinct():
    runs = benchmark.BenchmarkConfig(output_dir="unused", **TINY).runs()
    assert len(runs) == 4 and len({run.run_id for run in runs}) == 4
    # The id hashes the key columns: a fixed value keeps old results.csv files resumable.
    run = benchmark.RunSpec("digits", "linear", "none", "ce", 0, 2, 64, "adam", 1e-3, None)
    assert run.run_id == run.fields()["run_id"] and len(run.run_id) == 12
    assert run.fields()["learning_rate"] == "0.001" and run.fields()["max_examples"] == ""


def test_bad_configs_fail_before_training(tmp_path):
    for bad in ({"architectures": ("resnet",)}, {"noise": ("symmetric:2",)}, {"seeds": (-1,)},
                {"methods": ("ce", "nope")}, {"optimizer": "nope"}, {"epochs": 0}, {"learning_rate": 0.0},
                {"datasets": ()}):
        with pytest.raises(ValueError):
            benchmark.run_benchmark(benchmark.BenchmarkConfig(output_dir=str(tmp_path), **{**TINY, **bad}))
    assert not os.path.exists(tmp_path / benchmark.RESULTS_CSV)


@pytest.mark.slow
def test_script_help_dry_run_and_bad_flags():
    command, options = script("--help")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert "--preset" in result.stdout, result.stderr  # absl exits 1 after --help
    # The help states what the library defines, in the library's words.
    # absl wraps lines at hyphens too ("LDAM-" / "DRW"): compare without the breaks.
    help_text = " ".join(result.stdout.split()).replace("- ", "-")
    for name in benchmark.PRESETS:
        assert " ".join(benchmark.describe_preset(name).split()) in help_text
    assert " ".join(benchmark.describe_method_names().split()) in help_text

    command, options = script("--preset=heldout", "--epochs=1", "--seeds=4,5", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode == 0, result.stderr
    assert f"Preset heldout: {10 * 3 * 2 * 2} runs" in result.stdout and "taylor:evolved_bundled" in result.stdout
    command, options = script("--preset=heldout", "--skip=", "--seeds=4", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode == 0 and f"Preset heldout: {10 * 4 * 2} runs" in result.stdout, result.stderr
    # A procedural name keeps its KEY=VALUE commas (2 data sets, not 3).
    command, options = script("--datasets=digits,procedural:templates:classes=5,seed=1", "--methods=ce",
                              "--architectures=mlp", "--noise=none", "--seeds=0", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode == 0 and "Preset default: 2 runs" in result.stdout, result.stderr
    command, options = script("--noise=bogus:1", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode != 0 and "noise spec" in result.stderr


def test_imbalance_is_part_of_the_run_key():
    runs = benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, "imbalance": ("none", "longtail:10", "step:10")}).runs()
    assert len(runs) == 12 and len({run.run_id for run in runs}) == 12
    assert {run.imbalance for run in runs} == {"none", "longtail:10", "step:10"}
    balanced = benchmark.RunSpec("digits", "linear", "none", "ce", 0, 2, 64, "adam", 1e-3, None)
    assert balanced.fields()["imbalance"] == "none"
    # A balanced run keeps the id it had before the imbalance axis (computed at revision 83dd983).
    assert balanced.run_id == "d918797401e0"
    longtail = benchmark.RunSpec("digits", "linear", "none", "ce", 0, 2, 64, "adam", 1e-3, None, "longtail:10")
    assert longtail.run_id != balanced.run_id and "longtail:10" in longtail.describe()
    # Specs are written in their canonical form, so "longtail:10.0" is the same run.
    again = benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, "imbalance": ("longtail:10.0",)}).runs()
    assert {run.run_id for run in again} <= {run.run_id for run in runs}
    with pytest.raises(ValueError, match="Imbalance ratio must be"):
        benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, "imbalance": ("longtail:0.5",)}).validate()
    with pytest.raises(ValueError, match="imbalance axis is empty"):
        benchmark.BenchmarkConfig(output_dir="unused", **{**TINY, "imbalance": ()}).validate()


def test_new_presets_name_the_new_methods_and_leave_the_old_grids_alone():
    new_methods = {"l2rw", "mwn", "absgd", "absgd_imbalance", "bare", "mentornet_pd", "ldam_drw"}
    assert not new_methods & set(benchmark.default_methods())  # "every method" presets keep their grids
    reweighting = benchmark.BenchmarkConfig.from_preset("reweighting")
    assert {"ce", "gce", "l2rw", "mwn", "absgd", "bare", "mentornet_pd"} <= set(reweighting.method_list())
    assert "taylor:" + TaylorLoss.preset_info()["name"] in reweighting.method_list()
    assert reweighting.noise == benchmark.BenchmarkConfig.from_preset("full").noise
    imbalance = benchmark.BenchmarkConfig.from_preset("imbalance")
    assert set(imbalance.imbalance) == {"longtail:10", "longtail:100"} and set(imbalance.noise) == {"none", "symmetric:0.2"}
    assert {"ldam_drw", "absgd_imbalance", "bare", "mentornet_pd", "adacore", "l2rw", "mwn", "ce", "gce"} <= set(
        imbalance.method_list()
    )
    for name in ("reweighting", "imbalance"):
        config = benchmark.BenchmarkConfig.from_preset(name)
        config.validate()
        assert len(config.seeds) == 3
        assert benchmark.estimate_seconds(config.runs()) < 30 * 60  # the budget these presets are sized for
    assert "imbalance longtail:10, longtail:100" in benchmark.describe_preset("imbalance")
