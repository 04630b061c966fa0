"""Every figure: the four panels (original / masked / reconstruction / reconstruction + visible),
evaluation's curves and galleries, and the tutorial's pictures (faces, patches, masks, position
tables, the learning-rate schedule, training curves); the notebooks and commands call them.

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
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox, OffsetImage
from matplotlib.ticker import NullLocator

from .util.errors import UserError
from .metrics import patch_mask_to_pixel_mask
from .optim import schedule_rates

#: How many images the evaluation comparison figure shows.
FIGURE_ROWS = 6

DEFAULT_TITLES = ("original", "masked", "reconstruction", "reconstruction + visible")


def new_figure(width: float, height: float, dpi: int = 100) -> Figure:
    """An empty figure through matplotlib's object API: no pyplot state, no display needed."""
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _hwc(img01: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) numpy for imshow."""
    if img01.ndim != 3 or img01.shape[0] not in (1, 3):
        raise UserError(f"expected one (C, H, W) image with 1 or 3 channels; got "
                        f"{tuple(img01.shape)}")
    return img01.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy().squeeze()


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


def masked_image(img01: torch.Tensor, pixel_mask: torch.Tensor, grey: float = 0.5) -> torch.Tensor:
    """The image as the encoder sees it: hidden pixels (``pixel_mask`` 1) painted ``grey``.

    ``img01`` (C, H, W) or (N, C, H, W); ``pixel_mask`` broadcastable to it, e.g. (N, 1, H, W).
    """
    if pixel_mask.shape[-2:] != img01.shape[-2:]:
        raise UserError(f"pixel_mask {tuple(pixel_mask.shape)} does not match image "
                        f"{tuple(img01.shape)}")
    m = pixel_mask.to(img01.dtype)
    return img01 * (1 - m) + grey * m


def _as_batch(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.ndim == 3:
        x = x.unsqueeze(0)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise UserError(f"{name} must be (C, H, W) or (N, C, H, W) with 1 or 3 channels; got "
                        f"{tuple(x.shape)}")
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
    fig = new_figure(4 * panel_inches, rows * panel_inches + 0.3)
    axes = fig.subplots(rows, 4, squeeze=False)
    for r in range(rows):
        for c in range(4):
            ax = axes[r][c]
            img = panels[c][r]
            ax.imshow(_hwc(img), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(titles[c], fontsize=9)
    fig.tight_layout(pad=0.3)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


def ratio_curve_figure(curve: dict[float, Any]) -> Figure:
    """Masked-region PSNR and SSIM against the mask ratio, one line per method, 95% CI error bars.

    ``curve`` maps each ratio to an :func:`mae_utils.tools.evaluate.evaluate_model` result.
    """


    ratios = sorted(curve)
    methods = list(curve[ratios[0]].summary)
    fig = new_figure(10, 3.6)
    metrics = (("psnr_masked", "PSNR (dB)"), ("ssim_masked", "SSIM"))
    for ax, (metric, label) in zip(fig.subplots(1, 2), metrics):
        for m in methods:
            means = [curve[r].summary[m][metric]["mean"] for r in ratios]
            halves = [np.nan_to_num(curve[r].summary[m][metric]["ci95"]) for r in ratios]
            width = 2.5 if m == "model" else 1.2
            ax.errorbar([100 * r for r in ratios], means, yerr=halves, marker="o", capsize=3,
                        label=m, linewidth=width)
        ax.set_xlabel("patches hidden (%)")
        ax.set_ylabel(f"{label} over hidden pixels")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=8)
    fig.suptitle(f"{curve[ratios[0]].n_images} held-out images per point")
    fig.tight_layout()
    return fig


def mask_gallery_figure(shapes: dict[str, Any], patch_size: int, image_size: int) -> Figure:
    """One row per mask shape: the masked input, every method's result (its mean masked PSNR),
    the original.

    ``shapes`` maps a mask kind to an ``evaluate_model(..., keep_images=True)`` result.
    """
    kinds = list(shapes)
    methods = list(shapes[kinds[0]].summary)
    cols = ["masked", *methods, "original"]
    fig = new_figure(1.7 * len(cols), 1.8 * len(kinds))
    axes = fig.subplots(len(kinds), len(cols), squeeze=False)
    for r, kind in enumerate(kinds):
        res, img = shapes[kind], shapes[kind].images
        pm = patch_mask_to_pixel_mask(res.masks[:1], patch_size, image_size)
        panels = {"masked": masked_image(img["original"][:1], pm)[0],
                  "original": img["original"][0]}
        panels.update({m: img[m][0] for m in methods})
        for c, name in enumerate(cols):
            ax = axes[r][c]
            ax.imshow(panels[name].permute(1, 2, 0).clamp(0, 1).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if name in methods:
                title = f"{name}\n{res.summary[name]['psnr_masked']['mean']:.1f} dB"
            elif name == "masked":
                title = f"{kind} ({res.hidden_fraction:.0%} hidden)"
            else:
                title = name
            ax.set_title(title, fontsize=8)
    fig.tight_layout(pad=0.4)
    return fig


def comparison_figure(result: Any, path: str | Path | None = None, rows: int = FIGURE_ROWS):
    """First ``rows`` scored images: original, masked, then each method (visible pasted back)
    with its masked PSNR.

    ``result``: an :class:`mae_utils.tools.evaluate.Evaluation` with its images kept."""
    if result.images is None:
        raise UserError("comparison_figure needs evaluate_model(..., keep_images=True)")
    imgs = result.images
    methods = [m for m in imgs if m != "original"]
    rows = min(rows, result.n_images)
    p = imgs["original"].shape[-1] // int(math.isqrt(result.masks.shape[1]))
    size = tuple(imgs["original"].shape[-2:])
    pixel_mask = patch_mask_to_pixel_mask(result.masks[:rows], p, size)
    masked = masked_image(imgs["original"][:rows], pixel_mask)
    cols = 2 + len(methods)
    fig = new_figure(1.6 * cols, 1.8 * rows + 0.3)
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
            if name in result.per_image:
                psnr = float(result.per_image[name]["psnr_masked"][r])
                ax.set_xlabel(f"{psnr:.1f} dB", fontsize=8, labelpad=2)
    fig.tight_layout(pad=0.3)
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path)
    return fig


# ---------------------------------------------------------------------- the tutorial's figures
def face_grid_figure(
    images01: torch.Tensor, cols: int = 8, title: str | None = None, inches: float = 1.0
) -> Figure:
    """A grid of (N, C, H, W) images in [0, 1]."""
    if images01.ndim != 4 or len(images01) == 0:
        raise UserError(f"images01 must be a non-empty (N, C, H, W) batch; got "
                        f"{tuple(images01.shape)}")
    n = len(images01)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = new_figure(cols * inches, rows * inches + (0.3 if title else 0))
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, ax in enumerate(axes.flat):
        _bare(ax)
        if i < n:
            ax.imshow(_hwc(images01[i]))
        else:
            ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(pad=0.2)
    return fig


def _draw_grid(ax, size: int, patch_size: int, color: str = "white") -> None:
    for k in range(0, size + 1, patch_size):
        ax.axhline(k - 0.5, color=color, lw=0.6)
        ax.axvline(k - 0.5, color=color, lw=0.6)


def patch_grid_figure(img01: torch.Tensor, patch_size: int, inches: float = 4.0) -> Figure:
    """One face cut into its patch grid, each patch numbered in the model's row-major order."""
    size = img01.shape[-1]
    grid = size // patch_size
    fig = new_figure(inches, inches)
    ax = fig.subplots()
    ax.imshow(_hwc(img01))
    _draw_grid(ax, size, patch_size)
    fontsize = max(4.0, min(9.0, 90.0 / grid))
    if grid <= 16:
        for k in range(grid * grid):
            r, c = divmod(k, grid)
            centre = (c * patch_size + patch_size / 2 - 0.5, r * patch_size + patch_size / 2 - 0.5)
            box = dict(boxstyle="round,pad=0.1", fc="black", alpha=0.35, lw=0)
            ax.text(*centre, str(k), ha="center", va="center", fontsize=fontsize, color="white",
                    bbox=box)
    size_text = f"{patch_size} x {patch_size} px"
    ax.set_title(f"{grid} x {grid} = {grid * grid} patches of {size_text}", fontsize=9)
    _bare(ax)
    fig.tight_layout(pad=0.3)
    return fig


def masking_figure(
    img01: torch.Tensor, masks: torch.Tensor, patch_size: int, inches: float = 2.2
) -> Figure:
    """The face, the face with mask 1 applied, mask 1 as a picture, then each further mask applied.

    ``masks``: (M, L) patch masks, 1 = hidden. The mask picture shows hidden patches black and
    visible ones white on the patch grid: what the encoder is told to ignore.
    """
    if masks.ndim != 2 or len(masks) == 0:
        raise UserError(f"masks must be (M, L) with M >= 1; got {tuple(masks.shape)}")
    size = img01.shape[-1]
    grid = size // patch_size
    pixel = patch_mask_to_pixel_mask(masks.float(), patch_size, size)
    panels = [("original", _hwc(img01), None)]
    ratio = float(masks[0].mean())
    panels.append((f"mask 1: {ratio:.0%} hidden", _hwc(masked_image(img01, pixel[0])), None))
    panels.append(("mask 1 (black = hidden)", (1 - masks[0].reshape(grid, grid)).numpy(), "gray"))
    for i in range(1, len(masks)):
        panels.append((f"mask {i + 1}: another draw", _hwc(masked_image(img01, pixel[i])), None))
    fig = new_figure(len(panels) * inches, inches + 0.45)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, img, cmap) in zip(axes, panels):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        _bare(ax)
    fig.tight_layout(pad=0.3)
    return fig


# ---------------------------------------------------------------------- the model
def position_table_figure(pos_embed: torch.Tensor, grid_size: int, max_maps: int = 8) -> Figure:
    """Left: the fixed sin-cos table as a heat map (patch x channel). Right: how similar each
    patch's position vector is to every other one (cosine), one small map per patch: a bright spot
    at the patch itself and fading with distance, so attention can tell near from far.

    ``pos_embed``: (L [+1], D), the model's ``pos_embed[0]`` (a class-token row is dropped).
    At most ``max_maps`` x ``max_maps`` similarity maps are drawn (evenly spaced rows/columns).
    """
    table = pos_embed.detach().float().cpu()
    if table.ndim == 3:
        table = table[0]
    length = grid_size * grid_size
    if table.shape[0] == length + 1:
        table = table[1:]
    if table.shape[0] != length:
        raise UserError(f"pos_embed has {table.shape[0]} rows; a {grid_size}x{grid_size} grid "
                        f"needs {length} (+1)")
    unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = (unit @ unit.T).reshape(grid_size, grid_size, grid_size, grid_size)
    picks = np.unique(np.linspace(0, grid_size - 1, min(grid_size, max_maps)).round().astype(int))
    k = len(picks)
    low = float(sim.min())
    fig = new_figure(11, 4.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    ax = left.subplots()
    im = ax.imshow(table.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1,
                   interpolation="nearest")
    ax.set_xlabel("channel (first half: column, second half: row)", fontsize=9)
    ax.set_ylabel("patch index (row-major)", fontsize=9)
    ax.set_title(f"sin-cos position table, {length} patches x {table.shape[1]} channels",
                 fontsize=10)
    left.colorbar(im, ax=ax, shrink=0.8)
    axes = right.subplots(k, k, squeeze=False)
    for i, r in enumerate(picks):
        for j, c in enumerate(picks):
            axes[i][j].imshow(sim[r, c].numpy(), cmap="viridis", vmin=low, vmax=1)
            _bare(axes[i][j])
            if j == 0:
                axes[i][j].set_ylabel(str(r), fontsize=7, rotation=0, labelpad=6)
            if i == k - 1:
                axes[i][j].set_xlabel(str(c), fontsize=7)
    right.suptitle("cosine similarity of patch (row, col) to all patches\n"
                   f"(colour scale {low:.2f} to 1)", fontsize=10)
    return fig


def schedule_figure(
    scheduler: torch.optim.lr_scheduler.LambdaLR, steps_per_epoch: int | None = None
) -> Figure:
    """The learning rate of every step of a One-Cycle ``scheduler`` (warm-up, peak, cosine
    decay)."""
    rates = schedule_rates(scheduler)
    fig = new_figure(6, 2.6)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(rates) + 1), rates, color="C3")
    peak = int(np.argmax(rates))
    ax.annotate(f"peak {rates[peak]:.2g} at step {peak + 1}", (peak + 1, rates[peak]), fontsize=8,
                xytext=(8, -12), textcoords="offset points")
    if steps_per_epoch:
        for k in range(steps_per_epoch, len(rates), steps_per_epoch):
            ax.axvline(k + 0.5, color="0.85", lw=0.6, zorder=0)
    ax.set_xlabel("optimiser step" + (" (grey lines: epochs)" if steps_per_epoch else ""))
    ax.set_ylabel("learning rate")
    ax.set_title(f"One-Cycle schedule: {len(rates)} steps", fontsize=10)
    ax.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def training_figure(
    history: Sequence[dict[str, Any]], steps: np.ndarray, lrs: np.ndarray
) -> Figure:
    """Loss curves (train and validation, hidden patches) and validation masked PSNR per epoch, and
    the learning rate of every step with the rates the run logged at each epoch's end.

    ``history``: the run's ``metrics.jsonl`` lines; ``steps``, ``lrs``: its One-Cycle plan
    (:func:`mae_utils.app.tutorial.read_metrics` and :func:`mae_utils.app.tutorial.lr_schedule`
    read both).
    """
    epochs = [h["epoch"] for h in history]
    fig = new_figure(12, 3.4)
    ax_loss, ax_psnr, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax_loss.plot(*zip(*val), "s-", label="validation")
        psnr = [(h["epoch"], h["val_psnr_masked"]) for h in history
                if h.get("val_psnr_masked") is not None]
        ax_psnr.plot(*zip(*psnr), "s-", color="C2")
    ax_loss.set_title("loss: MSE on hidden patches", fontsize=10)
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_psnr.set_title("validation PSNR on hidden pixels (dB)", fontsize=10)
    ax_psnr.set_xlabel("epoch")
    ax_lr.plot(steps, lrs, color="C3", label="One-Cycle schedule")
    ax_lr.plot([h["step"] for h in history], [h["lr"] for h in history], "k.",
               label="each epoch's last step")
    ax_lr.set_title("learning rate", fontsize=10)
    ax_lr.set_xlabel("optimiser step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax_lr.legend(fontsize=8)
    for ax in (ax_loss, ax_psnr, ax_lr):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------- what the encoder learned
def _colours(values: np.ndarray):
    """Per-point colours and a legend: categories get tab10/tab20 colours, numbers viridis."""
    if values.dtype.kind in "fiu":
        v = values.astype(np.float64)
        norm = (v - v.min()) / (np.ptp(v) or 1.0)
        return colormaps["viridis"](norm), None, (float(v.min()), float(v.max()))
    classes = sorted(set(values.tolist()))
    cmap = colormaps["tab10" if len(classes) <= 10 else "tab20"]
    index = {c: i for i, c in enumerate(classes)}
    colours = np.array([cmap(index[v] % cmap.N) for v in values.tolist()])
    legend = [(c, cmap(index[c] % cmap.N)) for c in classes]
    return colours, legend, None


def feature_map_figure(
    coords: dict[str, np.ndarray],
    values: np.ndarray,
    label: str,
    thumbnails: np.ndarray | None = None,
    n_thumbnails: int = 30,
    seed: int = 0,
) -> Figure:
    """Side-by-side 2-D maps (``{"PCA": (N, 2), "t-SNE": (N, 2)}``) of the same faces, each point
    coloured by ``values`` (a class or a number) and, for a seeded subset, the face itself drawn on
    the map (``thumbnails``: uint8 (N, H, W, 3))."""
    values = np.asarray(values)
    colours, legend, span = _colours(values)
    fig = new_figure(5.2 * len(coords), 5.2)
    axes = fig.subplots(1, len(coords), squeeze=False)[0]
    count = min(n_thumbnails, len(values))
    pick = np.random.default_rng(seed).choice(len(values), size=count, replace=False)
    for ax, (name, xy) in zip(axes, coords.items()):
        ax.scatter(xy[:, 0], xy[:, 1], c=colours, s=14, alpha=0.85, linewidths=0)
        if thumbnails is not None:
            zoom = 0.42 * 32 / thumbnails.shape[1]
            for i in pick:
                frame = dict(edgecolor=colours[i], linewidth=1.5)
                box = AnnotationBbox(OffsetImage(thumbnails[i], zoom=zoom), xy[i], frameon=True,
                                     pad=0.1, bboxprops=frame)
                ax.add_artist(box)
        ax.set_title(f"{name} of the encoder's features", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    if legend is not None:
        handles = [axes[-1].scatter([], [], color=c, s=30, label=str(n)) for n, c in legend]
        axes[-1].legend(handles=handles, title=label, fontsize=8, title_fontsize=8, loc="best",
                        framealpha=0.8)
    else:
        fig.suptitle(f"colour: {label}, from {span[0]:.3g} (purple) to {span[1]:.3g} (yellow)",
                     fontsize=10)
    fig.tight_layout()
    return fig


def neighbours_figure(images: np.ndarray, queries: Sequence[int], by: dict[str, np.ndarray],
                      inches: float = 0.95) -> Figure:
    """For each query face (a row): the face, then its nearest neighbours under each measure in
    ``by`` (``{"features": (Q, k) indices, "pixels": (Q, k)}``), side by side. ``images``: uint8
    (N, H, W, 3)."""
    k = next(iter(by.values())).shape[1]
    ratios = [1.0] + [w for _ in by for w in [0.25] + [1.0] * k]  # a thin gap before each group
    fig = new_figure(sum(ratios) * inches, len(queries) * inches + 0.4)
    axes = fig.subplots(len(queries), len(ratios), squeeze=False,
                        gridspec_kw={"width_ratios": ratios})
    for r, q in enumerate(queries):
        panels = [(int(q), "face")]
        for name, idx in by.items():
            group = [(int(j), name if c == 0 else "") for c, j in enumerate(idx[r])]
            panels += [(None, "")] + group
        for ax, (j, title) in zip(axes[r], panels):
            _bare(ax)
            if j is None:
                ax.axis("off")
                continue
            ax.imshow(images[j])
            if r == 0 and title:
                text = title if title == "face" else f"nearest by {title} →"
                ax.set_title(text, fontsize=8, loc="left")
    top = 1 - 0.3 / (len(queries) * inches + 0.4)
    fig.subplots_adjust(left=0.01, right=0.99, bottom=0.01, top=top, wspace=0.04, hspace=0.04)
    return fig


def _patch_map_pixels(values: np.ndarray, patch_size: int) -> np.ndarray:
    """(L,) values of a square patch grid -> (H, W): each patch's value over its pixels."""
    grid = int(round(len(values) ** 0.5))
    return np.kron(values.reshape(grid, grid), np.ones((patch_size, patch_size)))


def attention_figure(
    images01: torch.Tensor,
    attention: torch.Tensor,
    mask: torch.Tensor,
    patch_size: int,
    title: str | None = None,
    inches: float = 1.5,
) -> Figure:
    """Where the class token looks, one row per face: the masked input, the class token's
    attention averaged over the heads, then each head, each drawn over the face.

    ``images01``: (N, C, H, W) in [0, 1]; ``attention``: (N, heads, L) on the patch grid
    (:func:`mae_utils.model.class_token_attention`); ``mask``: (N, L), 1 = hidden. A map is
    upsampled to its patches' pixels and scaled to its own largest weight (bright = most
    attended); hidden patches were not in the encoder's sequence and stay grey. ``2 + heads``
    panels per row.
    """
    images = _as_batch(images01, "images01")
    att = attention.detach().float().cpu()
    if att.ndim != 3 or len(att) != len(images) or tuple(mask.shape) != (len(images), att.shape[2]):
        raise UserError(f"attention must be (N, heads, L) and mask (N, L) for {len(images)} "
                        f"images; got {tuple(att.shape)} and {tuple(mask.shape)}")
    heads = att.shape[1]
    pixel_mask = patch_mask_to_pixel_mask(mask.float().cpu(), patch_size, images.shape[-1])
    masked = masked_image(images, pixel_mask)
    fig = new_figure((2 + heads) * inches, len(images) * inches + (0.5 if title else 0.3))
    axes = fig.subplots(len(images), 2 + heads, squeeze=False)
    names = ["masked input", "mean of heads"] + [f"head {h + 1}" for h in range(heads)]
    for r in range(len(images)):
        hidden = _patch_map_pixels(mask[r].float().cpu().numpy(), patch_size) > 0.5
        maps = [None, att[r].mean(0)] + [att[r, h] for h in range(heads)]
        for c, values in enumerate(maps):
            ax = axes[r][c]
            ax.imshow(_hwc(masked[r]))
            if values is not None:
                heat = _patch_map_pixels(values.numpy(), patch_size)
                heat = np.ma.masked_where(hidden, heat / max(float(heat.max()), 1e-12))
                ax.imshow(heat, cmap="inferno", vmin=0, vmax=1, alpha=0.65)
            _bare(ax)
            if r == 0:
                ax.set_title(names[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    top = 1 - 0.35 / fig.get_figheight() if title else 1  # room for the title above the panels
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, top))
    return fig


def label_efficiency_figure(points: Sequence[dict[str, Any]],
                            references: Sequence[dict[str, Any]] = ()) -> Figure:
    """Test score against the share of training labels, one panel per target and one curve per
    ``label`` (e.g. fine-tuned from the MAE, from scratch), each point with its 95% interval;
    chance as a dotted line. ``points``: dicts of target, share, label, metric ("accuracy" or an
    error), score, low, high and chance (what
    :func:`mae_utils.tools.label_efficiency.label_efficiency` returns). ``references``: dicts of
    target, label, score (and share, if it was fitted on one), drawn as dashed lines, e.g. a frozen
    readout."""
    if not points:
        raise UserError("no fine-tune results to draw")
    targets = list(dict.fromkeys(p["target"] for p in points))
    fig = new_figure(4.2 * len(targets), 3.4)
    axes = fig.subplots(1, len(targets), squeeze=False)[0]
    for ax, target in zip(axes, targets):
        mine = [p for p in points if p["target"] == target]
        percent = mine[0]["metric"] == "accuracy"
        scale = 100.0 if percent else 1.0
        for label in dict.fromkeys(p["label"] for p in mine):
            curve = sorted((p for p in mine if p["label"] == label), key=lambda p: p["share"])
            xs = [100 * p["share"] for p in curve]
            ys = np.array([p["score"] for p in curve]) * scale
            errors = np.array([[p["score"] - p["low"], p["high"] - p["score"]] for p in curve]).T
            ax.errorbar(xs, ys, yerr=errors * scale, marker="o", capsize=3, label=label)
        ax.axhline(mine[0]["chance"] * scale, linestyle=":", color="black", linewidth=1,
                   label="chance")
        for ref, style in zip((r for r in references if r["target"] == target),
                              ("--", "-.", (0, (5, 5)))):
            ax.axhline(ref["score"] * scale, linestyle=style, color="grey", linewidth=1,
                       label=ref["label"])
            if ref.get("share"):
                ax.plot([100 * ref["share"]], [ref["score"] * scale], "s", color="grey")
        ax.set_xscale("log")
        shares = sorted({100 * p["share"] for p in mine})
        ax.set_xticks(shares, [f"{s:g}" for s in shares])
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xlabel("share of training labels (%)")
        ax.set_ylabel("test accuracy (%)" if percent else f"test {mine[0]['metric']}")
        ax.set_title(target)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig
