"""Splits (mae_utils.splits): the seeded train / val / test partition and its sizes, split.json kept
and reused, the training items fixed by (seed, epoch, index), and the training loader."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from mae_utils.data import SyntheticFaces
from mae_utils.splits import (
    SYNTHETIC_DEFAULT_IMAGES,
    TrainItems,
    count_split,
    prepare_data,
    split_names,
    split_sizes,
    train_loader,
)
from mae_utils.transforms import Augment
from mae_utils.util.errors import UserError

from conftest import write_faces


# ---------------------------------------------------------------------- the partition
def test_split_names_reproducible_disjoint_and_complete() -> None:
    names = [f"img_{i:03d}.jpg" for i in range(200)]
    a = split_names(names, 0.1, 0.15, seed=3)
    b = split_names(list(reversed(names)), 0.1, 0.15, seed=3)  # input order does not matter
    assert a == b
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (150, 20, 30)
    sets = [set(a[k]) for k in ("train", "val", "test")]
    assert not (sets[0] & sets[1]) and not (sets[0] & sets[2]) and not (sets[1] & sets[2])
    assert set().union(*sets) == set(names)
    assert split_names(names, 0.1, 0.15, seed=4) != a
    none = split_names(names, 0.0, 0.0, seed=0)
    assert none["val"] == [] and none["test"] == [] and len(none["train"]) == 200


def test_split_names_take_no_account_of_what_the_names_say() -> None:
    """No stratification: a name's folder (a label, for the probe) does not steer its part."""
    names = [f"{'a' if i < 90 else 'b'}/{i}.png" for i in range(100)]
    parts = [split_names(names, 0.1, 0.1, seed=s) for s in range(20)]
    assert all(len(p["val"]) == len(p["test"]) == 10 for p in parts)
    in_test = [sum(n.startswith("b/") for n in p["test"]) for p in parts]
    assert len(set(in_test)) > 1  # the share of "b" in the test part varies with the seed


@pytest.mark.parametrize(
    "n,val,test,sizes",
    [(100, 0.1, 0.2, (70, 10, 20)), (10, 0.01, 0.01, (8, 1, 1)), (3, 0.1, 0.1, (1, 1, 1)),
     (5, 0.0, 0.4, (3, 0, 2)), (1, 0.0, 0.0, (1, 0, 0))],
)
def test_split_sizes_give_each_nonzero_fraction_an_image(n, val, test, sizes) -> None:
    assert split_sizes(n, val, test) == sizes
    assert sum(len(v) for v in split_names([str(i) for i in range(n)], val, test).values()) == n


def test_too_few_images_for_the_split_is_a_user_error() -> None:
    with pytest.raises(UserError, match=r"photos has 2 usable image\(s\): too few .*\(need at least 3"):
        split_sizes(2, 0.1, 0.1, source="photos")
    with pytest.raises(UserError, match="val_frac"):
        split_sizes(100, 0.6, 0.5)


# ---------------------------------------------------------------------- split.json
def test_synthetic_prepare_data_and_resume(tmp_path) -> None:
    split_path = tmp_path / "split.json"
    lines: list[str] = []
    a = prepare_data(None, 16, max_images=40, seed=2, split_path=split_path, log=lines.append)
    assert a.root is None and a.skipped == []
    assert (len(a.train), len(a.val), len(a.test)) == (32, 4, 4)
    assert all(n.startswith("synthetic/") for part in a.split.values() for n in part)
    assert isinstance(a.train, SyntheticFaces) and a.train.augment is not None and a.val.augment is None
    assert "40 synthetic faces" in "\n".join(lines)
    b = prepare_data(None, 16, max_images=40, seed=2, split_path=split_path, log=lambda m: None)
    assert b.split == a.split
    np.testing.assert_array_equal(b.val.uint8(1), a.val.uint8(1))
    # an item of a split is the same face as in the full generator
    k = int(a.test.names[0].split("/")[1])
    np.testing.assert_array_equal(a.test.uint8(0), SyntheticFaces(40, 16, seed=2).uint8(k))
    with pytest.raises(UserError, match="not a synthetic face"):
        split_path.write_text(json.dumps({"train": ["a.jpg"], "val": [], "test": []}))
        prepare_data(None, 16, split_path=split_path, log=lambda m: None)


def test_a_saved_split_is_reused_whatever_the_seed(tmp_path) -> None:
    write_faces(tmp_path / "faces", 10, size=16)
    split_path = tmp_path / "run" / "split.json"
    first = prepare_data(tmp_path / "faces", 16, seed=1, split_path=split_path, cache_dir=False,
                         log=lambda m: None)
    lines: list[str] = []
    again = prepare_data(tmp_path / "faces", 16, seed=99, split_path=split_path, cache_dir=False,
                         log=lines.append)
    assert again.split == first.split and "reused from" in "\n".join(lines)
    assert split_names(sum(first.split.values(), []), seed=99) != first.split  # seed 99 would differ


def test_count_split_reads_a_saved_split_and_counts_without_decoding(tmp_path) -> None:
    assert count_split(None) == (split_sizes(SYNTHETIC_DEFAULT_IMAGES, 0.1, 0.1),
                                 f"{SYNTHETIC_DEFAULT_IMAGES} synthetic faces")
    write_faces(tmp_path / "faces", 9, size=16)
    (tmp_path / "faces" / "broken.png").write_bytes(b"not a png")  # counted: nothing is decoded
    counts, where = count_split(tmp_path / "faces", max_images=8)
    assert counts == (6, 1, 1) and where == f"8 of 10 image files in {tmp_path / 'faces'}"
    saved = tmp_path / "split.json"
    saved.write_text(json.dumps({"train": ["a", "b"], "val": ["c"], "test": []}))
    assert count_split(tmp_path / "faces", split_path=saved) == ((2, 1, 0), f"the split in {saved}")


# ---------------------------------------------------------------------- training items
def test_training_items_are_fixed_by_seed_epoch_and_index() -> None:
    ds = SyntheticFaces(6, 16, seed=0)
    items = TrainItems(ds, num_patches=4, seed=3, salt=1, augment=Augment())
    items.epoch = 2
    forward = [items[i] for i in range(6)]
    backward = [items[i] for i in reversed(range(6))][::-1]  # another access order: same draws
    for (img, noise, params), (img2, noise2, params2) in zip(forward, backward):
        assert torch.equal(img, img2) and torch.equal(noise, noise2)
        assert all(torch.equal(torch.as_tensor(params[k]), torch.as_tensor(params2[k])) for k in params)
    assert not torch.equal(forward[0][1], forward[1][1])  # each image its own mask
    items.epoch = 3
    assert not torch.equal(items[0][1], forward[0][1])  # each epoch its own mask
    other_salt = TrainItems(ds, num_patches=4, seed=3, salt=2)
    other_salt.epoch = 2
    assert not torch.equal(other_salt[0][1], forward[0][1]) and other_salt[0][2] == {}
    items.epoch = None  # validation: fixed noise
    assert torch.equal(items[4][1], items[4][1]) and not torch.equal(items[4][1], forward[4][1])


def test_the_training_loader_drops_the_last_batch_and_sets_the_epoch() -> None:
    items = TrainItems(SyntheticFaces(10, 16, seed=0), num_patches=4, seed=3, salt=1)
    batches = list(train_loader(items, 4, seed=3, epoch=5))
    assert items.epoch == 5 and [len(b[0]) for b in batches] == [4, 4]  # 2 of 10 images wait
    again = list(train_loader(items, 4, seed=3, epoch=5))
    assert all(torch.equal(a[1], b[1]) for a, b in zip(batches, again))
    next_epoch = list(train_loader(items, 4, seed=3, epoch=6))
    assert items.epoch == 6 and not torch.equal(next_epoch[0][1], batches[0][1])
