"""Training: AdamW + One-Cycle on hidden-patch MSE, on CPU, one GPU, or many through ``torchrun``.

``fit(TrainConfig(...))`` trains a run; the notebook and ``python -m mae_utils train`` both call
it. The epochs, checkpoints, exact resume, metrics lines and stops are the shared training loop's
(:mod:`mae_utils.util.loop`); this module supplies the MAE's step, validation and run folder.
Choices and why:

* The optimiser, the One-Cycle schedule and the step itself live in :mod:`mae_utils.optim`
  (:func:`~mae_utils.optim.build_optimizer`, :func:`~mae_utils.optim.train_step`), so the notebook
  demonstrates exactly the step this loop takes. The schedule steps every iteration; the ``lr``
  logged per epoch is the rate of that epoch's last step.
* Short runs: any number of steps >= 1 trains; a batch larger than the training split is clamped to
  it, with a warning.
* ``init_from``: the initial weights come from an official MAE ``.pth``, a Hugging Face ViTMAE
  folder or another run's checkpoint; the model's shape comes from the weights (see
  :func:`initial_model`).
* Exact resume: the batch order comes from a sampler seeded with ``seed + epoch``; each image's
  mask noise from a generator seeded by (seed, epoch, image index); the global RNGs are re-seeded
  at every epoch start and also saved. So a run resumed after epoch k draws the same batches and
  masks as one never stopped, and (on CPU) ends with identical weights. Per-image noise also makes
  a 2-process run see exactly the masks a single process sees for the same global batch.
* GPUs: bf16 autocast where supported, else fp16 with a grad scaler; TF32 matmuls; fused AdamW;
  pinned memory with non-blocking copies; optional ``torch.compile``. CPU stays float32.
* Under ``torchrun``: DistributedDataParallel (NCCL on GPUs, gloo on CPU), a ``DistributedSampler``
  with ``set_epoch``, validation sharded and summed over ranks; rank 0 alone logs and writes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Collection

import torch
from torch import nn
from torch.utils.data import DataLoader

from .util import checkpoint as ckpt
from .util import runtime
from .util.errors import UserError, sigterm_as_interrupt
from .util.fileio import atomic_write_text
from .util.loaders import build_loader, plan_batches
from .util import loop
from .util.loop import Progress, Task
from .util.progress import tqdm
from .util.rundir import (
    REPLACED_DIR,
    RunFolder,
    holds_checkpoint,
    new_run_id,
    read_run_id,
    stamp_split,
)
from .util.runtime import resolve_amp, resolve_device
from .config import (
    ARCHITECTURE_FIELDS,
    RESUME_OVERRIDABLE,
    TrainConfig,
    add_config_arguments,
    check_run_dir,
    config_from_args,
    fixed_on_resume,
    load_run_config,
    peak_lr,
    setting_sources,
)
from .metrics import paste_visible, patch_mask_to_pixel_mask, psnr_masked
from .model import MaskedAutoencoder, build_mae
from .optim import autocast, build_optimizer, make_adamw, param_groups, train_step
from .pretrained import init_record, load_init_weights
from .splits import TrainItems, count_split, train_loader, training_data
from .transforms import batch_to_input, denormalize
from .viz import four_panel_figure, masked_image

__all__ = [
    "FitResult",
    "NonFiniteLossError",
    "TrainConfig",
    "add_cli_arguments",
    "build_model",
    "dry_run",
    "fit",
    "initial_model",
    "make_adamw",
    "param_groups",
    "plan_batches",
    "run_cli",
    "train_step",
]

NUM_SAMPLE_IMAGES = 6


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite; the run stopped and kept its last good checkpoint."""


@dataclass
class FitResult:
    """What :func:`fit` returns: where the run lives and how it ended."""

    run_dir: Path
    metrics: dict[str, Any]  # the last epoch's metrics.jsonl line
    best_val_loss: float
    history: list[dict[str, Any]] = field(default_factory=list)  # every epoch's line


# ---------------------------------------------------------------------- small pieces
def build_model(config: TrainConfig) -> MaskedAutoencoder:
    """The model a config describes (preset + explicit overrides), freshly initialised."""
    return build_mae(
        config.preset,
        img_size=config.image_size,
        patch_size=config.patch_size,
        norm_pix_loss=config.norm_pix_loss,
        **config.model_overrides(),
        **config.model_options(),
    )


def with_options(
    model: MaskedAutoencoder, config: TrainConfig, log: Callable[[str], None] = print
) -> MaskedAutoencoder:
    """``model`` (loaded weights) with ``config``'s model options: the same weights in a model built
    with them. A fill-started mask token the weights lack starts at zero (the weights' own model);
    one they hold but the config turns off is dropped, with a note."""
    options = config.model_options()
    if all(getattr(model, k) == v for k, v in options.items()):
        return model
    base = {k: v for k, v in model.config.items() if k not in options}
    rebuilt = MaskedAutoencoder(**base, **options).to(model.mask_token.device)
    state = model.state_dict()
    dropped = sorted(set(state) - set(rebuilt.state_dict()))
    if dropped:
        log(f"note: init_from {config.init_from}: fill_start none leaves out the weights' "
            f"{', '.join(dropped)}")
    # strict=False: the one layer the weights may lack is the fill map, which then stays zero
    rebuilt.load_state_dict({k: v for k, v in state.items() if k not in dropped}, strict=False)
    return rebuilt.train(model.training)


SHAPE_FIELDS = ("patch_size",) + ARCHITECTURE_FIELDS  # what init_from's weights decide


def initial_model(
    config: TrainConfig, log: Callable[[str], None] = print
) -> tuple[MaskedAutoencoder, TrainConfig]:
    """The model training starts from, and the config that describes it.

    Without ``init_from``: :func:`build_model` (random weights; seed the RNG first for a given
    draw).
    With it: the weights of an official MAE ``.pth``, a Hugging Face ViTMAE folder, or a run's
    checkpoint (see :func:`mae_utils.pretrained.load_init_weights`); the architecture comes from the
    weights, so the returned config's patch size and widths are the weights' (a note says what
    changed), and the fixed position tables are recomputed for ``config.image_size``.
    """
    if not config.init_from:
        return build_model(config), config
    model = load_init_weights(config.init_from, config.image_size,
                              norm_pix_loss=config.norm_pix_loss, log=log)
    model = with_options(model, config, log)
    shape = {name: model.config[name] for name in SHAPE_FIELDS}
    asked = {"patch_size": config.patch_size, **config.architecture()}
    changed = {k: v for k, v in shape.items() if asked[k] != v}
    if changed:
        changes = ", ".join(f"{k} {asked[k]} -> {v}" for k, v in changed.items())
        log(f"note: init_from {config.init_from}: the architecture comes from the weights: "
            f"{changes}")
    return model, dataclasses.replace(config, **shape).validate()


class _RunLog:
    """Prints (without breaking tqdm bars) and appends to ``log.txt``; silent on ranks other than
    0."""

    def __init__(self, path: Path | None, echo: Callable[[str], None] | None, active: bool):
        self.path, self.active = path, active
        self.echo = echo or tqdm.write

    def __call__(self, message: str) -> None:
        if not self.active:
            return
        # file names that are not valid UTF-8 reach here as surrogates: shown escaped, never a crash
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        self.echo(message)
        self.to_file(message)

    def to_file(self, message: str) -> None:
        """Into ``log.txt`` only (for what the caller shows itself, such as the final error)."""
        if self.active and self.path is not None:
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(message.encode("utf-8", "backslashreplace").decode("utf-8") + "\n")


# ---------------------------------------------------------------------- the loop
@dataclass
class _Run:
    """Everything one training run holds; built by :func:`_setup`, used by the epoch functions."""

    config: TrainConfig
    run_dir: Path
    device: torch.device
    amp_dtype: torch.dtype | None
    world: int
    rank: int
    model: MaskedAutoencoder  # the plain module (weights, checkpoints, validation)
    train_model: nn.Module  # what the step calls: maybe DDP- and compile-wrapped
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR  # the One-Cycle plan of mae_utils.optim
    scaler: torch.amp.GradScaler
    train_set: TrainItems
    val_set: TrainItems
    steps_per_epoch: int
    log: _RunLog
    folder: RunFolder | None = None  # rank 0's hold on run_dir (lock, --overwrite, rollback)
    run_id: str = ""  # shared by config.json and every checkpoint of this run (evaluate checks it)
    progress: Progress = field(default_factory=Progress)  # epoch, step, best val loss, history
    task: Task | None = None  # what the shared loop runs (built by _setup)


def _acc_dtype(device: torch.device) -> torch.dtype:
    """Loss sums accumulate in float64, except on MPS, which has none."""
    return torch.float32 if device.type == "mps" else torch.float64


def _autocast(run: _Run):
    return autocast(run.device, run.amp_dtype)


def _train_loader(run: _Run, epoch: int) -> DataLoader:
    cfg = run.config
    return train_loader(run.train_set, cfg.batch_size, seed=cfg.seed, epoch=epoch,
                        world=run.world, rank=run.rank, num_workers=cfg.num_workers,
                        device=run.device)


def _val_loader(run: _Run) -> DataLoader:
    cfg = run.config
    return build_loader(run.val_set, cfg.batch_size, shuffle=False, world=run.world,
                        rank=run.rank, num_workers=cfg.num_workers, device=run.device,
                        persistent_workers=False)


def _check_finite(run: _Run, loss_sum: torch.Tensor, count: int, epoch: int) -> tuple[float, float]:
    """Global (loss sum, image count) so far this epoch; stop the run on a non-finite loss."""
    total = torch.stack([loss_sum.detach(), torch.full_like(loss_sum, count)])
    loss_sum, count = runtime.all_reduce_sum(total).tolist()
    if not math.isfinite(loss_sum):
        mean = loss_sum / max(count, 1)
        raise NonFiniteLossError(
            f"training loss became {mean:.4g} in epoch {epoch + 1} (step {run.progress.step}); "
            f"stopped without saving; {_non_finite_advice(run)}"
        )
    return loss_sum, count


def _non_finite_advice(run: _Run) -> str:
    """What to do after a non-finite loss, as commands that work (resume accepts a new
    --base-lr)."""
    cfg = run.config
    fixes = f"--base-lr {cfg.base_lr / 10:.3g}"
    if cfg.grad_clip is None:
        fixes += " --grad-clip 1.0"
    if run.amp_dtype is not None:
        fixes += " --amp none"
    done = run.progress.epoch
    if done:
        last = run.run_dir / "checkpoints" / "last"
        return (f"the last good checkpoint (epoch {done}) is in {last}; continue from it with a "
                f"lower learning rate: --resume {run.run_dir} {fixes}")
    return f"no checkpoint was written, so the folder was left as it was; start again with {fixes}"


def _train_epoch(run: _Run, epoch: int) -> dict[str, float]:
    cfg = run.config
    run.train_model.train()
    loader = _train_loader(run, epoch)
    # the sum stays on the device (no sync); .item() syncs a GPU, so it is checked every 25 steps
    loss_sum = torch.zeros((), device=run.device, dtype=_acc_dtype(run.device))
    check_every = 1 if run.device.type == "cpu" else 25
    bar = run.task.bar(loader, epoch)
    start = time.perf_counter()
    seen = count = 0
    lr = math.nan
    for i, (imgs, noise, aug) in enumerate(bar):
        imgs = batch_to_input(imgs, run.device, augment=aug)
        noise = noise.to(run.device, non_blocking=True)
        lr = run.optimizer.param_groups[0]["lr"]  # the rate this step uses
        loss = train_step(run.train_model, imgs, noise, run.optimizer, run.scheduler, run.scaler,
                          mask_ratio=cfg.mask_ratio, amp_dtype=run.amp_dtype,
                          grad_clip=cfg.grad_clip)
        run.progress.step += 1
        n = imgs.shape[0]
        seen += n * run.world
        loss_sum += loss.to(loss_sum.dtype) * n
        count += n
        if (i + 1) % check_every == 0 or i + 1 == len(loader):
            total, images = _check_finite(run, loss_sum, count, epoch)
            rate = seen / max(time.perf_counter() - start, 1e-9)
            bar.set_postfix(loss=f"{total / images:.4f}", lr=f"{lr:.2e}", img_s=f"{rate:.0f}",
                            refresh=False)
    bar.close()
    if run.device.type == "cuda":
        torch.cuda.synchronize(run.device)
    seconds = time.perf_counter() - start
    total, images = _check_finite(run, loss_sum, count, epoch)
    return {"train_loss": total / images, "images_per_s": seen / seconds, "lr": lr}


def _pixels01(
    model: MaskedAutoencoder, imgs: torch.Tensor, pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(reconstruction, original) in [0, 1]. With norm_pix_loss the prediction is in per-patch
    normalised units; it is mapped back with each patch's true mean/std, as in the paper's
    figures."""
    recon = denormalize(model.prediction_to_images(pred, imgs)).clamp(0, 1)
    return recon, denormalize(imgs.float()).clamp(0, 1)


@torch.no_grad()
def _validate(run: _Run) -> dict[str, float]:
    """Mean hidden-patch loss and mean per-image masked PSNR (dB) over the validation set."""
    model = run.model
    model.eval()
    sums = torch.zeros(3, dtype=_acc_dtype(run.device), device=run.device)
    for imgs, noise, _ in _val_loader(run):
        imgs = batch_to_input(imgs, run.device)
        noise = noise.to(run.device, non_blocking=True)
        with _autocast(run):
            loss, pred, mask = model(imgs, mask_ratio=run.config.mask_ratio, noise=noise)
        recon01, orig01 = _pixels01(model, imgs, pred)
        pixel_mask = patch_mask_to_pixel_mask(mask, model.patch_size, model.img_size)
        n = imgs.shape[0]
        if run.device.type == "mps":  # the PSNR is computed in float64, which MPS lacks
            recon01, orig01, pixel_mask = recon01.cpu(), orig01.cpu(), pixel_mask.cpu()
        psnr = psnr_masked(recon01, orig01, pixel_mask).to(run.device, _acc_dtype(run.device))
        sums += torch.stack([loss.to(sums.dtype) * n, psnr.sum(), torch.full_like(psnr[0], n)])
    loss_sum, psnr_sum, count = runtime.all_reduce_sum(sums).tolist()
    if count == 0:
        raise UserError("the validation split is empty; raise --val-frac or --max-images")
    return {"val_loss": loss_sum / count, "val_psnr_masked": psnr_sum / count}


@torch.no_grad()
def save_samples(run: _Run, epoch: int) -> Path:
    """Four-panel grid of the first validation images (fixed masks) after ``epoch``."""

    n = min(NUM_SAMPLE_IMAGES, len(run.val_set))
    items = [run.val_set[i] for i in range(n)]
    imgs = batch_to_input(torch.stack([it[0] for it in items]), run.device)
    noise = torch.stack([it[1] for it in items]).to(run.device)
    run.model.eval()
    with _autocast(run):
        _, pred, mask = run.model(imgs, mask_ratio=run.config.mask_ratio, noise=noise)
    recon01, orig01 = _pixels01(run.model, imgs, pred)
    pixel_mask = patch_mask_to_pixel_mask(mask, run.model.patch_size, run.model.img_size)
    pasted = paste_visible(recon01, orig01, pixel_mask)
    path = run.run_dir / "samples" / f"epoch_{epoch + 1:03d}.png"
    fig = four_panel_figure(orig01, masked_image(orig01, pixel_mask), recon01, pasted, path=path)
    fig.clear()
    return path


def _own_state(run: _Run) -> dict[str, Any]:
    """What a run's ``state.pt`` holds besides the loop's entries."""
    return {"config": run.config.to_dict(), "world_size": run.world, "run_id": run.run_id}


def _announce_commit(run: _Run) -> None:
    """After each ``last`` save: the notes of the run folder's commit (an old run let go)."""
    if run.folder is not None:
        for note in run.folder.committed():
            run.log(note)


def _after_epoch(run: _Run, line: dict[str, Any], on_epoch: Callable | None) -> None:
    """Rank 0 after each saved epoch: the sample grid when due, then the caller's ``on_epoch``."""
    epoch, cfg = line["epoch"], run.config
    if cfg.sample_every and (epoch % cfg.sample_every == 0 or epoch == cfg.epochs):
        save_samples(run, epoch - 1)
    if on_epoch is not None:
        on_epoch(line)


def _describe(run: _Run, line: dict[str, Any]) -> str:
    """The epoch's log line."""
    val = "no val"
    if line["val_loss"] is not None:
        val = f"val {line['val_loss']:.4f}, masked PSNR {line['val_psnr_masked']:.2f} dB"
    return (f"epoch {line['epoch']}/{run.config.epochs}: train {line['train_loss']:.4f}, {val}, "
            f"{line['images_per_s']:.0f} img/s, {line['seconds']:.1f} s")


def _task(run: _Run, on_epoch: Callable[[dict[str, Any]], None] | None) -> Task:
    """The run as the shared loop's task: this module's epoch, validation, state and lines."""
    cfg = run.config
    return Task(
        run.model,
        run.optimizer,
        run.scheduler,
        train_epoch=lambda epoch: _train_epoch(run, epoch),
        validate=lambda epoch: _validate(run),
        epochs=cfg.epochs,
        checkpoints=run.run_dir / "checkpoints",
        seed=cfg.seed,
        scaler=run.scaler,
        model_config=run.model.config,
        extra_state=lambda: _own_state(run),
        val_keys=("val_loss", "val_psnr_masked"),
        eval_every=cfg.eval_every,
        patience=cfg.patience,
        metrics_file=run.run_dir / "metrics.jsonl",
        describe=lambda line: _describe(run, line),
        log=run.log,
        after_save=lambda: _announce_commit(run),
        on_epoch=lambda line: _after_epoch(run, line, on_epoch),
        main=run.rank == 0,
        progress=run.progress,
    )


def _check_resume(run: _Run, state: dict[str, Any]) -> bool:
    """Refuse changed settings; whether the saved learning-rate schedule still holds."""
    source = run.run_dir / "checkpoints" / "last" / ckpt.STATE_FILE
    saved = TrainConfig.from_dict(state["config"], source=str(source))
    now = {f.name: getattr(run.config, f.name) for f in dataclasses.fields(TrainConfig)}
    changed = fixed_on_resume(saved, now)
    if changed:
        raise UserError(
            f"cannot resume {run.run_dir} with different {', '.join(changed)}; only "
            f"{', '.join(sorted(RESUME_OVERRIDABLE))} may change on resume"
        )
    world = state["world_size"]
    if world != run.world:
        run.log(f"note: resuming a {world}-process run with {run.world}; the effective batch "
                "changes")
    cfg, step = run.config, state["step"]
    same_plan = (saved.epochs, saved.base_lr, world) == (cfg.epochs, cfg.base_lr, run.world)
    if same_plan and "lr_lambdas" in state["scheduler"]:
        return True
    # more epochs, a new base_lr or world size, or a schedule saved before the One-Cycle plan of
    # optim.py (OneCycleLR): the plan is redrawn and continued at this step
    if saved.epochs != cfg.epochs:
        run.log(f"note: epochs {saved.epochs} -> {cfg.epochs}: the One-Cycle schedule now spans "
                "the new total")
    if saved.base_lr != cfg.base_lr:
        run.log(f"note: base_lr {saved.base_lr:g} -> {cfg.base_lr:g} from step {step}")
    if same_plan:
        run.log(f"note: schedule saved by an older maskAE; redrawn and continued at step {step}")
    return False


def _restore(run: _Run) -> None:
    """Continue from ``checkpoints/last``: weights, optimizer, schedule, counters, RNG."""
    state = loop.resume(run.task, ckpt.TRAIN_STATE_TYPES, lambda saved: _check_resume(run, saved))
    run.run_id = state.get("run_id") or run.run_id


def _init_source(config: TrainConfig, run_dir: Path, restored: bool) -> dict[str, Any] | None:
    """What ``init_from`` loaded (path, checkpoint, SHA-256): recorded once, kept on resume, which
    needs only the run's own checkpoint and never the source again."""
    if not config.init_from:
        return None
    if restored:
        try:
            return json.loads((run_dir / "config.json").read_text()).get("init_source")
        except (OSError, ValueError, AttributeError):
            return None
    return init_record(config.init_from)


def _start_runtime(config: TrainConfig) -> tuple[torch.device, torch.dtype | None, int, int]:
    """Set-up phase 1: (device, AMP dtype, world size, rank); joins the torchrun group if there is
    one."""
    device = resolve_device(config.device)  # under torchrun: the local rank's GPU
    runtime.init_from_env(device.type)
    amp_dtype = resolve_amp(config.amp, device)
    runtime.configure_device(device)
    return device, amp_dtype, runtime.world_size(), runtime.rank()


def _starting_model(
    config: TrainConfig, run_dir: Path, restore: bool, log: _RunLog
) -> tuple[MaskedAutoencoder, TrainConfig]:
    """Set-up phase 2: the model (seeded: identical initial weights on every rank) and its
    config."""
    torch.manual_seed(config.seed)
    if restore:  # the shape the run has, whatever built it; the weights are restored later
        return MaskedAutoencoder(**ckpt.read_model_config(run_dir / "checkpoints" / "last")), config
    return initial_model(config, log=log)  # with init_from, the config takes the weights' shape


def _wrap_for_training(
    model: MaskedAutoencoder, config: TrainConfig, device: torch.device, world: int
) -> nn.Module:
    """What the step calls: the model, DDP-wrapped under torchrun, compiled with ``compile``."""
    train_model: nn.Module = model
    if world > 1:
        train_model = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    return torch.compile(train_model) if config.compile else train_model


def _write_run_record(run: _Run, restored: bool) -> None:
    """Set-up's last phase (rank 0): config.json and the split's run id."""
    record = {
        **run.config.to_dict(),
        "model": run.model.config,
        "runtime": runtime.environment(run.device, run.amp_dtype, run.world),
        "run_id": run.run_id,
        "init_source": _init_source(run.config, run.run_dir, restored),
    }
    atomic_write_text(run.run_dir / "config.json", json.dumps(record, indent=2) + "\n")
    stamp_split(run.run_dir / "split.json", run.run_id)


def _setup(
    config: TrainConfig,
    resume: bool,
    folder: RunFolder | None,
    echo: Callable[[str], None] | None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> _Run:
    """Everything before the first epoch, phase by phase. ``folder`` (rank 0 only) is the opened,
    locked run folder."""
    device, amp_dtype, world, rank = _start_runtime(config)
    run_dir = Path(config.out_dir)
    # a run without a checkpoint (stopped in its first epoch) starts again at epoch 0
    has_checkpoint = folder.has_checkpoint if folder is not None else holds_checkpoint(run_dir)
    restore = resume and has_checkpoint
    log = _RunLog(run_dir / "log.txt" if rank == 0 else None, echo, rank == 0)
    processes = f" x {world} processes" if world > 1 else ""
    log(f"{'resuming' if restore else 'training'} {run_dir} on {device}{processes}, "
        f"amp {amp_dtype or 'none'}")
    for note in folder.notes if folder is not None else ():
        log(f"note: {note}")
    model, config = _starting_model(config, run_dir, restore, log)
    model = model.to(device)
    splits, train_set, val_set, steps, config = training_data(config, run_dir, world, rank, log)

    optimizer, scheduler, note = build_optimizer(model, config, config.epochs * steps, world)
    if note:
        log(note)
    scaler_device = device.type if device.type == "cuda" else "cpu"
    scaler = torch.amp.GradScaler(scaler_device, enabled=amp_dtype == torch.float16)
    train_model = _wrap_for_training(model, config, device, world)
    run = _Run(config, run_dir, device, amp_dtype, world, rank, model, train_model, optimizer,
               scheduler, scaler, train_set, val_set, steps, log, folder)
    run.run_id = read_run_id(run_dir) if resume else new_run_id()
    run.task = _task(run, on_epoch)
    if restore:
        _restore(run)
        p = run.progress
        log(f"resumed after epoch {p.epoch} (step {p.step}, best val loss {p.best_val_loss:.4f})")
    log(f"{len(splits.train)} train / {len(splits.val)} val / {len(splits.test)} test images; "
        f"effective batch {config.batch_size * world}, peak lr {scheduler.base_lrs[0]:.3g}, "
        f"{steps} steps/epoch")
    if rank == 0:
        _write_run_record(run, restore)
    return run


def fit(
    config: TrainConfig,
    *,
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    on_epoch: Callable[[dict[str, Any]], None] | None = None,
) -> FitResult:
    """Train (or, with ``resume=True``, continue ``config.out_dir``); returns the run's results.

    Writes the run folder (``config.json``, ``split.json``, ``metrics.jsonl``, ``log.txt``,
    ``checkpoints/{last,best}``, ``samples/``) into ``config.out_dir``, under the rules of
    ``docs/runs.md`` (lock, ``overwrite``, rollback: :mod:`mae_utils.util.rundir`). ``log`` receives
    each progress line (default: above the tqdm bars); ``on_epoch`` each epoch's metrics line (e.g.
    :class:`mae_utils.app.tutorial.LiveLossPlot`).
    """
    started_group = not runtime.is_distributed()
    config.validate(need_init_from=not resume)  # a resumed run's weights are its own checkpoint's
    folder = None
    failed = True
    try:
        # a scheduler's stop ends the run as Ctrl-C does, data preparation included
        with sigterm_as_interrupt():
            if runtime.env_rank() == 0:
                folder = RunFolder(config.out_dir, resume=resume, overwrite=overwrite).open()
            run = _setup(config, resume, folder, log, on_epoch)
            try:
                loop.run_epochs(run.task)
            except NonFiniteLossError as exc:
                run.log.to_file(f"error: {exc}")  # the command line prints it once, on stderr
                raise
        failed = False
        history = run.progress.history
        last = history[-1] if history else {}
        return FitResult(run.run_dir, dict(last), run.progress.best_val_loss, list(history))
    finally:
        if folder is not None:
            folder.close(failed=failed)
        if started_group:
            runtime.cleanup()


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Every TrainConfig field as a flag, plus --resume and --overwrite."""
    parser.description = (
        "Train a Masked Autoencoder. Without --data-dir it trains on built-in synthetic faces. "
        "The same flags work under `torchrun --nproc_per_node=N -m mae_utils train` "
        "(DistributedDataParallel)."
    )
    add_config_arguments(parser)
    overridable = ", ".join(sorted(RESUME_OVERRIDABLE))
    parser.add_argument("--resume", metavar="RUN_DIR", default=None,
                        help="continue the run in RUN_DIR from checkpoints/last; settings come "
                             f"from its config.json, and only {overridable} may be given (e.g. a "
                             "larger --epochs to extend it)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the resolved settings, the model's size, the data count and "
                             "the steps per epoch, then stop: nothing is written (check a long "
                             "job before paying for it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="start afresh even if --out-dir already holds a run: the old run is "
                             "moved aside and deleted once the new one has saved its first "
                             "checkpoint")


def config_for_cli(args: argparse.Namespace) -> tuple[TrainConfig, bool]:
    """(config, resume) from parsed CLI arguments."""
    given = config_from_args(args)
    if args.resume is not None and not args.resume.strip():
        raise UserError("--resume needs a run folder and got an empty value (an unset shell "
                        "variable?); give --resume runs/NAME, or leave --resume out to start a "
                        "new run")
    if args.resume and args.overwrite:
        raise UserError("--resume continues a run and --overwrite replaces it: give one of them, "
                        "not both")
    if not args.resume:
        return TrainConfig(**given), False
    run_dir = check_run_dir(args.resume, "--resume")
    if (run_dir / REPLACED_DIR).is_dir() and not getattr(args, "dry_run", False):
        # an --overwrite was killed: settle the folder before reading it (a dry run changes nothing)
        RunFolder(run_dir, resume=True, overwrite=False).open().close()
    saved = load_run_config(run_dir)
    if "out_dir" in given and Path(given["out_dir"]) != run_dir:
        raise UserError("--out-dir cannot differ from --resume: a resumed run continues in its "
                        "own folder")
    bad = fixed_on_resume(saved, given)
    if bad:
        flags = ", ".join("--" + b.replace("_", "-") for b in bad)
        raise UserError(
            f"--resume takes the settings from {run_dir}/config.json; cannot change {flags} "
            f"(allowed: {', '.join(sorted(RESUME_OVERRIDABLE))})"
        )
    return dataclasses.replace(saved, **given, out_dir=str(run_dir)), True


def _planned_model(config: TrainConfig, resume: bool) -> tuple[MaskedAutoencoder, TrainConfig]:
    """The model a run would train, built on the meta device (no memory, no weights) unless it must
    read them: ``init_from`` takes its shape from the weights."""
    last = Path(config.out_dir) / "checkpoints" / "last"
    if resume and holds_checkpoint(last.parent.parent):
        with torch.device("meta"):
            return MaskedAutoencoder(**ckpt.read_model_config(last)), config
    if config.init_from:
        return initial_model(config)
    with torch.device("meta"):
        return build_model(config), config


def dry_run(config: TrainConfig, resume: bool = False, given: Collection[str] | None = None) -> str:
    """What ``train`` would do with ``config``, without doing it (``train --dry-run``): the resolved
    settings (grouped by where each came from when ``given``, the names typed, is known), the
    model's size and parameter count, the data count, the steps per epoch and the peak learning
    rate. Writes nothing: no run folder, no split, no image cache."""
    config.validate()
    model, config = _planned_model(config, resume)
    arch = {**dataclasses.asdict(config), **config.architecture()}
    world = runtime.env_world_size()
    split_path = Path(config.out_dir) / "split.json" if resume else None
    (n_train, n_val, n_test), source = count_split(
        config.data_dir, max_images=config.max_images, val_frac=config.val_frac,
        test_frac=config.test_frac, split_path=split_path)
    batch, steps, warning = plan_batches(n_train, config.batch_size, world)
    count = sum(p.numel() for p in model.parameters())
    grid = config.image_size // config.patch_size
    lr = peak_lr(config.base_lr, batch, world)
    lines = [
        "dry run: nothing was written",
        *_settings_lines(arch, config, resume, given),
        f"model: preset {config.preset}, encoder {arch['embed_dim']} wide x {arch['depth']} "
        f"blocks ({arch['num_heads']} heads), decoder {arch['decoder_embed_dim']} x "
        f"{arch['decoder_depth']} ({arch['decoder_num_heads']} heads)",
        f"images: {config.image_size} px, {grid}x{grid} patches of {config.patch_size} px",
        *_option_lines(config),
        f"parameters: {count:,} ({count * 4 / 2**20:.1f} MiB in float32)",
        f"data: {source}: {n_train} train / {n_val} val / {n_test} test",
        f"steps: {steps} per epoch (batch {batch} x {world} process{'es' if world > 1 else ''}) x "
        f"{config.epochs} epochs = {steps * config.epochs} steps",
        f"peak lr: {lr:.3g} (base_lr {config.base_lr:g} x effective batch {batch * world} / 256), "
        f"warm-up {config.warmup_frac:g} of the steps, weight decay {config.weight_decay:g}",
    ]
    return "\n".join(lines + ([warning] if warning else []))


def _settings_lines(
    values: dict[str, Any], config: TrainConfig, resume: bool, given: Collection[str] | None
) -> list[str]:
    """The settings as ``name=value``, one group per origin: flags, the preset (resumed: the run's
    config.json; with init_from the shape is the weights'), defaults; one group when the origins are
    unknown (a config built in Python)."""
    if given is None:
        origin = dict.fromkeys(values, "settings")
    else:
        titles = {"flag": "settings from flags", "default": "default settings"}
        sources = setting_sources(config.preset, given)
        origin = {k: titles.get(v, f"settings from {v}") for k, v in sources.items()}
        for name in values:
            if name in given:
                continue
            if resume:
                origin[name] = "settings from the run's config.json"
            elif config.init_from and name in SHAPE_FIELDS:
                origin[name] = "settings from the init_from weights"
    groups: dict[str, list[str]] = {}
    rank = {"settings from flags": 0, "default settings": 2}
    for name in sorted(values, key=lambda k: rank.get(origin[k], 1)):
        groups.setdefault(origin[name], []).append(name)
    return [
        textwrap.fill(f"{title}: " + ", ".join(f"{k}={values[k]!r}" for k in names), 100,
                      subsequent_indent="  ")
        for title, names in groups.items()
    ]


def _option_lines(config: TrainConfig) -> list[str]:
    """The dry run's line for the model options switched on (none when all are off)."""
    on = []
    if config.decode_fraction < 1.0:
        on.append(f"training decodes {config.decode_fraction:g} of the hidden patches")
    if config.fill_start != "none":
        on.append(f"mask tokens start from the {config.fill_start} fill")
    if config.standardize_visible:
        on.append("each image standardised by its visible pixels")
    return [f"options: {'; '.join(on)}"] if on else []


def run_cli(args: argparse.Namespace) -> int:
    config, resume = config_for_cli(args)
    if args.dry_run:
        print(dry_run(config, resume, given=config_from_args(args)))
        return 0
    result = fit(config, resume=resume, overwrite=args.overwrite)
    if runtime.is_main():
        m = result.metrics
        train_loss = m.get("train_loss", float("nan"))
        print(f"done: {result.run_dir} (best val loss {result.best_val_loss:.4f}; last epoch "
              f"{m.get('epoch')}: train {train_loss:.4f})")
    return 0
