"""tfrobust.benchmark._config and the search.benchmark flags: presets, overrides, validation, help built from the library."""

import os
import subprocess

import pytest

from tests.benchmark_helpers import TINY, script
from tfrobust import benchmark
from tfrobust.losses import TaylorLoss


def test_presets_and_overrides():
    heldout = benchmark.BenchmarkConfig.from_preset("heldout", epochs=1)
    assert heldout.epochs == 1 and heldout.architectures == ("mlp2",)
    taylor = "taylor:" + TaylorLoss.preset_info()["name"]
    assert heldout.method_list() == [
        taylor, "taylor:evolved_bundled_long", "taylor:cross_entropy_taylor3", "ce", "gce", "sce", "mae"
    ]
    assert {"symmetric:0.5", "symmetric:0.8", "instance:0.4", "pairflip:0.3"} == set(heldout.noise)
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
    help_text = " ".join(result.stdout.split())
    for name in benchmark.PRESETS:
        assert " ".join(benchmark.describe_preset(name).split()) in help_text
    assert " ".join(benchmark.describe_method_names().split()) in help_text

    taylor = "taylor:" + TaylorLoss.preset_info()["name"]
    command, options = script("--preset=heldout", "--epochs=1", "--seeds=4,5", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode == 0, result.stderr
    assert f"Preset heldout: {7 * 2 * 4 * 2} runs" in result.stdout and taylor in result.stdout
    command, options = script("--noise=bogus:1", "--dry_run")
    result = subprocess.run(command, capture_output=True, timeout=120, **options)
    assert result.returncode != 0 and "noise spec" in result.stderr
