"""benchmarks/gpu_check.py on a CPU: the no-CUDA line, the batch search, and the whole --cpu-smoke run."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import gpu_check  # noqa: E402


def test_without_cuda_it_says_so_in_one_line_and_exits_0(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_check.main(["--out", str(tmp_path / "r.json")]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "no CUDA device" in out[0]
    assert not (tmp_path / "r.json").exists()
    assert gpu_check.main(["--batch-size", "0"]) == 2
    assert capsys.readouterr().err.strip() == "error: --batch-size must be >= 1"


def test_largest_batch_steps_down_until_it_fits():
    tried = []

    def fake(b: int) -> str:
        tried.append(b)
        if b > 64:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return f"ran {b}"

    assert gpu_check.largest_batch(fake, (256, 128, 64, 32)) == (64, "ran 64") and tried == [256, 128, 64]
    with pytest.raises(ValueError, match="not memory"):  # other errors are not taken for a full GPU
        gpu_check.largest_batch(lambda b: (_ for _ in ()).throw(ValueError("not memory")), (8,))


def test_the_gpu_runs_flags_parse_into_a_valid_config(tmp_path):
    """The GPU settings cannot run here; their command lines can at least be parsed and validated."""
    from mae_utils.app import cli
    from mae_utils.train import config_for_cli

    s = gpu_check.SETTINGS["gpu"]
    (tmp_path / "faces").mkdir()
    parser, _ = cli.build_parser()
    args, extras = parser.parse_known_args(gpu_check.train_argv(tmp_path / "faces", tmp_path, s))
    assert extras == []
    config, resume = config_for_cli(args)
    config.validate()
    assert not resume and (config.preset, config.image_size, config.patch_size, config.epochs) == ("small", 256, 16, 2)
    assert config.device == "cuda" and config.num_workers == 8
    args, extras = parser.parse_known_args(gpu_check.evaluate_argv(tmp_path / "run", s))
    assert extras == [] and args.device == "cuda" and args.limit == 64 and args.baselines == ["mean_fill"]
    args, extras = parser.parse_known_args(gpu_check.refine_argv(tmp_path / "run", s))
    assert extras == [] and args.command == "refine" and args.device == "cuda" and args.epochs == 1
    assert s["step"]["image_size"] == 256 and s["step"]["patch_size"] == 16 and s["batches"][0] == 256


@pytest.mark.slow
def test_cpu_smoke_runs_every_part_that_needs_no_cuda(tmp_path, capsys):
    out = tmp_path / "report" / "gpu_check.json"
    assert gpu_check.main(["--cpu-smoke", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ok"] and report["failed"] == [] and report["mode"] == "cpu-smoke"
    assert report["environment"]["torch"] == torch.__version__
    step = report["step"]
    assert step["batch_size"] == 8 and step["results"]["maskae"]["images_per_s"] > 0
    pipe = report["pipeline"]
    assert set(pipe["images_per_s"]) == {"0", "1"} and all(r > 0 for r in pipe["images_per_s"].values())
    run = report["run"]
    assert run["killed"] and run["checkpoint_epoch_at_kill"] == 1 and run["epochs_after_resume"] == 2
    assert run["resume"]["rc"] == 0 and run["evaluate"]["rc"] == 0 and run["missing"] == []
    assert run["refine"]["rc"] == 0 and "model+refine" in run["evaluate"]["tail"]
    assert report["step_compiled"] == {"skipped": "not in --cpu-smoke"}
    table = capsys.readouterr().out
    assert "| all checks passed | yes |" in table and "| run folder complete | yes |" in table
    assert not (out.parent / "work").exists()  # the scratch folder is removed


def test_the_report_table_formats_a_gpu_report():
    """The GPU rows of the table, from a made-up report shaped as a GPU run writes it."""
    res = {"maskae": {"images_per_s": 2000.0, "step_ms": 128.0, "warmup_s": 70.0, "peak_mem_mb": 30000.0,
                      "tflops": 150.0, "mfu": 0.152},
           "hf-sdpa": {"images_per_s": 1600.0, "step_ms": 160.0, "warmup_s": 90.0, "peak_mem_mb": 36000.0}}
    report = {
        "environment": {"gpu": "NVIDIA H200", "memory_gib": 139.8, "capability": "9.0", "torch": "2.x", "cuda": "12.x",
                        "cudnn": 90100, "bf16": True, "tf32_matmul": True, "sdpa_flash_bf16": True},
        "step": {"batch_size": 256, "compile": False, "results": res, "maskae_vs_hf": 1.25},
        "step_compiled": {"batch_size": 256, "compile": True, "results": res, "maskae_vs_hf": 1.25},
        "pipeline": {"image_size": 256, "batch_size": 256, "images_per_s": {"1": 1500.0, "8": 9000.0},
                     "step_images_per_s": 2000.0, "workers_to_keep_up": 8},
        "ok": False, "failed": ["run"], "seconds": 400.0,
    }  # fmt: skip
    table = gpu_check.format_report(report)
    assert "NVIDIA H200 (140 GiB, sm 9.0)" in table and "MFU 15.2%" in table and "peak 29.30 GiB" in table
    assert "| compiled step maskae, batch 256 |" in table and "warm-up incl. compile 70 s" in table
    assert "| maskAE / HF sdpa | 1.25x |" in table and "8 worker(s) keep up" in table
    assert "| all checks passed | NO: run |" in table
