"""Where code runs (mae_utils.util.runtime): device and precision choice, the banner and the run's
environment record, and the torchrun helpers of a single process (two processes: test_distributed)."""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from mae_utils.util import runtime
from mae_utils.util.errors import UserError

CPU = torch.device("cpu")


# ---------------------------------------------------------------------- device and precision
def test_device_and_amp_resolution():
    assert runtime.resolve_device("cpu") == CPU
    assert runtime.resolve_amp("auto", CPU) is None and runtime.resolve_amp("none", CPU) is None
    assert runtime.resolve_amp("bf16", CPU) is torch.bfloat16  # allowed on CPU, if slow
    with pytest.raises(UserError, match="amp 'fp16' is not supported on cpu; use --amp none"):
        runtime.resolve_amp("fp16", CPU)


def test_auto_falls_back_to_the_cpu_and_a_missing_gpu_is_named(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert runtime.resolve_device("auto") == CPU
    with pytest.raises(UserError, match="device 'cuda' requested but no CUDA GPU .* auto or cpu"):
        runtime.resolve_device("cuda")
    with pytest.raises(UserError, match="device 'mps' requested but MPS is not available"):
        runtime.resolve_device("mps")


def test_configure_device_leaves_cpu_math_alone():
    before = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark)
    runtime.configure_device(CPU)
    assert (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.benchmark) == before


def test_the_cpu_banner_says_threads_and_precision(monkeypatch):
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert runtime.device_banner(CPU, None).startswith("CPU (1 thread), float32: no GPU here")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert runtime.device_banner(CPU, None).startswith("CPU (4 threads), float32")
    assert runtime.device_banner(CPU, torch.bfloat16).startswith("CPU, bfloat16 autocast")


def test_environment_records_device_precision_world_and_versions():
    record = runtime.environment(CPU, torch.bfloat16, world=3)
    assert record["device"] == "cpu" and record["amp"] == "bfloat16" and record["world_size"] == 3
    assert record["versions"]["torch"] == torch.__version__ and "numpy" in record["versions"]
    assert runtime.environment(CPU, None, world=1)["amp"] == "none"


# ---------------------------------------------------------------------- torchrun, one process
def test_single_process_helpers(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert not runtime.is_distributed()
    assert runtime.rank() == 0 and runtime.world_size() == 1 and runtime.is_main()
    assert runtime.env_world_size() == 1 and runtime.env_rank() == 0 and runtime.local_rank() == 0
    assert runtime.init_from_env("cpu") is False  # no torchrun: no process group
    runtime.barrier()  # a no-op without a process group, rather than an error
    t = torch.ones(2)
    assert runtime.all_reduce_sum(t) is t and t.tolist() == [1.0, 1.0]


def test_torchruns_announcement_is_read_before_the_group_exists(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert (runtime.env_world_size(), runtime.env_rank(), runtime.local_rank()) == (4, 2, 1)
    assert runtime.world_size() == 1 and runtime.rank() == 0  # no process group joined yet


def test_a_process_group_of_one_is_joined_summed_over_and_left(tmp_path):
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'rendezvous'}", rank=0, world_size=1)
    try:
        assert runtime.is_distributed() and runtime.init_from_env("cpu") is True
        t = torch.tensor([1.0, 2.0])
        assert runtime.all_reduce_sum(t).tolist() == [1.0, 2.0]
        runtime.barrier()
    finally:
        runtime.cleanup()
    assert not runtime.is_distributed()
