"""Splits: the seeded train / val / test partition of a data set, kept in ``split.json``, and its datasets.

:func:`prepare_data` is the one way training and evaluation get their data: it scans a folder (or
draws synthetic faces), splits the names with ``sklearn``'s seeded ``train_test_split``
(:func:`split_names`), writes the split to ``split.json`` and reuses it on later runs and on resume,
and returns the three datasets (:class:`DataSplits`) of :mod:`mae_utils.data`.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from .util import runtime
from .util.errors import UserError
from .util.fileio import atomic_write_text
from .util.folders import check_several_folders, folder_names, is_several
from .util.loaders import build_loader, mix_seed, plan_batches
from .config import TrainConfig, check_fracs
from .data import (
    IMAGE_EXTENSIONS,
    SKIPPED_SHOWN,
    CacheDir,
    FaceFolder,
    FolderUnion,
    SyntheticFaces,
    as_augment,
    check_folder,
    check_image_size,
    format_skipped,
    scan_images,
)
from .transforms import Augment

__all__ = [
    "SYNTHETIC_DEFAULT_IMAGES", "DataSplits", "TrainItems", "count_split", "prepare_data", "split_names",
    "split_sizes", "train_loader", "training_data",
]

#: How many synthetic faces :func:`prepare_data` generates when ``max_images`` is not given.
SYNTHETIC_DEFAULT_IMAGES = 2000
SPLIT_KEYS = ("train", "val", "test")

# --- splits --------------------------------------------------------------------------------------


@dataclass
class DataSplits:
    """The three datasets plus what a run records about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    split: dict[str, list[str]]  # {"train": [...], "val": [...], "test": [...]}: relative paths or synthetic names
    root: str | None  # the data folder, or None for synthetic faces and several folders
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)
    folders: dict[str, "DataSplits"] = field(default_factory=dict)  # of several: each folder's


def split_sizes(n: int, val_frac: float, test_frac: float, *, source: str = "the data") -> tuple[int, int, int]:
    """(train, val, test) image counts of a split of ``n`` images: a non-zero fraction gets at least one."""
    check_fracs(val_frac, test_frac)
    n_val = max(1, round(n * val_frac)) if val_frac > 0 else 0
    n_test = max(1, round(n * test_frac)) if test_frac > 0 else 0
    if n - n_val - n_test < 1:
        need = (1 if val_frac > 0 else 0) + (1 if test_frac > 0 else 0) + 1
        raise UserError(
            f"{source} has {n} usable image(s): too few for a train/val/test split with val_frac={val_frac} "
            f"and test_frac={test_frac} (need at least {need}, and more for useful training)"
        )
    return n - n_val - n_test, n_val, n_test


def split_names(
    names: Sequence[str], val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0, *, source: str = "the data"
) -> dict[str, list[str]]:
    """Split ``names`` into train / val / test with ``sklearn.model_selection.train_test_split``.

    The result depends only on the set of names, the fractions and the seed (names are sorted
    first), so the same files give the same split on any machine. A non-zero fraction gets at
    least one image (:func:`split_sizes`); each list comes back sorted.
    """
    from sklearn.model_selection import train_test_split  # local: a heavy import (~1.5 s) only splits need

    names = sorted(set(names))
    _, n_val, n_test = split_sizes(len(names), val_frac, test_frac, source=source)
    rest, test = (train_test_split(names, test_size=n_test, random_state=seed, shuffle=True) if n_test else (names, []))
    train, val = (train_test_split(rest, test_size=n_val, random_state=seed, shuffle=True) if n_val else (rest, []))
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def count_split(
    data_dir: str | Path | None,
    *,
    max_images: int | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    split_path: str | Path | None = None,
) -> tuple[tuple[int, int, int], str]:
    """((train, val, test) counts, where they come from) without decoding, caching or writing anything
    (``train --dry-run``). A folder's count is of its image files; unreadable ones drop out later."""
    if split_path is not None and Path(split_path).exists():
        saved = _read_split(Path(split_path))
        return (len(saved["train"]), len(saved["val"]), len(saved["test"])), f"the split in {split_path}"
    if data_dir is None:
        n = int(max_images) if max_images is not None else SYNTHETIC_DEFAULT_IMAGES
        return split_sizes(n, val_frac, test_frac), f"{n} synthetic faces"
    if is_several(data_dir):
        return _count_several(data_dir, max_images, val_frac, test_frac)
    root = check_folder(data_dir)
    files, _ = scan_images(root)
    n = min(len(files), max_images) if max_images is not None else len(files)
    if n == 0:
        raise UserError(f"no image files in {root} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)})")
    return split_sizes(n, val_frac, test_frac, source=str(root)), f"{n} of {len(files)} image files in {root}"


def _count_several(
    folders: Sequence[str | Path], max_images: int | None, val_frac: float, test_frac: float
) -> tuple[tuple[int, int, int], str]:
    """:func:`count_split` of several folders: each one's counts, as it is split on its own."""
    counts, lines = [], []
    for name, root in zip(folder_names(folders), check_several_folders(folders)):
        (n_train, n_val, n_test), source = count_split(
            root, max_images=max_images, val_frac=val_frac, test_frac=test_frac)
        counts.append((n_train, n_val, n_test))
        lines.append(f"\n  {name}: {source}: {n_train} train / {n_val} val / {n_test} test")
    total = tuple(sum(c[k] for c in counts) for k in range(3))
    return total, f"{len(counts)} folders, each split on its own{''.join(lines)}\n  together"


def _read_split(path: Path) -> dict[str, list[str]]:
    """A split file's train / val / test names; of several folders, their union (``NAME/file``)."""
    folders = _read_folder_splits(path)
    if folders is not None:
        return {k: [f"{name}/{x}" for name, part in folders.items() for x in part[k]]
                for k in SPLIT_KEYS}
    try:
        data = json.loads(path.read_text())
        split = {k: [str(x) for x in data[k]] for k in SPLIT_KEYS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"split file {path} is not a valid split.json ({exc})") from None
    return split


def _read_folder_splits(path: Path) -> dict[str, dict[str, list[str]]] | None:
    """Each folder's split from a split file of several folders; None for a file of one data set."""
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict) or "folders" not in data:
            return None
        return {str(name): {k: [str(x) for x in part[k]] for k in SPLIT_KEYS}
                for name, part in data["folders"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UserError(f"split file {path} is not a valid split.json ({exc})") from None


def _write_split(path: Path, split: dict[str, list[str]], skipped: Sequence[tuple[str, str]], root: str | None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {**split, "root": root, "skipped": [list(s) for s in skipped]}
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")


def _synthetic_index(name: str, split_path: Path) -> int:
    prefix = "synthetic/"
    if not name.startswith(prefix) or not name[len(prefix) :].isdigit():
        raise UserError(
            f"split file {split_path} lists {name!r}, which is not a synthetic face: it belongs to a photo "
            f"folder run; pass that run's data_dir"
        )
    return int(name[len(prefix) :])


def prepare_data(
    data_dir: str | Path | None,
    image_size: int,
    *,
    max_images: int | None = None,
    val_frac: float = 0.1,
    test_frac: float = 0.1,
    seed: int = 0,
    split_path: str | Path | None = None,
    cache_dir: CacheDir = None,
    augment: bool | Augment = True,
    log: Callable[[str], None] = print,
) -> DataSplits:
    """Build the train / val / test datasets for a run (only train augments).

    ``data_dir=None`` means synthetic faces (``max_images`` of them, default
    :data:`SYNTHETIC_DEFAULT_IMAGES`). For a folder, ``max_images`` keeps a seeded random subset of
    the image files. If ``split_path`` exists its split is reused (a resumed run); otherwise the
    split is computed and written there. ``cache_dir``: see :class:`FaceFolder`.
    """
    image_size = check_image_size(image_size)
    check_fracs(val_frac, test_frac)
    bad_max = isinstance(max_images, bool) or not isinstance(max_images, (int, np.integer)) or max_images < 1
    if max_images is not None and bad_max:
        raise UserError(f"max_images must be a positive integer or None, got {max_images!r}")
    plan = _SplitPlan(Path(split_path) if split_path is not None else None, val_frac, test_frac, seed, log)
    train_aug = as_augment(augment) or False
    if is_several(data_dir):
        return _several_folder_splits(plan, data_dir, image_size, max_images, cache_dir, train_aug)
    if plan.folders is not None:
        raise UserError(f"split file {plan.split_file} records the split of several folders "
                        f"({', '.join(plan.folders)}); give data_dir as those folders")
    if data_dir is None:
        return _synthetic_splits(plan, image_size, max_images, train_aug)
    return _folder_splits(plan, check_folder(data_dir), image_size, max_images, cache_dir, train_aug)


@dataclass
class _SplitPlan:
    """What both data paths share: where the split lives (and the one saved there), fractions, seed, log."""

    split_file: Path | None
    val_frac: float
    test_frac: float
    seed: int
    log: Callable[[str], None]
    write: bool = True  # False: one folder of several, whose split the caller records

    def __post_init__(self) -> None:
        exists = self.split_file is not None and self.split_file.exists()
        self.saved = _read_split(self.split_file) if exists else None
        self.folders = _read_folder_splits(self.split_file) if exists else None

    def for_folder(self, saved: dict[str, list[str]] | None) -> "_SplitPlan":
        """One folder's plan, of several: its saved split (None: split it), not written alone."""
        plan = dataclasses.replace(self, split_file=None, write=False)
        plan.split_file, plan.saved = self.split_file, saved
        return plan

    def finish(self, split: dict[str, list[str]], skipped: list[tuple[str, str]], root: str | None) -> None:
        """Log the split and write it, unless it was read from the split file."""
        shown = self.split_file if self.write or self.saved is not None else None
        _log_split(self.log, split, self.saved is not None, shown, self.seed)
        if self.saved is None and self.split_file is not None and self.write:
            _write_split(self.split_file, split, skipped, root)


def _synthetic_splits(plan: _SplitPlan, image_size: int, max_images: int | None, train_aug: Augment | bool) -> DataSplits:
    """The synthetic-face path of :func:`prepare_data`: names ``synthetic/000123``, faces drawn from the seed."""
    n = int(max_images) if max_images is not None else SYNTHETIC_DEFAULT_IMAGES
    if plan.saved is not None:
        split = plan.saved
        n = max([n] + [_synthetic_index(s, plan.split_file) + 1 for part in split.values() for s in part])
    else:
        names = [f"synthetic/{i:06d}" for i in range(n)]
        split = split_names(names, plan.val_frac, plan.test_frac, plan.seed, source=f"synthetic data ({n} faces)")
    idx = {k: [_synthetic_index(s, plan.split_file or Path("split.json")) for s in v] for k, v in split.items()}
    t0 = time.perf_counter()
    seed = plan.seed
    train = SyntheticFaces(n, image_size, seed, augment=train_aug, indices=idx["train"])
    val = SyntheticFaces(n, image_size, seed, indices=idx["val"])
    test = SyntheticFaces(n, image_size, seed, indices=idx["test"])
    plan.log(f"data: {n} synthetic faces at {image_size}px (seed {seed}), drawn in {time.perf_counter() - t0:.1f} s")
    plan.finish(split, [], None)
    return DataSplits(train, val, test, split, None, [])


def _folder_candidates(plan: _SplitPlan, root: Path, max_images: int | None) -> list[str]:
    """The image files a folder run uses: scanned, checked against a saved split, capped by ``max_images``."""
    notes: list[str] = []
    candidates, n_other = scan_images(root, notes=notes)
    for note in notes:
        plan.log(f"data: {root}: {note}")
    needed = sorted({s for part in plan.saved.values() for s in part}) if plan.saved is not None else []
    missing = sorted(set(needed) - set(candidates))
    if missing:
        raise UserError(
            f"split file {plan.split_file} lists {len(missing)} image(s) no longer in {root}: "
            f"{', '.join(missing[:SKIPPED_SHOWN])}{' ...' if len(missing) > SKIPPED_SHOWN else ''}"
        )
    if max_images is not None and len(candidates) > max_images:
        rng = np.random.default_rng(plan.seed)
        keep = np.sort(rng.choice(len(candidates), size=int(max_images), replace=False))
        chosen = sorted(set(candidates[i] for i in keep) | set(needed))  # a resumed run finds all its files
        plan.log(f"data: keeping {len(chosen)} of {len(candidates)} image files in {root} "
                 f"(max_images={max_images}, seed {plan.seed})")  # fmt: skip
        candidates = chosen
    if not candidates:
        raise UserError(
            f"no image files in {root} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)}; "
            f"{n_other} other file(s) ignored)"
        )
    return candidates


def _folder_splits(
    plan: _SplitPlan, root: Path, image_size: int, max_images: int | None, cache_dir: CacheDir,
    train_aug: Augment | bool,
) -> DataSplits:
    """The photo-folder path of :func:`prepare_data`: scan, decode (or read the cache), split."""
    candidates = _folder_candidates(plan, root, max_images)
    t0 = time.perf_counter()
    full = FaceFolder(root, image_size, files=candidates, cache_dir=cache_dir)
    skipped = [(Path(p).relative_to(root).as_posix(), r) for p, r in full.skipped]
    seconds = time.perf_counter() - t0
    cache_note = f"cache {full.cache_path} ({full.cache_status}, {seconds:.1f} s)" if full.cache_path else "no cache"
    plan.log(f"data: {root}: {len(candidates)} image files, {len(full)} usable, {len(skipped)} skipped; {cache_note}")
    if skipped:
        plan.log(f"data: skipped {len(skipped)} unreadable file(s): {format_skipped(skipped)}")
    if plan.saved is not None:
        split = plan.saved
        usable = set(full.rel_files)
        unusable = [s for part in split.values() for s in part if s not in usable]
        if unusable:
            raise UserError(
                f"split file {plan.split_file} lists {len(unusable)} image(s) that can no longer be read in "
                f"{root}: {', '.join(unusable[:SKIPPED_SHOWN])}"
            )
    else:
        split = split_names(full.rel_files, plan.val_frac, plan.test_frac, plan.seed, source=str(root))
    train = full.subset(split["train"], augment=train_aug)
    val, test = full.subset(split["val"]), full.subset(split["test"])
    plan.finish(split, skipped, str(root))
    return DataSplits(train, val, test, split, str(root), skipped)


def _several_folder_splits(
    plan: _SplitPlan, folders: Sequence[str | Path], image_size: int, max_images: int | None,
    cache_dir: CacheDir, train_aug: Augment | bool,
) -> DataSplits:
    """The several-folders path of :func:`prepare_data`: each folder scanned, cached and split on
    its own (the split it would get alone, so its test faces never depend on the other folders),
    the three splits the union of the folders'; ``split.json`` records each folder's split."""
    roots = [check_folder(f) for f in check_several_folders(folders)]
    names = folder_names(roots)
    saved = _saved_folder_splits(plan, names)
    parts = {name: _folder_splits(plan.for_folder(saved.get(name)), root, image_size, max_images,
                                  cache_dir, train_aug)
             for name, root in zip(names, roots)}
    union = {k: FolderUnion({n: getattr(p, k) for n, p in parts.items()},
                            augment=train_aug if k == "train" else False) for k in SPLIT_KEYS}
    split = {k: list(union[k].rel_files) for k in SPLIT_KEYS}
    skipped = [(f"{name}/{rel}", why) for name, p in parts.items() for rel, why in p.skipped]
    plan.log(f"data: {len(parts)} folders together ({', '.join(names)})")
    _log_split(plan.log, split, plan.saved is not None, plan.split_file, plan.seed)
    if plan.saved is None and plan.split_file is not None:
        record = {"folders": {name: {"root": p.root, **p.split,
                                     "skipped": [list(s) for s in p.skipped]}
                              for name, p in parts.items()}}
        plan.split_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan.split_file, json.dumps(record, indent=1) + "\n")
    return DataSplits(union["train"], union["val"], union["test"], split, None, skipped, parts)


def _saved_folder_splits(plan: _SplitPlan, names: list[str]) -> dict[str, dict[str, list[str]]]:
    """Each folder's saved split (none saved: {}); the saved folders must be the ones given."""
    if plan.saved is None:
        return {}
    if plan.folders is None:
        raise UserError(f"split file {plan.split_file} records the split of one data set, not of "
                        f"the folders {', '.join(names)}; give data_dir as that run's one folder")
    if sorted(plan.folders) != sorted(names):
        raise UserError(f"split file {plan.split_file} records the folders "
                        f"{', '.join(plan.folders)}, but data_dir names {', '.join(names)}; "
                        "give the run's own folders")
    return plan.folders


def _log_split(
    log: Callable[[str], None], split: dict[str, list[str]], reused: bool, path: Path | None, seed: int
) -> None:
    where = f"reused from {path}" if reused else (f"seed {seed}, written to {path}" if path else f"seed {seed}")
    log(f"split: {len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test ({where})")


# ---------------------------------------------------------------------- a run's training data
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
