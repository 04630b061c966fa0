"""Loaders (mae_utils.util.loaders): the batch layout, seeded and sharded loading, and the batch plan
that clamps a batch larger than the training split."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mae_utils.data import FaceFolder, SyntheticFaces
from mae_utils.util.errors import UserError
from mae_utils.util.loaders import build_loader, collate_batch, mix_seed, plan_batches

from conftest import write_faces


# ---------------------------------------------------------------------- batch layout
def test_uint8_images_are_stacked_channels_last_with_their_values():
    """Items as the data sets make them (stored pixels, H x W x 3, seen as 3 x H x W)."""
    items = [torch.randint(0, 256, (8, 6, 3), dtype=torch.uint8).permute(2, 0, 1) for _ in range(4)]
    batch = collate_batch(items)
    assert batch.shape == (4, 3, 8, 6) and batch.dtype == torch.uint8
    assert torch.equal(batch, torch.stack(items))
    assert batch.is_contiguous(memory_format=torch.channels_last)
    planar = [t.contiguous() for t in items]  # other strides: default_collate's plain stack
    assert torch.equal(collate_batch(planar), batch) and collate_batch(planar).is_contiguous()


def test_other_items_collate_as_default_collate_does():
    floats = [torch.rand(3, 4, 4) for _ in range(2)]
    assert collate_batch(floats).is_contiguous() and torch.equal(collate_batch(floats), torch.stack(floats))
    items = [(torch.zeros(3, 4, 4, dtype=torch.uint8), torch.full((5,), float(i)), {"k": i}) for i in range(3)]
    imgs, noise, extra = collate_batch(items)
    assert imgs.shape == (3, 3, 4, 4) and noise.shape == (3, 5) and extra["k"].tolist() == [0, 1, 2]


def test_mix_seed_is_fixed_and_order_sensitive():
    assert mix_seed(1, 2, 3) == mix_seed(1, 2, 3)
    assert len({mix_seed(1, 2, 3), mix_seed(3, 2, 1), mix_seed(1, 2, 4)}) == 3
    assert 0 <= mix_seed(2**70, -5) < 2**63


# ---------------------------------------------------------------------- building a loader
def test_loaders_with_workers_match_and_shuffle_reproducibly(tmp_path: Path) -> None:
    write_faces(tmp_path / "imgs", 12, size=16)
    ds = FaceFolder(tmp_path / "imgs", 16, cache_dir=tmp_path / "cache", progress=False)
    ds._images()  # opened in the parent: workers must still work (they reopen it)
    ref = torch.cat(list(build_loader(ds, 5, shuffle=False)))
    par = torch.cat(list(build_loader(ds, 5, shuffle=False, num_workers=2)))
    torch.testing.assert_close(par, ref, rtol=0, atol=0)
    torch.testing.assert_close(ref, torch.stack([ds[i] for i in range(len(ds))]))
    first = torch.cat(list(build_loader(ds, 4, shuffle=True, seed=5)))
    second = torch.cat(list(build_loader(ds, 4, shuffle=True, seed=5)))
    other = torch.cat(list(build_loader(ds, 4, shuffle=True, seed=6)))
    torch.testing.assert_close(first, second)
    assert not torch.equal(first, other)
    loader = build_loader(ds, 4, shuffle=True, drop_last=True, device="cpu", num_workers=1)
    assert loader.persistent_workers and not loader.pin_memory and len(loader) == 3


def test_an_epochs_order_depends_on_seed_and_epoch_alone():
    ds = SyntheticFaces(10, 8, seed=0)

    def order(seed, epoch, batch_size=2):
        loader = build_loader(ds, batch_size, shuffle=True, seed=seed, epoch=epoch, world=1, rank=0)
        return list(loader.sampler)

    assert order(1, 0) == order(1, 0, batch_size=3) and sorted(order(1, 0)) == list(range(10))
    assert len({tuple(order(s, e)) for s in (1, 5) for e in (0, 1)}) == 4


def test_bad_batch_size_and_workers_are_user_errors():
    ds = SyntheticFaces(4, 8, seed=0)
    with pytest.raises(UserError, match="batch_size must be at least 1, got 0"):
        build_loader(ds, 0, shuffle=False)
    with pytest.raises(UserError, match="num_workers must be >= 0, got -1"):
        build_loader(ds, 2, shuffle=False, num_workers=-1)


def test_loader_uses_a_distributed_sampler_under_torch_distributed(tmp_path: Path) -> None:
    import torch.distributed as dist
    from torch.utils.data.distributed import DistributedSampler

    ds = SyntheticFaces(10, 8, seed=0)
    alone = build_loader(ds, 2, shuffle=True, seed=7, epoch=3)  # a world of one outside torchrun
    assert isinstance(alone.sampler, DistributedSampler) and alone.sampler.num_replicas == 1
    assert alone.sampler.epoch == 3
    rendezvous = f"file://{tmp_path / 'rendezvous'}"
    dist.init_process_group("gloo", init_method=rendezvous, rank=0, world_size=1)
    try:
        loader = build_loader(ds, 2, shuffle=True, seed=7)
        assert isinstance(loader.sampler, DistributedSampler)
        assert loader.sampler.shuffle and loader.sampler.seed == 7
        assert [i for i in loader.sampler] != [i for i in alone.sampler]  # epoch 0's order, not 3's
        # without shuffling, each rank takes every world-th image once (no padding: exact sums)
        shards = [torch.cat(list(build_loader(ds, 2, shuffle=False, world=3, rank=r))) for r in range(3)]
        assert [len(t) for t in shards] == [4, 3, 3]
        torch.testing.assert_close(shards[1], torch.stack([ds[i] for i in (1, 4, 7)]))
        loader.sampler.set_epoch(1)
        assert sum(len(b) for b in loader) == 10
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------------- the batch plan
def test_batch_larger_than_the_split_is_clamped():
    assert plan_batches(20, 64) == (
        20, 1, "warning: batch_size 64 is more than the 20 training images; using batch_size 20"
    )
    assert plan_batches(21, 8, world=2)[:2] == (8, 1)
    assert plan_batches(5, 8, world=2)[0] == 3
    assert "per process" in plan_batches(5, 8, world=2)[2]


def test_the_last_incomplete_batch_is_dropped_and_an_empty_split_refused():
    assert plan_batches(50, 16) == (16, 3, None)  # 48 images a epoch, 2 left for the next shuffle
    assert plan_batches(50, 16, world=2) == (16, 1, None)  # 25 per process
    with pytest.raises(UserError, match="the training split is empty; raise --max-images"):
        plan_batches(0, 8)
