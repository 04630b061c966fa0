"""Honest reconstruction metrics: masked-region and full-image PSNR and SSIM, confidence intervals.

Everything here works on pixels in ``[0, 1]`` (undo the data normalisation first with
``mae_utils.transforms.denormalize``): a PSNR peak of 1.0 is only right for such pixels, and the
seed's 24.6 dB for a model whose true PSNR was 18.6 dB came from using the wrong peak on ``[-1, 1]``
data. Targets outside ``[0, 1]`` are therefore refused with a message that says so.

The headline numbers are computed over the *hidden* pixels only. Two more numbers see what PSNR
barely does, a mosaic of separately guessed patches (:func:`seam_scores`): *blockiness* (how much
larger steps across the borders of hidden patches are than steps inside them, relative to the same
ratio on the original; 1.0 = as natural as the photo) and *detail* (steps inside hidden patches
relative to the original's; 1.0 = as much fine structure, below 1 = blurred). Full-image numbers are
also given, on the reconstruction with the visible patches pasted back, but they flatter any MAE: a
quarter of the pixels (at 75 % masking) are copied from the input.

Shapes: images are ``(N, C, H, W)`` float tensors; a patch mask is ``(N, L)`` with 1 = hidden,
patches in row-major order (the model's contract); a pixel mask is ``(N, 1, H, W)`` with 1 = hidden.

SSIM follows Wang et al., "Image quality assessment: from error visibility to structural
similarity", IEEE TIP 2004: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, data
range 1, population (not sample) covariances, one SSIM map per channel. It matches
``skimage.metrics.structural_similarity(..., gaussian_weights=True, sigma=1.5,
use_sample_covariance=False, data_range=1, channel_axis=-1)``.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .util.errors import UserError

__all__ = [
    "PSNR_MAX_DB",
    "evaluate_batch",
    "mean_ci95",
    "paste_visible",
    "patch_mask_to_pixel_mask",
    "prediction_score",
    "psnr",
    "psnr_masked",
    "seam_scores",
    "ssim",
    "ssim_masked",
    "summarize",
    "wilson_interval",
]

# A perfect match has infinite PSNR; the MSE is floored at 1e-10 so it reads 100 dB and means stay
# finite.
_MSE_FLOOR = 1e-10
PSNR_MAX_DB = 10.0 * math.log10(1.0 / _MSE_FLOOR)

# SSIM constants (Wang et al. 2004).
_SSIM_SIGMA = 1.5
_SSIM_RADIUS = 5  # 11x11 window: skimage's int(3.5 * sigma + 0.5) truncation for sigma 1.5
_SSIM_K1 = 0.01
_SSIM_K2 = 0.03

# How far outside [0, 1] a target may stray (float rounding of denormalize) before it is refused.
_RANGE_TOL = 1e-3


# --------------------------------------------------------------------------------------------
# input checks
# --------------------------------------------------------------------------------------------
def check_images(name: str, x: torch.Tensor, *, check_range: bool) -> None:
    """Refuse what is not a float (N, C, H, W) batch;
    with ``check_range`` also values outside [0, 1]."""
    if not isinstance(x, torch.Tensor):
        raise UserError(
            f"{name}: expected a torch.Tensor of shape (N, C, H, W), got {type(x).__name__}"
        )
    if x.dim() != 4:
        raise UserError(f"{name}: expected shape (N, C, H, W), got {tuple(x.shape)}")
    if not x.is_floating_point():
        raise UserError(
            f"{name}: expected float pixels in [0, 1], got dtype {x.dtype} "
            "(divide uint8 images by 255)"
        )
    if check_range and x.numel():
        lo, hi = float(x.min()), float(x.max())
        if lo < -_RANGE_TOL or hi > 1.0 + _RANGE_TOL:
            raise UserError(
                f"{name}: pixel values span [{lo:.3f}, {hi:.3f}], outside [0, 1]; undo the "
                "normalisation with mae_utils.transforms.denormalize before computing metrics"
            )


def _check_pair(pred: torch.Tensor, target: torch.Tensor, pred_name: str, target_name: str) -> None:
    check_images(pred_name, pred, check_range=False)
    check_images(target_name, target, check_range=True)
    if pred.shape != target.shape:
        raise UserError(
            f"{pred_name} has shape {tuple(pred.shape)} but {target_name} has shape "
            f"{tuple(target.shape)}"
        )


def check_pixel_mask(
    pixel_mask: torch.Tensor, like: torch.Tensor, name: str = "pixel_mask"
) -> torch.Tensor:
    """Return the mask as float (N, 1, H, W) matching ``like``; accept (N, H, W) too."""
    if not isinstance(pixel_mask, torch.Tensor):
        got = type(pixel_mask).__name__
        raise UserError(f"{name}: expected a torch.Tensor of shape (N, 1, H, W), got {got}")
    if pixel_mask.dim() == 3:
        pixel_mask = pixel_mask.unsqueeze(1)
    n, _, h, w = like.shape
    if pixel_mask.dim() != 4 or tuple(pixel_mask.shape) != (n, 1, h, w):
        raise UserError(
            f"{name}: expected shape ({n}, 1, {h}, {w}) to match the images {tuple(like.shape)}, "
            f"got {tuple(pixel_mask.shape)} (convert a patch mask with patch_mask_to_pixel_mask)"
        )
    return (pixel_mask.to(like.device) > 0.5).to(like.dtype)


def _hidden_counts(pixel_mask: torch.Tensor, name: str = "pixel_mask") -> torch.Tensor:
    counts = pixel_mask.flatten(1).sum(1)
    empty = (counts == 0).nonzero().flatten().tolist()
    if empty:
        raise UserError(
            f"{name}: image(s) {empty[:10]} have no hidden pixel; masked-region metrics are "
            "undefined (use a mask ratio above 0)"
        )
    return counts


# --------------------------------------------------------------------------------------------
# masks
# --------------------------------------------------------------------------------------------
def patch_mask_to_pixel_mask(
    mask: torch.Tensor, patch_size: int, image_size: int | Sequence[int]
) -> torch.Tensor:
    """Expand an (N, L) patch mask (1 = hidden, row-major patches) to an (N, 1, H, W) pixel mask.

    Patch ``k`` covers rows ``(k // gw) * p ...`` and columns ``(k % gw) * p ...`` where ``gw = W //
    p``, the same order as the model's ``patchify``.
    """
    if isinstance(image_size, int):
        h = w = image_size
    else:
        if len(image_size) != 2:
            raise UserError(f"image_size: expected an int or (H, W), got {image_size!r}")
        h, w = (int(s) for s in image_size)
    if not isinstance(patch_size, int) or patch_size < 1:
        raise UserError(f"patch_size: expected a positive int, got {patch_size!r}")
    if h % patch_size or w % patch_size or h < 1 or w < 1:
        raise UserError(
            f"image_size ({h}, {w}) is not a positive multiple of patch_size {patch_size}"
        )
    if not isinstance(mask, torch.Tensor) or mask.dim() != 2:
        shape = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise UserError(f"mask: expected a patch mask of shape (N, L), got {shape}")
    gh, gw = h // patch_size, w // patch_size
    if mask.shape[1] != gh * gw:
        raise UserError(
            f"mask has {mask.shape[1]} patches per image but a {h}x{w} image with patch_size "
            f"{patch_size} has {gh}x{gw} = {gh * gw}"
        )
    grid = (mask > 0.5).float().reshape(mask.shape[0], 1, gh, gw)
    return grid.repeat_interleave(patch_size, dim=2).repeat_interleave(patch_size, dim=3)


def paste_visible(
    recon01: torch.Tensor, original01: torch.Tensor, pixel_mask: torch.Tensor
) -> torch.Tensor:
    """The reconstruction on hidden pixels, the original on visible ones: what a user would keep."""
    _check_pair(recon01, original01, "recon01", "original01")
    m = check_pixel_mask(pixel_mask, original01)
    return m * recon01 + (1.0 - m) * original01


# --------------------------------------------------------------------------------------------
# PSNR
# --------------------------------------------------------------------------------------------
def _psnr_from_mse(mse: torch.Tensor) -> torch.Tensor:
    return 10.0 * torch.log10(1.0 / mse.clamp_min(_MSE_FLOOR))


def psnr(pred01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB over the whole image, peak 1.0 (pixels in [0, 1]); shape (N,)."""
    _check_pair(pred01, target01, "pred01", "target01")
    mse = (pred01.double() - target01.double()).pow(2).flatten(1).mean(1)
    return _psnr_from_mse(mse).to(torch.float32)


def psnr_masked(
    pred01: torch.Tensor, target01: torch.Tensor, pixel_mask: torch.Tensor
) -> torch.Tensor:
    """Per-image PSNR in dB over hidden pixels only
    (MSE over hidden pixels x channels), peak 1.0."""
    _check_pair(pred01, target01, "pred01", "target01")
    m = check_pixel_mask(pixel_mask, target01).double()
    counts = _hidden_counts(m) * target01.shape[1]
    sq = (pred01.double() - target01.double()).pow(2) * m
    mse = sq.flatten(1).sum(1) / counts
    return _psnr_from_mse(mse).to(torch.float32)


# --------------------------------------------------------------------------------------------
# SSIM
# --------------------------------------------------------------------------------------------
def compute_dtype(device: torch.device) -> torch.dtype:
    # float64 avoids cancellation in E[x^2] - E[x]^2; MPS has no float64.
    return torch.float32 if device.type == "mps" else torch.float64


def _symmetric_index(size: int, pad: int, device: torch.device) -> torch.Tensor:
    # scipy.ndimage's 'reflect' border (d c b a | a b c d | d c b a), as skimage's SSIM uses.
    return torch.from_numpy(np.pad(np.arange(size), pad, mode="symmetric")).to(device)


def _ssim_map(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Full-size (N, C, H, W) SSIM map, Gaussian window, symmetric borders."""
    dtype = compute_dtype(x.device)
    x, y = x.to(dtype), y.to(dtype)
    n, c, h, w = x.shape
    r = _SSIM_RADIUS
    t = torch.arange(-r, r + 1, device=x.device, dtype=dtype)
    g = torch.exp(-0.5 * (t / _SSIM_SIGMA) ** 2)
    g = g / g.sum()
    stack = torch.cat([x, y, x * x, y * y, x * y], dim=1)  # (N, 5C, H, W)
    stack = stack[:, :, _symmetric_index(h, r, x.device)][:, :, :, _symmetric_index(w, r, x.device)]
    k = 5 * c
    stack = F.conv2d(stack, g.view(1, 1, -1, 1).expand(k, 1, -1, 1), groups=k)
    stack = F.conv2d(stack, g.view(1, 1, 1, -1).expand(k, 1, 1, -1), groups=k)
    mx, my, exx, eyy, exy = stack.split(c, dim=1)
    vx, vy, cxy = exx - mx * mx, eyy - my * my, exy - mx * my
    c1, c2 = (_SSIM_K1 * 1.0) ** 2, (_SSIM_K2 * 1.0) ** 2
    return ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))


def ssim(pred01: torch.Tensor, target01: torch.Tensor) -> torch.Tensor:
    """Per-image mean SSIM over the full image; shape (N,).

    Like skimage, the mean leaves out the 5-pixel border where the window hangs over the edge, so
    the numbers equal ``skimage.metrics.structural_similarity`` with the settings in the module
    docstring. Needs images of at least 11x11.
    """
    _check_pair(pred01, target01, "pred01", "target01")
    h, w = target01.shape[-2:]
    r = _SSIM_RADIUS
    if h < 2 * r + 1 or w < 2 * r + 1:
        raise UserError(
            f"ssim needs images of at least {2 * r + 1}x{2 * r + 1} pixels, got {h}x{w}"
        )
    s = _ssim_map(pred01, target01)[:, :, r : h - r, r : w - r]
    return s.flatten(1).mean(1).to(torch.float32)


def ssim_masked(
    pred01: torch.Tensor, target01: torch.Tensor, pixel_mask: torch.Tensor
) -> torch.Tensor:
    """Per-image SSIM over the hidden region; shape (N,).

    The full-size SSIM map (Gaussian window centred on every pixel, symmetric borders) is averaged
    over the hidden pixels and the channels. Windows near a hidden region's edge also see visible
    pixels, so pass the reconstruction with the visible pixels pasted back (``evaluate_batch`` does)
    to score every method on the image a user would see.
    """
    _check_pair(pred01, target01, "pred01", "target01")
    m = check_pixel_mask(pixel_mask, target01)
    s = _ssim_map(pred01, target01)
    m = m.to(s.dtype)
    counts = _hidden_counts(m) * target01.shape[1]
    return ((s * m).flatten(1).sum(1) / counts).to(torch.float32)


# --------------------------------------------------------------------------------------------
# blockiness and detail
# --------------------------------------------------------------------------------------------
#: Steps are floored at half a grey level of an 8-bit display (smaller ones cannot be seen), so a
#: flat fill (zero steps inside a patch) gets a large, finite blockiness instead of a division by
#: zero.
STEP_FLOOR = 0.5 / 255.0


def _step_sums(x: torch.Tensor, hidden: torch.Tensor, p: int) -> tuple[torch.Tensor, ...]:
    """Per image: (sum of |steps| across patch borders touching a hidden patch, their count, sum of
    |steps| between neighbours inside one hidden patch, their count), over rows and columns,
    channels averaged. ``hidden``: (N, 1, H, W) bool."""
    sums = [torch.zeros(x.shape[0], dtype=torch.float64, device=x.device) for _ in range(4)]
    for dim in (-1, -2):
        n = x.shape[dim]
        a, b = x.narrow(dim, 0, n - 1), x.narrow(dim, 1, n - 1)
        ha, hb = hidden.narrow(dim, 0, n - 1), hidden.narrow(dim, 1, n - 1)
        step = (a - b).abs().double().mean(1, keepdim=True)
        shape = [1, 1, 1, 1]
        shape[dim] = n - 1
        border = ((torch.arange(1, n, device=x.device) % p) == 0).view(shape)
        across = border & (ha | hb)
        inside = ~border & ha
        for k, sel in ((0, across), (2, inside)):
            sums[k] += (step * sel).flatten(1).sum(1)
            sums[k + 1] += sel.expand_as(step).flatten(1).sum(1).double()
    return tuple(sums)


def seam_scores(
    recon01: torch.Tensor, original01: torch.Tensor, mask: torch.Tensor, patch_size: int
) -> dict[str, torch.Tensor]:
    """Per-image ``blockiness`` and ``detail`` of a reconstruction (visible patches pasted back).

    With ``step`` the mean absolute difference between horizontally or vertically neighbouring
    pixels (channels averaged): *border* steps straddle a patch border that touches a hidden patch,
    *interior* steps join two pixels of one hidden patch. ``blockiness = (border / interior of the
    composite) / (border / interior of the original)``: 1 = seams as the photo has them, above 1 = a
    mosaic. ``detail = interior of the composite / interior of the original``: below 1 = smoother
    than the photo. Steps are floored at :data:`STEP_FLOOR`. ``mask``: the (N, L) patch mask (1 =
    hidden), row-major. An identical reconstruction scores exactly 1 on both.
    """
    _check_pair(recon01, original01, "recon01", "original01")
    pixel_mask = patch_mask_to_pixel_mask(mask, patch_size, tuple(original01.shape[-2:]))
    hidden = check_pixel_mask(pixel_mask, original01) > 0.5
    composite = torch.where(hidden, recon01.clamp(0.0, 1.0), original01)
    ratios = []
    for x in (composite, original01):
        b_sum, b_n, i_sum, i_n = _step_sums(x, hidden, patch_size)
        if bool((b_n == 0).any()) or bool((i_n == 0).any()):
            raise UserError(
                "seam_scores: every image needs a hidden patch and patches of at least 2 pixels"
            )
        border, interior = (b_sum / b_n).clamp_min(STEP_FLOOR), (i_sum / i_n).clamp_min(STEP_FLOOR)
        ratios.append((border, interior))
    (b_r, i_r), (b_o, i_o) = ratios
    return {"blockiness": ((b_r / i_r) / (b_o / i_o)).float(), "detail": (i_r / i_o).float()}


# --------------------------------------------------------------------------------------------
# statistics
# --------------------------------------------------------------------------------------------
def mean_ci95(values: Sequence[float] | torch.Tensor | np.ndarray) -> tuple[float, float]:
    """Mean and the half-width of its 95 % confidence interval over images.

    Student-t interval, ``t(0.975, n-1) * s / sqrt(n)`` with the sample standard deviation ``s``:
    exact for normal data and slightly wider than the normal approximation for small n. One value
    gives no spread to estimate from, so its half-width is NaN (unknown), not 0.
    """
    if isinstance(values, torch.Tensor):
        arr = values.detach().double().cpu().numpy().ravel()
    else:
        arr = np.asarray(values, dtype=np.float64).ravel()
    if arr.size == 0:
        raise UserError("mean_ci95: got no values (was the evaluation set empty?)")
    mean = float(arr.mean())
    if arr.size == 1:
        return mean, float("nan")
    from scipy.stats import t as student_t  # local: a heavy import (~1 s), from scikit-image

    sd = float(arr.std(ddof=1))
    return mean, float(student_t.ppf(0.975, arr.size - 1) * sd / math.sqrt(arr.size))


#: The standard normal's 97.5% quantile: a 95% two-sided interval.
Z95 = 1.959963984540054


def wilson_interval(correct: int, n: int) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``correct / n`` (fine near 0 and 1, unlike the
    normal one)."""
    if n == 0:
        return float("nan"), float("nan")
    p = correct / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / (1 + Z95**2 / n)
    return centre - half, centre + half


def prediction_score(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """How good predictions of a label are, with a 95% interval: for ``task`` 'classify' the
    accuracy (Wilson interval), for 'regress' the mean absolute error (t interval,
    :func:`mean_ci95`). Returns ``score``, ``low``, ``high``."""
    if task == "classify":
        correct = int((np.asarray(y_true) == np.asarray(y_pred)).sum())
        lo, hi = wilson_interval(correct, len(y_true))
        return {"score": correct / len(y_true), "low": lo, "high": hi}
    mae, half = mean_ci95(np.abs(np.asarray(y_true).astype(np.float64) - y_pred))
    return {"score": mae, "low": mae - half, "high": mae + half}


def score_text(value: float, task: str) -> str:
    """A :func:`prediction_score` value as the tables print it: accuracy in percent, an error to
    three significant digits."""
    return f"{100 * value:.1f}%" if task == "classify" else f"{value:.3g}"


def summarize(results: dict[str, torch.Tensor]) -> dict[str, dict[str, float]]:
    """``{metric: per-image values}`` -> ``{metric: {"mean", "ci95", "n"}}`` for tables and JSON."""
    out: dict[str, dict[str, float]] = {}
    for name, values in results.items():
        mean, half = mean_ci95(values)
        out[name] = {"mean": mean, "ci95": half, "n": int(torch.as_tensor(values).numel())}
    return out


# --------------------------------------------------------------------------------------------
# one call for the model and every baseline
# --------------------------------------------------------------------------------------------
def evaluate_batch(
    original01: torch.Tensor,
    recon01: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image metrics of a reconstruction: ``psnr_masked``, ``ssim_masked``, ``psnr_full``,
    ``ssim_full``, and with a patch mask also ``blockiness`` and ``detail`` (:func:`seam_scores`).

    ``mask`` is the (N, L) patch mask (1 = hidden) with ``patch_size``, or an (N, 1, H, W) pixel
    mask (then ``patch_size`` may be None, and there are no seam scores: they need the patch grid).
    The reconstruction is clamped to [0, 1] (what can be displayed) and the visible pixels are
    pasted back before SSIM and full-image PSNR, so the model and the baselines are scored on the
    same composite image. Values are float32 tensors of shape (N,).
    """
    _check_pair(recon01, original01, "recon01", "original01")
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        if patch_size is None:
            raise UserError("patch_size: required when mask is an (N, L) patch mask")
        if mask.shape[0] != original01.shape[0]:
            raise UserError(
                f"mask has {mask.shape[0]} rows but there are {original01.shape[0]} images"
            )
        pixel_mask = patch_mask_to_pixel_mask(mask, patch_size, tuple(original01.shape[-2:]))
    else:
        pixel_mask = mask
    m = check_pixel_mask(pixel_mask, original01, "mask")
    composite = paste_visible(recon01.clamp(0.0, 1.0), original01, m)
    scores = {
        "psnr_masked": psnr_masked(composite, original01, m),
        "ssim_masked": ssim_masked(composite, original01, m),
        "psnr_full": psnr(composite, original01),
        "ssim_full": ssim(composite, original01),
    }
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        scores.update(seam_scores(composite, original01, mask, patch_size))
    return scores
