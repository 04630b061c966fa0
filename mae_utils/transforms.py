"""From stored pixels to the model's input: normalisation
and training augmentation, per batch, on the device.

Datasets yield uint8 (3, H, W) images. A batch travels to the training device as uint8 (pinned on
CUDA; a quarter of the bytes of float32) and :func:`batch_to_input`, the one function that makes the
model's input, turns it there into normalised float32 and applies the training augmentation to the
whole batch at once. Training, validation, evaluation, reconstruction and the notebook helpers all
call it; :func:`denormalize` maps back to [0, 1] for metrics and figures.

Augmentation comes in two halves, so that it is exactly reproducible and cheap where it matters:

* :meth:`Augment.draw` draws one image's parameters (a few scalars) from a generator the caller
  seeds per (seed, epoch, image index); the training loader does so, as for the mask noise. A
  resumed run, or one with more loader workers or processes, augments every image exactly as an
  uninterrupted single-process run does, and no global random stream is involved.
* :func:`apply_augment` applies a batch of such parameters on the batch's device: one
  ``grid_sample`` resamples every crop (bilinear, edge pixels repeated), flips are exact.

Extending it: add a field to :class:`Augment`, a key to the dict :meth:`Augment.draw` returns (the
DataLoader's default collate batches dict entries), and its step to :func:`apply_augment`.

Normalisation uses the ImageNet mean/std (:data:`MEAN`, :data:`STD`): the official MAE and the
Hugging Face ViTMAE checkpoints were trained on inputs normalised that way, so a pretrained model
loaded with :mod:`mae_utils.pretrained` sees faces the way it saw its training images, and models
trained here can be compared with it on equal terms.

torchvision's ``transforms.v2`` is not used: it draws one set of parameters per call from the global
random stream, while exact resume needs parameters per image from per-image generators.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Mapping

import torch
import torch.nn.functional as F

from .util.errors import UserError

__all__ = [
    "MEAN", "STD", "SCALE_DRAWS", "ZOOM_FILLS", "Augment", "AugmentParams", "apply_augment",
    "batch_to_input", "denormalize", "normalize", "zoom_out",
]

#: Per-channel mean and std of the normalisation (ImageNet's; see the module docstring for why).
MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: One image's (or, batched, a batch's) augmentation parameters: ``box`` (top, left, height, width)
#: of the crop as fractions of the image side (beyond [0, 1] when zooming out), ``flip`` (bool),
#: ``color`` (brightness, contrast, saturation factors), ``grey`` (bool), ``fill`` (index into
#: :data:`ZOOM_FILLS`), ``other`` (a uniform number in [0, 1) that picks the background photo), and
#: with the ``photo`` fill ``background`` (another image's uint8 pixels, added by the training
#: loader). Batched: ``box`` (N, 4), ``flip``, ``fill``, ``other``, ``grey`` (N,), ``color`` (N, 3),
#: ``background`` (N, 3, H, W).
AugmentParams = Mapping[str, torch.Tensor]


def _check_pixels(t: torch.Tensor, what: str) -> None:
    if t.ndim < 3 or t.shape[-3] != 3:
        raise UserError(f"{what} expects (..., 3, H, W), got shape {tuple(t.shape)}")


def _stats_like(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = torch.tensor(MEAN, dtype=t.dtype, device=t.device).view(3, 1, 1)
    std = torch.tensor(STD, dtype=t.dtype, device=t.device).view(3, 1, 1)
    return mean, std


@lru_cache(maxsize=8)
def _uint8_affine(device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 -> normalised as one multiply-subtract per channel: x / (255 std) - mean / std."""
    scale = torch.tensor([1.0 / (255.0 * s) for s in STD], dtype=torch.float32).view(3, 1, 1)
    shift = torch.tensor([m / s for m, s in zip(MEAN, STD)], dtype=torch.float32).view(3, 1, 1)
    return scale.to(device), shift.to(device)


def normalize(x01: torch.Tensor) -> torch.Tensor:
    """Float pixels in [0, 1], shaped (..., 3, H, W)
    -> the model's input scale ((x - MEAN) / STD)."""
    _check_pixels(x01, "normalize")
    mean, std = _stats_like(x01 if x01.is_floating_point() else x01.float())
    return (x01 - mean) / std


def denormalize(t: torch.Tensor) -> torch.Tensor:
    """Any image batch the package makes -> float pixels in [0, 1], for metrics and figures.

    A float tensor is taken as the model's input scale (the inverse of :func:`normalize`, clamped);
    a uint8 tensor (the datasets' items) is already pixels and is only scaled by 1/255. Works on
    (3, H, W) and (N, 3, H, W).
    """
    _check_pixels(t, "denormalize")
    if t.dtype == torch.uint8:
        return t.float().div_(255.0)
    mean, std = _stats_like(t if t.is_floating_point() else t.float())
    return (t * std + mean).clamp(0.0, 1.0)


#: Largest crop, as a share of the image area (4: the face at half the frame's side); Augment and
#: TrainConfig both check against it.
MAX_CROP_SCALE = 4.0

#: What fills the frame beyond the photo when zooming out: ``mean`` the data set's mean colour
#: (flat, as no photo is), ``reflect`` the photo's own borders mirrored outwards, ``photo`` another
#: training photo as the background, met by the mirrored borders over a soft band
#: (:data:`PHOTO_FEATHER`).
ZOOM_FILLS: tuple[str, ...] = ("mean", "reflect", "photo")

#: How the crop's area is drawn from ``crop_scale``: ``uniform`` in area (torchvision's
#: RandomResizedCrop), or ``log`` (log-uniform: each doubling of the area equally likely, so a wide
#: range such as 0.5..4 gives zoom in, mild zoom out and a face at half the frame side about equally
#: often).
SCALE_DRAWS: tuple[str, ...] = ("uniform", "log")

#: Width of the band beyond the photo, in photo sides, over which the mirrored borders fade into the
#: background photo (``photo`` fill): no hard rectangular edge for the model to learn as a cue.
PHOTO_FEATHER = 0.125

#: Luma weights (ITU-R BT.601) for grey images and saturation changes.
_LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class Augment:
    """Training augmentation for faces: random resized
    crop (zoom in or out), flip, grey and colour jitter.

    ``crop_scale``: the crop's share of the image area. Below 1 zooms in (the MAE paper's random
    resized crop, He et al. 2021, uses 0.2..1 on scenes); above 1 zooms out, so the face is smaller
    in the frame, as in photos framed wider than the training set, and the area beyond the photo is
    filled with the data set's mean colour (nothing is invented there). ``crop_ratio``: range of the
    crop's width / height (drawn log-uniformly). ``hflip``: probability of a mirror image. ``grey``:
    probability of a grey image (luma in all three channels): grey photos, scans and infrared frames
    are faces too. ``jitter``: brightness, contrast and saturation factors drawn from ``[1 - jitter,
    1 + jitter]`` (lighting and white balance differ between sources). ``fill``: what surrounds a
    zoomed-out photo (:data:`ZOOM_FILLS`; ``photo`` needs the loader to add a ``background`` image,
    as :class:`~mae_utils.splits.TrainItems` does). ``scale_draw``: :data:`SCALE_DRAWS`. These
    defaults keep a light crop and a flip; TrainConfig builds a wider one from its fields.
    """

    crop_scale: tuple[float, float] = (0.85, 1.0)
    crop_ratio: tuple[float, float] = (0.95, 1.0 / 0.95)
    hflip: float = 0.5
    grey: float = 0.0
    jitter: float = 0.0
    fill: str = "mean"
    scale_draw: str = "uniform"

    def __post_init__(self) -> None:
        if self.fill not in ZOOM_FILLS:
            raise UserError(
                f"Augment.fill must be one of {', '.join(ZOOM_FILLS)}, got {self.fill!r}"
            )
        if self.scale_draw not in SCALE_DRAWS:
            raise UserError(
                f"Augment.scale_draw must be one of {', '.join(SCALE_DRAWS)}, got "
                f"{self.scale_draw!r}"
            )
        lo, hi = self.crop_scale
        if not (0 < lo <= hi <= MAX_CROP_SCALE):
            raise UserError(
                f"Augment.crop_scale must satisfy 0 < low <= high <= {MAX_CROP_SCALE:g}, "
                f"got {self.crop_scale}"
            )
        rlo, rhi = self.crop_ratio
        if not (0 < rlo <= rhi):
            raise UserError(
                f"Augment.crop_ratio must satisfy 0 < low <= high, got {self.crop_ratio}"
            )
        for name in ("hflip", "grey"):
            if not (0 <= getattr(self, name) <= 1):
                raise UserError(
                    f"Augment.{name} must be a probability in [0, 1], got {getattr(self, name)}"
                )
        if not (0 <= self.jitter < 1):
            raise UserError(f"Augment.jitter must be in [0, 1), got {self.jitter}")

    def draw(self, generator: torch.Generator) -> dict[str, torch.Tensor]:
        """One image's parameters (see :data:`AugmentParams`), drawn from ``generator`` alone.

        A crop of ``crop_scale`` of the area with aspect ``crop_ratio`` at a uniform position:
        inside the image when zooming in (clipped to it, torchvision's ``RandomResizedCrop`` without
        retries), around it when zooming out (the photo lands anywhere inside the larger box).
        Always ten draws, so turning one option on does not shift the others' random numbers (the
        tenth, ``other``, picks the background photo; it came last, so the first nine are what they
        always were).
        """
        u = torch.rand(10, generator=generator, dtype=torch.float64).tolist()
        lo_s, hi_s = self.crop_scale
        if self.scale_draw == "log":
            scale = math.exp(math.log(lo_s) + (math.log(hi_s) - math.log(lo_s)) * u[0])
        else:
            scale = lo_s + (hi_s - lo_s) * u[0]
        lo, hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
        ratio = math.exp(lo + (hi - lo) * u[1])
        w, h = math.sqrt(scale * ratio), math.sqrt(scale / ratio)
        if scale <= 1.0:
            w, h = min(1.0, w), min(1.0, h)
        top, left = (1.0 - h) * u[2], (1.0 - w) * u[3]  # negative when zooming out
        flip = self.hflip > 0 and u[4] < self.hflip
        # brightness, contrast, saturation
        color = [1.0 + self.jitter * (2.0 * v - 1.0) for v in u[5:8]]
        grey = self.grey > 0 and u[8] < self.grey
        return {
            "box": torch.tensor([top, left, h, w], dtype=torch.float32),
            "flip": torch.tensor(flip),
            "color": torch.tensor(color, dtype=torch.float32),
            "grey": torch.tensor(grey),
            "fill": torch.tensor(ZOOM_FILLS.index(self.fill)),
            "other": torch.tensor(u[9], dtype=torch.float64),
        }


_FULL_BOX = torch.tensor([0.0, 0.0, 1.0, 1.0])


#: How ``grid_sample`` fills beyond the photo for each zoom fill (``photo`` is blended in after).
_PADDING = {"mean": "zeros", "reflect": "reflection", "photo": "reflection"}


def _crop(
    x: torch.Tensor, box: torch.Tensor, fill: str = "mean", background: torch.Tensor | None = None
) -> torch.Tensor:
    """Resample each box to the full size. Inside the image: bilinear at pixel centres, edge pixels
    repeated (as Pillow resizes a box). Beyond it (zoom out), by ``fill``: zeros (the mean colour in
    the normalised space this runs in), the photo mirrored, or ``background`` (normalised, (N, 3, H,
    W)) met by the mirrored photo over a band of :data:`PHOTO_FEATHER` photo sides."""
    n = x.shape[0]
    top, left, h, w = box.unbind(1)
    theta = torch.zeros(n, 2, 3, dtype=torch.float32)
    theta[:, 0, 0], theta[:, 0, 2] = w, 2 * left + w - 1  # output x in [-1, 1] -> source x
    theta[:, 1, 1], theta[:, 1, 2] = h, 2 * top + h - 1
    outside = bool(((box[:, :2] < 0) | (box[:, :2] + box[:, 2:] > 1 + 1e-6)).any())
    theta = theta.to(x.device, non_blocking=True)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False).to(x.dtype)
    padding = _PADDING[fill] if outside else "border"
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    if not outside or fill != "photo":
        return out
    if background is None or background.shape != x.shape:
        got = None if background is None else tuple(background.shape)
        raise UserError(
            "the photo zoom fill needs a background batch shaped like the images "
            f"{tuple(x.shape)}, got {got}"
        )
    # distance beyond the photo, in photo sides
    beyond = (grid.abs() - 1.0).clamp_min(0.0).norm(dim=-1) / 2.0
    alpha = (1.0 - beyond / PHOTO_FEATHER).clamp(0.0, 1.0).unsqueeze(1)
    return alpha * out + (1.0 - alpha) * background.to(out.dtype)


def _recolor(
    x: torch.Tensor, color: torch.Tensor | None, grey: torch.Tensor | None
) -> torch.Tensor:
    """Brightness, contrast, saturation (``color``: (N, 3) factors), then grey; pixels in [0, 1]."""
    n = x.shape[0]
    luma = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    if color is not None:
        factors = color.to(x.device, x.dtype, non_blocking=True).unbind(1)
        b, c, s = (v.view(n, 1, 1, 1) for v in factors)
        y = (x * luma).sum(1, keepdim=True)
        x = y + s * (x - y)  # saturation: towards or away from the pixel's own grey
        x = x.mean((1, 2, 3), keepdim=True) + c * (x - x.mean((1, 2, 3), keepdim=True))  # contrast
        x = (x * b).clamp(0.0, 1.0)  # brightness
    if grey is not None:
        g = grey.reshape(n, 1, 1, 1).to(x.device, torch.bool, non_blocking=True)
        x = torch.where(g, (x * luma).sum(1, keepdim=True).expand_as(x), x)
    return x


def apply_augment(x: torch.Tensor, params: AugmentParams) -> torch.Tensor:
    """Apply a batch of :meth:`Augment.draw` parameters to
    a normalised float (N, 3, H, W) batch on its device.

    Crops (see :func:`_crop`; ``fill`` and ``background`` say what surrounds a zoomed-out photo, the
    batch's first ``fill`` for all, as one :class:`Augment` drew them), flips (exact), then colour
    changes on the pixels in [0, 1]. Parameters that change nothing (full boxes, no flip, unit
    factors, no grey) cost nothing, so the default crop-and-flip is exactly what it was before
    colour existed. A uint8 ``background`` is normalised here.
    """
    n = x.shape[0]
    box = params.get("box")
    if box is not None:
        box = box.reshape(n, 4).to(torch.float32)
        if not bool((box.cpu() == _FULL_BOX).all()):
            code = params.get("fill")
            fill = ZOOM_FILLS[int(code.reshape(-1)[0])] if code is not None else "mean"
            background = params.get("background")
            if background is not None:
                background = batch_to_input(background.reshape(x.shape), x.device)
            x = _crop(x, box, fill, background)
    flip = params.get("flip")
    if flip is not None and bool(flip.cpu().any()):
        f = flip.reshape(n, 1, 1, 1).to(x.device, torch.bool, non_blocking=True)
        x = torch.where(f, x.flip(-1), x)
    color, grey = params.get("color"), params.get("grey")
    color = None if color is None or bool((color.cpu() == 1.0).all()) else color.reshape(n, 3)
    grey = None if grey is None or not bool(grey.cpu().any()) else grey
    if color is not None or grey is not None:
        x = normalize(_recolor(denormalize(x), color, grey))
    return x


def batch_to_input(
    images: torch.Tensor,
    device: str | torch.device | None = None,
    *,
    augment: AugmentParams | None = None,
    non_blocking: bool = True,
) -> torch.Tensor:
    """A batch of images -> the model's normalised float32 input on ``device``, augmented if asked.

    ``images``: (N, 3, H, W) uint8 pixels (the datasets' items, stacked), moved to the device as
    uint8 and normalised there; a float batch is taken as already normalised and only moved.
    ``device``: where the model is (default: where ``images`` are). ``augment``: the batched
    :meth:`Augment.draw` parameters (as the training loader yields them), or None / ``{}``.
    With a pinned uint8 batch the copy to a GPU overlaps with the work already queued there.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise UserError(
            f"batch_to_input expects a (N, 3, H, W) batch, got shape {tuple(images.shape)}"
        )
    device = images.device if device is None else torch.device(device)
    x = images.to(device, non_blocking=non_blocking)
    if x.dtype == torch.uint8:
        scale, shift = _uint8_affine(x.device)
        x = x.to(torch.float32, memory_format=torch.contiguous_format).mul_(scale).sub_(shift)
    elif not x.is_floating_point():
        raise UserError(
            f"batch_to_input expects uint8 pixels or a normalised float batch, got {images.dtype}"
        )
    if augment:
        x = apply_augment(x, augment)
    return x


def zoom_out(
    images: torch.Tensor,
    side: float,
    *,
    fill: str = "photo",
    background: torch.Tensor | None = None,
) -> torch.Tensor:
    """Each uint8 (N, 3, H, W) image shrunk to ``side`` of the frame's side, centred, in a surround.

    ``fill``: ``photo`` (``background`` (N, 3, H, W) uint8 behind it, met by mirrored borders, as in
    training) or ``reflect`` or ``mean``. Returns uint8, so the result is a photo like any other:
    what ``evaluate --zoom-out`` scores, to see faces framed wider than the source frames them.
    """
    if not 0.0 < side <= 1.0:
        raise UserError(
            f"zoom-out side must be in (0, 1] (the face's share of the frame side), got {side}"
        )
    if fill not in ZOOM_FILLS:
        raise UserError(f"zoom fill must be one of {', '.join(ZOOM_FILLS)}, got {fill!r}")
    n = images.shape[0]
    span = 1.0 / side
    box = torch.tensor([[(1.0 - span) / 2, (1.0 - span) / 2, span, span]] * n, dtype=torch.float32)
    params: dict[str, torch.Tensor] = {"box": box, "fill": torch.full((n,), ZOOM_FILLS.index(fill))}
    if fill == "photo":
        if background is None:
            raise UserError("zoom_out with fill 'photo' needs a background batch")
        params["background"] = background
    out = denormalize(apply_augment(batch_to_input(images), params))
    return (out * 255.0).round().clamp(0, 255).to(torch.uint8)
