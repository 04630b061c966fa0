"""Small helpers for ``torchrun``: one code path whether or not the run is distributed.

Under ``torchrun`` the environment holds ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; :func:`init_from_env`
joins the process group (NCCL on CUDA, gloo otherwise). Without them every helper answers as the
single process of a world of one, so training code never branches on "am I distributed?".
"""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist


def env_world_size() -> int:
    """The world size torchrun announced (1 when not launched by torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if is_distributed() else 0


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


def broadcast_object(obj):
    """Rank 0's ``obj`` on every rank (e.g. a decision only rank 0 can make)."""
    if not is_distributed():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def cleanup() -> None:
    if is_distributed():
        dist.destroy_process_group()
