"""Short and small runs: the One-Cycle plan for any step count, 1-step, 1-epoch and tiny-folder runs,
and the one training step that ``fit`` and the notebook share."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mae_utils import optim
from mae_utils import train as train_mod
from mae_utils.optim import DIV_FACTOR, FINAL_DIV_FACTOR, one_cycle_plan
from mae_utils.train import TrainConfig, fit, plan_batches

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(TINY_MODEL, device="cpu", base_lr=1e-3, sample_every=0)
FIRST, LAST = 1 / DIV_FACTOR, 1 / DIV_FACTOR / FINAL_DIV_FACTOR


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
        assert factors[0] == pytest.approx(FIRST) and factors[0] < factors[1]  # at least one warm-up step
    if warmup_frac > 0 and total < 3:
        assert factors[0] == 1.0 and "too few" in note
    if warmup_frac == 0:
        assert factors[0] == 1.0


def test_one_epoch_of_400_photos_at_batch_32_has_a_schedule():
    """The case that divided by zero inside OneCycleLR: 320 training photos, batch 32, warm-up 0.1."""
    batch, steps, warning = plan_batches(320, 32)
    assert (batch, steps, warning) == (32, 10, None)
    with pytest.raises(ZeroDivisionError):  # the trap this plan replaces
        sched = torch.optim.lr_scheduler.OneCycleLR(torch.optim.SGD([torch.zeros(1, requires_grad=True)]),
                                                    max_lr=1.0, total_steps=steps, pct_start=0.1)  # fmt: skip
    plan, note = one_cycle_plan(steps, 0.1)
    assert plan(0) == pytest.approx(FIRST) and plan(1) == 1.0 and "one warm-up step" in note


def test_long_plans_match_torch_one_cycle():
    total, frac = 500, 0.1
    plan, note = one_cycle_plan(total, frac)
    assert note is None
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=total, pct_start=frac,
                                              anneal_strategy="cos", cycle_momentum=False)  # fmt: skip
    for k in range(total):
        assert plan(k) == pytest.approx(ref.get_last_lr()[0], rel=1e-9, abs=1e-15)
        opt.step()
        ref.step()


def test_batch_larger_than_the_split_is_clamped():
    assert plan_batches(20, 64) == (20, 1, "warning: batch_size 64 is more than the 20 training images; "
                                           "using batch_size 20")  # fmt: skip
    assert plan_batches(21, 8, world=2)[:2] == (8, 1)
    assert plan_batches(5, 8, world=2)[0] == 3
    assert "per process" in plan_batches(5, 8, world=2)[2]


def _lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_one_step_run_trains_with_the_shared_step(tmp_path, monkeypatch):
    """A run of exactly one optimiser step; fit's steps go through optim.train_step (one home)."""
    calls = []
    real = optim.train_step

    def counting(*args, **kwargs):
        calls.append(kwargs["mask_ratio"])
        return real(*args, **kwargs)

    monkeypatch.setattr(train_mod, "train_step", counting)
    cfg = TrainConfig(**TINY, max_images=10, batch_size=8, epochs=1, out_dir=str(tmp_path / "run"))
    result = fit(cfg)
    assert calls == [0.75]
    (line,) = _lines(result.run_dir)
    assert line["step"] == 1 and math.isfinite(line["train_loss"])
    assert line["lr"] == pytest.approx(1e-3 * 8 / 256)  # one step: no warm-up, the peak rate
    assert "too few for a warm-up" in (result.run_dir / "log.txt").read_text()


def test_tiny_folder_trains_with_a_clamped_batch(tmp_path):
    faces = tmp_path / "faces"
    subprocess.run([sys.executable, "-m", "mae_utils", "synth", "--out", str(faces), "--n", "12", "--size", "32"],
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    cfg = TrainConfig(**TINY, data_dir=str(faces), cache_dir=str(tmp_path / "cache"), batch_size=64, epochs=2,
                      out_dir=str(tmp_path / "run"))  # fmt: skip
    result = fit(cfg)
    log = (result.run_dir / "log.txt").read_text()
    assert "warning: batch_size 64 is more than the 10 training images; using batch_size 10" in log
    assert json.loads((result.run_dir / "config.json").read_text())["batch_size"] == 10  # what ran
    lines = _lines(result.run_dir)
    assert [x["step"] for x in lines] == [1, 2]
    assert lines[-1]["lr"] == pytest.approx(1e-3 * 10 / 256 * LAST)  # the schedule's last rate


@pytest.mark.slow
def test_one_epoch_with_a_one_step_warm_up_ends_on_the_schedule(tmp_path):
    """10 steps at warm-up 0.1 (OneCycleLR's ZeroDivisionError): trains; the lr logged is the last step's."""
    cfg = TrainConfig(**TINY, max_images=100, val_frac=0.1, test_frac=0.1, batch_size=8, epochs=1,
                      out_dir=str(tmp_path / "run"))  # fmt: skip
    result = fit(cfg)
    (line,) = _lines(result.run_dir)
    assert line["step"] == 10
    assert line["lr"] == pytest.approx(1e-3 * 8 / 256 * LAST)
    assert "warming up for one step" in (result.run_dir / "log.txt").read_text()
