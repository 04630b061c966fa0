"""Loaders: the one DataLoader builder (training, evaluation tools, benchmarks) and training's items.

Every batch is uint8 (N, 3, S, S) (:func:`collate_batch`); :func:`~mae_utils.transforms.batch_to_input`
turns it into the model's input on the device. Exact resume rests on two seeds fixed here: the batch
order comes from a ``DistributedSampler`` seeded with (seed, epoch) (a world of one outside
``torchrun``), and each image's mask noise and augmentation from a generator seeded by
(seed, salt, epoch, image index) (:class:`TrainItems`), never by the process, worker or batch.
"""

from __future__ import annotations

import dataclasses
import math
import random
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset
from torch.utils.data._utils.collate import collate, collate_tensor_fn, default_collate_fn_map

from . import runtime
from .errors import UserError
from ..config import TrainConfig
from ..splits import DataSplits, prepare_data
from ..transforms import Augment

__all__ = ["TrainItems", "build_loader", "collate_batch", "mix_seed", "plan_batches", "train_loader", "training_data"]


def mix_seed(*values: int) -> int:
    """A deterministic 63-bit seed from several integers (splitmix-style, no Python hash salt)."""
    h = 0x9E3779B97F4A7C15
    for v in values:
        h = (h ^ (int(v) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        h ^= h >> 31
    return h & 0x7FFFFFFFFFFFFFFF


class TrainItems(Dataset):
    """Items become (uint8 image, mask noise, augmentation parameters), all fixed by (seed, epoch, index).

    Being a function of the image index, not of the process, the worker or the batch, the masks and
    augmentations are the same after a resume and under any number of processes or workers.
    ``epoch=None`` gives fixed noise (validation). ``augment``: an :class:`~mae_utils.transforms.Augment`
    whose per-image parameters :func:`~mae_utils.transforms.batch_to_input` applies on the device
    (``{}`` without one); with its ``photo`` zoom fill each item also carries ``background``, the
    stored pixels of another image of the split, picked by the draw ``other`` (so it too is a function
    of (seed, epoch, index), never of the batch).
    """

    def __init__(self, ds: Dataset, num_patches: int, seed: int, salt: int, augment: Augment | None = None):
        self.ds, self.num_patches, self.seed, self.salt, self.augment = ds, num_patches, seed, salt, augment
        self.epoch: int | None = None

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int):
        item = self.ds[i]
        if isinstance(item, (tuple, list)):
            item = item[0]
        g = torch.Generator().manual_seed(mix_seed(self.seed, self.salt, -1 if self.epoch is None else self.epoch, i))
        noise = torch.rand(self.num_patches, generator=g)
        if self.augment is None:
            return item, noise, {}
        params = self.augment.draw(g)
        if self.augment.fill == "photo":
            params["background"] = self._background(i, float(params["other"]))
        return item, noise, params

    def _background(self, i: int, u: float) -> torch.Tensor:
        """Another item than ``i`` (``u`` uniform in [0, 1)): the surround of a zoomed-out photo."""
        n = len(self.ds)
        j = i if n < 2 else (i + 1 + min(int(u * (n - 1)), n - 2)) % n
        item = self.ds[j]
        return item[0] if isinstance(item, (tuple, list)) else item


def _seed_worker(worker_id: int) -> None:
    # torch seeds each worker from the loader's generator; numpy and random follow it
    s = torch.initial_seed() % 2**32
    np.random.seed(s)
    random.seed(s)


def _collate_tensors(batch: Sequence[torch.Tensor], *, collate_fn_map: dict | None = None) -> torch.Tensor:
    elem = batch[0]
    hwc = [t.permute(1, 2, 0) for t in batch] if elem.dtype == torch.uint8 and elem.ndim == 3 else []
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
    Without shuffling, each process takes every ``world``-th item from its ``rank`` (each image once,
    no padding: validation sums over ranks stay exact).
    """
    if batch_size < 1:
        raise UserError(f"batch_size must be at least 1, got {batch_size}")
    if num_workers < 0:
        raise UserError(f"num_workers must be >= 0, got {num_workers}")
    world = runtime.world_size() if world is None else world
    rank = runtime.rank() if rank is None else rank
    sampler = None
    if shuffle:
        sampler = DistributedSampler(ds, num_replicas=world, rank=rank, shuffle=True, seed=int(seed), drop_last=False)
        sampler.set_epoch(epoch)
    elif world > 1:
        ds = Subset(ds, list(range(rank, len(ds), world)))
    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs.update(persistent_workers=persistent_workers, worker_init_fn=_seed_worker, prefetch_factor=4)
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


# ---------------------------------------------------------------------- a run's training data
def plan_batches(n_train: int, batch_size: int, world: int = 1) -> tuple[int, int, str | None]:
    """(batch size, steps per epoch, warning) for ``n_train`` training images over ``world`` processes.

    The last incomplete batch of an epoch is dropped; a batch larger than a process's share of the
    images is clamped to that share (a warning says so), so a small folder still trains.
    """
    per_rank = math.ceil(n_train / world)
    if per_rank < 1:
        raise UserError("the training split is empty; raise --max-images or lower --val-frac/--test-frac")
    warning = None
    if batch_size > per_rank:
        warning = (f"warning: batch_size {batch_size} is more than the {per_rank} training images"
                   f"{' per process' if world > 1 else ''}; using batch_size {per_rank}")  # fmt: skip
        batch_size = per_rank
    return batch_size, per_rank // batch_size, warning


def training_data(
    config: TrainConfig, run_dir: Path, world: int = 1, rank: int = 0, log: Callable[[str], None] = print,
    item_seed: int | None = None,
) -> tuple[DataSplits, TrainItems, TrainItems, int, TrainConfig]:
    """A run's (splits, train set, val set, steps per epoch, config with the batch that runs).

    What :func:`mae_utils.train.fit` trains on, and what ``refine`` trains its refiner on: the run's
    split (``run_dir/split.json``, written if missing) and the run's augmentation of the training
    images. ``item_seed`` (default ``config.seed``) seeds the items' mask noise and augmentation.
    Rank 0 goes first (it writes split.json and the cache), then the others reuse them.
    """
    splits = None
    for turn in (0, 1):
        if (rank == 0) == (turn == 0):
            splits = prepare_data(
                config.data_dir, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
                test_frac=config.test_frac, seed=config.seed, split_path=str(Path(run_dir) / "split.json"),
                cache_dir=config.cache_dir, augment=config.augmentation() or False,
                log=log if rank == 0 else (lambda _m: None),
            )  # fmt: skip
        runtime.barrier()
    num_patches = (config.image_size // config.patch_size) ** 2
    augment = getattr(splits.train, "augment", None)  # applied per batch on the device
    seed = config.seed if item_seed is None else item_seed
    train_set = TrainItems(splits.train, num_patches, seed, salt=1, augment=augment)
    val_set = TrainItems(splits.val, num_patches, seed, salt=2)
    batch_size, steps_per_epoch, warning = plan_batches(len(train_set), config.batch_size, world)
    if warning:
        log(warning)
        config = dataclasses.replace(config, batch_size=batch_size)  # config.json records what ran
    if len(val_set) == 0:
        raise UserError("the validation split is empty; raise --val-frac or --max-images")
    return splits, train_set, val_set, steps_per_epoch, config


def train_loader(
    items: TrainItems, batch_size: int, *, seed: int, epoch: int, world: int = 1, rank: int = 0,
    num_workers: int = 0, device: str | torch.device = "cpu",
) -> DataLoader:
    """Epoch ``epoch``'s shuffled training batches (order from (seed, epoch)); sets ``items.epoch`` so
    each image's mask noise and augmentation are those of that epoch. Incomplete batches are dropped."""
    items.epoch = epoch
    return build_loader(items, batch_size, shuffle=True, seed=seed, epoch=epoch, drop_last=True, world=world,
                        rank=rank, num_workers=num_workers, device=device, persistent_workers=False)  # fmt: skip
