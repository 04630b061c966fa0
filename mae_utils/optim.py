"""The optimisation: AdamW, the One-Cycle learning-rate plan, and one training step.

``fit`` and the tutorial notebook both build their optimiser with :func:`build_optimizer` and take
steps with :func:`train_step`, so what the notebook shows is what training does.

* AdamW with betas (0.9, 0.95), no weight decay on biases, norms, tokens (MAE paper, appendix A.1);
  the peak learning rate is ``base_lr x effective batch / 256`` (the paper's linear scaling rule).
* One-Cycle (Smith and Topin 2019), as ``torch.optim.lr_scheduler.OneCycleLR`` draws it with cosine
  annealing: from ``peak / 25`` up to the peak over the warm-up, then down to ``peak / 25 / 1e4`` at
  the last step. Written as a ``LambdaLR`` over :class:`OneCycle` because ``OneCycleLR`` divides by
  zero when the warm-up is exactly one step (1 epoch of 400 photos at batch 32) and, stepped once
  more after the last step, climbs back up. Here any number of steps >= 1 works, the warm-up is at
  least one step when there are three or more steps (none below that), and past the end the rate
  stays at its final value.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, Callable, ContextManager

import torch
from torch import nn

from .config import TrainConfig, peak_lr

__all__ = [
    "NO_DECAY_NAMES",
    "OneCycle",
    "autocast",
    "build_optimizer",
    "make_adamw",
    "one_cycle_plan",
    "param_groups",
    "peak_lr",
    "schedule_rates",
    "train_step",
]

NO_DECAY_NAMES = ("cls_token", "mask_token", "pos_embed", "decoder_pos_embed")
DIV_FACTOR = 25.0  # first rate = peak / 25 (OneCycleLR's default)
FINAL_DIV_FACTOR = 1e4  # last rate = first rate / 1e4 (OneCycleLR's default)


def param_groups(
    model: nn.Module, weight_decay: float, lr_scale: Callable[[str], float] | None = None
) -> list[dict[str, Any]]:
    """Two AdamW groups: decayed weight matrices, and undecayed biases, norms, tokens, positions.

    Frozen parameters (the fixed sin-cos tables, frozen blocks) are left out. ``lr_scale`` (a
    parameter's name -> a factor of the learning rate; fine-tuning's layer-wise decay) splits them
    further: a group per factor and decay, smallest factor first, each holding its ``lr_scale``.
    """
    groups: dict[tuple[float, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        plain = p.ndim <= 1 or name.endswith(".bias") or name.split(".")[-1] in NO_DECAY_NAMES
        decayed = not plain
        scale = 1.0 if lr_scale is None else float(lr_scale(name))
        groups.setdefault((scale, decayed), []).append(p)
    scales = sorted({scale for scale, _ in groups}) or [1.0]
    out = []
    for scale in scales:
        for decayed in (True, False):
            params = groups.get((scale, decayed), [])
            if lr_scale is None:  # always the same two groups, as saved optimizer states expect
                out.append({"params": params, "weight_decay": weight_decay if decayed else 0.0})
            elif params:
                out.append({"params": params, "weight_decay": weight_decay if decayed else 0.0,
                            "lr_scale": scale})
    return out


def make_adamw(groups: list[dict[str, Any]], lr: float) -> torch.optim.AdamW:
    """AdamW with the MAE betas (0.9, 0.95); the fused kernel where this PyTorch has one for the
    parameters' device (CUDA; CPU since 2.4: about 2x faster steps here than the foreach
    default)."""
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=True)
    except (RuntimeError, ValueError, TypeError):
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95))


@dataclass(frozen=True)
class OneCycle:
    """A One-Cycle plan: the factor of the peak rate for the step with 0-based index ``k``.

    ``peak_step`` is the index where the rate peaks (the warm-up is the ``peak_step`` steps before
    it); with ``peak_step`` = ``warmup_frac x total - 1`` (a whole number) this is ``OneCycleLR``'s
    curve.
    """

    total_steps: int
    peak_step: float

    def __call__(self, k: int) -> float:
        first = 1.0 / DIV_FACTOR
        last = first / FINAL_DIV_FACTOR
        k = min(k, self.total_steps - 1)  # after the last step: stay at the last rate
        if k <= self.peak_step:
            if self.peak_step <= 0:
                return 1.0
            return _cos_between(first, 1.0, k / self.peak_step)
        decay_steps = self.total_steps - 1 - self.peak_step
        return _cos_between(1.0, last, (k - self.peak_step) / decay_steps)


def _cos_between(start: float, end: float, pct: float) -> float:
    return end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1)


def one_cycle_plan(total_steps: int, warmup_frac: float) -> tuple[OneCycle, str | None]:
    """The plan for ``total_steps`` optimiser steps, and a note when the warm-up had to change.

    The warm-up is ``warmup_frac`` of the steps, rounded up to one step when that is less (a real
    warm-up needs a step below the peak and the decay at least one after it, so three steps); with
    fewer than three steps there is none.
    """
    if total_steps < 1:
        raise ValueError(f"a One-Cycle plan needs at least one step; got {total_steps}")
    peak = round(warmup_frac * total_steps) - 1.0  # OneCycleLR's peak index, on a whole step
    note = None
    if warmup_frac > 0 and peak < 1:
        if total_steps >= 3:
            peak = 1.0
            warmup = f"{warmup_frac:g} x {total_steps} steps"
            note = f"note: {warmup} is less than one warm-up step; warming up for one step"
        else:
            peak = 0.0
            note = (
                f"note: {total_steps} step(s) are too few for a warm-up; "
                "the rate starts at its peak"
            )
    elif warmup_frac <= 0:
        peak = 0.0
    peak = min(peak, total_steps - 2) if total_steps >= 2 else 0.0
    return OneCycle(total_steps, max(peak, 0.0)), note


def build_optimizer(
    model: nn.Module, config: TrainConfig, total_steps: int, world: int = 1
) -> tuple[torch.optim.AdamW, torch.optim.lr_scheduler.LambdaLR, str | None]:
    """AdamW over ``model`` and its One-Cycle schedule
    for ``total_steps`` steps; and the plan's note.

    Uses ``config``'s ``base_lr``, ``batch_size`` (per process), ``weight_decay`` and
    ``warmup_frac``. The one place where the optimiser and the schedule are made:
    :func:`mae_utils.train.fit` calls it, and so do the notebook's one-step demonstration and the
    learning-rate figures.
    """
    lr = peak_lr(config.base_lr, config.batch_size, world)
    optimizer = make_adamw(param_groups(model, config.weight_decay), lr)
    plan, note = one_cycle_plan(total_steps, config.warmup_frac)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, plan)
    return optimizer, scheduler, note


def schedule_rates(scheduler: torch.optim.lr_scheduler.LambdaLR) -> list[float]:
    """The learning rate of every step of ``scheduler``'s
    plan (first group), read off the scheduler."""
    plan = scheduler.lr_lambdas[0]
    base = scheduler.base_lrs[0]
    return [base * plan(k) for k in range(plan.total_steps)]


def autocast(device: torch.device, amp_dtype: torch.dtype | None) -> ContextManager:
    """Mixed precision for the forward pass: autocast to ``amp_dtype``, or nothing (float32)."""
    if amp_dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=amp_dtype)


def train_step(
    model: nn.Module,
    imgs: torch.Tensor,
    noise: torch.Tensor,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    scaler: torch.amp.GradScaler,
    *,
    mask_ratio: float,
    amp_dtype: torch.dtype | None = None,
    grad_clip: float | None = None,
) -> torch.Tensor:
    """One optimiser step on a batch; returns the batch's loss (hidden patches), detached.

    Forward under autocast (when ``amp_dtype``), backward through the gradient scaler (active for
    fp16 only), optional clipping of the gradient norm, AdamW, then the schedule's next rate.
    ``noise`` fixes each image's mask (the lowest-noise patches stay visible).
    """
    with autocast(imgs.device, amp_dtype):
        loss, _, _ = model(imgs, mask_ratio=mask_ratio, noise=noise)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if grad_clip is not None:
        scaler.unscale_(optimizer)
        params = [p for g in optimizer.param_groups for p in g["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    scaler.step(optimizer)
    scaler.update()
    scheduler.step()
    return loss.detach()
