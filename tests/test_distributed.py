"""torchrun / DistributedDataParallel on CPU (gloo): two processes train like one on the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mae_utils.train import TrainConfig, fit

from conftest import TINY_MODEL

REPO = Path(__file__).resolve().parents[1]

# A small model and data set: 16 images -> 12 train / 2 val / 2 test; per-process batch 4, so the
# 2-process run and the 1-process run with batch 8 take exactly one step on the same 8 images.
ARGS = dict(TINY_MODEL, max_images=16, val_frac=0.125, test_frac=0.125, epochs=1, augment=False,
            sample_every=0, device="cpu", seed=3, base_lr=1e-3, warmup_frac=0.0)  # fmt: skip


@pytest.mark.slow
def test_two_gloo_processes_match_one(tmp_path):
    out2 = tmp_path / "ddp"
    flags = []
    for k, v in {**ARGS, "batch_size": 4, "out_dir": str(out2)}.items():
        flag = "--" + k.replace("_", "-")
        flags += [flag] if v is True else [f"--no-{k.replace('_', '-')}"] if v is False else [flag, str(v)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "mae_utils", "train", *flags]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]

    single = fit(TrainConfig(**ARGS, batch_size=8, out_dir=str(tmp_path / "single")))
    lines = [json.loads(x) for x in (out2 / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 1  # rank 0 alone writes
    ddp = lines[0]
    assert ddp["step"] == single.metrics["step"] == 1
    cfg = json.loads((out2 / "config.json").read_text())
    assert cfg["runtime"]["world_size"] == 2
    assert sorted(p.name for p in (out2 / "checkpoints").iterdir()) == ["best", "last"]
    # the loss of the first step (same 8 images, same masks) and the validation loss after it
    assert ddp["train_loss"] == pytest.approx(single.metrics["train_loss"], rel=1e-5)
    assert ddp["val_loss"] == pytest.approx(single.metrics["val_loss"], rel=1e-4)
    assert ddp["lr"] == pytest.approx(single.metrics["lr"], rel=1e-9)  # lr scaled by the effective batch
    assert (out2 / "log.txt").read_text().count("epoch 1/1:") == 1
