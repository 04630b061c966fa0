"""The one training loop: epochs, exact resume, checkpoints, metrics, progress bars and stops.

Every command that trains something (``train``, ``refine``, a fine-tune) describes its training
as a :class:`Task`: the module whose weights are saved, its optimiser and learning-rate schedule,
a function that trains one epoch and one that validates. :func:`resume` continues a task from its
``last`` checkpoint; :func:`run_epochs` runs the epochs left. The loop owns the rest, the same for
every command:

* epochs from the restored one up to ``task.epochs``; the global RNGs (torch, numpy, random)
  re-seeded from (``seed``, epoch) at each epoch's start, so a resumed run draws what an
  uninterrupted one draws;
* validation every ``eval_every`` epochs and after the last; the lowest ``monitor`` value so far
  is the best; early stop after ``patience`` validations without a lower one;
* after each epoch, on the main process: the checkpoint folders ``CHECKPOINTS/best`` (when the
  value fell) and ``CHECKPOINTS/last`` (:mod:`~mae_utils.util.checkpoint`: weights in safetensors,
  ``state.pt`` with optimiser, schedule, grad scaler, epoch, step, RNG states, history and best
  value, loadable with ``weights_only=True``, written atomically), then ``after_save``, the epoch's
  line appended to ``metrics_file``, one log line and ``on_epoch(line)``;
* an outer progress bar over the epochs; :meth:`Task.bar` gives the command its inner one;
* SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does: the epoch in flight is abandoned, the last
  save (always complete) stays, and :func:`resume` redoes that epoch exactly. The command adds
  the next step for the user (the command line prints it).

The epoch's line is ``{"epoch": n}`` + ``train_epoch``'s metrics + ``validate``'s (``val_keys``
set to None in an epoch without validation) + ``step`` + ``seconds``. The command counts its
optimiser steps in ``task.progress.step``. Its own entries of ``state.pt`` (settings, what it was
trained from) come from ``extra_state``; :func:`resume` checks them (``required``, ``check``)
and returns the saved state. The best value is saved as ``best_val_loss`` whatever ``monitor``
names (lower is better).

A fine-tune, in outline::

    def train_epoch(epoch: int) -> dict[str, float]:
        model.train()
        total, batches = 0.0, 0
        for x, y in task.bar(loader_for(epoch), epoch):
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            task.progress.step += 1
            total, batches = total + loss.item(), batches + 1
        return {"train_loss": total / batches}

    task = Task(model, optimizer, scheduler, train_epoch, validate=val_loss_and_accuracy,
                epochs=10, checkpoints=out / "checkpoints", name="finetune",
                metrics_file=out / "metrics.jsonl",
                extra_state=lambda: {"settings": asdict(settings)})
    if resuming:
        saved = resume(task, required={"settings": dict}, check=same_settings)
    run_epochs(task)  # KeyboardInterrupt after a stop; the last checkpoint is complete
"""

from __future__ import annotations

import json
import math
import random
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from . import runtime
from .errors import UserError, sigterm_as_interrupt
from .fileio import atomic_write_text
from .loaders import mix_seed
from .progress import tqdm

__all__ = ["Progress", "Task", "resume", "run_epochs", "seed_everything"]

#: Optimiser group entries that describe the learning-rate plan, not the optimiser's state: kept
#: from the new plan when a resume redraws it.
_PLAN_KEYS = ("initial_lr", "max_lr", "min_lr")


@dataclass
class Progress:
    """How far a task has come: what a checkpoint saves and :func:`resume` restores."""

    epoch: int = 0  # epochs completed
    step: int = 0  # optimiser steps taken (the command's train_epoch counts them)
    best_val_loss: float = math.inf  # the lowest monitored validation value so far
    stale_evals: int = 0  # validations since that one
    history: list[dict[str, Any]] = field(default_factory=list)  # every epoch's line


@dataclass
class Task:
    """What a command trains and how; the loop does everything else (see the module's docstring)."""

    model: nn.Module  # the plain module whose weights are saved (not a DDP or compiled wrapper)
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    train_epoch: Callable[[int], dict[str, Any]]  # trains 0-based epoch e; returns its metrics
    validate: Callable[[int], dict[str, Any]]  # validation metrics after epoch e, with `monitor`
    epochs: int
    checkpoints: Path  # the folder of last/ and best/
    name: str = "epoch"  # the progress bar's word: "epoch 3/10"
    seed: int = 0  # the epochs' RNG seeds derive from it
    scaler: torch.amp.GradScaler | None = None
    model_config: dict[str, Any] | None = None  # stored with the weights: rebuilds the model
    extra_state: Callable[[], dict[str, Any]] = dict  # the command's own entries of state.pt
    monitor: str = "val_loss"  # lower is better
    val_keys: tuple[str, ...] = ("val_loss",)  # None in an epoch without validation
    eval_every: int = 1
    patience: int | None = None  # validations without a better value before stopping early
    metrics_file: Path | None = None  # one JSON line per epoch
    describe: Callable[[dict[str, Any]], str] | None = None  # the epoch's log line
    log: Callable[[str], None] = print
    after_save: Callable[[], None] | None = None  # after each epoch's checkpoints (main process)
    on_epoch: Callable[[dict[str, Any]], None] | None = None  # each epoch's line (main process)
    main: bool = True  # this process writes and logs (rank 0 under torchrun)
    bars: bool = True  # show progress bars (on the main process)
    progress: Progress = field(default_factory=Progress)

    def bar(self, items: Iterable, epoch: int, total: int | None = None) -> tqdm:
        """The inner progress bar over one epoch's batches: ``NAME e/E``."""
        return tqdm(items, desc=f"{self.name} {epoch + 1}/{self.epochs}", total=total,
                    leave=False, position=1, disable=not (self.main and self.bars),
                    dynamic_ncols=True, unit="batch")


def seed_everything(seed: int) -> None:
    """Seed torch, numpy and Python's ``random``."""
    torch.manual_seed(seed)
    np.random.seed(seed % 2**32)
    random.seed(seed)


# ---------------------------------------------------------------------- checkpoints
def _state(task: Task) -> dict[str, Any]:
    scaler = task.scaler.state_dict() if task.scaler is not None else {}
    return {
        **asdict(task.progress),
        "optimizer": task.optimizer.state_dict(),
        "scheduler": task.scheduler.state_dict(),
        "scaler": scaler,
        "rng": ckpt.capture_rng(),
        **task.extra_state(),
    }


def _save(task: Task, name: str) -> None:
    state = _state(task)
    ckpt.save_checkpoint(task.checkpoints / name, task.model.state_dict(), state, task.model_config)


def resume(
    task: Task,
    required: dict[str, type | tuple[type, ...]] | None = None,
    check: Callable[[dict[str, Any]], bool] | None = None,
) -> dict[str, Any]:
    """Restore ``task`` from ``CHECKPOINTS/last`` exactly; returns the saved state.

    ``required`` names the command's own entries that the state must hold. ``check(state)`` runs
    before anything loads: it refuses a resume with a :class:`UserError`, and returns whether the
    saved learning-rate schedule still holds; when not (more epochs, another peak rate), the new
    schedule continues at the saved step. ``task.epochs`` may grow, never fall below the epochs
    done.
    """
    last = task.checkpoints / "last"
    state = ckpt.load_state(last, required={**ckpt.STATE_TYPES, **(required or {})})
    done = state["epoch"]
    if task.epochs < done:
        raise UserError(
            f"{task.checkpoints.parent} has already trained {done} epochs; --epochs "
            f"{task.epochs} cannot undo them: give --epochs {done} or more (more extends it)"
        )
    same_plan = check(state) if check is not None else True
    ckpt.load_weights_into(task.model, last, _device(task.model))
    fresh = [{k: g[k] for k in _PLAN_KEYS if k in g} for g in task.optimizer.param_groups]
    task.optimizer.load_state_dict(state["optimizer"])
    if same_plan:
        task.scheduler.load_state_dict(state["scheduler"])
    else:
        _continue_plan(task, fresh, state["step"])
    if task.scaler is not None:
        task.scaler.load_state_dict(state["scaler"])
    for name in Progress.__dataclass_fields__:  # in place: the command may hold task.progress
        setattr(task.progress, name, state[name])
    task.progress.history = list(state["history"])
    ckpt.restore_rng(state["rng"])
    return state


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters(), torch.empty(0)).device


def _continue_plan(task: Task, fresh: list[dict[str, float]], step: int) -> None:
    """The new schedule (its rates, not the saved ones), continued at ``step``."""
    for group, values in zip(task.optimizer.param_groups, fresh):
        group.update(values)
    task.scheduler.last_epoch = step - 1
    with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": intended here
        warnings.simplefilter("ignore", UserWarning)
        task.scheduler.step()


# ---------------------------------------------------------------------- the epochs
def run_epochs(task: Task) -> Progress:
    """Train the epochs left (see the module's docstring); returns the task's progress."""
    if task.main and task.metrics_file is not None:  # the lines of the epochs saved, no more
        lines = "".join(json.dumps(line) + "\n" for line in task.progress.history)
        task.metrics_file.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(task.metrics_file, lines)
    outer = tqdm(total=task.epochs, initial=task.progress.epoch, desc="epochs", position=0,
                 disable=not (task.main and task.bars), dynamic_ncols=True, unit="epoch")
    try:
        with sigterm_as_interrupt():
            for epoch in range(task.progress.epoch, task.epochs):
                if _out_of_patience(task):
                    break
                line = _one_epoch(task, epoch)
                outer.update(1)
                val = line[task.monitor]
                outer.set_postfix(train=f"{line.get('train_loss', math.nan):.4f}",
                                  val="-" if val is None else f"{val:.4f}", refresh=False)
                if _out_of_patience(task):
                    task.log(f"early stop: no better {task.monitor} in "
                             f"{task.progress.stale_evals} validations (patience {task.patience})")
                    break
    finally:
        outer.close()
    return task.progress


def _out_of_patience(task: Task) -> bool:
    stale = task.progress.stale_evals
    return task.patience is not None and stale > 0 and stale >= task.patience


def _one_epoch(task: Task, epoch: int) -> dict[str, Any]:
    """Train, validate, save and report one epoch; returns its line."""
    progress = task.progress
    start = time.perf_counter()
    seed_everything(mix_seed(task.seed, 3, epoch))
    line: dict[str, Any] = {"epoch": epoch + 1, **task.train_epoch(epoch)}
    validated = (epoch + 1) % task.eval_every == 0 or epoch + 1 == task.epochs
    line.update(task.validate(epoch) if validated else dict.fromkeys(task.val_keys))
    line["step"] = progress.step
    progress.epoch = epoch + 1
    improved = validated and line[task.monitor] < progress.best_val_loss
    if improved:
        progress.best_val_loss, progress.stale_evals = line[task.monitor], 0
    elif validated:
        progress.stale_evals += 1
    line["seconds"] = time.perf_counter() - start
    progress.history.append(line)
    if task.main:
        _write_epoch(task, line, improved)
    runtime.barrier()
    task.log((task.describe or _describe)(line))
    if task.on_epoch is not None and task.main:
        task.on_epoch(dict(line))
    return line


def _write_epoch(task: Task, line: dict[str, Any], improved: bool) -> None:
    if improved:
        _save(task, "best")
    _save(task, "last")
    if task.after_save is not None:
        task.after_save()
    if task.metrics_file is not None:
        with open(task.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(line) + "\n")


def _describe(line: dict[str, Any]) -> str:
    values = ", ".join(f"{k} {v:.4g}" for k, v in line.items()
                       if k != "epoch" and isinstance(v, float))
    return f"epoch {line['epoch']}: {values}"
