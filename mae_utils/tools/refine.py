"""A small learned refinement across patch borders: ``python -m mae_utils refine --run runs/NAME``.

Why: the MAE's decoder predicts each hidden patch on its own, trained with a mean squared error, so
each patch is its expected value (blurred), and patches side by side do not meet: pasted beside the
visible ones the result is a mosaic with steps at patch borders
(:func:`mae_utils.metrics.seam_scores` measures both). :func:`mae_utils.baselines.blend_seams`
removes the steps without learning; :class:`SeamRefiner` is the learned alternative: a few 3x3
convolutions at full resolution that see across borders, trained with the MAE's own loss (squared
error over the hidden pixels) on the run's own training split and augmentation, with the MAE
frozen. It changes hidden pixels only, and starts as the identity (its last convolution is zero),
so it begins exactly at the MAE's result. Users get its output made seam-free by the blend
(:func:`mae_utils.tools.inference.fill_from` says why).

Files (apart from the MAE's, which are never written): ``RUN/refiner/weights.safetensors`` (the
weights; the metadata holds the refiner's shape and what it was trained on, including the SHA-256
of the MAE weights it refines), ``RUN/refiner/checkpoints/{last,best}`` (the shared training
loop's checkpoints: weights, optimizer, schedule, epoch, settings; ``last`` makes ``--resume``
exact), ``RUN/refiner/metrics.jsonl`` and ``RUN/refiner/log.txt``.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors.torch import save_file

from ..util import checkpoint as ckpt
from ..util import loop
from ..util.errors import UserError, check_seed
from ..util.fileio import atomic_write, file_sha256
from ..util.loaders import build_loader, mix_seed
from ..util.loop import Progress, Task
from ..util.progress import tqdm
from ..util.runtime import resolve_device
from ..config import DEVICES, TrainConfig, check_run_dir, load_run_config
from ..metrics import psnr_masked
from ..model import MaskedAutoencoder
from ..optim import make_adamw, one_cycle_plan, param_groups
from ..pretrained import load_model_from_run
from ..splits import TrainItems, train_loader, training_data
from ..transforms import batch_to_input, denormalize
from .inference import CHECKPOINTS_DIR, SeamRefiner, predict_pasted, refiner_files

__all__ = [
    "REFINE",
    "RefineResult",
    "RefineSettings",
    "add_cli_arguments",
    "refine_loss",
    "refine_run",
    "run_cli",
]

REFINE = "model+refine"  # evaluate's row of the refined output
WARMUP_FRAC = 0.1
CHECKPOINT = "best"  # the MAE checkpoint a refiner is trained for


# ---------------------------------------------------------------------- the loss
def refine_loss(
    refined: torch.Tensor, target: torch.Tensor, pixel_mask: torch.Tensor, grad_weight: float = 0.0
) -> torch.Tensor:
    """The MAE's loss at pixel level: mean squared error over the hidden pixels (and channels).

    Plus ``grad_weight`` x the mean L1 distance between the horizontal and vertical pixel
    differences of ``refined`` and ``target`` over pairs touching a hidden pixel (a push towards
    the photo's detail).
    """
    hidden = pixel_mask.to(refined.dtype).expand_as(refined)
    loss = ((refined - target) ** 2 * hidden).sum() / hidden.sum().clamp_min(1)
    if grad_weight:
        terms = []
        for dim in (-1, -2):
            n = refined.shape[dim]
            pair = torch.maximum(hidden.narrow(dim, 0, n - 1), hidden.narrow(dim, 1, n - 1))
            gap = (refined.diff(dim=dim) - target.diff(dim=dim)).abs() * pair
            terms.append(gap.sum() / pair.sum().clamp_min(1))
        loss = loss + grad_weight * (terms[0] + terms[1]) / 2
    return loss


# ---------------------------------------------------------------------- files
def _save_weights(path: Path, refiner: SeamRefiner, record: dict[str, Any]) -> None:
    tensors = {k: v.detach().cpu().contiguous() for k, v in refiner.state_dict().items()}
    metadata = {
        "format": "pt",
        "refiner_config": json.dumps(refiner.config),
        "refiner_record": json.dumps(record),
    }

    def write(tmp: Path) -> None:
        save_file(tensors, str(tmp), metadata=metadata)
        if set(ckpt.read_header(tmp)[1]) != set(tensors):  # safetensors can drop a write error
            raise OSError(f"{tmp.name} read back incomplete")

    atomic_write(path, write)


# ---------------------------------------------------------------------- training
@dataclass(frozen=True)
class RefineSettings:
    """What a refiner's training is: recorded in its state; a resume must keep all but ``epochs``.

    A field left as None is not given: :func:`refine_run` takes it from :data:`DEFAULT_SETTINGS`,
    or on a resume from the saved settings."""

    epochs: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    width: int | None = None
    layers: int | None = None
    seed: int | None = None
    grad_weight: float | None = None
    weight_decay: float | None = None
    images_per_epoch: int | None = None  # None: the whole training split each epoch


#: A new refiner's settings where none are given; a resumed one keeps its saved ones.
DEFAULT_SETTINGS = RefineSettings(epochs=2, batch_size=32, lr=1e-3, width=32, layers=4, seed=0,
                                  grad_weight=0.0, weight_decay=0.0)
METRICS_FILE = "metrics.jsonl"


@dataclass
class RefineResult:
    """What :func:`refine_run` returns: the trained refiner, its files and every epoch's line."""

    run_dir: Path
    refiner: SeamRefiner
    weights_path: Path
    history: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _Job:
    """One refiner's training: the frozen MAE, the data, the refiner and its optimiser."""

    settings: RefineSettings
    run_dir: Path
    device: torch.device
    model: MaskedAutoencoder
    refiner: SeamRefiner
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LambdaLR
    train_set: TrainItems
    val_set: TrainItems
    batch_size: int
    steps_per_epoch: int
    mask_ratio: float
    record: dict[str, Any]  # the MAE it refines
    log: Callable[[str], None]
    progress: Progress = field(default_factory=Progress)
    task: Task | None = None  # what the shared loop runs


def _check_positive(s: RefineSettings) -> None:
    for name in ("epochs", "batch_size", "width"):
        value = getattr(s, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            flag = f"--{name.replace('_', '-')}"
            raise UserError(f"{name} must be a positive integer; got {value!r} (e.g. {flag} 2)")
    if isinstance(s.layers, bool) or not isinstance(s.layers, int) or s.layers < 2:
        raise UserError(f"layers must be an integer >= 2; got {s.layers!r}")


def _check_settings(s: RefineSettings) -> RefineSettings:
    _check_positive(s)
    for name, zero_ok in (("lr", False), ("grad_weight", True), ("weight_decay", True)):
        value = getattr(s, name)
        number = not isinstance(value, bool) and isinstance(value, (int, float))
        if not number or not math.isfinite(value) or value < 0 or (value == 0 and not zero_ok):
            bound = ">= 0" if zero_ok else "> 0"
            raise UserError(f"{name} must be a finite number {bound}; got {value!r}")
    n = s.images_per_epoch
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < s.batch_size):
        raise UserError(f"images_per_epoch must be an integer of at least one batch "
                        f"({s.batch_size} images); got {n!r} (e.g. --images-per-epoch 3200)")
    check_seed(s.seed)
    return s


def _check_run(run_dir: str | Path) -> tuple[Path, TrainConfig]:
    """The run folder and its config; refuses a missing run, one without a checkpoint, a
    norm_pix_loss run."""
    run_dir = check_run_dir(run_dir)
    config = load_run_config(run_dir)
    ckpt.check_not_half_replaced(run_dir, CHECKPOINT)
    ckpt.resolve(run_dir / "checkpoints" / CHECKPOINT)  # a clear error when it has none yet
    if config.norm_pix_loss:
        raise UserError(f"{run_dir} was trained with norm_pix_loss: its pixels need each hidden "
                        "patch's true mean and std, so a refiner trained on them would learn from "
                        "the hidden image; refine a run trained without --norm-pix-loss")
    if not (run_dir / "split.json").is_file():
        raise UserError(f"{run_dir / 'split.json'} not found: cannot tell which images the run "
                        "trained on")
    return run_dir, config


def _check_target(run_dir: Path, resume: bool, overwrite: bool) -> None:
    files = refiner_files(run_dir)
    if resume and overwrite:
        raise UserError("--resume continues a refiner and --overwrite replaces it: give one of "
                        "them, not both")
    held = files["weights"].exists() or files["state"].exists()
    if resume and not files["state"].is_file():
        if held:  # weights without the state to continue them from: only a new one can be trained
            raise UserError(f"{files['state']} not found: the refiner in {files['folder']} cannot "
                            "be continued; train a new one in its place with refine --run "
                            f"{run_dir} --overwrite")
        raise UserError(f"{files['state']} not found: nothing to resume; leave out --resume to "
                        "train a refiner")
    if held and not resume and not overwrite:
        raise UserError(f"{files['folder']} already holds a refiner: add --resume to continue it, "
                        "or --overwrite to train a new one in its place")


class _RefineLog:
    """Shows each line (``echo``) and keeps it for ``RUN/refiner/log.txt``, where the lines go once
    the training has started (:meth:`start`): a start that is refused writes nothing."""

    def __init__(self, path: Path, echo: Callable[[str], None] | None) -> None:
        self.path, self.echo = path, echo or tqdm.write
        self.pending: list[str] | None = []

    def __call__(self, message: str) -> None:
        self.echo(message)
        self.to_file(message)

    def to_file(self, message: str) -> None:
        line = message.encode("utf-8", "backslashreplace").decode("utf-8") + "\n"
        if self.pending is not None:
            self.pending.append(line)
            return
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.write(line)

    def start(self, replace: bool) -> None:
        """Create the refiner's folder, write the lines so far (after the old log, or in its
        place with ``replace``)."""
        self.path.parent.mkdir(exist_ok=True)
        if replace:
            self.path.unlink(missing_ok=True)
        lines, self.pending = self.pending or [], None
        with open(self.path, "a", encoding="utf-8") as fh:
            fh.writelines(lines)


def _run_id(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / "config.json").read_text()).get("run_id")
    except (OSError, ValueError, AttributeError):
        return None


def _frozen_mae(run_dir: Path, device: torch.device) -> tuple[MaskedAutoencoder, dict[str, Any]]:
    """The run's best MAE (frozen, eval mode) and the record of what the refiner refines."""
    model, _ = load_model_from_run(run_dir, CHECKPOINT, device)
    model.requires_grad_(False)
    model.eval()
    weights = ckpt.resolve(run_dir / "checkpoints" / CHECKPOINT) / ckpt.MODEL_FILE
    record = {"run_id": _run_id(run_dir), "checkpoint": CHECKPOINT,
              "mae_sha256": file_sha256(weights)}
    return model, record


def _setup(run_dir: Path, config: TrainConfig, s: RefineSettings, device: str,
           log: Callable[[str], None]) -> _Job:
    """The frozen MAE, the run's data with the refiner's own masks, a fresh refiner and its
    optimiser."""
    dev = resolve_device(device)
    model, record = _frozen_mae(run_dir, dev)
    data_config = dataclasses.replace(config, batch_size=s.batch_size)
    splits, train_set, val_set, steps, data_config = training_data(
        data_config, run_dir, log=log, item_seed=mix_seed(s.seed, 41))
    if s.images_per_epoch is not None:  # shorter epochs: the first images of each one's shuffle
        steps = min(steps, s.images_per_epoch // data_config.batch_size)
    torch.manual_seed(s.seed)
    refiner = SeamRefiner(int(model.in_chans), s.width, s.layers).to(dev)
    optimizer = make_adamw(param_groups(refiner, s.weight_decay), s.lr)
    plan, note = one_cycle_plan(s.epochs * steps, WARMUP_FRAC)
    if note:
        log(note)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    count = sum(p.numel() for p in refiner.parameters())
    log(f"refining {run_dir} ({CHECKPOINT} checkpoint, frozen) on {dev}: {len(splits.train)} "
        f"train / {len(splits.val)} val images, batch {data_config.batch_size}, {steps} "
        f"steps/epoch, peak lr {s.lr:g}, width {s.width}, {count:,} parameters")
    return _Job(s, run_dir, dev, model, refiner, optimizer, scheduler, train_set, val_set,
                data_config.batch_size, steps, config.mask_ratio, record, log)


#: What a refiner's ``state.pt`` holds besides the loop's entries, by type.
STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    **ckpt.STATE_TYPES, "settings": dict, "record": dict,
}


def _resolve_settings(given: RefineSettings, state_path: Path | None) -> RefineSettings:
    """The given settings (None: not given) over the saved ones of ``state_path`` (a resume) or
    :data:`DEFAULT_SETTINGS`. A resume refuses a given setting that differs from the saved one,
    all but ``epochs`` (more epochs extend the training)."""
    values = dataclasses.asdict(DEFAULT_SETTINGS)
    asked = {k: v for k, v in dataclasses.asdict(given).items() if v is not None}
    if state_path is not None:
        state = ckpt.load_state_file(state_path, "cpu", STATE_TYPES, "start again with --overwrite")
        saved = state["settings"]
        changed = [k for k, v in asked.items() if v != saved.get(k) and k != "epochs"]
        if changed:
            was = ", ".join(f"{k} {saved.get(k)!r}" for k in changed)
            them = "them" if len(changed) > 1 else "it"
            raise UserError(f"cannot resume {state_path.parent} with a different "
                            f"{', '.join(changed)} (saved: {was}); leave {them} out (--resume "
                            "takes the saved settings), or --overwrite to train a new refiner")
        values.update({k: saved[k] for k in values if k in saved})
    values.update(asked)
    return _check_settings(RefineSettings(**values))


def _check_resume(job: _Job, state: dict[str, Any]) -> bool:
    """Refuse a refiner of other MAE weights; whether its saved schedule still holds."""
    if state["record"].get("mae_sha256") != job.record["mae_sha256"]:
        raise UserError(f"the MAE weights of {job.run_dir} changed since its refiner was trained: "
                        "refine again with --overwrite")
    saved_epochs, epochs = state["settings"].get("epochs"), job.settings.epochs
    if saved_epochs == epochs:
        return True
    job.log(f"note: epochs {saved_epochs} -> {epochs}: the schedule now spans the new total")
    return False


def _publish(job: _Job) -> None:
    """After each epoch's checkpoints: the weights file evaluate and reconstruct load, with the
    record of what the refiner was trained on."""
    history = job.progress.history
    record = {**job.record, "settings": dataclasses.asdict(job.settings),
              "epochs_done": job.progress.epoch, "last": history[-1] if history else None}
    _save_weights(refiner_files(job.run_dir)["weights"], job.refiner, record)


def _step(job: _Job, x: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    """One optimiser step on a batch; returns its loss, detached."""
    noise = noise.to(job.device)
    pasted, pixel_mask, _ = predict_pasted(job.model, x, noise=noise, mask_ratio=job.mask_ratio)
    loss = refine_loss(job.refiner(pasted, pixel_mask), x, pixel_mask, job.settings.grad_weight)
    job.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    job.optimizer.step()
    job.scheduler.step()
    job.progress.step += 1
    return loss.detach()


def _train_epoch(job: _Job, epoch: int) -> dict[str, float]:
    s, device = job.settings, job.device
    job.refiner.train()
    loader = train_loader(job.train_set, job.batch_size, seed=s.seed, epoch=epoch, device=device)
    batches = itertools.islice(loader, job.steps_per_epoch)  # --images-per-epoch: the first ones
    bar = job.task.bar(batches, epoch, total=job.steps_per_epoch)
    loss_sum, count, start = 0.0, 0, time.perf_counter()
    for imgs, noise, aug in bar:
        x = batch_to_input(imgs, job.device, augment=aug)
        loss = _step(job, x, noise)
        loss_sum, count = loss_sum + float(loss) * x.shape[0], count + x.shape[0]
        if not math.isfinite(loss_sum):
            raise UserError(f"the refiner's loss became {float(loss):.4g} in epoch {epoch + 1}; "
                            "the last saved epoch is kept: train a new refiner with a lower rate, "
                            f"e.g. --overwrite --lr {s.lr / 10:g}")
        bar.set_postfix(loss=f"{loss_sum / count:.4f}", refresh=False)
    bar.close()
    seconds = time.perf_counter() - start
    return {"train_loss": loss_sum / max(count, 1), "images_per_s": count / max(seconds, 1e-9)}


@torch.no_grad()
def _validate(job: _Job) -> dict[str, float]:
    """Masked PSNR (dB) and loss of the raw and the refined reconstruction on the val split."""
    job.refiner.eval()
    sums = torch.zeros(4, dtype=torch.float64)
    loader = build_loader(job.val_set, job.batch_size, shuffle=False, device=job.device)
    for imgs, noise, _ in loader:
        x = batch_to_input(imgs, job.device)
        noise = noise.to(job.device)
        pasted, pixel_mask, _ = predict_pasted(job.model, x, noise=noise, mask_ratio=job.mask_ratio)
        refined = job.refiner(pasted, pixel_mask)
        orig = denormalize(x).clamp(0, 1).cpu()
        pm = pixel_mask.cpu()
        raw_db = psnr_masked(denormalize(pasted).clamp(0, 1).cpu(), orig, pm)
        ref_db = psnr_masked(denormalize(refined).clamp(0, 1).cpu(), orig, pm)
        losses = [float(refine_loss(y, x, pixel_mask)) * x.shape[0] for y in (pasted, refined)]
        sums += torch.tensor([raw_db.double().sum(), ref_db.double().sum(), *losses],
                             dtype=torch.float64)
    raw_db, ref_db, raw_loss, loss = (float(v) / len(job.val_set) for v in sums)
    return {"val_psnr_raw": raw_db, "val_psnr_refined": ref_db, "val_loss_raw": raw_loss,
            "val_loss": loss}


def _describe(job: _Job, line: dict[str, Any]) -> str:
    """The epoch's log line."""
    return (f"refine epoch {line['epoch']}/{job.settings.epochs}: train {line['train_loss']:.4f}, "
            f"val masked PSNR raw {line['val_psnr_raw']:.2f} dB -> refined "
            f"{line['val_psnr_refined']:.2f} dB, {line['images_per_s']:.0f} img/s, "
            f"{line['seconds']:.1f} s")


def _task(job: _Job, bars: bool) -> Task:
    """The refiner's training as the shared loop's task; its files in ``RUN/refiner/``."""
    s, folder = job.settings, refiner_files(job.run_dir)["folder"]
    return Task(
        job.refiner,
        job.optimizer,
        job.scheduler,
        train_epoch=lambda epoch: _train_epoch(job, epoch),
        validate=lambda epoch: _validate(job),
        epochs=s.epochs,
        checkpoints=folder / CHECKPOINTS_DIR,
        name="refine",
        seed=s.seed,
        extra_state=lambda: {"settings": dataclasses.asdict(s), "record": job.record,
                             "config": job.refiner.config},
        metrics_file=folder / METRICS_FILE,
        describe=lambda line: _describe(job, line),
        log=job.log,
        after_save=lambda: _publish(job),
        bars=bars,
        progress=job.progress,
    )


def refine_run(
    run_dir: str | Path,
    settings: RefineSettings | None = None,
    *,
    device: str = "auto",
    resume: bool = False,
    overwrite: bool = False,
    log: Callable[[str], None] | None = None,
    progress: bool = True,
) -> RefineResult:
    """Train a :class:`SeamRefiner` for the run's best checkpoint (frozen), in ``RUN/refiner/``.

    Trains on the run's own training split and augmentation, with random masks at the run's mask
    ratio drawn per (``seed``, epoch, image); AdamW + One-Cycle (peak ``lr``) on
    :func:`refine_loss`, through the shared loop (:mod:`mae_utils.util.loop`). After every epoch:
    the checkpoints ``RUN/refiner/checkpoints/{last,best}``, the weights file evaluate and
    reconstruct load, a line in ``metrics.jsonl`` and the log (train loss, validation masked PSNR
    raw -> refined, img/s). ``images_per_epoch`` trains each epoch on only that many images (the
    first of that epoch's shuffle): at 256 px the refiner runs at ~4 images/s on CPU, a full
    epoch ~80 min. ``resume`` continues the last checkpoint exactly (2 epochs = 1 + resume 1, bit
    for bit on CPU); a run that already has a refiner needs ``resume`` or ``overwrite``. The MAE's
    files are only read. A setting left as None is :data:`DEFAULT_SETTINGS`'s, or with ``resume``
    the saved one (a different one is refused, but for ``epochs``). A refused start writes
    nothing; a failure or a stop after the start is logged with the way on.
    """
    given = settings or RefineSettings()
    resolved = None if resume else _resolve_settings(given, None)  # a bad value is named first
    run_dir, config = _check_run(run_dir)
    _check_target(run_dir, resume, overwrite)
    files = refiner_files(run_dir)
    resolved = resolved or _resolve_settings(given, files["state"])
    log_to = _RefineLog(files["log"], log)  # until the start, lines that a refusal drops
    job = None
    try:
        job = _setup(run_dir, config, resolved, device, log_to)
        job.task = _task(job, progress)
        if resume:
            _restore(job)
        log_to.start(replace=overwrite)
        loop.run_epochs(job.task)
    except UserError as exc:
        log_to.to_file(f"error: {exc}")  # the command line prints it once, on stderr
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM
        exc.next_step = _after_stop(run_dir, job)
        log_to.to_file(f"{exc or 'interrupted'}; {exc.next_step}")
        raise
    return RefineResult(run_dir, job.refiner.eval(), files["weights"], list(job.progress.history))


def _restore(job: _Job) -> None:
    """Continue from ``RUN/refiner/checkpoints/last`` exactly."""
    loop.resume(job.task, STATE_TYPES, lambda state: _check_resume(job, state))
    job.log(f"resumed after epoch {job.progress.epoch} (step {job.progress.step})")


def _after_stop(run_dir: Path, job: _Job | None) -> str:
    """What to do after a stop: continue the epochs this refiner saved, else start it again."""
    if job is None or not job.progress.epoch:
        return "no epoch of this refiner was saved: run the same command again"
    return (f"{job.progress.epoch} epoch(s) saved: continue with python -m mae_utils refine "
            f"--run {run_dir} --resume")


# ---------------------------------------------------------------------- command line
def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Train a small convolutional refiner across patch borders for a run's best MAE (kept "
        "frozen): the MAE's patches are guessed one by one (blurred, with steps at their "
        "borders); the refiner learns to smooth them with the same masked loss. Writes "
        "RUN/refiner/; evaluate and reconstruct then use it."
    )
    parser.add_argument("--run", required=True, metavar="RUN_DIR",
                        help="a trained run directory (runs/NAME)")
    d = DEFAULT_SETTINGS
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"passes over the run's training split (default: {d.epochs})")
    parser.add_argument("--batch-size", type=int, default=None,
                        help=f"images per step (default: {d.batch_size})")
    parser.add_argument("--lr", type=float, default=None,
                        help=f"peak learning rate of the One-Cycle plan (default: {d.lr:g})")
    parser.add_argument("--width", type=int, default=None,
                        help=f"channels of the refiner's convolutions (default: {d.width})")
    parser.add_argument("--grad-weight", type=float, default=None,
                        help="weight of an L1 loss on pixel differences in the hidden region, "
                             "towards the photo's detail (default: 0, off; an experiment)")
    parser.add_argument("--images-per-epoch", type=int, default=None,
                        help="train each epoch on only this many images of the shuffled training "
                             "split (default: all); for 256 px runs on CPU, where a full epoch "
                             "takes over an hour")
    parser.add_argument("--seed", type=int, default=None,
                        help=f"seed of the refiner's weights, batches, masks (default: {d.seed})")
    parser.add_argument("--device", default="auto", choices=DEVICES,
                        help="where to train; auto = CUDA, then MPS, then CPU (default: auto)")
    parser.add_argument("--resume", action="store_true",
                        help="continue RUN/refiner from its last checkpoint (exactly), with its "
                             "saved settings; only a larger --epochs may be given to extend it")
    parser.add_argument("--overwrite", action="store_true",
                        help="train a new refiner in place of the run's one")


def run_cli(args: argparse.Namespace) -> int:
    settings = RefineSettings(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                              width=args.width, seed=args.seed, grad_weight=args.grad_weight,
                              images_per_epoch=args.images_per_epoch)
    result = refine_run(args.run, settings, device=args.device, resume=args.resume,
                        overwrite=args.overwrite)
    last = result.history[-1]
    print(f"wrote {result.weights_path} (val masked PSNR raw {last['val_psnr_raw']:.2f} dB -> "
          f"refined {last['val_psnr_refined']:.2f} dB after epoch {last['epoch']})")
    return 0
