"""Honest evaluation of a run: ``python -m mae_utils evaluate --run runs/NAME``.

The model and the classical inpainting baselines (:data:`mae_utils.baselines.BASELINES`) fill
exactly the same hidden patches of the same held-out images, and all are scored on pixels in [0, 1]
over the hidden region (the headline) and over the full image with the visible patches pasted back
(which flatters every method, as a quarter of the pixels are copied). Means come with 95%
confidence intervals over images, and the model's margin over the strongest baseline with a
*paired* interval (per-image differences), which is much tighter than comparing two separate
intervals.

Which images: with no ``--data-dir`` (or the run's own folder) the run's ``split.json`` gives the
held-out ``--split`` (default ``test``), so nothing the model trained on is scored. Any other folder
(e.g. a different face data set) is evaluated in full. ``--limit N`` scores a seeded random subset
of N: file lists are often sorted by something meaningful (UTKFace names start with the age), so
the first N would be a biased sample.

Besides PSNR and SSIM, every method gets *blockiness* and *detail*
(:func:`mae_utils.metrics.seam_scores`: 1.0 = as natural and as detailed as the photo), which see
the mosaic of separately guessed patches that PSNR barely sees. The model is scored twice, always:
raw (``model``, the MAE's own number) and made seam-free by :func:`mae_utils.baselines.blend_seams`
(``model+blend``); again when the run has a trained seam refiner (``model+refine``: refined, then
blended seam-free; ``--no-refine`` skips it), and with ``--tta flip`` (``model+flip``: the fill
averaged with the un-flipped fill of the mirrored image and mask). Every fill comes from
:mod:`mae_utils.tools.inference`. :class:`EvalSettings` holds every setting of one evaluation; the
command line, :func:`evaluate_run` and ``notebooks/evaluate.ipynb`` share it.

Results go to ``RUN/eval/<name>.json`` (summary, paired differences, per-image values, file names)
and ``RUN/eval/<name>.png`` (a few images: original, masked, model, model+blend, each baseline), or
under ``--out-dir``. A rerun with the same settings replaces its result; an earlier result of the
same name made with other settings (seed, limit, baselines, mask, data, zoom, checkpoint, tta) is
kept unless ``--overwrite``. The table is printed before anything is written, so a failed write
loses no scores.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from ..util.errors import UserError
from ..util.fileio import atomic_write_text
from ..util.folders import folder_names, is_several, member_name
from ..util.loaders import mix_seed
from ..util.progress import tqdm
from ..util.rundir import is_run_folder
from ..util.runtime import resolve_device
from ..util.text_table import aligned_table
from ..baselines import BASELINES
from ..config import DEVICES, check_run_dir, load_run_config
from ..data import FaceFolder
from ..metrics import evaluate_batch, mean_ci95, paste_visible, patch_mask_to_pixel_mask, summarize
from ..pretrained import load_for_inference, load_model_from_run
from ..splits import prepare_data
from ..transforms import ZOOM_FILLS, batch_to_input, denormalize, zoom_out
from ..viz import comparison_figure
from .inference import SeamRefiner, fill_from, load_refiner, predict, refiner_record
from .reconstruct import FillSettings, add_fill_arguments, add_model_arguments, fill_settings
from .refine import REFINE

__all__ = [
    "BLEND",
    "DEFAULT_BASELINES",
    "FLIP",
    "REFINE",
    "EvalSettings",
    "Evaluation",
    "METRICS",
    "RunEvaluation",
    "add_cli_arguments",
    "check_results_target",
    "eval_name",
    "eval_settings",
    "evaluate_each_folder",
    "evaluate_model",
    "evaluate_run",
    "format_table",
    "load_eval_dataset",
    "run_cli",
    "ZoomedOut",
]

DEFAULT_BASELINES: tuple[str, ...] = ("mean_fill", "harmonic", "biharmonic")
METRICS: tuple[str, ...] = (
    "psnr_masked", "ssim_masked", "psnr_full", "ssim_full", "blockiness", "detail",
)
#: The row of the model's output made seam-free (:func:`mae_utils.baselines.blend_seams`).
BLEND = "model+blend"
#: The row of the flip test-time average (``tta="flip"``): never in place of the raw ``model``.
FLIP = "model+flip"
MODEL_ROWS: tuple[str, ...] = ("model", BLEND, FLIP, REFINE)
SPLITS: tuple[str, ...] = ("train", "val", "test")
CHECKPOINTS: tuple[str, ...] = ("best", "last")


# ---------------------------------------------------------------------- settings
def _positive_int(value: Any, name: str, flag: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise UserError(f"{flag} must be a positive integer; got {value!r} ({name})")


def _one_of(value: Any, allowed: Sequence[Any], flag: str) -> None:
    if value not in allowed:
        shown = ", ".join(str(a) for a in allowed)
        raise UserError(f"{flag} must be one of {shown}; got {value!r}")


def _check_baselines(baselines: Sequence[str]) -> tuple[str, ...]:
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise UserError(f"unknown baseline(s) {', '.join(unknown)}; "
                        f"choose from {', '.join(BASELINES)}")
    return tuple(dict.fromkeys(baselines))


@dataclass(frozen=True)
class EvalSettings(FillSettings):
    """Every setting of one evaluation, checked once, here: the mask and test-time average
    (:class:`~mae_utils.tools.reconstruct.FillSettings`), which images (``data_dir``, ``split``,
    ``limit``, ``zoom_out`` / ``zoom_fill``: faces shrunk to that share of the frame side,
    :class:`ZoomedOut`), which model (``checkpoint``, ``refine``: its seam refiner too, if it has
    one; ``device``), what it is compared with (``baselines``), ``batch_size``, and where results
    go (``name``, ``out_dir``, ``overwrite``). The command line's flags carry the same names
    (``--zoom-out``; ``--no-refine`` is ``refine=False``)."""

    data_dir: str | list[str] | None = None
    split: str | None = None
    limit: int | None = None
    batch_size: int = 64
    baselines: tuple[str, ...] = DEFAULT_BASELINES
    checkpoint: str = "best"
    refine: bool = True
    device: str = "auto"
    zoom_out: float | None = None
    zoom_fill: str = "photo"
    name: str | None = None
    out_dir: str | None = None
    overwrite: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "baselines", _check_baselines(self.baselines))
        if self.limit is not None:
            _positive_int(self.limit, "limit", "--limit")
        _positive_int(self.batch_size, "batch_size", "--batch-size")
        if self.split is not None:
            _one_of(self.split, SPLITS, "split")
        _one_of(self.checkpoint, CHECKPOINTS, "checkpoint")
        _one_of(self.device, DEVICES, "device")
        _one_of(self.zoom_fill, ZOOM_FILLS, "--zoom-fill")
        if self.zoom_out is not None and not 0.0 < self.zoom_out <= 1.0:
            raise UserError("--zoom-out must be in (0, 1], the face's share of the frame side; "
                            f"got {self.zoom_out}")
        if self.name is not None:
            check_file_stem(self.name)

    def mask_record(self) -> dict[str, Any]:
        """The mask part of a result's record (what makes two evaluations comparable)."""
        ratio = self.mask_ratio if self.mask in ("random", "center") else None
        patches = list(self.patches) if self.patches else None
        return {"kind": self.mask, "mask_ratio": ratio, "patches": patches, "seed": self.seed}


# ---------------------------------------------------------------------- data
def _image_names(ds: Any) -> list[str]:
    names = getattr(ds, "rel_files", None) or getattr(ds, "names", None)
    return [str(x) for x in names] if names is not None else [str(i) for i in range(len(ds))]


def _same_folder(a: str | Path, b: str | Path) -> bool:
    try:
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()
    except OSError:
        return False


def _holds_split(folder: str | Path, split_path: Path) -> bool:
    """Whether ``folder`` holds every image the run's ``split.json`` lists (its paths are
    relative)."""
    try:
        record = json.loads(split_path.read_text())
        names = [n for k in SPLITS for n in record[k]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    root = Path(folder).expanduser()
    return bool(names) and root.is_dir() and all((root / n).is_file() for n in names)


def _foreign(run_dir: Path, own_dir: Any, data_dir: str | Path | None) -> bool:
    """Whether ``data_dir`` is another folder than the run's data (moved data still counts as
    the run's: it holds every image of the run's split)."""
    if data_dir is None:
        return False
    if own_dir is None:
        return True
    if not is_several(own_dir) and _same_folder(data_dir, own_dir):
        return False
    return not _holds_split(data_dir, run_dir / "split.json")


def _other_folder(config: Any, data_dir: str | Path, split: str | None) -> tuple[Any, dict]:
    if split is not None:
        raise UserError(
            f"--split {split} selects from the run's own data, but --data-dir {data_dir} is "
            "another folder whose images are all scored: drop --split, or drop --data-dir to "
            "score the run's own split"
        )
    ds = FaceFolder(data_dir, config.image_size, cache_dir=config.cache_dir)
    described = {"source": "folder", "data_dir": str(data_dir), "split": "all",
                 "skipped": len(ds.skipped)}
    return ds, described


def _run_split(run_dir: Path, config: Any, folder: str | Path | None, split: str) -> Any:
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise UserError(f"{split_path} not found: cannot tell which images {run_dir} held out")
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise UserError(
            f"the run's data folder {folder!r} (from {run_dir}/config.json) is not a folder "
            "here; pass --data-dir with its new location (the run's split is still scored: "
            "split.json lists its images relative to the data folder)"
        )
    splits = prepare_data(
        folder, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
        test_frac=config.test_frac, seed=config.seed, split_path=split_path,
        cache_dir=config.cache_dir, augment=False, log=lambda _msg: None,
    )
    ds = getattr(splits, split)
    if len(ds) == 0:
        raise UserError(f"the {split} split of {run_dir} is empty; choose another --split")
    return ds


def load_eval_dataset(
    run_dir: str | Path, config: Any, data_dir: str | Path | None = None, split: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The images to score, and a description of them for the JSON.

    The run's own data (``data_dir`` None or the run's folder): its ``split.json`` split
    ``split`` (default: test). Another folder: all of its images, so a ``split`` there is
    refused, not ignored.
    """
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    run_dir = Path(run_dir)
    if data_dir is not None and is_run_folder(Path(data_dir).expanduser()):
        raise UserError(f"--data-dir {data_dir} is a training run's folder, not a folder of "
                        "face photos: leave --data-dir out to score the run's own held-out "
                        "faces, or give a folder of photos")
    own_dir = config.data_dir
    if is_several(own_dir) and (data_dir is None or member_name(data_dir, own_dir) is not None):
        return _several_folder_split(run_dir, config, data_dir, split)
    if _foreign(run_dir, own_dir, data_dir):
        return _other_folder(config, data_dir, split)
    folder = data_dir if data_dir is not None else config.data_dir
    split = split or "test"
    ds = _run_split(run_dir, config, folder, split)
    source = "synthetic" if folder is None else "run split"
    return ds, {"source": source, "data_dir": None if folder is None else str(folder),
                "split": split}


def _several_folder_split(
    run_dir: Path, config: Any, folder: str | Path | None, split: str | None
) -> tuple[Any, dict[str, Any]]:
    """A run trained on several folders: the held-out ``split`` (default: test) of one of them
    (``folder``), or of all of them (``folder`` None), as its ``split.json`` records them."""
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise UserError(f"{split_path} not found: cannot tell which images {run_dir} held out")
    for own in config.data_dir:
        if not Path(own).expanduser().is_dir():
            raise UserError(f"the run's data folder {own!r} (from {run_dir}/config.json) is not a "
                            "folder here; put it back to score the run's held-out images")
    splits = prepare_data(
        config.data_dir, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
        test_frac=config.test_frac, seed=config.seed, split_path=split_path,
        cache_dir=config.cache_dir, augment=False, log=lambda _msg: None,
    )
    split = split or "test"
    name = None if folder is None else member_name(folder, config.data_dir)
    chosen = splits if name is None else splits.folders[name]
    ds = getattr(chosen, split)
    if len(ds) == 0:
        raise UserError(f"the {split} split of {run_dir} is empty; choose another --split")
    described = {"source": "run split", "split": split,
                 "data_dir": list(config.data_dir) if name is None else chosen.root}
    return ds, described if name is None else {**described, "folder": name}


class ZoomedOut:
    """``dataset``'s faces shrunk to ``side`` of the frame side, centred in a real surround.

    The surround (``fill``): ``photo``, another image of the same dataset behind the face (picked
    per index from ``seed``, never the face itself), met by its mirrored borders, as the training
    augmentation makes it; ``reflect``, its own borders mirrored; ``mean``, flat mean colour.
    Items stay uint8, so every method is scored on the same new photos, surround included.
    """

    def __init__(self, dataset: Any, side: float, fill: str = "photo", seed: int = 0):
        if fill not in ZOOM_FILLS:
            raise UserError(f"--zoom-fill must be one of {', '.join(ZOOM_FILLS)}; got {fill!r}")
        if not 0.0 < side <= 1.0:
            raise UserError("--zoom-out must be in (0, 1], the face's share of the frame side; "
                            f"got {side}")
        self.dataset, self.side, self.fill, self.seed = dataset, float(side), fill, int(seed)
        self.rel_files = _image_names(dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def other(self, i: int) -> int:
        """The index of the image behind face ``i``."""
        n = len(self.dataset)
        if n < 2:
            return i
        g = torch.Generator().manual_seed(mix_seed(self.seed, 21, i))
        return (i + 1 + int(torch.randint(n - 1, (1,), generator=g))) % n

    def __getitem__(self, i: int) -> torch.Tensor:
        face = self.dataset[i][None]
        behind = self.dataset[self.other(i)][None] if self.fill == "photo" else None
        return zoom_out(face, self.side, fill=self.fill, background=behind)[0]


# ---------------------------------------------------------------------- scoring
def _select(n_total: int, limit: int | None, seed: int) -> list[int]:
    """Indices to score: all, or a seeded random subset of ``limit`` (kept in dataset order)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    if limit < 1:
        raise UserError(f"limit must be a positive integer; got {limit}")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    return sorted(torch.randperm(n_total, generator=g)[:limit].tolist())


@dataclass
class Evaluation:
    """What :func:`evaluate_model` measured. Methods are ``model``, ``model+blend`` (and
    ``model+flip``, ``model+refine`` when asked) and the baselines.

    ``indices``: dataset positions scored; ``masks`` (N, L), 1 = hidden; ``per_image`` {method:
    {metric: (N,) tensor}}; ``summary`` {method: {metric: {mean, ci95, n}}}; ``paired``
    {baseline: {mean, ci95, n}}: model minus baseline, masked PSNR, per image; ``paired_blend``
    the same for ``model+blend`` (and its key ``model``: blend minus raw); ``seconds`` per
    method; ``images`` {"original", method: (N, 3, H, W) in [0, 1], visible pasted back} when
    kept; ``paired_refine`` and ``paired_flip`` the same as ``paired_blend`` for
    ``model+refine`` and ``model+flip`` (empty without them).
    """

    n_images: int
    indices: list[int]
    names: list[str]
    masks: torch.Tensor
    hidden_fraction: float
    per_image: dict[str, dict[str, torch.Tensor]]
    summary: dict[str, dict[str, dict[str, float]]]
    paired: dict[str, dict[str, float]]
    paired_blend: dict[str, dict[str, float]]
    seconds: dict[str, float]
    norm_pix_loss: bool
    images: dict[str, torch.Tensor] | None = None
    paired_refine: dict[str, dict[str, float]] = field(default_factory=dict)
    paired_flip: dict[str, dict[str, float]] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        """Dict-style reads (``res["summary"]``), as evaluate's results were read before they
        were a dataclass."""
        if key not in {f.name for f in fields(self)}:
            raise KeyError(key)
        return getattr(self, key)


@dataclass
class RunEvaluation(Evaluation):
    """:func:`evaluate_run`'s result: the :class:`Evaluation` plus ``table`` (the printed text),
    ``data`` (what was scored), ``mask`` (its settings), ``checkpoint``, and when written
    ``json_path`` and ``figure_path``."""

    table: str = ""
    data: dict[str, Any] | None = None
    mask: dict[str, Any] | None = None
    checkpoint: str = "best"
    json_path: Path | None = None
    figure_path: Path | None = None


def _paired(values: dict[str, dict[str, torch.Tensor]], method: str,
            others: Sequence[str]) -> dict[str, dict]:
    out = {}
    for b in others:
        diff = values[method]["psnr_masked"].double() - values[b]["psnr_masked"].double()
        mean, half = mean_ci95(diff)
        out[b] = {"mean": mean, "ci95": half, "n": int(diff.numel())}
    return out


@dataclass
class _Scoring:
    """What every batch of one evaluation shares; ``seconds`` adds up each method's time."""

    model: torch.nn.Module
    device: torch.device
    baselines: tuple[str, ...]
    refiner: SeamRefiner | None
    tta: str | None
    keep_images: bool
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def methods(self) -> tuple[str, ...]:
        extra = (FLIP,) * bool(self.tta) + (REFINE,) * (self.refiner is not None)
        return ("model", BLEND, *extra, *self.baselines)


def _fills(s: _Scoring, imgs: torch.Tensor, original: torch.Tensor, m: torch.Tensor,
           pixel_mask: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every method's filled images for one batch (pixels in [0, 1]), timing each: the blend's
    and the refiner's time is their own, after the model's; the flip average's is both passes."""
    p = int(s.model.patch_size)
    t0 = time.perf_counter()
    x, m = batch_to_input(imgs, s.device), m.to(s.device)
    pred, _ = predict(s.model, x, m)
    fills = {"model": fill_from(pred, x, pixel_mask, p, photos=original)}
    s.seconds["model"] += time.perf_counter() - t0
    steps: dict[str, Callable[[], torch.Tensor]] = {
        BLEND: lambda: fill_from(pred, x, pixel_mask, p, blend=True, photos=original),
    }
    if s.tta:
        steps[FLIP] = lambda: fill_from(predict(s.model, x, m, tta=s.tta)[0], x, pixel_mask, p,
                                        photos=original)
    if s.refiner is not None:
        steps[REFINE] = lambda: fill_from(pred, x, pixel_mask, p, refiner=s.refiner, blend=True,
                                          photos=original)
    for b in s.baselines:
        steps[b] = lambda b=b: BASELINES[b](original, pixel_mask)
    for method, make in steps.items():
        t0 = time.perf_counter()
        fills[method] = make()
        s.seconds[method] += time.perf_counter() - t0
    return fills


def _score_batch(s: _Scoring, imgs: torch.Tensor, m: torch.Tensor) -> dict[str, dict[str, Any]]:
    """method -> {metric: per-image values} for one batch (plus ``image``: the pasted fill, when
    kept)."""
    size, p = int(s.model.img_size), int(s.model.patch_size)
    if imgs.shape[-1] != size or imgs.shape[-2] != size:
        raise UserError(f"dataset images are {tuple(imgs.shape[-2:])} but the model takes "
                        f"{size}x{size}")
    original = denormalize(imgs)
    pixel_mask = patch_mask_to_pixel_mask(m, p, size)
    out: dict[str, dict[str, Any]] = {"original": {"image": original}} if s.keep_images else {}
    for method, image in _fills(s, imgs, original, m, pixel_mask).items():
        out[method] = evaluate_batch(original, image, m, p)
        if s.keep_images:
            out[method]["image"] = paste_visible(image.clamp(0, 1), original, pixel_mask)
    return out


def _score_all(s: _Scoring, dataset: Any, indices: list[int], masks: torch.Tensor,
               batch_size: int, progress: bool) -> tuple[dict, dict]:
    """({method: {metric: (N,) values}}, {"original" and method: kept images}) over the
    selection, in batches."""
    per_image: dict[str, dict[str, list]] = {m: {k: [] for k in METRICS} for m in s.methods}
    kept: dict[str, list[torch.Tensor]] = {m: [] for m in ("original", *s.methods)}
    bar = tqdm(total=len(indices), desc="evaluating", unit="img", disable=not progress)
    for start in range(0, len(indices), batch_size):
        idx = indices[start : start + batch_size]
        imgs = torch.stack([dataset[i] for i in idx])
        for method, scores in _score_batch(s, imgs, masks[start : start + len(idx)]).items():
            for k, v in scores.items():
                (kept[method] if k == "image" else per_image[method][k]).append(v)
        bar.update(len(idx))
    bar.close()
    values = {m: {k: torch.cat(v) for k, v in d.items()} for m, d in per_image.items()}
    images = {k: torch.cat(v) for k, v in kept.items()} if s.keep_images else None
    return values, images


def evaluate_model(
    model: torch.nn.Module,
    dataset: Any,
    settings: EvalSettings | None = None,
    *,
    refiner: SeamRefiner | None = None,
    keep_images: bool = False,
    progress: bool = True,
) -> Evaluation:
    """Score a model (raw and blended) and the baselines on ``dataset`` (items: uint8
    (3, H, W), or normalised floats), on ``settings.device``.

    ``settings`` (:class:`EvalSettings`; its mask, ``limit``, ``batch_size``, ``baselines``,
    ``tta``, ``device``; default: a random 75% mask, all images) says what is scored. With a
    ``refiner`` (:func:`mae_utils.tools.inference.load_refiner`) the refined output is scored too,
    as ``model+refine``; with ``tta="flip"`` the flip average as ``model+flip``.

    Every image gets its mask from one :func:`~mae_utils.masking.make_mask` call over the whole
    selection (seeded), so results do not depend on ``batch_size``, and the model and every
    baseline see the same mask. With ``keep_images`` the result holds every method's images.
    """
    s = settings or EvalSettings()
    device = resolve_device(s.device)
    model = model.to(device).eval()
    indices = _select(len(dataset), s.limit, s.seed)
    if not indices:
        raise UserError("no images to evaluate")
    masks = s.make_mask(len(indices), int(model.img_size) // int(model.patch_size))
    scoring = _Scoring(model, device, s.baselines, refiner and refiner.to(device), s.tta,
                       keep_images)
    scoring.seconds = {m: 0.0 for m in scoring.methods}
    values, images = _score_all(scoring, dataset, indices, masks, s.batch_size, progress)
    names = _image_names(dataset)
    others = ("model", BLEND, *s.baselines)
    return Evaluation(
        n_images=len(indices), indices=indices, names=[names[i] for i in indices], masks=masks,
        hidden_fraction=float(masks.mean()), per_image=values,
        summary={m: summarize(v) for m, v in values.items()},
        paired=_paired(values, "model", s.baselines),
        paired_blend=_paired(values, BLEND, ("model", *s.baselines)), seconds=scoring.seconds,
        norm_pix_loss=bool(getattr(model, "norm_pix_loss", False)), images=images,
        paired_refine=_paired(values, REFINE, others) if refiner is not None else {},
        paired_flip=_paired(values, FLIP, others) if s.tta else {},
    )


def best_baseline(result: Evaluation) -> str | None:
    """The baseline with the highest mean masked-region PSNR (the one to beat)."""
    names = [m for m in result.summary if m not in MODEL_ROWS]
    return max(names, key=lambda m: result.summary[m]["psnr_masked"]["mean"]) if names else None


# ---------------------------------------------------------------------- reporting
def _fmt(stat: dict[str, float], digits: int) -> str:
    half = stat["ci95"]
    half_text = "n/a" if half is None or math.isnan(half) else f"{half:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {half_text}"


COLUMNS = (("psnr_masked", "PSNR masked (dB)", 2), ("ssim_masked", "SSIM masked", 3),
           ("blockiness", "blockiness", 2), ("detail", "detail", 2),
           ("psnr_full", "PSNR full (dB)", 2), ("ssim_full", "SSIM full", 3))
SEAM_NOTE = ("blockiness: steps across hidden patches' borders vs inside them, relative to the "
             "photo (1 = natural); detail: steps inside hidden patches relative to the photo "
             "(1 = as sharp)")


def _table_rows(result: Evaluation) -> list[str]:
    rows = [["method", *(c[1] for c in COLUMNS)]]
    for method, stats in result.summary.items():
        rows.append([method, *(_fmt(stats[key], d) for key, _, d in COLUMNS)])
    return aligned_table(rows)


def _margin_lines(result: Evaluation) -> list[str]:
    """``method - other: +x.xx dB`` for each model row against the strongest baseline and the
    raw model."""
    best = best_baseline(result)
    pairs = ((BLEND, result.paired_blend), (FLIP, result.paired_flip),
             (REFINE, result.paired_refine))
    margins = [("model", best, result.paired.get(best))]
    for method, paired in pairs:
        margins += [(method, best, paired.get(best)), (method, "model", paired.get("model"))]
    lines = []
    for method, other, d in margins:
        if other is None or d is None:
            continue
        what = " (strongest baseline)" if other == best else ""
        half = "n/a" if d["ci95"] is None or math.isnan(d["ci95"]) else f"{d['ci95']:.2f}"
        lines.append(f"{method} - {other}{what}: {d['mean']:+.2f} dB masked PSNR "
                     f"(paired 95% CI ± {half}, {d['n']} images)")
    return lines


def format_table(result: Evaluation, title: str | None = None) -> str:
    """A plain-text table: one row per method, masked PSNR/SSIM, blockiness, detail and
    full-image PSNR/SSIM (mean ± 95% CI), then the paired margins over the strongest baseline."""
    lines = ([title] if title else []) + _table_rows(result) + _margin_lines(result)
    lines.append(SEAM_NOTE)
    if result.norm_pix_loss:
        lines.append("note: norm_pix_loss model: its pixels use the hidden patches' true mean/std "
                     "(not a fair comparison)")
    return "\n".join(lines)


def eval_name(split_desc: dict[str, Any], mask: str, mask_ratio: float, which: str) -> str:
    """File stem for eval/: e.g. ``test_random75_best`` or ``folder-lfw_center_best``."""
    if split_desc["source"] == "folder":
        folder = Path(str(split_desc["data_dir"])).expanduser().resolve()
        where = "folder-" + (folder.name or "data")
    else:
        folder = split_desc.get("folder")
        where = split_desc["split"] + (f"-{folder}" if folder else "")
    shape = f"{mask}{round(mask_ratio * 100)}" if mask in ("random", "center") else mask
    if split_desc.get("zoom_out") is not None:
        where += f"_zoom{round(split_desc['zoom_out'] * 100)}{split_desc['zoom_fill']}"
    return f"{where}_{shape}_{which}"


def check_file_stem(name: str) -> str:
    """``name`` if it is a plain file name (no folder part, not hidden), else a
    :class:`UserError`: evaluation results stay in ``RUN/eval/``."""
    bad = not name or name in (".", "..") or name.startswith(".")
    bad = bad or any(c in name for c in ("/", "\\", "\0"))
    if bad or Path(name).name != name:
        raise UserError(f"--name {name!r} must be a plain file name (results go to "
                        "RUN/eval/NAME.json)")
    return name


def _clean(x: Any) -> Any:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _json_ready(result: Evaluation) -> dict[str, Any]:
    def paired(d: dict[str, dict[str, float]]) -> dict[str, dict[str, Any]]:
        return {b: {k: _clean(v) for k, v in stats.items()} for b, stats in d.items()}

    summary = {m: paired(d) for m, d in result.summary.items()}
    per_image = {m: {k: [round(float(x), 5) for x in v.tolist()] for k, v in d.items()}
                 for m, d in result.per_image.items()}
    out = {"summary": summary,
           "paired_model_minus_baseline_psnr_masked": paired(result.paired),
           "paired_blend_minus_other_psnr_masked": paired(result.paired_blend),
           "paired_refine_minus_other_psnr_masked": paired(result.paired_refine)}
    if result.paired_flip:
        out["paired_flip_minus_other_psnr_masked"] = paired(result.paired_flip)
    return {**out, "per_image": per_image}


# ---------------------------------------------------------------------- where results go
def _settings(record: dict[str, Any]) -> dict[str, Any]:
    """What makes two evaluations differ, from a result record (its ``data``, ``mask``,
    ``baselines``, ``tta``)."""
    data, mask = record.get("data") or {}, record.get("mask") or {}
    folder = data.get("data_dir") if data.get("source") == "folder" else None
    if folder is not None:
        folder = str(Path(str(folder)).expanduser().resolve())
    same = {"checkpoint": record.get("checkpoint"), "data": data.get("source"), "folder": folder}
    same.update({k: data.get(k) for k in ("split", "limit", "zoom_out", "zoom_fill")})
    same.update({"mask": mask.get("kind"), "mask_ratio": mask.get("mask_ratio"),
                 "patches": mask.get("patches"), "seed": mask.get("seed"),
                 "baselines": sorted(record.get("baselines") or []), "tta": record.get("tta")})
    return same


def _check_writable(folder: Path, stem: str) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".{stem}.{os.getpid()}.probe.tmp"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UserError(f"cannot write evaluation results to {folder}: {reason}; pass --out-dir "
                        "DIR (a folder you can write to) to save them there") from None


def check_results_target(folder: Path, stem: str, record: dict[str, Any],
                         overwrite: bool = False) -> None:
    """Before scoring: ``folder`` must take files, and ``folder/stem.json`` may be replaced only
    by a rerun (the same settings) or with ``overwrite``; an evaluation with other settings is
    not lost silently."""
    _check_writable(folder, stem)
    earlier = folder / f"{stem}.json"
    if overwrite or not earlier.exists():
        return
    try:
        old = _settings(json.loads(earlier.read_text()))
    except (OSError, ValueError, AttributeError):
        old = {}
    new = _settings(record)
    diffs = [f"{k} {old.get(k)!r} -> {new[k]!r}" for k in new if old.get(k) != new[k]]
    if diffs:
        raise UserError(
            f"{earlier} holds an earlier evaluation with other settings ({', '.join(diffs)}); "
            "pass --name NEW to keep both, or --overwrite to replace it"
        )


def _save_results(result: RunEvaluation, record: dict[str, Any], folder: Path, stem: str) -> None:
    """Write ``folder/stem.png`` and ``folder/stem.json``; a failure is one error naming the
    folder."""
    fig_path, json_path = folder / f"{stem}.png", folder / f"{stem}.json"
    try:
        comparison_figure(result, fig_path).clear()
        record = {**record, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                  "norm_pix_loss": result.norm_pix_loss, "best_baseline": best_baseline(result),
                  **_json_ready(result), "names": result.names, "figure": fig_path.name}
        atomic_write_text(json_path, json.dumps(record, indent=1) + "\n")
    except (OSError, UserError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else str(exc)
        raise UserError(f"could not save the evaluation in {folder} ({reason}); the scores were "
                        "computed (the table above): rerun with --out-dir DIR, a folder you can "
                        "write to") from None
    result.json_path, result.figure_path = json_path, fig_path


def _title(run_dir: Path, record: dict[str, Any], scored: Evaluation) -> str:
    data, mask = record["data"], record["mask"]
    where = data["data_dir"] or "synthetic faces"
    if is_several(where):
        where = " + ".join(where)
    if data.get("zoom_out") is not None:
        where += (f", shrunk to {data['zoom_out']:g} of the frame in a {data['zoom_fill']} "
                  "surround")
    weights = f"{record['checkpoint']} checkpoint" if "run" in record else "published weights"
    return (f"{run_dir} ({weights}): {scored.n_images} {data['split']} images of {where}, "
            f"{mask['kind']} mask, {scored.hidden_fraction:.0%} of patches hidden "
            f"(seed {mask['seed']})")


# ---------------------------------------------------------------------- the library entry point
def _zoomed_out(dataset: Any, data_desc: dict[str, Any],
                s: EvalSettings) -> tuple[Any, dict[str, Any]]:
    """The dataset and its description, with the faces shrunk to ``s.zoom_out`` of the frame."""
    if s.zoom_out is None:
        return dataset, data_desc
    zoomed = ZoomedOut(dataset, s.zoom_out, s.zoom_fill, s.seed)
    return zoomed, {**data_desc, "zoom_out": s.zoom_out, "zoom_fill": s.zoom_fill}


def _published_weights(init_from: str | Path, device: torch.device, s: EvalSettings,
                       write: bool) -> tuple[Any, Any, dict[str, Any]]:
    """(model, every image of ``s.data_dir``, their description) for weights that come without a
    run: no held-out split to score and no run folder to write into, so both must be named."""
    if s.data_dir is None:
        raise UserError(f"--init-from {init_from}: published weights come without held-out "
                        "images; give --data-dir DIR, a folder of photos to score")
    if s.split is not None:
        raise UserError(f"--split {s.split} selects from a run's own data; with --init-from "
                        "every image of --data-dir is scored: drop --split")
    if write and s.out_dir is None:
        raise UserError(f"--init-from {init_from}: there is no run folder to write eval/ into; "
                        "give --out-dir DIR for the results")
    model = load_for_inference(init_from).to(device)
    ds = FaceFolder(s.data_dir, model.img_size)
    described = dict(source="folder", data_dir=str(s.data_dir), split="all",
                     skipped=len(ds.skipped))
    return model, ds, described


def _model_and_data(
    run_dir: str | Path | None, init_from: str | Path | None, s: EvalSettings,
    device: torch.device, write: bool,
) -> tuple[Any, SeamRefiner | None, Any, dict[str, Any], Path, str]:
    """(model, its seam refiner or None, the images to score, their description, what is
    scored, which checkpoint): a run's (its held-out split by default), or published weights'
    (``init_from``)."""
    if (run_dir is None) == (init_from is None):
        raise UserError("evaluate takes a run (--run RUN_DIR) or published weights "
                        "(--init-from PATH): give one of them")
    if init_from is not None:
        model, dataset, described = _published_weights(init_from, device, s, write)
        return model, None, dataset, described, Path(init_from), "weights"
    run_dir = check_run_dir(run_dir)
    model, config = load_model_from_run(run_dir, s.checkpoint, device)
    refiner = load_refiner(run_dir, device, checkpoint=s.checkpoint) if s.refine else None
    dataset, described = load_eval_dataset(run_dir, config, s.data_dir, s.split)
    return model, refiner, dataset, described, run_dir, s.checkpoint


def _results_target(run_dir: Path, s: EvalSettings, record: dict[str, Any],
                    write: bool) -> tuple[Path, str]:
    """(folder, file stem) of an evaluation's results; checked before scoring when they are to
    be written."""
    folder = Path(s.out_dir) if s.out_dir is not None else run_dir / "eval"
    mask = record["mask"]
    stem = s.name or eval_name(record["data"], mask["kind"], mask["mask_ratio"],
                               record["checkpoint"])
    if write:
        check_results_target(folder, stem, record, s.overwrite)
    return folder, stem


def _record(scored_from: dict[str, str], which: str, data_desc: dict[str, Any], n: int,
            s: EvalSettings, refiner: dict[str, Any] | None) -> dict[str, Any]:
    """What a result's JSON says about how it was made (before the scores are added)."""
    return {**scored_from, "checkpoint": which,
            "data": {**data_desc, "n_available": n, "limit": s.limit}, "mask": s.mask_record(),
            "baselines": list(s.baselines), "tta": s.tta, "refiner": refiner}


def evaluate_run(
    run_dir: str | Path | None = None,
    settings: EvalSettings | None = None,
    *,
    init_from: str | Path | None = None,
    write: bool = True,
    keep_images: bool = False,
    progress: bool = True,
    on_scored: Callable[[RunEvaluation], None] | None = None,
) -> RunEvaluation:
    """Evaluate a training run's model (and its seam refiner, if any, unless
    ``settings.refine`` is False) against the baselines; what the CLI and the notebooks call.

    ``settings``: :class:`EvalSettings` (default: the run's test split, a random 75% mask, the
    three baselines). With ``write``, the figure and the JSON go under ``settings.out_dir``
    (default ``run_dir/eval/``), checked before scoring (:func:`check_results_target`);
    ``on_scored(result)`` runs before writing. ``init_from`` instead of ``run_dir``: published
    weights, on every image of ``settings.data_dir``.
    """
    s = settings or EvalSettings()
    dev = resolve_device(s.device)
    model, refiner, dataset, data_desc, run_dir, which = _model_and_data(
        run_dir, init_from, s, dev, write)
    dataset, data_desc = _zoomed_out(dataset, data_desc, s)
    scored_from = {"init_from": str(init_from)} if init_from is not None else {"run": str(run_dir)}
    about = refiner and refiner_record(run_dir)
    record = _record(scored_from, which, data_desc, len(dataset), s, about)
    folder, stem = _results_target(run_dir, s, record, write)
    started = time.perf_counter()
    scored = evaluate_model(model, dataset, s, refiner=refiner,
                            keep_images=keep_images or write, progress=progress)
    record["mask"]["hidden_fraction"] = scored.hidden_fraction
    record["data"]["n_images"] = scored.n_images
    result = RunEvaluation(**{f.name: getattr(scored, f.name) for f in fields(Evaluation)},
                           table=format_table(scored, _title(run_dir, record, scored)),
                           data=record["data"], mask=record["mask"], checkpoint=which)
    if on_scored is not None:
        on_scored(result)
    if write:
        seconds = {**result.seconds, "total": time.perf_counter() - started}
        record.update(model=getattr(model, "config", None), seconds=seconds)
        _save_results(result, record, folder, stem)
        if not keep_images:
            result.images = None
    return result


def evaluate_each_folder(
    run_dir: str | Path | None,
    settings: EvalSettings | None = None,
    *,
    init_from: str | Path | None = None,
    write: bool = True,
    progress: bool = True,
    on_scored: Callable[[RunEvaluation], None] | None = None,
) -> list[RunEvaluation]:
    """:func:`evaluate_run` once per folder of a run trained on several (each folder's held-out
    images, results named after it), then on their union; any other evaluation once."""
    s = settings or EvalSettings()
    folders: list[str] = []
    if run_dir is not None and s.data_dir is None:
        own = load_run_config(check_run_dir(run_dir)).data_dir
        folders = list(own) if is_several(own) else []
    each = [replace(s, data_dir=folder, name=s.name and f"{s.name}-{label}")
            for folder, label in zip(folders, folder_names(folders))]
    return [evaluate_run(run_dir, one, init_from=init_from, write=write, progress=progress,
                         on_scored=on_scored) for one in (*each, s)]


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score a run's model and classical inpainting baselines (mean fill, harmonic, biharmonic) "
        "on the same masks of held-out images: masked-region PSNR/SSIM (the headline) and "
        "full-image PSNR/SSIM, mean ± 95% CI. Writes RUN/eval/NAME.json and a figure. Published "
        "weights (--init-from) are scored on every image of --data-dir, their results written "
        "to --out-dir."
    )
    add_model_arguments(parser)
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="evaluate on all images of this folder (another data set); "
                             "default: the run's own held-out split (a run on several folders: "
                             "each folder's, then all together)")
    parser.add_argument("--split", default=None, choices=SPLITS,
                        help="which split of the run's own data (default: test); not with "
                             "another --data-dir")
    add_fill_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="score a seeded random subset of N images (default: all)")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="images per model call (default: 64)")
    parser.add_argument("--baselines", nargs="*", default=list(DEFAULT_BASELINES),
                        choices=list(BASELINES), metavar="NAME",
                        help="classical baselines to compare with (default: "
                             f"{' '.join(DEFAULT_BASELINES)}; biharmonic is the slowest, "
                             "~0.1 s per 64 px image)")
    parser.add_argument("--checkpoint", default="best", choices=CHECKPOINTS,
                        help="which checkpoint of the run (default: best)")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to run the model (default: auto)")
    _add_output_arguments(parser)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--name", default=None,
                        help="file name stem of the results (default: from split, mask and "
                             "checkpoint)")
    parser.add_argument("--out-dir", default=None, metavar="DIR",
                        help="where to write NAME.json and NAME.png (default: RUN/eval)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an earlier result of that name made with other settings "
                             "(a rerun with the same settings replaces it anyway)")
    parser.add_argument("--zoom-out", type=float, default=None, metavar="S",
                        help="score each face shrunk to S of the frame side (e.g. 0.5), centred "
                             "in a real surround (see --zoom-fill): faces framed wider than the "
                             "source frames them")
    parser.add_argument("--zoom-fill", default="photo", choices=ZOOM_FILLS,
                        help="surround for --zoom-out: photo (another evaluation image, seeded), "
                             "reflect (mirrored borders) or mean (flat colour) (default: photo)")
    parser.add_argument("--no-refine", action="store_true",
                        help="leave out the row model+refine that a run with a trained seam "
                             "refiner (python -m mae_utils refine) gets")


def eval_settings(args: argparse.Namespace) -> EvalSettings:
    """The command line's flags as :class:`EvalSettings` (checked there, once)."""
    return EvalSettings(
        **asdict(fill_settings(args)), data_dir=args.data_dir, split=args.split,
        limit=args.limit, batch_size=args.batch_size, baselines=tuple(args.baselines),
        checkpoint=args.checkpoint, refine=not args.no_refine, device=args.device,
        zoom_out=args.zoom_out, zoom_fill=args.zoom_fill, name=args.name, out_dir=args.out_dir,
        overwrite=args.overwrite,
    )


def run_cli(args: argparse.Namespace) -> int:
    results = evaluate_each_folder(args.run, eval_settings(args), init_from=args.init_from,
                                   on_scored=lambda r: print(r.table, flush=True))
    for result in results:
        print(f"wrote {result.json_path} and {result.figure_path}")
    return 0
