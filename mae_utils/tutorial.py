"""Small helpers the tutorial notebooks call, so that every notebook cell stays a few lines long.

Each function makes one visible result (a figure, a table) from the package's real objects: the
learning-rate curves from the scheduler :func:`mae_utils.optim.build_optimizer` builds, the loss curves
from ``metrics.jsonl``. Figures are built
through matplotlib's object API (as in :mod:`mae_utils.viz`), so they display inline in Jupyter and
leak no global pyplot state.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from .checkpoint import resolve
from .config import TrainConfig, load_run_config
from .errors import UserError
from .metrics import patch_mask_to_pixel_mask
from .optim import build_optimizer, schedule_rates
from .progress import batch_kernel, in_kernel
from .synthetic import generate_faces
from .train import fit
from .viz import masked_image

__all__ = [
    "demo_photos",
    "ensure_run",
    "face_grid_figure",
    "has_trained_model",
    "LiveLossPlot",
    "lr_schedule",
    "quick_config",
    "masking_figure",
    "parameter_counts",
    "patch_grid_figure",
    "position_table_figure",
    "read_metrics",
    "relative",
    "schedule_figure",
    "training_figure",
]


# ---------------------------------------------------------------------- configuration and paths
def relative(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it lies below it: outputs print no machine paths."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _hwc(img01: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, C) numpy for imshow."""
    if img01.ndim != 3 or img01.shape[0] not in (1, 3):
        raise UserError(f"expected one (C, H, W) image with 1 or 3 channels; got {tuple(img01.shape)}")
    return img01.detach().float().cpu().clamp(0, 1).permute(1, 2, 0).numpy().squeeze()


def _bare(ax) -> None:
    ax.set_xticks([])
    ax.set_yticks([])


# ---------------------------------------------------------------------- data and masks
def face_grid_figure(images01: torch.Tensor, cols: int = 8, title: str | None = None, inches: float = 1.0) -> Figure:
    """A grid of (N, C, H, W) images in [0, 1]."""
    if images01.ndim != 4 or len(images01) == 0:
        raise UserError(f"images01 must be a non-empty (N, C, H, W) batch; got {tuple(images01.shape)}")
    n = len(images01)
    cols = min(cols, n)
    rows = math.ceil(n / cols)
    fig = _figure(cols * inches, rows * inches + (0.3 if title else 0))
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
    """One face cut into its patch grid, each patch numbered in the row-major order the model uses."""
    size = img01.shape[-1]
    grid = size // patch_size
    fig = _figure(inches, inches)
    ax = fig.subplots()
    ax.imshow(_hwc(img01))
    _draw_grid(ax, size, patch_size)
    fontsize = max(4.0, min(9.0, 90.0 / grid))
    if grid <= 16:
        for k in range(grid * grid):
            r, c = divmod(k, grid)
            ax.text(c * patch_size + patch_size / 2 - 0.5, r * patch_size + patch_size / 2 - 0.5, str(k),
                    ha="center", va="center", fontsize=fontsize, color="white",
                    bbox=dict(boxstyle="round,pad=0.1", fc="black", alpha=0.35, lw=0))  # fmt: skip
    ax.set_title(f"{grid} x {grid} = {grid * grid} patches of {patch_size} x {patch_size} px", fontsize=9)
    _bare(ax)
    fig.tight_layout(pad=0.3)
    return fig


def masking_figure(img01: torch.Tensor, masks: torch.Tensor, patch_size: int, inches: float = 2.2) -> Figure:
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
    fig = _figure(len(panels) * inches, inches + 0.45)
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    for ax, (title, img, cmap) in zip(axes, panels):
        ax.imshow(img, cmap=cmap, vmin=0, vmax=1)
        ax.set_title(title, fontsize=9)
        _bare(ax)
    fig.tight_layout(pad=0.3)
    return fig


# ---------------------------------------------------------------------- the model
def position_table_figure(pos_embed: torch.Tensor, grid_size: int, max_maps: int = 8) -> Figure:
    """Left: the fixed sin-cos table as a heat map (patch x channel). Right: how similar each patch's
    position vector is to every other one (cosine), one small map per patch: a bright spot at the
    patch itself and fading with distance, so attention can tell near from far.

    ``pos_embed``: (L [+1], D), the model's ``pos_embed[0]`` (the class-token row, if present, is dropped).
    At most ``max_maps`` x ``max_maps`` similarity maps are drawn (evenly spaced rows/columns).
    """
    table = pos_embed.detach().float().cpu()
    if table.ndim == 3:
        table = table[0]
    length = grid_size * grid_size
    if table.shape[0] == length + 1:
        table = table[1:]
    if table.shape[0] != length:
        raise UserError(f"pos_embed has {table.shape[0]} rows; a {grid_size}x{grid_size} grid needs {length} (+1)")
    unit = table / table.norm(dim=1, keepdim=True).clamp_min(1e-12)
    sim = (unit @ unit.T).reshape(grid_size, grid_size, grid_size, grid_size)
    picks = np.unique(np.linspace(0, grid_size - 1, min(grid_size, max_maps)).round().astype(int))
    k = len(picks)
    low = float(sim.min())
    fig = _figure(11, 4.6)
    left, right = fig.subfigures(1, 2, width_ratios=[1.15, 1])
    ax = left.subplots()
    im = ax.imshow(table.numpy(), aspect="auto", cmap="RdBu_r", vmin=-1, vmax=1, interpolation="nearest")
    ax.set_xlabel("channel (first half: column, second half: row)", fontsize=9)
    ax.set_ylabel("patch index (row-major)", fontsize=9)
    ax.set_title(f"sin-cos position table, {length} patches x {table.shape[1]} channels", fontsize=10)
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
    right.suptitle(f"cosine similarity of patch (row, col) to all patches\n(colour scale {low:.2f} to 1)", fontsize=10)
    return fig


def parameter_counts(model: torch.nn.Module) -> dict[str, int]:
    """Trainable parameters of the encoder and decoder, the fixed position tables, and the total."""
    counts = {"encoder": 0, "decoder": 0, "fixed (sin-cos tables)": 0}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            counts["fixed (sin-cos tables)"] += p.numel()
        elif name.startswith("decoder") or name == "mask_token":
            counts["decoder"] += p.numel()
        else:
            counts["encoder"] += p.numel()
    counts["trainable"] = counts["encoder"] + counts["decoder"]
    counts["total"] = counts["trainable"] + counts["fixed (sin-cos tables)"]
    return counts


# ---------------------------------------------------------------------- training curves
def read_metrics(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The per-epoch lines of ``run_dir/metrics.jsonl``."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise UserError(f"{relative(path)} not found: has {relative(run_dir)} been trained?")
    lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not lines:
        raise UserError(f"{relative(path)} is empty: no epoch has finished yet")
    return lines


def lr_schedule(run_dir: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """(step number k = 1 .. all steps, the learning rate step k used), redrawn from the run's config.

    The schedule comes from :func:`mae_utils.optim.build_optimizer`, the function ``fit`` builds its
    own with, on a stand-in parameter; the rate each epoch logged (``lr`` after ``step`` steps) lies
    on this curve.
    """
    config = load_run_config(run_dir)
    history = read_metrics(run_dir)
    runtime = json.loads((Path(run_dir) / "config.json").read_text()).get("runtime", {})
    steps_per_epoch = history[0]["step"] // history[0]["epoch"]
    world = int(runtime.get("world_size", 1))
    _, scheduler, _ = build_optimizer(torch.nn.Linear(1, 1), config, config.epochs * steps_per_epoch, world)
    rates = schedule_rates(scheduler)
    return np.arange(1, len(rates) + 1), np.asarray(rates)


def schedule_figure(scheduler: torch.optim.lr_scheduler.LambdaLR, steps_per_epoch: int | None = None) -> Figure:
    """The learning rate of every step of a One-Cycle ``scheduler`` (warm-up, peak, cosine decay)."""
    rates = schedule_rates(scheduler)
    fig = _figure(6, 2.6)
    ax = fig.subplots()
    ax.plot(np.arange(1, len(rates) + 1), rates, color="C3")
    peak = int(np.argmax(rates))
    ax.annotate(f"peak {rates[peak]:.2g} at step {peak + 1}", (peak + 1, rates[peak]), fontsize=8,
                xytext=(8, -12), textcoords="offset points")  # fmt: skip
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


class LiveLossPlot:
    """Pass as ``fit(..., on_epoch=LiveLossPlot())``: in live Jupyter, the loss curves redrawn in place
    after every epoch; elsewhere (papermill, nbmake, a terminal) nothing, as ``fit`` prints a line per epoch."""

    def __init__(self) -> None:
        self.live = in_kernel() and not batch_kernel()
        self.history: list[dict[str, Any]] = []
        self._handle = None

    def __call__(self, line: dict[str, Any]) -> None:
        if not self.live:
            return
        from IPython.display import display  # local: IPython exists only where a notebook runs

        self.history.append(line)
        fig = _figure(5, 3)
        ax = fig.subplots()
        epochs = [h["epoch"] for h in self.history]
        ax.plot(epochs, [h["train_loss"] for h in self.history], "o-", label="train")
        val = [(h["epoch"], h["val_loss"]) for h in self.history if h.get("val_loss") is not None]
        if val:
            ax.plot(*zip(*val), "s-", label="validation")
        ax.set_xlabel("epoch")
        ax.set_title("loss: MSE on hidden patches (live)", fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)


def training_figure(run_dir: str | os.PathLike[str]) -> Figure:
    """Loss curves (train and validation, hidden patches) and validation masked PSNR per epoch, and
    the learning rate of every step with the rates the run logged at each epoch's end."""
    history = read_metrics(run_dir)
    epochs = [h["epoch"] for h in history]
    fig = _figure(12, 3.4)
    ax_loss, ax_psnr, ax_lr = fig.subplots(1, 3)
    ax_loss.plot(epochs, [h["train_loss"] for h in history], "o-", label="train")
    val = [(h["epoch"], h["val_loss"]) for h in history if h.get("val_loss") is not None]
    if val:
        ax_loss.plot(*zip(*val), "s-", label="validation")
        ax_psnr.plot(*zip(*[(h["epoch"], h["val_psnr_masked"]) for h in history if h.get("val_psnr_masked") is not None]),
                     "s-", color="C2")  # fmt: skip
    ax_loss.set_title("loss: MSE on hidden patches", fontsize=10)
    ax_loss.set_xlabel("epoch")
    ax_loss.legend()
    ax_psnr.set_title("validation PSNR on hidden pixels (dB)", fontsize=10)
    ax_psnr.set_xlabel("epoch")
    steps, lrs = lr_schedule(run_dir)
    ax_lr.plot(steps, lrs, color="C3", label="One-Cycle schedule")
    ax_lr.plot([h["step"] for h in history], [h["lr"] for h in history], "k.", label="each epoch's last step")
    ax_lr.set_title("learning rate", fontsize=10)
    ax_lr.set_xlabel("optimiser step")
    ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(0, 0))
    ax_lr.legend(fontsize=8)
    for ax in (ax_loss, ax_psnr, ax_lr):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig



# ---------------------------------------------------------------------- the photos notebook
def has_trained_model(run_dir: str | os.PathLike[str], which: str = "best") -> bool:
    """Whether ``run_dir`` holds a finished checkpoint (``checkpoints/<which>``) and its ``config.json``."""
    run = Path(run_dir)
    try:
        resolve(run / "checkpoints" / which)
    except UserError:
        return False
    return (run / "config.json").is_file()


QUICK_RUN_DIR = "runs/quick"


def quick_config() -> TrainConfig:
    """The quick model the notebooks train when they find none: about a minute on a CPU.

    The same small architecture as ``maskAE.ipynb``'s defaults, 600 synthetic faces, 3 epochs, peak
    learning rate 2e-3 (``base_lr`` 1.6e-2 at batch 32). One folder, one recipe, for every notebook.
    """
    return TrainConfig(out_dir=QUICK_RUN_DIR, epochs=3, max_images=600, image_size=64, patch_size=8,
                       embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=96, decoder_depth=2,
                       decoder_num_heads=3, batch_size=32, base_lr=1.6e-2, sample_every=0, seed=0)  # fmt: skip


def ensure_run(run_dir: str | os.PathLike[str], which: str = "best") -> Path:
    """``run_dir`` if it holds a trained model; else the quick model (:func:`quick_config`), trained
    into ``runs/quick`` the first time it is needed.

    Lets a notebook that needs a model run anywhere: it reuses the main notebook's run when there is
    one, and otherwise pays a minute for a small model of its own.
    """
    quick = quick_config()
    if has_trained_model(run_dir, which):
        print(f"using the trained model in {relative(run_dir)}")
        return Path(run_dir)
    if has_trained_model(quick.out_dir, which):
        print(f"{relative(run_dir)} holds no trained model; using the quick model in {relative(quick.out_dir)}")
        return Path(quick.out_dir)
    print(f"{relative(run_dir)} holds no trained model; training a quick one in {relative(quick.out_dir)}")
    return Path(fit(quick, overwrite=True).run_dir)


def demo_photos(folder: str | os.PathLike[str], n: int = 4, size: int = 128, seed: int = 1234) -> list[str]:
    """Write ``n`` synthetic faces as PNG files (a generator seed no training run uses by default) and
    return their paths: stand-ins for your own photos, so the notebook runs without any."""
    if n < 1:
        raise UserError(f"n must be at least 1, got {n}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(generate_faces(n, size=size, seed=seed)):
        path = out / f"face_{i}.png"
        Image.fromarray(img).save(path)
        paths.append(str(path))
    return paths
