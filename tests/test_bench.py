"""The speed benchmark (benchmarks/bench_step.py): equal configurations, FLOP count, interleaved timing, the table."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_step as bench  # noqa: E402

TOY = dict(image_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=2, decoder_embed_dim=16, decoder_depth=1,
           decoder_num_heads=2, batch_size=4)  # fmt: skip


def _trainable(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@pytest.mark.parametrize("name", ["tiny-64", "small-128"])
def test_contenders_have_equal_size(name):
    pytest.importorskip("transformers")
    cfg = {**bench.CONFIGS[name], "depth": 1, "decoder_depth": 1}  # same widths, fewer blocks: fast
    ours = bench.build_contender("maskae", cfg, torch.device("cpu"))[0]
    theirs = bench.build_contender("hf-sdpa", cfg, torch.device("cpu"))[0]
    assert _trainable(ours) == _trainable(theirs)


def test_flops_by_hand():
    cfg = dict(image_size=16, patch_size=8, embed_dim=8, depth=1, num_heads=1, decoder_embed_dim=4, decoder_depth=1,
               decoder_num_heads=1, batch_size=1)  # fmt: skip
    # L = 4 patches, 1 visible: encoder 2 tokens, decoder 5 tokens, patch vector 192
    macs = 1 * 192 * 8 + (12 * 64 * 2 + 2 * 4 * 8) + 2 * 8 * 4 + (12 * 16 * 5 + 2 * 25 * 4) + 4 * 4 * 192
    assert bench.train_flops_per_image(cfg) == 6 * macs


def test_interleaved_timing_and_table():
    pytest.importorskip("transformers")
    logs = []
    res = bench.time_contenders(TOY, ("maskae", "hf-sdpa"), device="cpu", steps=1, rounds=2, warmup=1, log=logs.append)
    assert set(res) == {"maskae", "hf-sdpa"} and len(logs) == 2
    assert all(r["images_per_s"] > 0 and r["step_ms"] > 0 for r in res.values())
    res["maskae"]["peak_mem_mb"], res["hf-sdpa"]["peak_mem_mb"] = 10.0, 15.0
    table = bench.format_table({"toy": res})
    speedup = res["maskae"]["images_per_s"] / res["hf-sdpa"]["images_per_s"]
    assert f"{speedup:.2f}x" in table and "1.50x" in table


def test_unknown_config_is_a_user_error():
    with pytest.raises(ValueError, match="tiny-64"):
        bench.time_contenders("huge-1024")


def test_peak_flops_by_gpu_name_longest_match():
    assert bench.peak_flops_for("NVIDIA H200") == 989e12
    assert bench.peak_flops_for("NVIDIA H100 PCIe") == 756e12 and bench.peak_flops_for("NVIDIA H100 80GB HBM3") == 989e12
    assert bench.peak_flops_for("Some Other GPU") is None


def test_command_line_reports_user_errors(capsys):
    assert bench.main(["--steps", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --steps must be >= 1"
