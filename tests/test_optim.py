"""The optimisation (mae_utils.optim): AdamW's parameter groups, the One-Cycle plan for any number
of steps, the optimiser and schedule that fit and the notebook share, and one training step."""

from __future__ import annotations

import math

import pytest
import torch

from mae_utils.config import TrainConfig
from mae_utils.model import build_mae
from mae_utils.optim import (
    DIV_FACTOR,
    FINAL_DIV_FACTOR,
    build_optimizer,
    one_cycle_plan,
    param_groups,
    schedule_rates,
    train_step,
)
from mae_utils.util.loaders import plan_batches

FIRST, LAST = 1 / DIV_FACTOR, 1 / DIV_FACTOR / FINAL_DIV_FACTOR


def _tiny_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_mae("tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1)


# ---------------------------------------------------------------------- parameter groups
def test_param_groups_skip_decay_on_biases_norms_tokens():
    model = _tiny_model()
    decay, no_decay = param_groups(model, 0.05)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = {names[id(p)] for p in decay["params"]}
    plain = {names[id(p)] for p in no_decay["params"]}
    assert decay["weight_decay"] == 0.05 and no_decay["weight_decay"] == 0.0
    assert "blocks.0.attn.qkv.weight" in decayed and "patch_embed.proj.weight" in decayed
    assert {"cls_token", "mask_token", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= plain
    assert not any(n.endswith("bias") or "norm" in n for n in decayed)
    assert "pos_embed" not in decayed | plain  # frozen sin-cos table: not optimised at all
    assert len(decayed | plain) == sum(p.requires_grad for p in model.parameters())


# ---------------------------------------------------------------------- the One-Cycle plan
@pytest.mark.parametrize("total", [1, 2, 3, 4, 5, 9, 10, 11, 19, 20, 21, 100])
@pytest.mark.parametrize("warmup_frac", [0.0, 0.1, 0.3])
def test_one_cycle_plan_works_for_any_number_of_steps(total, warmup_frac):
    plan, note = one_cycle_plan(total, warmup_frac)
    factors = [plan(k) for k in range(total)]
    assert all(math.isfinite(f) and 0 < f <= 1 for f in factors)
    assert max(factors) == 1.0  # the peak rate is reached
    if total >= 2:
        assert factors[-1] == pytest.approx(LAST)  # the decay ends where One-Cycle ends
    assert plan(total) == plan(total + 5) == factors[-1]  # past the end: no climb back up
    if warmup_frac > 0 and total >= 3:
        assert factors[0] == pytest.approx(FIRST) and factors[0] < factors[1]  # a warm-up step
    if warmup_frac > 0 and total < 3:
        assert factors[0] == 1.0 and "too few" in note
    if warmup_frac == 0:
        assert factors[0] == 1.0


def test_the_warm_up_climbs_to_the_peak_at_its_fraction_of_the_steps():
    plan, note = one_cycle_plan(100, 0.2)
    factors = [plan(k) for k in range(100)]
    assert note is None and factors.index(1.0) == 19  # the 20th step is the peak
    assert all(a < b for a, b in zip(factors[:20], factors[1:20]))  # rising up to it
    assert all(a > b for a, b in zip(factors[19:], factors[20:]))  # falling after it


def test_one_epoch_of_400_photos_at_batch_32_has_a_schedule():
    """The case that divided by zero inside OneCycleLR: 320 training photos, batch 32, warm-up 0.1."""
    batch, steps, warning = plan_batches(320, 32)
    assert (batch, steps, warning) == (32, 10, None)
    with pytest.raises(ZeroDivisionError):  # the trap this plan replaces
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)])
        torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=steps, pct_start=0.1)
    plan, note = one_cycle_plan(steps, 0.1)
    assert plan(0) == pytest.approx(FIRST) and plan(1) == 1.0 and "one warm-up step" in note


def test_long_plans_match_torch_one_cycle():
    total, frac = 500, 0.1
    plan, note = one_cycle_plan(total, frac)
    assert note is None
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=1.0, total_steps=total, pct_start=frac, anneal_strategy="cos",
        cycle_momentum=False,
    )
    for k in range(total):
        assert plan(k) == pytest.approx(ref.get_last_lr()[0], rel=1e-9, abs=1e-15)
        opt.step()
        ref.step()


def test_a_plan_needs_a_step():
    with pytest.raises(ValueError, match="at least one step"):
        one_cycle_plan(0, 0.1)


# ---------------------------------------------------------------------- optimiser and schedule
def test_build_optimizer_peaks_at_the_linearly_scaled_rate():
    config = TrainConfig(base_lr=1e-3, batch_size=64, weight_decay=0.05, warmup_frac=0.2)
    optimizer, scheduler, note = build_optimizer(_tiny_model(), config, total_steps=50, world=2)
    peak = 1e-3 * 64 * 2 / 256  # base_lr x effective batch / 256
    rates = schedule_rates(scheduler)
    assert note is None and len(rates) == 50
    assert max(rates) == pytest.approx(peak) and rates.index(max(rates)) == 9
    assert rates[0] == pytest.approx(peak * FIRST) and rates[-1] == pytest.approx(peak * LAST)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(peak * FIRST)  # the first step's rate
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.05, 0.0]
    assert optimizer.defaults["betas"] == (0.9, 0.95)


# ---------------------------------------------------------------------- one training step
def _step_setup(grad_clip=None):
    model = _tiny_model()
    config = TrainConfig(base_lr=1e-2, batch_size=4, warmup_frac=0.0)
    optimizer, scheduler, _ = build_optimizer(model, config, total_steps=4)
    imgs = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    noise = torch.rand(4, 16, generator=torch.Generator().manual_seed(2))
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return model, optimizer, scheduler, imgs, noise, scaler


def test_train_step_returns_the_batch_loss_and_moves_weights_and_rate():
    model, optimizer, scheduler, imgs, noise, scaler = _step_setup()
    with torch.no_grad():
        expected, _, _ = model(imgs, mask_ratio=0.75, noise=noise)
    before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    rate_before = optimizer.param_groups[0]["lr"]
    loss = train_step(model, imgs, noise, optimizer, scheduler, scaler, mask_ratio=0.75)
    assert not loss.requires_grad and loss.item() == pytest.approx(expected.item(), rel=1e-5)
    moved = [n for n, p in model.named_parameters() if n in before and not torch.equal(p, before[n])]
    assert "blocks.0.attn.qkv.weight" in moved and "decoder_pred.weight" in moved
    assert optimizer.param_groups[0]["lr"] < rate_before  # the schedule took its next step


def test_train_step_clips_the_gradient_norm():
    norms = {}
    for clip in (None, 1e-3):
        model, optimizer, scheduler, imgs, noise, scaler = _step_setup()
        train_step(model, imgs, noise, optimizer, scheduler, scaler, mask_ratio=0.75, grad_clip=clip)
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        norms[clip] = torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])).item()
    assert norms[None] > 1e-2 and norms[1e-3] == pytest.approx(1e-3, rel=1e-3)
