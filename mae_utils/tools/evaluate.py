"""Honest evaluation of a run: ``python -m mae_utils evaluate --run runs/NAME``.

The model and the classical inpainting baselines (:data:`mae_utils.baselines.BASELINES`) fill exactly
the same hidden patches of the same held-out images, and all are scored on pixels in [0, 1] over the
hidden region (the headline) and over the full image with the visible patches pasted back (which
flatters every method, as a quarter of the pixels are copied). Means come with 95% confidence
intervals over images, and the model's margin over the strongest baseline with a *paired* interval
(per-image differences), which is much tighter than comparing two separate intervals.

Which images: with no ``--data-dir`` (or the run's own folder) the run's ``split.json`` gives the
held-out ``--split`` (default ``test``), so nothing the model trained on is scored. Any other folder
(e.g. a different face data set) is evaluated in full. ``--limit N`` scores a seeded random subset
of N: file lists are often sorted by something meaningful (UTKFace names start with the age), so
the first N would be a biased sample.

Results go to ``RUN/eval/<name>.json`` (summary, paired differences, per-image values, file names)
and ``RUN/eval/<name>.png`` (a few images: original, masked, model, each baseline).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import torch

from ..baselines import BASELINES
from ..util.checkpoint import load_model_from_run
from ..config import DEVICES
from ..data import FaceFolder
from ..util.errors import UserError
from .reconstruct import add_mask_arguments, check_mask_arguments, model_reconstruction
from ..util.fileio import atomic_write_text
from ..masking import MASK_KINDS, make_mask
from ..metrics import evaluate_batch, mean_ci95, paste_visible, patch_mask_to_pixel_mask, summarize
from ..util.progress import tqdm
from ..util.runtime import resolve_device
from ..splits import prepare_data
from ..transforms import batch_to_input, denormalize
from ..viz import comparison_figure

__all__ = [
    "DEFAULT_BASELINES",
    "METRICS",
    "add_cli_arguments",
    "eval_name",
    "evaluate_model",
    "evaluate_run",
    "format_table",
    "load_eval_dataset",
    "run_cli",
]

DEFAULT_BASELINES: tuple[str, ...] = ("mean_fill", "harmonic", "biharmonic")
METRICS: tuple[str, ...] = ("psnr_masked", "ssim_masked", "psnr_full", "ssim_full")
SPLITS: tuple[str, ...] = ("train", "val", "test")


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
    """Whether ``folder`` holds every image the run's ``split.json`` lists (its paths are relative)."""
    try:
        record = json.loads(split_path.read_text())
        names = [n for k in SPLITS for n in record[k]]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    root = Path(folder).expanduser()
    return bool(names) and root.is_dir() and all((root / n).is_file() for n in names)


def load_eval_dataset(
    run_dir: str | Path, config: Any, data_dir: str | Path | None = None, split: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """The images to score, and a description of them for the JSON.

    The run's own data (``data_dir`` None or the run's folder): its ``split.json`` split ``split``
    (default: test). Another folder: all of its images, so a ``split`` there is refused, not ignored.
    """
    if split is not None and split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    run_dir = Path(run_dir)
    own_dir = config.data_dir
    foreign = data_dir is not None and (own_dir is None or not _same_folder(data_dir, own_dir))
    if foreign and own_dir is not None and _holds_split(data_dir, run_dir / "split.json"):
        foreign = False  # the run's data, moved (or named from another working directory): score its split
    if foreign:
        if split is not None:
            raise UserError(
                f"--split {split} selects from the run's own data, but --data-dir {data_dir} is another folder "
                "whose images are all scored: drop --split, or drop --data-dir to score the run's own split"
            )
        ds = FaceFolder(data_dir, config.image_size, cache_dir=config.cache_dir)
        return ds, {"source": "folder", "data_dir": str(data_dir), "split": "all", "skipped": len(ds.skipped)}
    split_path = run_dir / "split.json"
    if not split_path.is_file():
        raise UserError(f"{split_path} not found: cannot tell which images {run_dir} held out")
    folder = data_dir if data_dir is not None else own_dir
    if folder is not None and not Path(folder).expanduser().is_dir():
        raise UserError(
            f"the run's data folder {folder!r} (from {run_dir}/config.json) is not a folder here; "
            "pass --data-dir with its new location (the run's split is still scored: split.json lists its "
            "images relative to the data folder)"
        )
    splits = prepare_data(
        folder, config.image_size, max_images=config.max_images, val_frac=config.val_frac,
        test_frac=config.test_frac, seed=config.seed, split_path=split_path, cache_dir=config.cache_dir,
        augment=False, log=lambda _msg: None,
    )  # fmt: skip
    split = split or "test"
    ds = getattr(splits, split)
    if len(ds) == 0:
        raise UserError(f"the {split} split of {run_dir} is empty; choose another --split")
    source = "synthetic" if folder is None else "run split"
    return ds, {"source": source, "data_dir": None if folder is None else str(folder), "split": split}


# ---------------------------------------------------------------------- scoring
def _check_baselines(baselines: Sequence[str]) -> tuple[str, ...]:
    unknown = [b for b in baselines if b not in BASELINES]
    if unknown:
        raise UserError(f"unknown baseline(s) {', '.join(unknown)}; choose from {', '.join(BASELINES)}")
    if "model" in baselines:
        raise UserError("'model' is not a baseline name")
    return tuple(dict.fromkeys(baselines))


def _select(n_total: int, limit: int | None, seed: int) -> list[int]:
    """Indices to score: all, or a seeded random subset of ``limit`` (kept in dataset order)."""
    if limit is None or limit >= n_total:
        return list(range(n_total))
    if limit < 1:
        raise UserError(f"limit must be a positive integer; got {limit}")
    g = torch.Generator().manual_seed(int(seed) + 7919)
    return sorted(torch.randperm(n_total, generator=g)[:limit].tolist())


def evaluate_model(
    model: torch.nn.Module,
    dataset: Any,
    *,
    mask: str = "random",
    mask_ratio: float = 0.75,
    patches: Sequence[int] | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    device: str | torch.device = "cpu",
    keep_images: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Score a model and the baselines on ``dataset`` (items: uint8 (3, H, W), or normalised floats).

    Every image gets its mask from one :func:`~mae_utils.masking.make_mask` call over the whole
    selection (seeded), so results do not depend on ``batch_size``, and the model and every baseline
    see the same mask. Returns ``n_images``, ``indices`` (dataset positions scored), ``names``,
    ``masks`` (N, L), ``per_image`` {method: {metric: (N,) tensor}}, ``summary`` {method: {metric:
    {mean, ci95, n}}}, ``paired`` {baseline: {mean, ci95}} (model minus baseline, masked PSNR, per
    image), ``seconds`` {method: time spent}, and with ``keep_images`` ``images`` {"original",
    method: (N, 3, H, W) in [0, 1], visible pixels pasted back}.
    """
    baselines = _check_baselines(baselines)
    if mask not in MASK_KINDS:
        raise UserError(f"unknown mask kind {mask!r}; choose one of {', '.join(MASK_KINDS)}")
    if batch_size < 1:
        raise UserError(f"batch_size must be a positive integer; got {batch_size}")
    device = torch.device(device)
    model = model.to(device).eval()
    size, p = int(model.img_size), int(model.patch_size)
    indices = _select(len(dataset), limit, seed)
    n = len(indices)
    if n == 0:
        raise UserError("no images to evaluate")
    masks = make_mask(mask, n, size // p, mask_ratio=mask_ratio, patches=patches, seed=seed)
    methods = ("model", *baselines)
    per_image: dict[str, dict[str, list[torch.Tensor]]] = {m: {k: [] for k in METRICS} for m in methods}
    seconds = {m: 0.0 for m in methods}
    kept: dict[str, list[torch.Tensor]] = {m: [] for m in ("original", *methods)}
    names_all = _image_names(dataset)
    bar = tqdm(total=n, desc="evaluating", unit="img", disable=not progress)
    for start in range(0, n, batch_size):
        idx = indices[start : start + batch_size]
        imgs = torch.stack([dataset[i] for i in idx])
        if imgs.shape[-1] != size or imgs.shape[-2] != size:
            raise UserError(f"dataset images are {tuple(imgs.shape[-2:])} but the model takes {size}x{size}")
        m = masks[start : start + len(idx)]
        original = denormalize(imgs)
        pixel_mask = patch_mask_to_pixel_mask(m, p, size)
        t0 = time.perf_counter()
        fills = {"model": model_reconstruction(model, batch_to_input(imgs, device), m.to(device)).cpu()}
        seconds["model"] += time.perf_counter() - t0
        for b in baselines:
            t0 = time.perf_counter()
            fills[b] = BASELINES[b](original, pixel_mask)
            seconds[b] += time.perf_counter() - t0
        for method, fill in fills.items():
            for k, v in evaluate_batch(original, fill, pixel_mask).items():
                per_image[method][k].append(v)
            if keep_images:
                kept[method].append(paste_visible(fill.clamp(0, 1), original, pixel_mask))
        if keep_images:
            kept["original"].append(original)
        bar.update(len(idx))
    bar.close()
    values = {m: {k: torch.cat(v) for k, v in d.items()} for m, d in per_image.items()}
    paired = {}
    for b in baselines:
        diff = values["model"]["psnr_masked"].double() - values[b]["psnr_masked"].double()
        mean, half = mean_ci95(diff)
        paired[b] = {"mean": mean, "ci95": half, "n": n}
    result: dict[str, Any] = {
        "n_images": n,
        "indices": indices,
        "names": [names_all[i] for i in indices],
        "masks": masks,
        "hidden_fraction": float(masks.mean()),
        "per_image": values,
        "summary": {m: summarize(v) for m, v in values.items()},
        "paired": paired,
        "seconds": seconds,
        "norm_pix_loss": bool(getattr(model, "norm_pix_loss", False)),
    }
    if keep_images:
        result["images"] = {k: torch.cat(v) for k, v in kept.items()}
    return result


def best_baseline(result: dict[str, Any]) -> str | None:
    """The baseline with the highest mean masked-region PSNR (the one to beat)."""
    names = [m for m in result["summary"] if m != "model"]
    return max(names, key=lambda m: result["summary"][m]["psnr_masked"]["mean"]) if names else None


# ---------------------------------------------------------------------- reporting
def _fmt(stat: dict[str, float], digits: int) -> str:
    half = stat["ci95"]
    half_text = "n/a" if half is None or math.isnan(half) else f"{half:.{digits}f}"
    return f"{stat['mean']:.{digits}f} ± {half_text}"


def format_table(result: dict[str, Any], title: str | None = None) -> str:
    """A plain-text table: one row per method, masked PSNR/SSIM and full-image PSNR/SSIM (mean ± 95% CI)."""
    cols = (("psnr_masked", "PSNR masked (dB)", 2), ("ssim_masked", "SSIM masked", 3),
            ("psnr_full", "PSNR full (dB)", 2), ("ssim_full", "SSIM full", 3))  # fmt: skip
    rows = [["method", *(c[1] for c in cols)]]
    for method, stats in result["summary"].items():
        rows.append([method, *(_fmt(stats[key], d) for key, _, d in cols)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [title] if title else []
    for j, r in enumerate(rows):
        cells = (cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths)))
        lines.append("  ".join(cells))
        if j == 0:
            lines.append("  ".join("-" * w for w in widths))
    best = best_baseline(result)
    if best is not None:
        d = result["paired"][best]
        lines.append(
            f"model - {best} (strongest baseline): {d['mean']:+.2f} dB masked PSNR "
            f"(paired 95% CI ± {d['ci95']:.2f}, {d['n']} images)"
        )
    if result.get("norm_pix_loss"):
        lines.append(
            "note: norm_pix_loss model: its pixels use the hidden patches' true mean/std (not a fair comparison)"
        )
    return "\n".join(lines)


def eval_name(split_desc: dict[str, Any], mask: str, mask_ratio: float, which: str) -> str:
    """File stem for eval/: e.g. ``test_random75_best`` or ``folder-lfw_center_best``."""
    if split_desc["source"] == "folder":
        where = "folder-" + (Path(str(split_desc["data_dir"])).expanduser().resolve().name or "data")
    else:
        where = split_desc["split"]
    shape = f"{mask}{round(mask_ratio * 100)}" if mask in ("random", "center") else mask
    return f"{where}_{shape}_{which}"


def check_file_stem(name: str) -> str:
    """``name`` if it is a plain file name (no folder part, not hidden), else a :class:`UserError`:
    evaluation results stay in ``RUN/eval/``."""
    bad = not name or name in (".", "..") or name.startswith(".") or "/" in name or "\\" in name or "\0" in name
    if bad or Path(name).name != name:
        raise UserError(f"--name {name!r} must be a plain file name (results go to RUN/eval/NAME.json)")
    return name


def _json_ready(result: dict[str, Any]) -> dict[str, Any]:
    def clean(x: float) -> float | None:
        return None if x is None or (isinstance(x, float) and math.isnan(x)) else x

    summary = {
        m: {k: {kk: clean(vv) for kk, vv in s.items()} for k, s in d.items()} for m, d in result["summary"].items()
    }
    paired = {b: {k: clean(v) for k, v in d.items()} for b, d in result["paired"].items()}
    per_image = {
        m: {k: [round(float(x), 5) for x in v.tolist()] for k, v in d.items()} for m, d in result["per_image"].items()
    }
    return {"summary": summary, "paired_model_minus_baseline_psnr_masked": paired, "per_image": per_image}


# ---------------------------------------------------------------------- the library entry point
def _write_evaluation(out_dir: Path, stem: str, result: dict[str, Any], model: torch.nn.Module, which: str,
                      baselines: list[str], started: float) -> None:
    """Write ``stem.png`` (the comparison figure) and ``stem.json`` (the record) into ``out_dir``;
    add their paths to ``result``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig_path = out_dir / f"{stem}.png"
    fig = comparison_figure(result, fig_path)
    fig.clear()
    record = {
        "run": str(out_dir.parent),
        "checkpoint": which,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "data": result["data"],
        "mask": result["mask"],
        "model": getattr(model, "config", None),
        "norm_pix_loss": result["norm_pix_loss"],
        "baselines": baselines,
        "best_baseline": best_baseline(result),
        "seconds": {**result["seconds"], "total": time.perf_counter() - started},
        **_json_ready(result),
        "names": result["names"],
        "figure": fig_path.name,
    }
    json_path = out_dir / f"{stem}.json"
    atomic_write_text(json_path, json.dumps(record, indent=1) + "\n")
    result.update(json_path=json_path, figure_path=fig_path)


def evaluate_run(
    run_dir: str | Path,
    *,
    data_dir: str | Path | None = None,
    split: str | None = None,
    mask: str = "random",
    mask_ratio: float = 0.75,
    patches: Sequence[int] | None = None,
    limit: int | None = None,
    batch_size: int = 64,
    seed: int = 0,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    device: str = "auto",
    which: str = "best",
    write: bool = True,
    name: str | None = None,
    keep_images: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Evaluate a training run's model against the baselines; what the CLI and the notebooks call.

    Returns :func:`evaluate_model`'s dict plus ``table`` (the printed text), ``data`` (what was
    scored), ``mask`` (its settings), ``checkpoint``, and with ``write`` ``json_path`` and
    ``figure_path`` under ``run_dir/eval/``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist")
    if name is not None:
        check_file_stem(name)
    dev = resolve_device(device)
    model, config = load_model_from_run(run_dir, which, dev)
    dataset, data_desc = load_eval_dataset(run_dir, config, data_dir, split)
    started = time.perf_counter()
    result = evaluate_model(
        model, dataset, mask=mask, mask_ratio=mask_ratio, patches=patches, limit=limit, batch_size=batch_size,
        seed=seed, baselines=baselines, device=dev, keep_images=keep_images or write, progress=progress,
    )  # fmt: skip
    mask_desc = {"kind": mask, "mask_ratio": mask_ratio if mask in ("random", "center") else None,
                 "patches": list(patches) if patches else None, "seed": seed,
                 "hidden_fraction": result["hidden_fraction"]}  # fmt: skip
    data_desc = {**data_desc, "n_available": len(dataset), "n_images": result["n_images"], "limit": limit}
    where = data_desc["data_dir"] or "synthetic faces"
    title = (f"{run_dir} ({which} checkpoint): {result['n_images']} {data_desc['split']} images of {where}, "
             f"{mask} mask, {result['hidden_fraction']:.0%} of patches hidden (seed {seed})")  # fmt: skip
    result.update(table=format_table(result, title), data=data_desc, mask=mask_desc, checkpoint=which)
    if write:
        stem = name or eval_name(data_desc, mask, mask_ratio, which)
        _write_evaluation(run_dir / "eval", stem, result, model, which, list(dict.fromkeys(baselines)), started)
        if not keep_images:
            result.pop("images", None)
    return result


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Score a run's model and classical inpainting baselines (mean fill, harmonic, biharmonic) on the "
        "same masks of held-out images: masked-region PSNR/SSIM (the headline) and full-image PSNR/SSIM, "
        "mean ± 95% CI. Writes RUN/eval/NAME.json and a figure."
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR", help="a training run directory (runs/NAME)")
    parser.add_argument("--data-dir", default=None, metavar="DIR",
                        help="evaluate on all images of this folder (another data set); default: the run's own "
                             "held-out split")  # fmt: skip
    parser.add_argument("--split", default=None, choices=SPLITS,
                        help="which split of the run's own data (default: test); not with another "
                             "--data-dir")  # fmt: skip
    add_mask_arguments(parser)
    parser.add_argument("--limit", type=int, default=None, metavar="N",
                        help="score a seeded random subset of N images (default: all)")  # fmt: skip
    parser.add_argument("--batch-size", type=int, default=64, help="images per model call (default: 64)")
    parser.add_argument("--baselines", nargs="*", default=list(DEFAULT_BASELINES), choices=list(BASELINES),
                        metavar="NAME",
                        help=f"classical baselines to compare with (default: {' '.join(DEFAULT_BASELINES)}; "
                             "biharmonic is the slowest, ~0.1 s per 64 px image)")  # fmt: skip
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint of the run (default: best)")  # fmt: skip
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to run the model (default: auto)")  # fmt: skip
    parser.add_argument("--name", default=None, help="file name stem under RUN/eval/ (default: from split and mask)")


def run_cli(args: argparse.Namespace) -> int:
    check_mask_arguments(args)
    if args.limit is not None and args.limit < 1:
        raise UserError(f"--limit must be a positive integer; got {args.limit}")
    result = evaluate_run(
        args.run, data_dir=args.data_dir, split=args.split, mask=args.mask, mask_ratio=args.mask_ratio,
        patches=args.patches, limit=args.limit, batch_size=args.batch_size, seed=args.seed,
        baselines=args.baselines, device=args.device, which=args.checkpoint, name=args.name,
    )  # fmt: skip
    print(result["table"])
    print(f"wrote {result['json_path']} and {result['figure_path']}")
    return 0
