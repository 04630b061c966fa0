"""Short and small runs: 1-step, 1-epoch and tiny-folder runs, and the one training step that ``fit``
and the notebook share (the One-Cycle plan itself: test_optim)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from mae_utils import optim
from mae_utils import train as train_mod
from mae_utils.optim import DIV_FACTOR, FINAL_DIV_FACTOR
from mae_utils.train import TrainConfig, fit

from conftest import TINY_MODEL

ROOT = Path(__file__).resolve().parents[1]
TINY = dict(TINY_MODEL, device="cpu", base_lr=1e-3, sample_every=0)
LAST = 1 / DIV_FACTOR / FINAL_DIV_FACTOR


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
