"""tfrobust.benchmark._costs and search.method_costs: every method's step timed beside a CE step (no timing asserted)."""

import os
import re
import subprocess
import sys

import pytest

from tests.benchmark_helpers import REPO
from tfrobust import benchmark

AXIS = ("l2rw", "mwn", "absgd", "absgd_imbalance", "bare", "mentornet_pd", "ldam_drw", "gce", "taylor")


def test_measure_step_costs_gives_every_method_a_positive_ratio():
    costs = benchmark.measure_step_costs(("l2rw", "bare", "taylor"), architecture="linear", repetitions=2, steps=1,
                                         max_examples=400)
    names = [cost.method for cost in costs]
    assert names == ["l2rw", "bare", benchmark.canonical_method_name("taylor")]
    for cost in costs:
        assert cost.seconds_per_step > 0 and cost.reference_seconds_per_step > 0 and cost.relative_cost > 0
    assert {cost.method: cost.clean_examples for cost in costs}["l2rw"] == 100
    table = benchmark.costs_table(costs, "tiny.")
    assert table.count("\n| ") == len(costs) + 1  # header and one row per method
    with pytest.raises(ValueError, match="Unknown method"):
        benchmark.measure_step_costs(("nope",), repetitions=1, steps=1, max_examples=400)
    with pytest.raises(ValueError, match="at least 1"):
        benchmark.measure_step_costs(("ce",), repetitions=0)


@pytest.mark.slow
def test_method_costs_script_prints_and_writes_the_table(tmp_path):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    command = [sys.executable, "-m", "search.method_costs", f"--methods={','.join(AXIS)}", "--architecture=linear",
               "--repetitions=3", "--steps=1", "--max_examples=400", f"--output_dir={tmp_path}"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, cwd=REPO, env=env)
    assert result.returncode == 0, result.stderr
    table = open(tmp_path / benchmark.COSTS_MD).read()
    assert table in result.stdout
    ratios = dict(re.findall(r"^\| (\S+) \| [\d.]+ \| [\d.]+ \| ([\d.e+-]+)x \| \d+ \|$", table, re.M))
    assert set(ratios) == {benchmark.canonical_method_name(name) for name in AXIS}
    assert all(float(ratio) > 0 for ratio in ratios.values())
