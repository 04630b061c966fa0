"""Reconstruct any photos with a trained MAE: ``python -m mae_utils reconstruct``.

:func:`reconstruct_images` is the one code path that the command, ``notebooks/evaluate.ipynb`` and
``notebooks/reconstruct_your_photos.ipynb`` share: photos are decoded exactly as the training data
were (:func:`mae_utils.data.load_face`: EXIF-upright RGB, shorter side resized, center crop), made
into the model's input by the training code's :func:`~mae_utils.transforms.batch_to_input`, a mask
is drawn (:func:`mae_utils.masking.make_mask`), the model predicts the hidden patches, and the result
comes back in [0, 1] as the four panels of the MAE paper's Figure 2 (original, masked,
reconstruction, reconstruction with the visible patches pasted back).

:func:`model_reconstruction` is the lower-level step (normalised batch + explicit mask -> pixels in
[0, 1]); :mod:`mae_utils.tools.evaluate` uses it too, so what is scored is what is shown.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..util.errors import UserError, check_seed
from ..util.image_io import resize_center_crop, to_rgb
from ..util.runtime import resolve_device
from ..baselines import blend_seams
from ..config import DEVICES
from ..data import image_tensor, load_face
from ..masking import MASK_KINDS, make_mask
from ..metrics import evaluate_batch, paste_visible, patch_mask_to_pixel_mask
from ..pretrained import load_for_inference, load_model_from_run
from ..transforms import batch_to_input, denormalize
from ..viz import DEFAULT_TITLES, four_panel_figure, masked_image

__all__ = [
    "add_cli_arguments",
    "add_mask_arguments",
    "check_photo_shape",
    "last_panel",
    "model_prediction",
    "model_reconstruction",
    "paste_prediction",
    "prepare_images",
    "reconstruct_images",
    "refined_fill",
    "run_cli",
]

ImageInput = str | Path | torch.Tensor | np.ndarray | Any  # Any: a PIL image
#: A photo's shorter side must have at least this many pixels (or the model's input size, if
#: smaller): a smaller one is enlarged into a blur.
MIN_SIDE = 16
#: A photo's longer side may be at most this many times its shorter side: beyond it, the square
#: center crop keeps too little of it (a 10000x10 image: 0.1%) to be a face.
MAX_ASPECT = 4.0


# ---------------------------------------------------------------------- the core step
@torch.no_grad()
def model_prediction(
    model: torch.nn.Module, imgs: torch.Tensor, mask: torch.Tensor | None = None, *,
    noise: torch.Tensor | None = None, mask_ratio: float = 0.75,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's prediction of every patch as images in its normalised input space, the (N, L) mask).

    The mask is ``mask`` (1 = hidden) if given, else drawn from ``noise`` at ``mask_ratio`` (the
    model's own rule). A ``norm_pix_loss`` prediction is mapped back with each patch's true mean/std.
    """
    model.eval()
    if mask is not None:
        mask = mask.to(imgs.device, imgs.dtype)
    _, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise, mask=mask)
    return model.prediction_to_images(pred, imgs), mask


def paste_prediction(pred: torch.Tensor, imgs: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """The prediction on hidden pixels, ``imgs`` on visible ones (both normalised; ``pixel_mask``
    (N, 1, H, W), 1 = hidden): what a seam refiner takes (:mod:`mae_utils.tools.refine`)."""
    pm = pixel_mask.to(imgs.device, imgs.dtype)
    return torch.where(pm > 0.5, pred.to(imgs.dtype), imgs)


@torch.no_grad()
def model_reconstruction(model: torch.nn.Module, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The model's reconstruction of every patch, as pixels in [0, 1]: (N, 3, H, W).

    ``imgs`` are normalised (as the data module normalises), ``mask`` (N, L) with 1 = hidden. With a
    ``norm_pix_loss`` model the prediction is in per-patch normalised units; it is mapped back with
    each patch's *true* mean and std (the paper's figures do the same). That uses information from
    the hidden patches, so such numbers are not a fair comparison with the baselines; evaluate marks
    them.
    """
    return denormalize(model_prediction(model, imgs, mask)[0])


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
    """(3, h, w) in [0, 1] -> (3, size, size): shorter side to ``size`` (antialiased), center crop."""
    _, h, w = x.shape
    if (h, w) == (size, size):
        return x
    scale = size / min(h, w)
    nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
    y = F.interpolate(x[None].float(), size=(nh, nw), mode="bicubic", antialias=True, align_corners=False)[0]
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
            raise UserError(f"{where}: an image tensor must be (3, H, W) in [0, 1], got shape {tuple(item.shape)}")
        if not item.is_floating_point():
            raise UserError(f"{where}: an image tensor must hold floats in [0, 1], got dtype {item.dtype}")
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
        f"{where}: expected a file path, a PIL image, or a (3, H, W) tensor in [0, 1]; got {type(item).__name__}"
    )


def prepare_images(images: ImageInput | Sequence[ImageInput], image_size: int) -> torch.Tensor:
    """Paths, PIL images, (3, H, W) or (N, 3, H, W) tensors in [0, 1] -> a uint8 (N, 3, S, S) batch.

    Files go through the data module's decoder (any mode, EXIF orientation, resize + center crop), so
    a photo looks to the model exactly as a training image did; float tensors are rounded to 8-bit
    pixels. A photo more elongated than :data:`MAX_ASPECT`:1 (4:1) or with a shorter side under
    :data:`MIN_SIDE` (16) pixels is refused (:func:`check_photo_shape`).
    :func:`mae_utils.transforms.batch_to_input` makes the model's input from the batch.
    """
    if isinstance(images, torch.Tensor) and images.ndim == 4:
        items: list[ImageInput] = list(images)
    elif isinstance(images, (str, Path, torch.Tensor, np.ndarray)) or not isinstance(images, Sequence):
        items = [images]
    else:
        items = list(images)
    if not items:
        raise UserError("images: got an empty list; give at least one image")
    names = [f"images[{i}]" if len(items) > 1 else "image" for i in range(len(items))]
    return torch.stack([_one_image(x, image_size, name) for x, name in zip(items, names)])


# ---------------------------------------------------------------------- the library function
def reconstruct_images(
    model: torch.nn.Module,
    images: ImageInput | Sequence[ImageInput],
    mask_kind: str = "random",
    *,
    mask_ratio: float = 0.75,
    patches: Sequence[int] | None = None,
    mask: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    refiner: torch.nn.Module | None = None,
) -> dict[str, torch.Tensor]:
    """Mask and reconstruct images; the four panels plus the mask and per-image scores.

    ``images``: file paths, PIL images, uint8 (H, W, 3) arrays, or float tensors in [0, 1] (resized
    and center-cropped to the model's size). ``mask_kind`` is one of
    :data:`~mae_utils.masking.MASK_KINDS` (``patches`` needs ``patches``, a list of row-major patch
    indices); an explicit (N, L) ``mask`` overrides it.
    ``seed`` makes random masks reproducible.

    Returns CPU tensors: ``original``, ``masked`` (hidden patches grey), ``recon`` (the model's
    output everywhere), ``recon_visible`` (the visible patches pasted back, what a user keeps), all
    (N, 3, H, W) in [0, 1]; ``mask`` (N, L) and ``pixel_mask`` (N, 1, H, W), 1 = hidden;
    ``psnr_masked`` and ``ssim_masked`` (N,) over the hidden region. With a ``refiner`` (a run's
    :class:`~mae_utils.tools.refine.SeamRefiner`) also ``recon_refine`` (refined, then seam-free:
    :func:`refined_fill`) and its scores (``psnr_masked_refine`` ...); ``recon_blend`` and ``..._blend`` are always there.
    """
    size, p = int(model.img_size), int(model.patch_size)
    batch = prepare_images(images, size)
    n, grid = batch.shape[0], size // p
    if mask is None:
        mask = make_mask(mask_kind, n, grid, mask_ratio=mask_ratio, patches=patches, seed=seed)
    elif tuple(mask.shape) != (n, grid * grid):
        raise UserError(f"mask must have shape (N, L) = {(n, grid * grid)}, got {tuple(mask.shape)}")
    if device is None:
        device = next(model.parameters()).device
    model_device = next(model.parameters()).device
    if torch.device(device) != model_device:
        model = model.to(device)
    x = batch_to_input(batch, device)
    pred, _ = model_prediction(model, x, mask.float().to(device))
    recon = denormalize(pred).cpu()
    original = denormalize(batch)
    mask = mask.float().cpu()
    pixel_mask = patch_mask_to_pixel_mask(mask, p, size)
    fills = {"": recon, "_blend": blend_seams(original, pixel_mask, recon.clamp(0, 1), p)}
    refined = None if refiner is None else refined_fill(refiner, pred, x, original, pixel_mask, p)
    if refined is not None:
        fills["_refine"] = refined
    out = {"original": original, "masked": masked_image(original, pixel_mask), "recon": recon,
           "recon_visible": paste_visible(recon, original, pixel_mask), "recon_blend": fills["_blend"],
           "mask": mask, "pixel_mask": pixel_mask}  # fmt: skip
    if refined is not None:
        out["recon_refine"] = refined
    for suffix, fill in fills.items():
        scores = evaluate_batch(original, fill, mask, p)
        out.update({f"{k}{suffix}": scores[k] for k in ("psnr_masked", "ssim_masked", "blockiness", "detail")})
    return out


@torch.no_grad()
def refined_fill(refiner: torch.nn.Module, pred: torch.Tensor, x: torch.Tensor, original: torch.Tensor,
                 pixel_mask: torch.Tensor, patch_size: int) -> torch.Tensor:  # fmt: skip
    """The refined reconstruction as users get it (pixels in [0, 1], CPU, visible pixels the photo's):
    the refiner's output for the model's prediction ``pred`` with the visible patches of ``x`` pasted
    back (both normalised), then made seam-free by :func:`~mae_utils.baselines.blend_seams`.

    Why both: the refiner alone raises masked PSNR but leaves part of the mosaic (blockiness 1.42-1.54
    on 3 x 500 faces of three sources, 1 = the photo's); the blend alone removes the steps (1.13-1.26)
    but can lose PSNR (-0.07 dB on UTKFace). Refine then blend gave the best of both on all three:
    +0.10 to +0.13 dB over the raw model, blockiness 1.10-1.18 (benchmarks/cpu_recipe.md)."""
    pm = pixel_mask.to(x.device, x.dtype)
    refined = denormalize(refiner.to(x.device).eval()(paste_prediction(pred, x, pm), pm)).cpu()
    return blend_seams(original, pixel_mask, refined.clamp(0, 1), patch_size)


# ---------------------------------------------------------------------- command line
# Mask kinds whose size --mask-ratio sets; the others have a fixed shape.
RATIO_KINDS = ("random", "center")
DEFAULT_MASK_RATIO = 0.75


def add_mask_arguments(parser: argparse.ArgumentParser, default_kind: str = "random") -> None:
    """--mask, --mask-ratio, --patches, --seed (shared with the evaluate command)."""
    parser.add_argument("--mask", default=default_kind, choices=MASK_KINDS,
                        help="which patches to hide: random (at --mask-ratio), center block, left/right half, "
                             f"eyes or mouth band, or a --patches list (default: {default_kind})")  # fmt: skip
    parser.add_argument("--mask-ratio", type=float, default=None,
                        help="fraction hidden for random masks; for the center block, the area it comes closest "
                             "to while staying exactly centred (8x8 patches: 6x6 = 56%% at 0.75; the hidden "
                             "fraction is printed); only with --mask random or center "
                             f"(default: {DEFAULT_MASK_RATIO})")  # fmt: skip
    parser.add_argument("--patches", type=int, nargs="+", default=None, metavar="K",
                        help="patch indices (row-major, from 0) to hide; only with --mask patches")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="seed of the random masks (default: 0)")


def check_mask_arguments(args: argparse.Namespace) -> None:
    """Refuse mask flags that the chosen --mask would ignore; fill in the default --mask-ratio."""
    if args.patches is not None and args.mask != "patches":
        raise UserError(f"--patches only applies to --mask patches (got --mask {args.mask}); "
                        "add --mask patches or drop --patches")  # fmt: skip
    if args.mask == "patches" and not args.patches:
        raise UserError("--mask patches needs --patches K [K ...]: the patch indices to hide (row-major, from 0)")
    if args.mask_ratio is not None and args.mask not in RATIO_KINDS:
        raise UserError(f"--mask-ratio only applies to --mask {' or '.join(RATIO_KINDS)}; the {args.mask} mask "
                        "has a fixed shape: drop --mask-ratio")  # fmt: skip
    if args.mask_ratio is None:
        args.mask_ratio = DEFAULT_MASK_RATIO
    check_seed(args.seed, "--seed")


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Make the four-panel figure (original, masked, reconstruction, reconstruction + visible) "
        "for any photos with a trained run's model, or with published weights (--init-from)."
    )
    add_model_arguments(parser)
    parser.add_argument("--images", required=True, nargs="+", metavar="IMAGE", help="photo files to reconstruct")
    parser.add_argument("--out", required=True, metavar="PNG", help="where to save the figure (e.g. out.png)")
    add_mask_arguments(parser)
    parser.add_argument("--checkpoint", default="best", choices=("best", "last"),
                        help="which checkpoint of the run (default: best)")  # fmt: skip
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to run the model (default: auto)")  # fmt: skip
    parser.add_argument("--blend", action="store_true",
                        help="show the reconstruction made seam-free (Poisson blend with the visible pixels) in "
                             "the last panel instead of the raw patches pasted back (default: raw, or the "
                             "refined output when the run has a seam refiner)")  # fmt: skip
    parser.add_argument("--raw", "--no-refine", dest="raw", action="store_true",
                        help="show the MAE's own output even when the run has a seam refiner (python -m "
                             "mae_utils refine); without it, the last panel shows the refined output")  # fmt: skip


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
            raise UserError(f"--out {out} is one of the input images; it would be overwritten: choose another "
                            "--out file")  # fmt: skip
    return out


def last_panel(refined: bool, blend: bool = False) -> tuple[str, tuple[str, ...]]:
    """Which :func:`reconstruct_images` result goes in the fourth panel, and the four titles: the blend
    when asked, else the refined output when there is one, else the raw patches pasted back. The
    ``reconstruct`` command and the notebooks draw the same figure through it."""
    if blend:
        return "recon_blend", (*DEFAULT_TITLES[:3], "seam-free blend")
    if refined:
        return "recon_refine", (*DEFAULT_TITLES[:3], "refined (seam refiner)")
    return "recon_visible", DEFAULT_TITLES


def run_cli(args: argparse.Namespace) -> int:
    check_mask_arguments(args)
    out = _check_out(args)
    device = resolve_device(args.device)
    model = model_for_cli(args, device)
    from .refine import load_refiner  # local: refine builds on this module's model_prediction

    with_refiner = args.run is not None and not args.raw  # published weights come without one
    refiner = load_refiner(args.run, device, checkpoint=args.checkpoint) if with_refiner else None
    result = reconstruct_images(model, args.images, args.mask, mask_ratio=args.mask_ratio, patches=args.patches,
                                seed=args.seed, device=device, refiner=refiner)  # fmt: skip
    last, titles = last_panel(refiner is not None, args.blend)
    fig = four_panel_figure(result["original"], result["masked"], result["recon"], result[last], titles=titles,
                            path=out)  # fmt: skip
    fig.clear()
    hidden = float(result["mask"].mean())
    kinds = [("", "raw"), ("_blend", "seam-free blend")] + ([("_refine", "refined")] if refiner is not None else [])
    print(f"{args.mask} mask, {hidden:.0%} of patches hidden; masked-region PSNR / SSIM / blockiness per image, "
          f"{' | '.join(name for _, name in kinds)}:")  # fmt: skip
    for i, path in enumerate(args.images):
        cells = (" / ".join(f"{float(result[k + sfx][i]):.{d}f}" for k, d in
                            (("psnr_masked", 2), ("ssim_masked", 3), ("blockiness", 2))) for sfx, _ in kinds)  # fmt: skip
        print(f"  {path}: {' | '.join(cells)}")
    print(f"wrote {out}")
    return 0
