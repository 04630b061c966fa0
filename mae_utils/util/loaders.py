"""Loaders: the one DataLoader builder (training, evaluation tools, benchmarks) and its seeds.

Every batch is uint8 (N, 3, S, S) (:func:`collate_batch`);
:func:`~mae_utils.transforms.batch_to_input` turns it into the model's input on the device. Exact
resume rests on two seeds: the batch order comes from a ``DistributedSampler`` seeded with (seed,
epoch) (a world of one outside ``torchrun``), and each image's mask noise and augmentation from a
generator seeded by (seed, salt, epoch, image index) (:class:`mae_utils.splits.TrainItems`, with
:func:`mix_seed`), never by the process, worker or batch.
"""

from __future__ import annotations

import math
import random
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torch.utils.data._utils.collate import collate, collate_tensor_fn, default_collate_fn_map

from .errors import UserError
from . import runtime

__all__ = ["build_loader", "collate_batch", "mix_seed", "plan_batches"]


def mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from several integers (splitmix-style, no Python hash salt)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _collate_tensors(
    batch: Sequence[torch.Tensor], *, collate_fn_map: dict | None = None
) -> torch.Tensor:
    elem = batch[0]
    is_image = elem.dtype == torch.uint8 and elem.ndim == 3
    hwc = [t.permute(1, 2, 0) for t in batch] if is_image else []
    if not hwc or not all(t.is_contiguous() and t.shape == hwc[0].shape for t in hwc):
        return collate_tensor_fn(batch, collate_fn_map=collate_fn_map)
    out = None
    if torch.utils.data.get_worker_info() is not None:  # straight into shared memory, as torch does
        storage = elem._typed_storage()._new_shared(len(hwc) * elem.numel(), device=elem.device)
        out = elem.new(storage).resize_(len(hwc), *hwc[0].shape)
    return torch.stack(hwc, 0, out=out).permute(0, 3, 1, 2)


_COLLATE_MAP = {**default_collate_fn_map, torch.Tensor: _collate_tensors}


def collate_batch(batch: Sequence[Any]) -> Any:
    """``default_collate``, except that uint8 image items (:func:`~mae_utils.data.image_tensor`) are
    stacked by plain copies into a (N, 3, H, W) batch with channels-last strides (twice as fast at
    256 px as the strided copies ``default_collate`` makes of them)."""
    return collate(batch, collate_fn_map=_COLLATE_MAP)


def build_loader(
    ds: Dataset,
    batch_size: int,
    *,
    shuffle: bool,
    num_workers: int = 0,
    seed: int = 0,
    epoch: int = 0,
    device: str | torch.device = "cpu",
    drop_last: bool = False,
    world: int | None = None,
    rank: int | None = None,
    persistent_workers: bool = True,
) -> DataLoader:
    """A DataLoader of :func:`collate_batch` batches: pinned memory on CUDA, seeded workers.

    ``shuffle``: a ``DistributedSampler`` over ``world`` processes (default: the torchrun world, one
    without torchrun) seeded with ``seed`` and set to ``epoch``, so an epoch's order depends on
    (seed, epoch) alone; call ``loader.sampler.set_epoch(e)`` to reuse a loader for epoch ``e``.
    Without shuffling, each process takes every ``world``-th item from its ``rank`` (each image
    once, no padding: validation sums over ranks stay exact).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise UserError(f"num_workers must be >= 0, got {num_workers}")
    world = runtime.world_size() if world is None else world
    rank = runtime.rank() if rank is None else rank
    sampler = None
    if shuffle:
        sampler = DistributedSampler(
            ds, num_replicas=world, rank=rank, shuffle=True, seed=int(seed), drop_last=False
        )
        sampler.set_epoch(epoch)
    elif world > 1:
        ds = Subset(ds, list(range(rank, len(ds), world)))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=persistent_workers, prefetch_factor=4)
        kwargs.update(worker_init_fn=_seed_worker)
    return DataLoader(
        ds,
        batch_size=batch_size,
        shuffle=False,
        sampler=sampler,
        num_workers=num_workers,
        pin_memory=torch.device(device).type == "cuda",
        drop_last=drop_last,
        generator=torch.Generator().manual_seed(mix_seed(seed, 11, epoch)),  # worker seeds
        collate_fn=collate_batch,
        **kwargs,
    )


def plan_batches(n_train: int, batch_size: int, world: int = 1) -> tuple[int, int, str | None]:
    """(batch size, steps per epoch, warning) for ``n_train`` images over ``world`` processes.

    The last incomplete batch of an epoch is dropped; a batch larger than a process's share of the
    images is clamped to that share (a warning says so), so a small folder still trains.
    """
    per_rank = math.ceil(n_train / world)
    if per_rank < 1:
        raise UserError(
            "the training split is empty; raise --max-images or lower --val-frac/--test-frac"
        )
    warning = None
    if batch_size > per_rank:
        share = f"{per_rank} training images{' per process' if world > 1 else ''}"
        warning = (
            f"warning: batch_size {batch_size} is more than the {share}; "
            f"using batch_size {per_rank}"
        )
        batch_size = per_rank
    return batch_size, per_rank // batch_size, warning
