"""The model's fill of the hidden patches, as every tool makes it: one vocabulary, one code path.

- :func:`predict`: the model's prediction of every patch, in its normalised input space (with
  ``tta="flip"`` averaged with the un-flipped prediction for the mirrored image and mask);
- :func:`paste`: that prediction on the hidden pixels, the input on the visible ones;
- :func:`predict_pasted`: both at once, what the seam refiner takes and trains on;
- :func:`fill_from` / :func:`fill`: the fill as pixels in [0, 1], visible pixels the photo's,
  optionally refined by the run's :class:`SeamRefiner` and/or made seam-free by
  :func:`~mae_utils.baselines.blend_seams`.

``reconstruct``, ``evaluate``, ``refine`` and the notebooks all call these, so what is scored is
what is shown and what the refiner learns from. The refiner's network and its files live here
too (its training is :mod:`mae_utils.tools.refine`): using a refiner needs no training code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..util import checkpoint as ckpt
from ..util.errors import UserError
from ..util.fileio import file_sha256
from ..util.rundir import REFINER_DIR
from ..baselines import blend_seams
from ..metrics import paste_visible, patch_mask_to_pixel_mask
from ..transforms import denormalize

__all__ = [
    "TTA_KINDS",
    "SeamRefiner",
    "check_tta",
    "fill",
    "fill_from",
    "load_refiner",
    "paste",
    "predict",
    "predict_pasted",
    "refiner_files",
    "refiner_record",
]

#: Test-time averages :func:`predict` knows: ``flip``, the mirrored image's prediction mirrored
#: back and averaged with the plain one.
TTA_KINDS: tuple[str, ...] = ("flip",)
WEIGHTS_FILE = "weights.safetensors"
STATE_FILE = ckpt.STATE_FILE
CHECKPOINTS_DIR = "checkpoints"  # in RUN/refiner/: the training loop's last/ and best/
LOG_FILE = "log.txt"
# evaluate's and reconstruct's flag that uses the MAE's own output (the same name in both)
WITHOUT_REFINER = "leave the refiner out with --no-refine"


def check_tta(tta: str | None, name: str = "tta") -> str | None:
    """``tta`` if it is None or one of :data:`TTA_KINDS`; else a :class:`UserError` naming
    ``name``."""
    if tta is not None and tta not in TTA_KINDS:
        raise UserError(f"{name} must be one of {', '.join(TTA_KINDS)} or left out; got {tta!r}")
    return tta


# ---------------------------------------------------------------------- the prediction
def _flip_patches(mask: torch.Tensor, grid: int) -> torch.Tensor:
    """An (N, L) row-major patch mask of a ``grid`` x ``grid`` image, mirrored left to right."""
    return mask.reshape(mask.shape[0], grid, grid).flip(-1).reshape(mask.shape)


def _predict_once(
    model: nn.Module, imgs: torch.Tensor, mask: torch.Tensor | None, noise: torch.Tensor | None,
    mask_ratio: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is not None:
        mask = mask.to(imgs.device, imgs.dtype)
    _, pred, mask = model(imgs, mask_ratio=mask_ratio, noise=noise, mask=mask)
    return model.prediction_to_images(pred, imgs), mask


@torch.no_grad()
def predict(
    model: nn.Module, imgs: torch.Tensor, mask: torch.Tensor | None = None, *,
    noise: torch.Tensor | None = None, mask_ratio: float = 0.75, tta: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(the model's prediction of every patch as images in its normalised input space, the (N, L)
    mask, 1 = hidden).

    The mask is ``mask`` if given, else drawn from ``noise`` at ``mask_ratio`` (the model's own
    rule). A ``norm_pix_loss`` prediction is mapped back with each patch's true mean/std. With
    ``tta="flip"`` the prediction is averaged with the mirrored-back prediction for the mirrored
    image and the mirrored mask (the same pixels stay hidden): a face is nearly symmetric, so the
    second guess is a nearly independent one of the same pixels.
    """
    check_tta(tta)
    model.eval()
    pred, mask = _predict_once(model, imgs, mask, noise, mask_ratio)
    if tta == "flip":
        grid = int(model.img_size) // int(model.patch_size)
        flipped_mask = _flip_patches(mask, grid)
        mirrored, _ = _predict_once(model, imgs.flip(-1), flipped_mask, None, mask_ratio)
        pred = (pred + mirrored.flip(-1)) / 2
    return pred, mask


def paste(pred: torch.Tensor, imgs: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """The prediction on hidden pixels, ``imgs`` on visible ones (both normalised; ``pixel_mask``
    (N, 1, H, W), 1 = hidden): what a seam refiner takes."""
    pm = pixel_mask.to(imgs.device, imgs.dtype)
    return torch.where(pm > 0.5, pred.to(imgs.dtype), imgs)


def predict_pasted(
    model: nn.Module, imgs: torch.Tensor, mask: torch.Tensor | None = None, *,
    noise: torch.Tensor | None = None, mask_ratio: float = 0.75,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(:func:`predict` then :func:`paste`, in the normalised input space; the (N, 1, H, W) pixel
    mask; the (N, L) patch mask), 1 = hidden. No gradients."""
    pred, mask = predict(model, imgs, mask, noise=noise, mask_ratio=mask_ratio)
    size, p = int(model.img_size), int(model.patch_size)
    pixel_mask = patch_mask_to_pixel_mask(mask, p, size).to(imgs.device, imgs.dtype)
    return paste(pred, imgs, pixel_mask), pixel_mask, mask


# ---------------------------------------------------------------------- the fill users get
@torch.no_grad()
def fill_from(
    pred: torch.Tensor, imgs: torch.Tensor, pixel_mask: torch.Tensor, patch_size: int, *,
    refiner: nn.Module | None = None, blend: bool = False, photos: torch.Tensor | None = None,
) -> torch.Tensor:
    """A prediction (:func:`predict`) as the fill users get: pixels in [0, 1] scale on the CPU,
    the visible ones the photo's (``photos``, (N, 3, H, W) in [0, 1]; default: ``imgs``
    denormalised).

    ``refiner``: the hidden pixels refined by a :class:`SeamRefiner` first. ``blend``: then made
    seam-free by :func:`~mae_utils.baselines.blend_seams`. Why both for users: the refiner alone
    raises masked PSNR but leaves part of the mosaic (blockiness 1.42-1.54 on 3 x 500 faces of
    three sources, 1 = the photo's); the blend alone removes the steps (1.13-1.26) but can lose
    PSNR (-0.07 dB on UTKFace). Refine then blend gave the best of both on all three: +0.10 to
    +0.13 dB over the raw model, blockiness 1.10-1.18 (benchmarks/cpu_recipe.md).
    """
    photos = denormalize(imgs).cpu() if photos is None else photos.cpu()
    pm = pixel_mask.to(imgs.device, imgs.dtype)
    if refiner is not None:
        out = refiner.to(imgs.device).eval()(paste(pred, imgs, pm), pm)
    else:
        out = pred
    out = denormalize(out).cpu()
    if blend:
        return blend_seams(photos, pm.cpu(), out.clamp(0, 1), patch_size)
    return paste_visible(out, photos, pm.cpu())


def fill(
    model: nn.Module, imgs: torch.Tensor, mask: torch.Tensor, *, refiner: nn.Module | None = None,
    blend: bool = False, tta: str | None = None,
) -> torch.Tensor:
    """The model's fill of the hidden patches of ``imgs`` (normalised, as the data module makes
    them) under ``mask`` ((N, L), 1 = hidden), as pixels in [0, 1] scale on the CPU with the
    visible pixels pasted back; refined and/or blended as :func:`fill_from` says.

    With a ``norm_pix_loss`` model the prediction uses each hidden patch's *true* mean and std
    (as the paper's figures do); such numbers flatter the model, and evaluate marks them.
    """
    pred, mask = predict(model, imgs, mask, tta=tta)
    pixel_mask = patch_mask_to_pixel_mask(mask, int(model.patch_size), int(model.img_size))
    return fill_from(pred, imgs, pixel_mask, int(model.patch_size), refiner=refiner, blend=blend)


# ---------------------------------------------------------------------- the seam refiner
class SeamRefiner(nn.Module):
    """Input: the reconstruction with the visible patches pasted back (normalised, ``in_chans``
    channels) and the pixel mask (1 = hidden); output: that image plus a learned residual on the
    hidden pixels only (visible pixels pass through exactly). ``layers`` 3x3 convolutions with GELU
    between them; the middle ones alternate dilation 1 and 2 (a wider view across a border for no
    more weights); the last one is zero-initialised, so a fresh refiner is the identity."""

    def __init__(self, in_chans: int = 3, width: int = 32, layers: int = 4):
        super().__init__()
        limits = (("in_chans", in_chans, 1), ("width", width, 1), ("layers", layers, 2))
        for name, value, low in limits:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UserError(f"SeamRefiner {name} must be an integer >= {low}; got {value!r}")
        self.in_chans, self.width, self.layers = in_chans, width, layers
        convs = [nn.Conv2d(in_chans + 1, width, 3, padding=1)]
        for i in range(layers - 2):
            d = 2 if i % 2 else 1
            convs.append(nn.Conv2d(width, width, 3, padding=d, dilation=d))
        self.body = nn.ModuleList(convs)
        self.out = nn.Conv2d(width, in_chans, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    @property
    def config(self) -> dict[str, int]:
        """The constructor's arguments: stored with the weights, enough to rebuild the refiner."""
        return {"in_chans": self.in_chans, "width": self.width, "layers": self.layers}

    def forward(self, pasted: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
        hidden = pixel_mask.to(pasted.dtype)
        h = torch.cat([pasted, hidden], dim=1)
        for conv in self.body:
            h = F.gelu(conv(h))
        return torch.where(hidden > 0.5, pasted + self.out(h), pasted)


# ---------------------------------------------------------------------- its files
def refiner_files(run_dir: str | Path) -> dict[str, Path]:
    """Where a run's refiner lives: ``folder``, ``weights``, ``state``, ``log``."""
    folder = Path(run_dir) / REFINER_DIR
    state = folder / CHECKPOINTS_DIR / "last" / STATE_FILE
    weights, log = folder / WEIGHTS_FILE, folder / LOG_FILE
    return {"folder": folder, "weights": weights, "state": state, "log": log}


def _refiner_config(path: Path, meta: dict[str, str]) -> dict[str, int]:
    """The refiner's shape from its weights' metadata; the caller adds the way out to an error."""
    try:
        config = json.loads(meta["refiner_config"])
        SeamRefiner(**config)  # checks the values
    except (KeyError, ValueError, TypeError) as exc:
        raise UserError(f"{path}: no valid refiner_config in its metadata ({exc})") from None
    if not isinstance(config, dict) or set(config) != {"in_chans", "width", "layers"}:
        raise UserError(f"{path}: refiner_config must name in_chans, width and layers")
    return config


def _damaged_way_out(run_dir: str | Path) -> str:
    return (f"train a new refiner with python -m mae_utils refine --run {run_dir} --overwrite, "
            f"or {WITHOUT_REFINER}")


def refiner_record(run_dir: str | Path) -> dict[str, Any] | None:
    """What a run's refiner was trained on and how (its metadata), or None when the run has none."""
    path = refiner_files(run_dir)["weights"]
    if not path.is_file():
        return None
    meta = ckpt.read_header(path)[0]
    try:
        record = json.loads(meta.get("refiner_record", "{}"))
        return {"config": _refiner_config(path, meta), **record}
    except UserError as exc:
        raise UserError(f"{exc}; {_damaged_way_out(run_dir)}") from None
    except ValueError:
        raise UserError(f"{path}: its refiner_record metadata is not valid JSON; "
                        f"{_damaged_way_out(run_dir)}") from None


def _read_refiner(run_dir: str | Path, path: Path) -> SeamRefiner:
    try:
        meta, tensors = ckpt.read_header(path)
        refiner = SeamRefiner(**_refiner_config(path, meta))
        shapes = {k: tuple(v.shape) for k, v in refiner.state_dict().items()}
        ckpt.check_tensor_set(shapes, tensors, str(path))
        state = ckpt.load_weights_file(path)
        ckpt.check_finite(state, str(path))
    except UserError as exc:
        raise UserError(f"{exc}; {_damaged_way_out(run_dir)}") from None
    refiner.load_state_dict(state, strict=True)
    return refiner


def load_refiner(
    run_dir: str | Path, device: str | torch.device = "cpu", checkpoint: str | None = None
) -> SeamRefiner | None:
    """The run's trained :class:`SeamRefiner` (eval mode), or None when the run has none.

    A damaged or partial refiner (unreadable weights, a state.pt without weights, wrong shapes,
    NaN) is a :class:`UserError` naming the file. With ``checkpoint`` ('best' or 'last'), the
    refiner must have been trained on exactly that checkpoint's MAE weights (same SHA-256).
    """
    files = refiner_files(run_dir)
    if not files["weights"].is_file():
        if files["state"].is_file():
            raise UserError(f"{files['weights']} is missing beside {files['state']}; finish it "
                            "with refine --resume, start again with --overwrite, or "
                            f"{WITHOUT_REFINER}")
        return None
    refiner = _read_refiner(run_dir, files["weights"])
    if checkpoint is not None:
        _check_same_mae(run_dir, checkpoint, refiner_record(run_dir) or {})
    return refiner.to(device).eval()


def _check_same_mae(run_dir: str | Path, checkpoint: str, record: dict[str, Any]) -> None:
    weights = ckpt.resolve(Path(run_dir) / "checkpoints" / checkpoint) / ckpt.MODEL_FILE
    if record.get("mae_sha256") != file_sha256(weights):
        raise UserError(
            f"{refiner_files(run_dir)['folder']} was trained on other MAE weights than {weights} "
            f"(the run was trained further, or this is another checkpoint): refine again with "
            f"--overwrite, or {WITHOUT_REFINER}"
        )
