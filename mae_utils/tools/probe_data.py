"""The faces a probe fits on, chooses on and scores on, with their labels: :func:`load_probe_data`.

The run's own data uses its ``split.json``: fit on ``train``, choose (the best block) on ``val``,
score on ``test``. Any other folder (e.g. Yale faces for a model trained on UTKFace) is split here,
seeded and stratified by the first target's class: ``test_frac`` of the faces to score,
``val_frac`` to choose, the rest to fit; the notes say so. Labels come from
:mod:`mae_utils.tools.labels` (class sub-folders, a file-name pattern, or the synthetic faces' own
attributes). A fine-tune reads the same :class:`ProbeData`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..util.errors import UserError
from ..util.folders import is_several
from ..config import TrainConfig
from ..data import FaceFolder
from ..splits import prepare_data
from .labels import Labels, dataset_labels
from .probe_settings import ProbeSettings

__all__ = ["ProbeData", "load_probe_data"]

#: (dataset, positions in it, {target: labels at those positions})
Part = tuple[Any, np.ndarray, dict[str, np.ndarray]]


@dataclass
class ProbeData:
    """Training, test and validation faces (a dataset and positions in it) with one label array per
    target. The validation faces only choose (the best block); they may be none."""

    train_set: Any
    train_pos: np.ndarray
    test_set: Any
    test_pos: np.ndarray
    y_train: dict[str, np.ndarray]
    y_test: dict[str, np.ndarray]
    tasks: dict[str, str]
    notes: list[str] = field(default_factory=list)
    val_set: Any = None
    val_pos: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    y_val: dict[str, np.ndarray] = field(default_factory=dict)

    def parts(self) -> dict[str, tuple[Any, np.ndarray]]:
        """``{"train", "test"[, "val"]: (dataset, positions)}``; "val" if there are such."""
        out = {"train": (self.train_set, self.train_pos), "test": (self.test_set, self.test_pos)}
        if len(self.val_pos):
            out["val"] = (self.val_set, self.val_pos)
        return out


def _labels(ds: Any, settings: ProbeSettings, task: str | dict[str, str], where: str,
            check: bool = True) -> list[Labels]:
    """The settings' targets for every image of ``ds`` (:func:`~.labels.dataset_labels`)."""
    return dataset_labels(ds, settings.targets, settings.label_regex, task, where, check)


def _common(labels: list[Labels]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Positions labelled for every target, and each target's values at them."""
    keep = labels[0].keep
    for lab in labels[1:]:
        keep = np.intersect1d(keep, lab.keep)
    values = {}
    for lab in labels:
        where = {int(p): i for i, p in enumerate(lab.keep)}
        values[lab.target] = lab.values[[where[int(p)] for p in keep]]
    return keep, values


def _split_off(ids: np.ndarray, strata: np.ndarray | None, share: float,
               seed: int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded split of ``ids`` into (rest, ``share`` of them), stratified by ``strata``."""
    from sklearn.model_selection import train_test_split  # local: a heavy import only probes need

    try:
        rest, part = train_test_split(ids, test_size=share, random_state=seed, stratify=strata)
    except ValueError as exc:
        raise UserError(f"cannot hold out {share:.0%} of these faces, stratified by label: {exc}; "
                        "change --test-frac or --val-frac (0: no validation faces)") from None
    return np.sort(rest), np.sort(part)


def _split_here(n: int, strata: np.ndarray | None, settings: ProbeSettings) -> list[np.ndarray]:
    """[train, val, test] positions of ``range(n)``: seeded, stratified by ``strata`` when given."""
    ids = np.arange(n)
    rest, test = _split_off(ids, strata, settings.test_frac, settings.seed)
    if not settings.val_frac:
        return [rest, np.zeros(0, np.int64), test]
    share = settings.val_frac / (1 - settings.test_frac)
    train, val = _split_off(rest, None if strata is None else strata[rest], share, settings.seed)
    return [train, val, test]


def _is_foreign(data_dir: str | Path | None, config: TrainConfig) -> bool:
    if data_dir is None:
        return False
    if config.data_dir is None or is_several(config.data_dir):  # a folder alone is split here
        return True
    try:
        return Path(data_dir).expanduser().resolve() != Path(config.data_dir).expanduser().resolve()
    except OSError:
        return True


def _foreign_parts(config: TrainConfig, settings: ProbeSettings, cache: Any):
    """A folder that is not the run's data, split here: (parts, labels, notes)."""
    ds = FaceFolder(settings.data_dir, config.image_size, cache_dir=cache)
    labels = _labels(ds, settings, settings.task, str(settings.data_dir))
    keep, values = _common(labels)
    first = labels[0]
    stratified = first.task == "classify"
    ids = _split_here(len(keep), values[first.target] if stratified else None, settings)
    parts = [(ds, keep[i], {t: v[i] for t, v in values.items()}) for i in ids]
    how = f"seed {settings.seed}" + (f", stratified by {first.target!r}" if stratified else "")
    notes = [f"data: {settings.data_dir} is not the run's data, so it is split here: "
             f"{len(ids[0])} train / {len(ids[1])} validation / {len(ids[2])} test ({how})"]
    return parts, labels, notes


def _own_parts(run_dir: str | Path, config: TrainConfig, settings: ProbeSettings, cache: Any):
    """The run's own split (``split.json``): (parts, labels, notes)."""
    split_path = Path(run_dir) / "split.json"
    if not split_path.is_file():
        raise UserError(f"{split_path} not found: cannot tell which images {run_dir} trained on")
    folder = settings.data_dir if settings.data_dir is not None else config.data_dir
    if folder is not None and not is_several(folder) and not Path(folder).expanduser().is_dir():
        raise UserError(f"the run's data folder {folder!r} is not a folder here; pass --data-dir "
                        "with its location")
    splits = prepare_data(
        folder, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
        test_frac=config.test_frac, seed=config.seed, split_path=split_path, cache_dir=cache,
        augment=False, log=lambda _m: None,
    )
    where = "the synthetic faces" if folder is None else str(folder)
    labels = _labels(splits.train, settings, settings.task, f"the training faces of {where}",
                     check=False)
    tasks = {lab.target: lab.task for lab in labels}
    parts = [(splits.train, *_common(labels))]
    for name, ds in (("validation", splits.val), ("test", splits.test)):
        parts.append((ds, *_common(_labels(ds, settings, tasks, f"the {name} faces of {where}",
                                           check=False))))
    notes = [f"data: the run's own split ({where}, {split_path.name}): fit on train, choose on "
             "val, score on test"]
    return parts, labels, notes


def load_probe_data(run_dir: str | Path, config: TrainConfig, settings: ProbeSettings) -> ProbeData:
    """The faces a probe fits on, chooses on and scores on, with their labels (module docstring).

    ``config``: the run's :class:`TrainConfig` (its image size, data and split)."""
    cache = settings.cache_dir if settings.cache_dir else config.cache_dir
    if _is_foreign(settings.data_dir, config):
        parts, labels, notes = _foreign_parts(config, settings, cache)
    else:
        parts, labels, notes = _own_parts(run_dir, config, settings, cache)
    notes += [n for lab in labels for n in lab.notes]
    tasks = {lab.target: lab.task for lab in labels}
    return _select(parts, tasks, settings, notes)


def _subsample(part: Part, limit: int | None, seed: int, salt: int) -> Part:
    """A seeded subset of at most ``limit`` faces of ``part``."""
    ds, pos, values = part
    if limit is None or limit >= len(pos):
        return part
    pick = np.random.default_rng([seed, salt]).choice(len(pos), size=int(limit), replace=False)
    pick = np.sort(pick)
    return ds, pos[pick], {t: v[pick] for t, v in values.items()}


def _drop_rare_classes(train: Part, tasks: dict[str, str], notes: list[str]) -> Part:
    """Training faces of classes seen once left out: cross-validation cannot hold such a class out
    (its test faces stay)."""
    ds, pos, y = train
    for target, task in tasks.items():
        if task != "classify":
            continue
        classes, counts = np.unique(y[target], return_counts=True)
        rare = classes[counts < 2]
        if len(rare):
            keep = ~np.isin(y[target], rare)
            pos, y = pos[keep], {t: v[keep] for t, v in y.items()}
            shown = ", ".join(map(repr, rare[:5].tolist()))
            notes.append(f"left out {int((~keep).sum())} training face(s) of {target!r} classes "
                         f"seen once in training: {shown}")
        if len(set(y[target].tolist())) < 2:
            raise UserError(f"the training faces hold a single class of {target!r}: nothing to "
                            "tell apart")
    return ds, pos, y


def _select(parts: list[Part], tasks: dict[str, str], settings: ProbeSettings,
            notes: list[str]) -> ProbeData:
    """Seeded subsets of at most ``max_train`` / ``max_test`` faces, rare classes left out."""
    limits = (settings.max_train, settings.max_test, settings.max_test)
    salts = (0, 2, 1)  # train, val, test: the test subset of a seed stays what it was without val
    picked = [_subsample(p, lim, settings.seed, salt) for p, lim, salt in zip(parts, limits, salts)]
    if any(len(a[1]) < len(b[1]) for a, b in zip(picked, parts)):
        counts = ", ".join(f"{len(a[1])} of {len(b[1])} {name} faces"
                           for a, b, name in zip(picked, parts, ("training", "validation", "test")))
        notes.append(f"subsampled (seed {settings.seed}): {counts}")
    train, val, test = picked
    train = _drop_rare_classes(train, tasks, notes)
    return ProbeData(train[0], train[1], test[0], test[1], train[2], test[2], tasks, notes,
                     val_set=val[0], val_pos=val[1], y_val=val[2])
