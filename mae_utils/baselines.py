"""The classical inpainting baselines an MAE must beat (mean fill, harmonic (Laplace), biharmonic),
and the seam-free blend of a model's guess that reuses the harmonic solver (:func:`blend_seams`).

Each baseline is ``(images01 (N, C, H, W), pixel_mask (N, 1, H, W)) -> filled images01`` on pixels
in [0, 1], visible pixels kept; :data:`BASELINES` names them for the evaluate command. Scores live
in :mod:`mae_utils.metrics`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from skimage.restoration import inpaint_biharmonic as _skimage_biharmonic

from .util.errors import UserError
from .metrics import check_images, check_pixel_mask, compute_dtype

__all__ = ["BASELINES", "blend_seams", "harmonic_start", "inpaint_biharmonic", "inpaint_harmonic",
           "inpaint_mean_fill"]


def _check_baseline_inputs(images01: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    check_images("images01", images01, check_range=True)
    m = check_pixel_mask(pixel_mask, images01)
    full = (m.flatten(1).mean(1) == 1).nonzero().flatten().tolist()
    if full:
        raise UserError(
            f"pixel_mask: image(s) {full[:10]} have every pixel hidden; nothing to inpaint from"
        )
    return m


def inpaint_mean_fill(images01: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """Fill hidden pixels with the mean colour of that
    image's visible pixels (the weakest baseline)."""
    m = _check_baseline_inputs(images01, pixel_mask)
    vis = 1.0 - m
    mean = (images01 * vis).sum((2, 3), keepdim=True) / vis.sum((2, 3), keepdim=True)
    return vis * images01 + m * mean.expand_as(images01)


def _fill_level(values: torch.Tensor, known: torch.Tensor, sweeps: int = 10) -> torch.Tensor:
    """Rough harmonic fill of one pyramid level (coarse-to-fine start, ``sweeps`` Jacobi sweeps)."""
    h, w = values.shape[-2:]
    if min(h, w) <= 4:
        # Coarsest level: start from the mean of what is known (every image has some known pixel).
        weight = known.sum((2, 3), keepdim=True).clamp_min(1e-12)
        guess = (values * known).sum((2, 3), keepdim=True) / weight
        filled = known * values + (1 - known) * guess
        iters = 4 * (h + w)
    else:
        # Normalised averaging down: a coarse pixel is known if any of its fine pixels is.
        hp, wp = h + (h % 2), w + (w % 2)
        v = F.pad(values * known, (0, wp - w, 0, hp - h))
        k = F.pad(known, (0, wp - w, 0, hp - h))
        ksum = F.avg_pool2d(k, 2)
        coarse_v = F.avg_pool2d(v, 2) / ksum.clamp_min(1e-12)
        coarse = _fill_level(coarse_v, (ksum > 0).to(values.dtype), sweeps)
        up = F.interpolate(coarse, scale_factor=2, mode="bilinear", align_corners=False)
        up = up[..., :h, :w]
        filled = known * values + (1 - known) * up
        iters = sweeps
    fixed, free = known * values, 0.25 * (1 - known)  # once per level: the sweeps are the cost
    for _ in range(iters):
        # zero normal derivative at the image border
        p = F.pad(filled, (1, 1, 1, 1), mode="replicate")
        neighbours = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]
        filled = torch.addcmul(fixed, free, neighbours)  # the 4-neighbour mean on hidden pixels
    return filled


def harmonic_start(values: torch.Tensor, pixel_mask: torch.Tensor, sweeps: int = 3) -> torch.Tensor:
    """A cheap harmonic fill of images in any units (N, C, H, W), hidden where ``pixel_mask`` (N, 1,
    H, W) is 1: the coarse-to-fine Jacobi sweeps that start :func:`inpaint_harmonic` (the coarsest
    level starts from the mean of the visible pixels; visible pixels stay fixed; ``sweeps`` per
    finer level), without its exact finish. Reads no hidden pixel, so a model may take it as a hint
    (``MaskedAutoencoder``'s ``fill_start``); on the GPU too. On 64 px faces, 3 sweeps cost about
    60% of 10 and land 5% further from the photo (benchmarks/bench_options.py times it)."""
    hidden = (pixel_mask > 0.5).expand_as(values)
    known = (~hidden).to(values.dtype)
    return _fill_level(torch.where(hidden, torch.zeros_like(values), values), known, sweeps)


def _neighbour_sum(x: torch.Tensor) -> torch.Tensor:
    p = F.pad(x, (1, 1, 1, 1))  # zeros: a neighbour outside the image does not exist
    return p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]


def _harmonic_solve(
    values: torch.Tensor,
    hidden: torch.Tensor,
    tol: float = 1e-6,
    divergence: torch.Tensor | None = None,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Solve the 5-point Laplace equation on hidden
    pixels, visible pixels fixed, Neumann image border.

    The system ``deg * u - sum(hidden neighbours) = sum(visible neighbours) + divergence`` is
    symmetric positive definite (every hidden region touches a visible pixel), so conjugate
    gradients converge; one CG per image and channel, all batched. ``divergence`` (default zero: the
    harmonic fill) is the sum over each pixel's neighbours q of the wanted step u_p - u_q (a Poisson
    / guided fill). The pyramid fill, or ``start``, is the starting point.
    """
    dims = (2, 3)
    deg = _neighbour_sum(torch.ones_like(values[:1, :1]))
    x = hidden * (_fill_level(values, 1.0 - hidden) if start is None else start)

    def apply(u: torch.Tensor) -> torch.Tensor:
        return hidden * (deg * u - _neighbour_sum(u))

    b = hidden * _neighbour_sum((1.0 - hidden) * values)
    if divergence is not None:
        b = b + hidden * divergence
    r = b - apply(x)
    p = r.clone()
    rr = (r * r).sum(dims, keepdim=True)
    limit = (tol**2) * (b * b).sum(dims, keepdim=True).clamp_min(1e-30)
    for _ in range(4 * (values.shape[-1] + values.shape[-2]) + 100):
        if bool((rr <= limit).all()):
            break
        ap = apply(p)
        alpha = rr / (p * ap).sum(dims, keepdim=True).clamp_min(1e-30)
        x = x + alpha * p
        r = r - alpha * ap
        rr_new = (r * r).sum(dims, keepdim=True)
        p = r + (rr_new / rr.clamp_min(1e-30)) * p
        rr = rr_new
    return (1.0 - hidden) * values + x


#: Pixels per image plane solved together by :func:`inpaint_harmonic` (16 images of 256x256): the
#: batched conjugate gradients run until the slowest image converges, so big batches of big images
#: are solved in chunks (timing: benchmarks/measurements.md, "Harmonic baseline: chunk size").
HARMONIC_CHUNK_PIXELS = 16 * 256 * 256


def inpaint_harmonic(images01: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """Harmonic (Laplace / membrane) fill: hidden pixels solve the discrete Laplace equation.

    The smoothest fill with the visible pixels as boundary values, the classical diffusion
    inpainting that OpenCV's Navier-Stokes and Telea methods approximate (Bertalmio et al. 2001;
    Telea 2004). Solved in torch for the whole batch (conjugate gradients from a coarse-to-fine
    start), so it runs on the GPU and is far cheaper than the biharmonic baseline.
    """
    m = _check_baseline_inputs(images01, pixel_mask)
    dtype = compute_dtype(images01.device)
    hidden = m.to(dtype).expand_as(images01).contiguous()
    chunk = max(1, HARMONIC_CHUNK_PIXELS // (images01.shape[-2] * images01.shape[-1]))
    values = images01.to(dtype)
    parts = [_harmonic_solve(v, h) for v, h in zip(values.split(chunk), hidden.split(chunk))]
    filled = torch.cat(parts).to(images01.dtype)
    return (1.0 - m) * images01 + m * filled.clamp(0.0, 1.0)


def inpaint_biharmonic(images01: torch.Tensor, pixel_mask: torch.Tensor) -> torch.Tensor:
    """scikit-image's biharmonic inpainting (Damelin & Hoang 2018), image by image on the CPU."""
    m = _check_baseline_inputs(images01, pixel_mask)
    imgs = images01.detach().double().cpu().permute(0, 2, 3, 1).numpy()
    hidden = m[:, 0].detach().cpu().numpy() > 0.5
    out = np.empty_like(imgs)
    for i in range(imgs.shape[0]):
        out[i] = _skimage_biharmonic(imgs[i], hidden[i], channel_axis=-1)
    filled = torch.from_numpy(out).permute(0, 3, 1, 2).to(images01.device, images01.dtype)
    return (1.0 - m) * images01 + m * filled.clamp(0.0, 1.0)


def _seam_free_steps(guide: torch.Tensor, p: int, dim: int) -> torch.Tensor:
    """Steps ``guide[k] - guide[k+1]`` along ``dim``; each step across a patch border replaced by
    the mean of the two steps beside it, inside each patch (a seam's jump is not trusted; the slope
    is)."""
    n = guide.shape[dim]
    steps = guide.narrow(dim, 0, n - 1) - guide.narrow(dim, 1, n - 1)
    # step k joins pixel k (last of a patch) and k+1
    k = torch.arange(p - 1, n - 1, p, device=guide.device)
    if p < 2 or len(k) == 0:
        return steps
    before = steps.index_select(dim, k - 1)
    after = steps.index_select(dim, (k + 1).clamp_max(n - 2))
    beside = 0.5 * (before + after)
    return steps.index_copy(dim, k, beside)


def blend_seams(
    images01: torch.Tensor, pixel_mask: torch.Tensor, guess01: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """A model's guess made seam-free: keep its steps inside each patch, meet the visible pixels.

    Solves ``Laplace(u) = div(g)`` on hidden pixels with ``u`` = the visible pixels elsewhere
    (Poisson image editing, Perez et al. 2003), where ``g`` are the steps of the guess (the visible
    pixels pasted into it) between neighbours, except across patch borders, where the guess's jump
    is replaced by the mean slope just inside the two patches (gradient-domain seam removal as in
    panorama stitching, Agarwala et al. 2004). The per-patch offsets of a mosaic go, its inner
    structure stays. A guess that is right and locally quadratic across borders comes back
    unchanged; the harmonic fill is the same solve without a guess. Same batching and chunks as
    :func:`inpaint_harmonic`.
    """
    m = _check_baseline_inputs(images01, pixel_mask)
    check_images("guess01", guess01, check_range=False)
    if guess01.shape != images01.shape:
        raise UserError(
            f"guess01 has shape {tuple(guess01.shape)} but the images {tuple(images01.shape)}"
        )
    dtype = compute_dtype(images01.device)
    hidden = m.to(dtype).expand_as(images01).contiguous()
    values = images01.to(dtype)
    guide = hidden * guess01.to(dtype).clamp(0.0, 1.0) + (1.0 - hidden) * values
    div = torch.zeros_like(values)
    for dim in (-1, -2):
        steps = _seam_free_steps(guide, patch_size, dim)
        zero = torch.zeros_like(steps.narrow(dim, 0, 1))
        div = div + torch.cat([steps, zero], dim) - torch.cat([zero, steps], dim)
    chunk = max(1, HARMONIC_CHUNK_PIXELS // (images01.shape[-2] * images01.shape[-1]))
    chunks = zip(values.split(chunk), hidden.split(chunk), div.split(chunk), guide.split(chunk))
    parts = [_harmonic_solve(v, h, divergence=d, start=g) for v, h, d, g in chunks]
    filled = torch.cat(parts).to(images01.dtype)
    return (1.0 - m) * images01 + m * filled.clamp(0.0, 1.0)


BASELINES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mean_fill": inpaint_mean_fill,
    "harmonic": inpaint_harmonic,
    "biharmonic": inpaint_biharmonic,
}
"""Classical inpainting methods, each ``(images01, pixel_mask) -> filled images01``.

Visible pixels are kept."""
