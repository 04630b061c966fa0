"""Reconstruct any photos with a trained MAE: ``python -m mae_utils reconstruct``.

:func:`reconstruct_images` is the one code path that the command, ``notebooks/evaluate.ipynb`` and
``notebooks/reconstruct_your_photos.ipynb`` share: photos are decoded exactly as the training data
were (:func:`mae_utils.data.load_face`: EXIF-upright RGB, shorter side resized, center crop), made
into the model's input by the training code's :func:`~mae_utils.transforms.batch_to_input`, a mask
is drawn (:func:`mae_utils.masking.make_mask`), the model fills the hidden patches
(:mod:`mae_utils.tools.inference`, as evaluate scores them), and the result comes back in [0, 1]
as the four panels of the MAE paper's Figure 2 (original, masked, reconstruction, reconstruction
with the visible patches pasted back). :class:`FillSettings` says which patches are hidden and how
they are filled; the command, the library call and the notebooks share it.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..util.errors import UserError, check_seed
from ..util.image_io import resize_center_crop, to_rgb
from ..util.runtime import resolve_device
from ..config import DEVICES
from ..data import image_tensor, load_face
from ..masking import MASK_KINDS, make_mask
from ..metrics import evaluate_batch, patch_mask_to_pixel_mask
from ..pretrained import load_for_inference, load_model_from_run
from ..transforms import batch_to_input, denormalize
from ..viz import DEFAULT_TITLES, four_panel_figure, masked_image
from .inference import TTA_KINDS, check_tta, fill_from, load_refiner, predict

__all__ = [
    "FillSettings",
    "add_cli_arguments",
    "add_fill_arguments",
    "check_photo_shape",
    "fill_settings",
    "last_panel",
    "prepare_images",
    "reconstruct_images",
    "run_cli",
]

ImageInput = str | Path | torch.Tensor | np.ndarray | Any  # Any: a PIL image
#: A photo's shorter side must have at least this many pixels (or the model's input size, if
#: smaller): a smaller one is enlarged into a blur.
MIN_SIDE = 16
#: A photo's longer side may be at most this many times its shorter side: beyond it, the square
#: center crop keeps too little of it (a 10000x10 image: 0.1%) to be a face.
MAX_ASPECT = 4.0
# Mask kinds whose size mask_ratio sets; the others have a fixed shape.
RATIO_KINDS = ("random", "center")
DEFAULT_MASK_RATIO = 0.75


# ---------------------------------------------------------------------- settings
@dataclass(frozen=True)
class FillSettings:
    """Which patches are hidden and how the model fills them; checked once, here.

    ``mask``: one of :data:`~mae_utils.masking.MASK_KINDS`; ``mask_ratio``: the hidden share of a
    ``random`` or ``center`` mask; ``patches``: row-major patch indices for ``mask="patches"``;
    ``seed``: of the random masks; ``tta``: ``"flip"`` averages the fill with the mirrored image's
    (:func:`~mae_utils.tools.inference.predict`), None = the model's own single pass. The command
    line flags carry the same names (``--mask-ratio``).
    """

    mask: str = "random"
    mask_ratio: float = DEFAULT_MASK_RATIO
    patches: tuple[int, ...] | None = None
    seed: int = 0
    tta: str | None = None

    def __post_init__(self) -> None:
        if self.mask not in MASK_KINDS:
            raise UserError(f"unknown mask kind {self.mask!r}; choose one of "
                            f"{', '.join(MASK_KINDS)}")
        if self.patches is not None:
            object.__setattr__(self, "patches", tuple(int(k) for k in self.patches))
        if self.mask == "patches" and not self.patches:
            raise UserError("mask 'patches' needs patches: the patch indices to hide (row-major, "
                            "from 0)")
        check_seed(self.seed)
        check_tta(self.tta)

    def make_mask(self, n: int, grid: int) -> torch.Tensor:
        """The (n, grid * grid) patch mask these settings draw, 1 = hidden."""
        patches = list(self.patches) if self.patches else None
        return make_mask(self.mask, n, grid, mask_ratio=self.mask_ratio, patches=patches,
                         seed=self.seed)


# ---------------------------------------------------------------------- inputs
def check_photo_shape(width: int, height: int, name: str, size: int) -> None:
    """Refuse, naming ``name``, a photo too elongated (:data:`MAX_ASPECT`) or too small
    (:data:`MIN_SIDE`) for its reconstruction at ``size`` px and its scores to mean anything."""
    short, long = sorted((int(width), int(height)))
    min_side = min(MIN_SIDE, size)
    if long > MAX_ASPECT * short:
        raise UserError(f"{name} is {width}x{height} pixels, {long / short:.0f}:1: too elongated "
                        f"to be a face (at most {MAX_ASPECT:g}:1; the square center crop would "
                        f"keep {short / long:.1%} of it); crop it around the face first")
    if short < min_side:
        raise UserError(f"{name} is {width}x{height} pixels: too small to reconstruct (the shorter "
                        f"side must be at least {min_side} px); use a larger photo")


def _photo_file(path: str | Path, size: int) -> torch.Tensor:
    face = load_face(path, size)  # names a missing or unreadable file first
    with Image.open(Path(path).expanduser()) as img:
        check_photo_shape(*img.size, f"image {path}", size)
    return face


def _resize_center_crop01(x: torch.Tensor, size: int) -> torch.Tensor:
    """(3, h, w) in [0, 1] -> (3, size, size): shorter side to ``size`` (antialiased), then a
    center crop."""
    _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    y = F.interpolate(x[None].float(), size=(nh, nw), mode="bicubic", antialias=True,
                      align_corners=False)[0]
    top, left = (nh - size) // 2, (nw - size) // 2
    return y[:, top : top + size, left : left + size].clamp(0.0, 1.0)


def _one_image(item: ImageInput, size: int, where: str) -> torch.Tensor:
    """One input -> uint8 (3, size, size), the datasets' item form."""
    if isinstance(item, (str, Path)):
        return _photo_file(item, size)
    if isinstance(item, np.ndarray):
        if item.ndim != 3 or item.shape[-1] != 3:
            raise UserError(f"{where}: a numpy image must be (H, W, 3), got shape {item.shape}")
        if item.dtype == np.uint8:  # as a photo: Pillow's resize + crop, like a file
            item = Image.fromarray(item)
        else:
            item = torch.from_numpy(np.ascontiguousarray(item, dtype=np.float32)).permute(2, 0, 1)
    if isinstance(item, torch.Tensor):
        if item.ndim != 3 or item.shape[0] != 3:
            raise UserError(f"{where}: an image tensor must be (3, H, W) in [0, 1], "
                            f"got shape {tuple(item.shape)}")
        if not item.is_floating_point():
            raise UserError(f"{where}: an image tensor must hold floats in [0, 1], "
                            f"got dtype {item.dtype}")
        check_photo_shape(item.shape[2], item.shape[1], where, size)
        lo, hi = float(item.min()), float(item.max())
        if lo < -1e-3 or hi > 1 + 1e-3:
            raise UserError(
                f"{where}: pixel values span [{lo:.3f}, {hi:.3f}]; pass images in [0, 1] "
                "(undo the normalisation with mae_utils.transforms.denormalize)"
            )
        x01 = _resize_center_crop01(item.detach().cpu().float().clamp(0, 1), size)
        return x01.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)  # 8-bit pixels, as any photo
    if isinstance(item, Image.Image):
        check_photo_shape(*item.size, where, size)
        return image_tensor(resize_center_crop(to_rgb(item), size))
    raise UserError(
        f"{where}: expected a file path, a PIL image, or a (3, H, W) tensor in [0, 1]; "
        f"got {type(item).__name__}"
    )


def prepare_images(images: ImageInput | Sequence[ImageInput], image_size: int) -> torch.Tensor:
    """Paths, PIL images, (3, H, W) or (N, 3, H, W) tensors in [0, 1] -> a uint8 (N, 3, S, S) batch.

    Files go through the data module's decoder (any mode, EXIF orientation, resize + center
    crop), so a photo looks to the model exactly as a training image did; float tensors are
    rounded to 8-bit pixels. A photo more elongated than :data:`MAX_ASPECT`:1 (4:1) or with a
    shorter side under :data:`MIN_SIDE` (16) pixels is refused (:func:`check_photo_shape`).
    :func:`mae_utils.transforms.batch_to_input` makes the model's input from the batch.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        items: list[ImageInput] = list(images)
    elif isinstance(images, (str, Path, torch.Tensor, np.ndarray)) or not isinstance(
        images, Sequence
    ):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise UserError("images: got an empty list; give at least one image")
    names = [f"images[{i}]" if len(items) > 1 else "image" for i in range(len(items))]
    return torch.stack([_one_image(x, image_size, name) for x, name in zip(items, names)])


# ---------------------------------------------------------------------- the library function
SCORES = ("psnr_masked", "ssim_masked", "blockiness", "detail")


def _batch_mask(settings: FillSettings, mask: torch.Tensor | None, n: int,
                grid: int) -> torch.Tensor:
    if mask is None:
        return settings.make_mask(n, grid)
    if tuple(mask.shape) != (n, grid * grid):
        raise UserError(f"mask must have shape (N, L) = {(n, grid * grid)}, "
                        f"got {tuple(mask.shape)}")
    return mask


def reconstruct_images(
    model: torch.nn.Module,
    images: ImageInput | Sequence[ImageInput],
    settings: FillSettings | None = None,
    *,
    mask: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    refiner: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Mask and reconstruct images; the four panels plus the mask and per-image scores.

    ``images``: file paths, PIL images, uint8 (H, W, 3) arrays, or float tensors in [0, 1] (resized
    and center-cropped to the model's size). ``settings`` (:class:`FillSettings`, default: a random
    75% mask, seed 0) draws the mask; an explicit (N, L) ``mask`` overrides it. With
    ``settings.tta="flip"`` every output uses the flip-averaged prediction.

    Returns CPU tensors: ``original``, ``masked`` (hidden patches grey), ``recon`` (the model's
    output everywhere), ``recon_visible`` (the visible patches pasted back, what a user keeps),
    ``recon_blend`` (made seam-free), all (N, 3, H, W) in [0, 1]; ``mask`` (N, L) and
    ``pixel_mask`` (N, 1, H, W), 1 = hidden; ``psnr_masked``, ``ssim_masked``, ``blockiness``,
    ``detail`` (N,) over the hidden region, and the same with ``_blend``. With a ``refiner`` (a
    run's :class:`~mae_utils.tools.inference.SeamRefiner`) also ``recon_refine`` (refined, then
    seam-free) and its scores (``psnr_masked_refine`` ...).
    """
    settings = settings or FillSettings()
    size, p = int(model.img_size), int(model.patch_size)
    batch = prepare_images(images, size)
    mask = _batch_mask(settings, mask, batch.shape[0], size // p).float().cpu()
    device = next(model.parameters()).device if device is None else torch.device(device)
    model = model.to(device)
    x = batch_to_input(batch, device)
    pred, _ = predict(model, x, mask.to(device), tta=settings.tta)
    original, pixel_mask = denormalize(batch), patch_mask_to_pixel_mask(mask, p, size)
    recon = denormalize(pred).cpu()
    fills = {"_visible": fill_from(pred, x, pixel_mask, p, photos=original),
             "_blend": fill_from(pred, x, pixel_mask, p, blend=True, photos=original)}
    if refiner is not None:
        fills["_refine"] = fill_from(pred, x, pixel_mask, p, refiner=refiner, blend=True,
                                     photos=original)
    out = {"original": original, "masked": masked_image(original, pixel_mask), "recon": recon,
           "mask": mask, "pixel_mask": pixel_mask}
    for suffix, image in fills.items():
        out["recon" + suffix] = image
        scores = evaluate_batch(original, image, mask, p)
        name = "" if suffix == "_visible" else suffix
        out.update({f"{k}{name}": scores[k] for k in SCORES})
    return out


# ---------------------------------------------------------------------- command line
def add_fill_arguments(parser: argparse.ArgumentParser, default_kind: str = "random") -> None:
    """--mask, --mask-ratio, --patches, --seed, --tta: :class:`FillSettings` as flags (shared
    with the evaluate command)."""
    parser.add_argument(
        "--mask", default=default_kind, choices=MASK_KINDS,
        help="which patches to hide: random (at --mask-ratio), center block, left/right half, "
             f"eyes or mouth band, or a --patches list (default: {default_kind})",
    )
    parser.add_argument(
        "--mask-ratio", type=float, default=None,
        help="fraction hidden for random masks; for the center block, the area it comes closest "
             "to while staying exactly centred (8x8 patches: 6x6 = 56%% at 0.75; the hidden "
             "fraction is printed); only with --mask random or center "
             f"(default: {DEFAULT_MASK_RATIO})",
    )
    parser.add_argument("--patches", type=int, nargs="+", default=None, metavar="K",
                        help="patch indices (row-major, from 0) to hide; only with --mask patches")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks (default: 0)")
    parser.add_argument(
        "--tta", default=None, choices=TTA_KINDS,
        help="test-time average: flip = average the fill with the un-flipped fill of the "
             "horizontally flipped image and mask (two model passes; default: one pass)",
    )


def fill_settings(args: argparse.Namespace) -> FillSettings:
    """The flags of :func:`add_fill_arguments` as :class:`FillSettings`; refuses mask flags that
    the chosen --mask would ignore."""
    if args.patches is not None and args.mask != "patches":
        raise UserError(f"--patches only applies to --mask patches (got --mask {args.mask}); "
                        "add --mask patches or drop --patches")
    if args.mask == "patches" and not args.patches:
        raise UserError("--mask patches needs --patches K [K ...]: the patch indices to hide "
                        "(row-major, from 0)")
    if args.mask_ratio is not None and args.mask not in RATIO_KINDS:
        raise UserError(f"--mask-ratio only applies to --mask {' or '.join(RATIO_KINDS)}; the "
                        f"{args.mask} mask has a fixed shape: drop --mask-ratio")
    check_seed(args.seed, "--seed")
    ratio = DEFAULT_MASK_RATIO if args.mask_ratio is None else args.mask_ratio
    return FillSettings(args.mask, ratio, args.patches, args.seed, args.tta)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Make the four-panel figure (original, masked, reconstruction, reconstruction + visible) "
        "for any photos with a trained run's model, or with published weights (--init-from)."
    )
    add_model_arguments(parser)
    parser.add_argument("--images", required=True, nargs="+", metavar="IMAGE",
                        help="photo files to reconstruct")
    parser.add_argument("--out", required=True, metavar="PNG",
                        help="where to save the figure (e.g. out.png)")
    add_fill_arguments(parser)
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint of the run (default: best)")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to run the model (default: auto)")
    parser.add_argument(
        "--blend", action="store_true",
        help="show the reconstruction made seam-free (Poisson blend with the visible pixels) in "
             "the last panel instead of the raw patches pasted back (default: raw, or the "
             "refined output when the run has a seam refiner)",
    )
    parser.add_argument(
        "--raw", "--no-refine", dest="raw", action="store_true",
        help="show the MAE's own output even when the run has a seam refiner (python -m "
             "mae_utils refine); without it, the last panel shows the refined output",
    )


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """--run or --init-from, exactly one (shared with the evaluate command)."""
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--run", metavar="RUN_DIR", help="a training run directory (runs/NAME)")
    source.add_argument(
        "--init-from", metavar="PATH",
        help="published weights instead of a run, no training needed: an official MAE .pth (e.g. "
             "mae_visualize_vit_large.pth), a Hugging Face ViTMAE folder or a maskAE .safetensors; "
             "the images are the size the weights were made for",
    )


def model_for_cli(args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    """The model --run (its --checkpoint) or --init-from names, on ``device``."""
    if args.init_from is not None:
        return load_for_inference(args.init_from).to(device)
    model, _ = load_model_from_run(args.run, args.checkpoint, device)
    return model


def _check_out(args: argparse.Namespace) -> Path:
    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".jpg", ".jpeg", ".pdf", ".svg"):
        raise UserError(f"--out {out}: give a figure file name ending in .png, .jpg, .pdf or .svg")
    for image in args.images:
        if Path(image).is_file() and out.exists() and out.resolve() == Path(image).resolve():
            raise UserError(f"--out {out} is one of the input images; it would be overwritten: "
                            "choose another --out file")
    return out


def last_panel(refined: bool, blend: bool = False) -> tuple[str, tuple[str, ...]]:
    """Which :func:`reconstruct_images` result goes in the fourth panel, and the four titles: the
    blend when asked, else the refined output when there is one, else the raw patches pasted back.
    The ``reconstruct`` command and the notebooks draw the same figure through it."""
    if blend:
        return "recon_blend", (*DEFAULT_TITLES[:3], "seam-free blend")
    if refined:
        return "recon_refine", (*DEFAULT_TITLES[:3], "refined (seam refiner)")
    return "recon_visible", DEFAULT_TITLES


def _print_scores(args: argparse.Namespace, result: dict[str, torch.Tensor], refined: bool) -> None:
    kinds = [("", "raw"), ("_blend", "seam-free blend")] + ([("_refine", "refined")] * refined)
    tta = ", flip test-time average" if args.tta == "flip" else ""
    print(f"{args.mask} mask, {float(result['mask'].mean()):.0%} of patches hidden{tta}; "
          "masked-region PSNR / SSIM / blockiness per image, "
          f"{' | '.join(name for _, name in kinds)}:")
    columns = (("psnr_masked", 2), ("ssim_masked", 3), ("blockiness", 2))
    for i, path in enumerate(args.images):
        cells = (" / ".join(f"{float(result[k + sfx][i]):.{d}f}" for k, d in columns)
                 for sfx, _ in kinds)
        print(f"  {path}: {' | '.join(cells)}")


def run_cli(args: argparse.Namespace) -> int:
    settings = fill_settings(args)
    out = _check_out(args)
    device = resolve_device(args.device)
    model = model_for_cli(args, device)
    with_refiner = args.run is not None and not args.raw  # published weights come without one
    refiner = load_refiner(args.run, device, checkpoint=args.checkpoint) if with_refiner else None
    result = reconstruct_images(model, args.images, settings, device=device, refiner=refiner)
    last, titles = last_panel(refiner is not None, args.blend)
    fig = four_panel_figure(result["original"], result["masked"], result["recon"], result[last],
                            titles=titles, path=out)
    fig.clear()
    _print_scores(args, result, refiner is not None)
    print(f"wrote {out}")
    return 0
