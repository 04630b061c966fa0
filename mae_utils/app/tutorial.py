"""Notebook glue, so that every notebook cell stays a few lines long: paths shown relative, a run's
``metrics.jsonl`` and One-Cycle plan read back (for :func:`mae_utils.viz.training_figure`), parameter
counts, the live loss plot, the shared quick model (:func:`ensure_run`) and demo photos. The figures
themselves live in :mod:`mae_utils.viz`.
"""

from __future__ import annotations

import difflib
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..util.checkpoint import resolve
from ..util.errors import UserError
from ..util.fileio import host_name, pid_alive
from ..util.progress import batch_kernel, in_kernel
from ..util.rundir import LOCK_FILE, holds_checkpoint, read_lock
from ..config import TrainConfig, load_run_config
from ..optim import build_optimizer, schedule_rates
from ..synthetic import generate_faces
from ..train import fit
from ..viz import new_figure

__all__ = [
    "demo_photos",
    "ensure_run",
    "has_trained_model",
    "LiveLossPlot",
    "NOTEBOOK_RUN_DIR",
    "check_quick_fallback",
    "lr_schedule",
    "quick_config",
    "parameter_counts",
    "read_metrics",
    "relative",
    "train_quick_model",
]


# ---------------------------------------------------------------------- configuration and paths
def relative(path: str | os.PathLike[str] | list[str]) -> str:
    """``path`` relative to the working directory when it lies below it: outputs print no machine paths.
    Several folders (a list) are joined with ``+``."""
    if isinstance(path, list):
        return " + ".join(relative(p) for p in path)
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


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
        fig = new_figure(5, 3)
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

    The same small architecture as ``maskAE.ipynb``'s defaults (the ``cpu`` preset at 64 px, 8 px
    patches), 600 synthetic faces, 3 epochs, peak learning rate 2e-3 (``base_lr`` 1.6e-2 at batch 32).
    One folder, one recipe, for every notebook.
    """
    return TrainConfig(out_dir=QUICK_RUN_DIR, epochs=3, max_images=600, image_size=64, patch_size=8,
                       preset="cpu", batch_size=32, base_lr=1.6e-2, sample_every=0, seed=0)  # fmt: skip


#: The run ``maskAE.ipynb`` trains by default: the other notebooks' default ``run_dir``.
NOTEBOOK_RUN_DIR = "runs/notebook"


def ensure_run(run_dir: str | os.PathLike[str], which: str = "best") -> Path:
    """``run_dir`` if it holds a trained model; else the quick model (:func:`quick_config`), trained
    into ``runs/quick`` the first time it is needed.

    Lets a notebook that needs a model run anywhere: it reuses the main notebook's run when there is
    one, and otherwise pays a minute for a small model of its own. Only the default ``run_dir``
    (``runs/notebook``) or ``runs/quick`` falls back: a ``run_dir`` the user named that is missing
    (misspelt), holds no model, or holds only the other checkpoint is an error saying so.
    """
    quick = quick_config()
    if has_trained_model(run_dir, which):
        print(f"using the trained model in {relative(run_dir)}")
        return Path(run_dir)
    check_quick_fallback(run_dir, which)
    if has_trained_model(quick.out_dir, which):
        print(f"{relative(run_dir)} holds no trained model; using the quick model in {relative(quick.out_dir)}")
        return Path(quick.out_dir)
    print(f"{relative(run_dir)} holds no trained model; training a quick one in {relative(quick.out_dir)}")
    return train_quick_model(quick, which)


def check_quick_fallback(run_dir: str | os.PathLike[str], which: str = "best") -> None:
    """A :class:`UserError` unless a notebook may use the quick model instead of ``run_dir``: the user's
    own run, misspelt or unfinished, must not be replaced by another model without a word."""
    run, other = Path(run_dir), "last" if which == "best" else "best"
    if has_trained_model(run, other):
        raise UserError(f"run_dir {relative(run)} holds no {which} checkpoint, only {other}: set checkpoint = "
                        f"{other!r} (papermill: -p checkpoint {other}) to use it")  # fmt: skip
    if run.resolve() in (Path(NOTEBOOK_RUN_DIR).resolve(), Path(QUICK_RUN_DIR).resolve()):
        return
    if not run.exists():
        near = [p.name for p in run.parent.iterdir() if p.is_dir()] if run.parent.is_dir() else []
        close = difflib.get_close_matches(run.name, near, n=1, cutoff=0.6)
        hint = f" (did you mean {relative(run.parent / close[0])}?)" if close else ""
        raise UserError(f"run_dir {relative(run)} does not exist{hint}; give a training run folder, or "
                        f"{NOTEBOOK_RUN_DIR} to use maskAE.ipynb's run or else the quick model")  # fmt: skip
    raise UserError(f"run_dir {relative(run)} holds no trained model (no checkpoints/{which} with config.json): "
                    f"train it first, or give {NOTEBOOK_RUN_DIR} to use maskAE.ipynb's run or else the quick model")


def train_quick_model(quick: TrainConfig, which: str = "best", wait_s: float = 1800.0) -> Path:
    """Train the quick model into ``quick.out_dir``; if another notebook is training it right now (two
    started together), wait for that one to finish and use its model instead of failing on its lock."""
    folder = Path(quick.out_dir)
    while True:
        try:
            return Path(fit(quick, overwrite=holds_checkpoint(folder)).run_dir)
        except UserError:
            waited = _wait_for_trainer(folder, wait_s)
            if has_trained_model(folder, which):
                print(f"using the quick model the other process trained in {relative(folder)}")
                return folder
            if not waited:
                raise


def _wait_for_trainer(folder: Path, wait_s: float, poll_s: float = 0.5) -> bool:
    """Wait while another live process holds ``folder``'s run lock; False if none held it."""
    owner = read_lock(folder / LOCK_FILE)
    if owner is None or owner.get("pid") == os.getpid():
        return False
    same_host = owner.get("host") == host_name()
    if same_host and not pid_alive(owner["pid"]):
        return False
    print(f"process {owner['pid']} (started {owner.get('started', '?')}) is training the quick model in "
          f"{relative(folder)}; waiting for it")  # fmt: skip
    deadline = time.monotonic() + wait_s
    while read_lock(folder / LOCK_FILE) == owner and (not same_host or pid_alive(owner["pid"])):
        if time.monotonic() > deadline:
            raise UserError(f"waited {wait_s / 60:.0f} min for process {owner['pid']} to train the quick model in "
                            f"{relative(folder)}; wait for it to finish, or set run_dir to a trained run")  # fmt: skip
        time.sleep(poll_s)
    return True


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
