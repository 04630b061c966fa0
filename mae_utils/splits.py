"""Splits: the seeded train / val / test partition of a data set, kept in ``split.json``, and its datasets.

:func:`prepare_data` is the one way training and evaluation get their data: it scans a folder (or
draws synthetic faces), splits the names with ``sklearn``'s seeded ``train_test_split``
(:func:`split_names`), writes the split to ``split.json`` and reuses it on later runs and on resume,
and returns the three datasets (:class:`DataSplits`) of :mod:`mae_utils.data`.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from torch.utils.data import Dataset

from .config import check_fracs
from .data import (
    IMAGE_EXTENSIONS,
    SKIPPED_SHOWN,
    CacheDir,
    FaceFolder,
    SyntheticFaces,
    as_augment,
    check_folder,
    check_image_size,
    format_skipped,
    scan_images,
)
from .util.errors import UserError
from .util.fileio import atomic_write_text
from .transforms import Augment

__all__ = ["SYNTHETIC_DEFAULT_IMAGES", "DataSplits", "prepare_data", "split_names"]

#: How many synthetic faces :func:`prepare_data` generates when ``max_images`` is not given.
SYNTHETIC_DEFAULT_IMAGES = 2000

# --- splits --------------------------------------------------------------------------------------


@dataclass
class DataSplits:
    """The three datasets plus what a run records about them."""

    train: Dataset
    val: Dataset
    test: Dataset
    split: dict[str, list[str]]  # {"train": [...], "val": [...], "test": [...]}: relative paths or synthetic names
    root: str | None  # the data folder, or None for synthetic faces
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def split_names(
    names: Sequence[str], val_frac: float = 0.1, test_frac: float = 0.1, seed: int = 0, *, source: str = "the data"
) -> dict[str, list[str]]:
    """Split ``names`` into train / val / test with ``sklearn.model_selection.train_test_split``.

    The result depends only on the set of names, the fractions and the seed (names are sorted
    first), so the same files give the same split on any machine. A non-zero fraction gets at
    least one image; each list comes back sorted.
    """
    from sklearn.model_selection import train_test_split  # local: a heavy import (~1.5 s) only splits need

    check_fracs(val_frac, test_frac)
    names = sorted(set(names))
    n = len(names)
    n_val = max(1, round(n * val_frac)) if val_frac > 0 else 0
    n_test = max(1, round(n * test_frac)) if test_frac > 0 else 0
    if n - n_val - n_test < 1:
        need = (1 if val_frac > 0 else 0) + (1 if test_frac > 0 else 0) + 1
        raise UserError(
            f"{source} has {n} usable image(s): too few for a train/val/test split with val_frac={val_frac} "
            f"and test_frac={test_frac} (need at least {need}, and more for useful training)"
        )
    rest, test = (train_test_split(names, test_size=n_test, random_state=seed, shuffle=True) if n_test else (names, []))
    train, val = (train_test_split(rest, test_size=n_val, random_state=seed, shuffle=True) if n_val else (rest, []))
    return {"train": sorted(train), "val": sorted(val), "test": sorted(test)}


def _read_split(path: Path) -> dict[str, list[str]]:
    try:
        data = json.loads(path.read_text())
        split = {k: [str(x) for x in data[k]] for k in ("train", "val", "test")}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(f"split file {path} is not a valid split.json ({exc})") from None
    return split


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
    split_file = Path(split_path) if split_path is not None else None
    saved = _read_split(split_file) if split_file is not None and split_file.exists() else None
    train_aug = as_augment(augment)

    if data_dir is None:
        n = int(max_images) if max_images is not None else SYNTHETIC_DEFAULT_IMAGES
        if saved is not None:
            split = saved
            n = max([n] + [_synthetic_index(s, split_file) + 1 for part in split.values() for s in part])
        else:
            names = [f"synthetic/{i:06d}" for i in range(n)]
            split = split_names(names, val_frac, test_frac, seed, source=f"synthetic data ({n} faces)")
        idx = {k: [_synthetic_index(s, split_file or Path("split.json")) for s in v] for k, v in split.items()}
        t0 = time.perf_counter()
        train = SyntheticFaces(n, image_size, seed, augment=train_aug or False, indices=idx["train"])
        val = SyntheticFaces(n, image_size, seed, indices=idx["val"])
        test = SyntheticFaces(n, image_size, seed, indices=idx["test"])
        log(f"data: {n} synthetic faces at {image_size}px (seed {seed}), drawn in {time.perf_counter() - t0:.1f} s")
        _log_split(log, split, saved is not None, split_file, seed)
        if saved is None and split_file is not None:
            _write_split(split_file, split, [], None)
        return DataSplits(train, val, test, split, None, [])

    root = check_folder(data_dir)
    notes: list[str] = []
    candidates, n_other = scan_images(root, notes=notes)
    for note in notes:
        log(f"data: {root}: {note}")
    if saved is not None:
        needed = sorted({s for part in saved.values() for s in part})
        if not set(needed) <= set(candidates):
            missing = sorted(set(needed) - set(candidates))
            raise UserError(
                f"split file {split_file} lists {len(missing)} image(s) no longer in {root}: "
                f"{', '.join(missing[:SKIPPED_SHOWN])}{' ...' if len(missing) > SKIPPED_SHOWN else ''}"
            )
    if max_images is not None and len(candidates) > max_images:
        rng = np.random.default_rng(seed)
        keep = np.sort(rng.choice(len(candidates), size=int(max_images), replace=False))
        chosen = [candidates[i] for i in keep]
        if saved is not None:  # a resumed run must find all of its split's files
            chosen = sorted(set(chosen) | set(needed))
        log(f"data: keeping {len(chosen)} of {len(candidates)} image files in {root} "
            f"(max_images={max_images}, seed {seed})")  # fmt: skip
        candidates = chosen
    if not candidates:
        raise UserError(
            f"no image files in {root} (accepted extensions: {', '.join(IMAGE_EXTENSIONS)}; "
            f"{n_other} other file(s) ignored)"
        )
    t0 = time.perf_counter()
    full = FaceFolder(root, image_size, files=candidates, cache_dir=cache_dir)
    skipped = [(Path(p).relative_to(root).as_posix(), r) for p, r in full.skipped]
    seconds = time.perf_counter() - t0
    cache_note = f"cache {full.cache_path} ({full.cache_status}, {seconds:.1f} s)" if full.cache_path else "no cache"
    log(f"data: {root}: {len(candidates)} image files, {len(full)} usable, {len(skipped)} skipped; {cache_note}")
    if skipped:
        log(f"data: skipped {len(skipped)} unreadable file(s): {format_skipped(skipped)}")
    if saved is not None:
        split = saved
        unusable = [s for part in split.values() for s in part if s not in set(full.rel_files)]
        if unusable:
            raise UserError(
                f"split file {split_file} lists {len(unusable)} image(s) that can no longer be read in {root}: "
                f"{', '.join(unusable[:SKIPPED_SHOWN])}"
            )
    else:
        split = split_names(full.rel_files, val_frac, test_frac, seed, source=str(root))
    train = full.subset(split["train"], augment=train_aug or False)
    val = full.subset(split["val"])
    test = full.subset(split["test"])
    _log_split(log, split, saved is not None, split_file, seed)
    if saved is None and split_file is not None:
        _write_split(split_file, split, skipped, str(root))
    return DataSplits(train, val, test, split, str(root), skipped)


def _log_split(
    log: Callable[[str], None], split: dict[str, list[str]], reused: bool, path: Path | None, seed: int
) -> None:
    where = f"reused from {path}" if reused else (f"seed {seed}, written to {path}" if path else f"seed {seed}")
    log(f"split: {len(split['train'])} train / {len(split['val'])} val / {len(split['test'])} test ({where})")
