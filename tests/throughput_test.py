"""search.throughput runs end to end on tiny settings and reports every column (no timing asserts)."""

import json

from tfrobust.search import throughput


def test_throughput_table_on_tiny_settings(tmp_path):
    config = throughput.ThroughputConfig(
        architectures=("linear",), populations=(1, 2), steps=5, batch_size=8, repeats=1,
        per_candidate_fits=1, loss_step_repeats=1, loss_step_epochs=1, output_dir=str(tmp_path),
    )
    lines = []
    result = throughput.run_throughput(config, printer=lines.append)
    assert [r["population"] for r in result["rows"]] == [1, 2]
    for row in result["rows"]:
        assert row["vectorized_evals_per_s"] > 0 and row["per_candidate_evals_per_s"] > 0
        assert row["speedup"] == row["vectorized_evals_per_s"] / row["per_candidate_evals_per_s"]
    # FLOPs of softmax regression on 8x8 digits: forward 2 x 64 x 10 MACs, backward the weight gradient only.
    assert result["training_flops_per_example"]["linear"] == 2 * 2 * 64 * 10
    assert result["peak_matmul_gflops"] > 0 and result["loss_step_ms"]["ratio"] > 0
    table = (tmp_path / "throughput.md").read_text()
    assert "| linear | auto | 2 |" in table and "GFLOP/s" in table
    assert json.loads((tmp_path / "throughput.json").read_text())["rows"][1]["population"] == 2
    assert (tmp_path / "throughput.png").stat().st_size > 1000


def test_training_flops_by_hand():
    from tfrobust import models

    # mlp on digits: 64*128 then 128*10 MACs forward; the first layer needs no input gradient (2x, not 3x).
    assert models.training_flops_per_example("mlp", (8, 8, 1), 10) == 2 * 2 * 64 * 128 + 3 * 2 * 128 * 10
    # cnn on digits: conv 8x8x9x1x16, pool, conv 4x4x9x16x32, pool, dense 2*2*32 -> 10.
    first, rest = 2 * 8 * 8 * 9 * 16, 2 * (4 * 4 * 9 * 16 * 32 + 2 * 2 * 32 * 10)
    assert models.training_flops_per_example("cnn", (8, 8, 1), 10) == 2 * first + 3 * rest


def test_training_flops_of_a_residual_network_by_hand():
    from tfrobust import models

    # resnet_tiny on digits: conv 1->16 (no input gradient), a residual block of two 16->16 convs at 8x8,
    # pool to 4x4, conv 16->32, global average pooling to 32 features, dense 32 -> 10.
    first = 2 * 8 * 8 * 9 * 1 * 16
    rest = 2 * (2 * 8 * 8 * 9 * 16 * 16 + 4 * 4 * 9 * 16 * 32 + 32 * 10)
    assert models.training_flops_per_example("resnet_tiny", (8, 8, 1), 10) == 2 * first + 3 * rest
