"""Where code runs: device and precision choice, GPU math settings, and ``torchrun`` process groups.

One module below training, evaluation and the benchmarks, so none of them imports another for its
set-up. Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
:func:`init_from_env` joins the process group (NCCL on CUDA, gloo otherwise). Without them every
helper answers as the single process of a world of one, so training code never branches on
"am I distributed?".
"""

from __future__ import annotations

import os
import platform
import sys
from datetime import timedelta
from typing import Any

import numpy as np
import safetensors
import torch
import torch.distributed as dist

from .errors import UserError

__all__ = [
    "all_reduce_sum",
    "barrier",
    "cleanup",
    "configure_device",
    "device_banner",
    "env_rank",
    "env_world_size",
    "environment",
    "init_from_env",
    "is_distributed",
    "is_main",
    "local_rank",
    "rank",
    "resolve_amp",
    "resolve_device",
    "world_size",
]


# ---------------------------------------------------------------------- device and precision
def resolve_device(name: str) -> torch.device:
    """'auto' -> CUDA, then MPS, then CPU; an explicit choice must be available."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif _mps_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise UserError(
                "device 'cuda' requested but no CUDA GPU is available; use --device auto or cpu"
            )
        return torch.device("cuda", local_rank() % torch.cuda.device_count())
    if name == "mps" and not _mps_available():
        raise UserError("device 'mps' requested but MPS is not available; use --device auto or cpu")
    return torch.device(name)


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype, or None for float32."""
    if device.type == "cuda":
        if amp == "auto":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return {"bf16": torch.bfloat16, "fp16": torch.float16, "none": None}[amp]
    if amp in ("auto", "none"):
        return None
    if amp == "bf16" and device.type == "cpu":
        return torch.bfloat16  # allowed, though slow on CPUs without native bf16
    raise UserError(f"amp {amp!r} is not supported on {device.type}; use --amp none (or auto)")


def configure_device(device: torch.device, benchmark: bool = True) -> None:
    """On CUDA: make ``device`` current and allow TF32 matmuls/convolutions (and cuDNN autotuning).

    TF32 keeps float32 code fast on Ampere and later at a precision training does not notice; every
    CUDA entry point (training, the benchmarks) sets it here so their numbers compare. No-op
    elsewhere.
    """
    if device.type != "cuda":
        return
    torch.cuda.set_device(device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    if benchmark:
        torch.backends.cudnn.benchmark = True


def device_banner(device: torch.device, amp_dtype: torch.dtype | None) -> str:
    """One line saying where training runs and in which precision, and why."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        precision = {
            torch.bfloat16: "bf16 autocast",
            torch.float16: "fp16 autocast with a gradient scaler",
            None: "float32",
        }[amp_dtype]
        tf32 = "on" if torch.backends.cuda.matmul.allow_tf32 else "off"
        return f"GPU: {name} ({device}), {precision}, TF32 matmuls {tf32}"
    if device.type == "mps":
        return f"Apple GPU (mps), {_dtype_name(amp_dtype, 'float32')}"
    if amp_dtype is not None:
        slow = "asked for; slow on CPUs without native bf16"
        return f"CPU, {_dtype_name(amp_dtype)} autocast ({slow})"
    threads = torch.get_num_threads()
    plural = "s" if threads != 1 else ""
    return (
        f"CPU ({threads} thread{plural}), float32: no GPU here, and mixed precision only pays off "
        "on GPUs"
    )


def _dtype_name(dtype: torch.dtype | None, none: str = "none") -> str:
    """``torch.bfloat16`` -> ``bfloat16``; ``none`` for no dtype (float32 without autocast)."""
    return none if dtype is None else str(dtype).replace("torch.", "")


def environment(device: torch.device, amp_dtype: torch.dtype | None, world: int) -> dict[str, Any]:
    """What a run ran on (device, precision, threads, library versions), for its ``config.json``."""
    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "safetensors": safetensors.__version__,
    }
    for name in ("torchvision", "transformers"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", "?")
    if device.type == "cuda":
        device_name = torch.cuda.get_device_name(device)
    else:
        device_name = platform.processor() or "cpu"
    return {
        "device": str(device),
        "device_name": device_name,
        "amp": _dtype_name(amp_dtype),
        "world_size": world,
        "cpu_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "versions": versions,
    }


# ---------------------------------------------------------------------- torchrun
def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


def env_rank() -> int:
    """This process's rank: the process group's, else
    the one torchrun announced (0 without torchrun)."""
    return rank() if is_distributed() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    return dist.get_world_size() if is_distributed() else 1


def local_rank() -> int:
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_main() -> bool:
    """Rank 0 alone logs and writes files."""
    return rank() == 0


def init_from_env(device_type: str, timeout_s: float = 1800.0) -> bool:
    """Join the torchrun process group if launched with WORLD_SIZE > 1; return whether distributed.

    ``device_type`` ('cuda', 'cpu', 'mps') picks the backend: NCCL for CUDA, gloo for the rest.
    """
    if is_distributed():
        return True
    if env_world_size() <= 1:
        return False
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(local_rank())
    dist.init_process_group(backend=backend, timeout=timedelta(seconds=timeout_s))
    return True


def barrier() -> None:
    if is_distributed():
        if dist.get_backend() == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all processes in place (no-op in a world of one); returns it."""
    if is_distributed():
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
