"""Figures: original / masked / reconstruction / reconstruction + visible.

The four panels are the MAE paper's Figure 2 layout. Everything takes pixels in [0, 1]; the figures
are built through matplotlib's object API (no ``pyplot`` state), so saving from a training loop or a
headless server needs no display and leaks no open figures.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .errors import UserError
from .metrics import patch_mask_to_pixel_mask

#: How many images the evaluation comparison figure shows.
FIGURE_ROWS = 6

DEFAULT_TITLES = ("original", "masked", "reconstruction", "reconstruction + visible")


def masked_image(img01: torch.Tensor, pixel_mask: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    """The image as the encoder sees it: hidden pixels (``pixel_mask`` 1) painted ``grey``.

    ``img01`` (C, H, W) or (N, C, H, W); ``pixel_mask`` broadcastable to it, e.g. (N, 1, H, W).
    """
    if pixel_mask.shape[-2:] != img01.shape[-2:]:
        raise UserError(f"pixel_mask {tuple(pixel_mask.shape)} does not match image {tuple(img01.shape)}")
    m = pixel_mask.to(img01.dtype)
    return img01 * (1 - m) + grey * m


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"{name} must be (C, H, W) or (N, C, H, W) with 1 or 3 channels; got {tuple(x.shape)}")
    return x.detach().float().cpu().clamp(0, 1)


def four_panel_figure(
    original01: torch.Tensor,
    masked01: torch.Tensor,
    recon01: torch.Tensor,
    recon_plus_visible01: torch.Tensor,
    titles: Sequence[str] = DEFAULT_TITLES,
    path: str | Path | None = None,
    panel_inches: float = 1.8,
) -> Figure:
    """One row per image, four columns; saved to ``path`` (PNG etc.) when given."""
    panels = [
        _as_batch(t, n)
        for t, n in zip(
            (original01, masked01, recon01, recon_plus_visible01),
            ("original01", "masked01", "recon01", "recon_plus_visible01"),
        )
    ]
    rows = panels[0].shape[0]
    if any(p.shape != panels[0].shape for p in panels):
        raise UserError(f"the four panels differ in shape: {[tuple(p.shape) for p in panels]}")
    if len(titles) != 4:
        raise UserError(f"titles must name the 4 panels; got {len(titles)}")
    fig = Figure(figsize=(4 * panel_inches, rows * panel_inches + 0.3), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, 4, squeeze=False)
    for r in range(rows):
        for c in range(4):
            ax = axes[r][c]
            img = panels[c][r]
            ax.imshow(img.permute(1, 2, 0).numpy() if img.shape[0] == 3 else img[0].numpy(), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout(pad=0.3)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


def ratio_curve_figure(curve: dict[float, dict]) -> Figure:
    """Masked-region PSNR and SSIM against the mask ratio, one line per method, 95% CI error bars.

    ``curve`` maps each ratio to an :func:`mae_utils.evaluate.evaluate_model` result.
    """


    ratios = sorted(curve)
    methods = list(curve[ratios[0]]["summary"])
    fig = Figure(figsize=(10, 3.6), dpi=100)
    FigureCanvasAgg(fig)
    for ax, metric, label in zip(fig.subplots(1, 2), ("psnr_masked", "ssim_masked"), ("PSNR (dB)", "SSIM")):
        for m in methods:
            means = [curve[r]["summary"][m][metric]["mean"] for r in ratios]
            halves = [np.nan_to_num(curve[r]["summary"][m][metric]["ci95"]) for r in ratios]
            ax.errorbar([100 * r for r in ratios], means, yerr=halves, marker="o", capsize=3,
                        label=m, linewidth=2.5 if m == "model" else 1.2)  # fmt: skip
        ax.set_xlabel("patches hidden (%)")
        ax.set_ylabel(f"{label} over hidden pixels")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle(f"{curve[ratios[0]]['n_images']} held-out images per point")
    fig.tight_layout()
    return fig


def mask_gallery_figure(shapes: dict[str, dict], patch_size: int, image_size: int) -> Figure:
    """One row per mask shape: the masked input, every method's result (its mean masked PSNR), the original.

    ``shapes`` maps a mask kind to an ``evaluate_model(..., keep_images=True)`` result.
    """
    kinds = list(shapes)
    methods = list(shapes[kinds[0]]["summary"])
    cols = ["masked", *methods, "original"]
    fig = Figure(figsize=(1.7 * len(cols), 1.8 * len(kinds)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(kinds), len(cols), squeeze=False)
    for r, kind in enumerate(kinds):
        res, img = shapes[kind], shapes[kind]["images"]
        pm = patch_mask_to_pixel_mask(res["masks"][:1], patch_size, image_size)
        panels = {"masked": masked_image(img["original"][:1], pm)[0], "original": img["original"][0]}
        panels.update({m: img[m][0] for m in methods})
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(panels[name].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if name in methods:
                title = f"{name}\n{res['summary'][name]['psnr_masked']['mean']:.1f} dB"
            elif name == "masked":
                title = f"{kind} ({res['hidden_fraction']:.0%} hidden)"
            else:
                title = name
            ax.set_title(title, fontsize=8)
    fig.tight_layout(pad=0.4)
    return fig


def comparison_figure(result: dict[str, Any], path: str | Path | None = None, rows: int = FIGURE_ROWS):
    """First ``rows`` scored images: original, masked, then each method (visible pasted back) with its masked PSNR."""
    if "images" not in result:
        raise UserError("comparison_figure needs evaluate_model(..., keep_images=True)")
    imgs = result["images"]
    methods = [m for m in imgs if m != "original"]
    rows = min(rows, result["n_images"])
    p = imgs["original"].shape[-1] // int(math.isqrt(result["masks"].shape[1]))
    pixel_mask = patch_mask_to_pixel_mask(result["masks"][:rows], p, tuple(imgs["original"].shape[-2:]))
    masked = masked_image(imgs["original"][:rows], pixel_mask)
    cols = 2 + len(methods)
    fig = Figure(figsize=(1.6 * cols, 1.8 * rows + 0.3), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r in range(rows):
        panels = [("original", imgs["original"][r]), ("masked", masked[r])]
        panels += [(m, imgs[m][r]) for m in methods]
        for c, (name, img) in enumerate(panels):
            ax = axes[r][c]
            ax.imshow(img.permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(name, fontsize=8)
            if name in result["per_image"]:
                ax.set_xlabel(f"{float(result['per_image'][name]['psnr_masked'][r]):.1f} dB", fontsize=8, labelpad=2)
    fig.tight_layout(pad=0.3)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig
