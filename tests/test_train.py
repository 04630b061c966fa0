"""fit(): the run directory, exact resume, non-finite losses, the train command."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
import torch

from mae_utils.pretrained import load_model
from mae_utils import train as train_mod
from mae_utils.model import MaskedAutoencoder
from mae_utils.train import FitResult, NonFiniteLossError, TrainConfig, fit
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli

from tiny_runs import TINY, cli_error, copy_run

from conftest import TINY_MODEL

# about a second per epoch on 2 shared CPU cores: the shared tiny model (conftest.py), every augmentation on
SMALL = dict(TINY_MODEL, max_images=40, batch_size=8, epochs=3, device="cpu", base_lr=1e-3, seed=5,
             crop_scale_min=0.35, crop_scale_max=3.0, grey_prob=0.3, color_jitter=0.3,
             crop_scale_draw="log", zoom_fill="photo")  # fmt: skip


def _weights(run_dir, which="last"):
    return ckpt.load_model_state(run_dir / "checkpoints" / which)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory) -> FitResult:
    """Three epochs, never stopped (every augmentation on, zoom in and out with another photo as the
    surround, grey, colour: its draws, and the backgrounds they pick, must be reproduced too)."""
    return fit(TrainConfig(**SMALL, out_dir=str(tmp_path_factory.mktemp("full") / "run")))


@pytest.mark.slow
def test_run_directory_layout(full_run):
    run = full_run.run_dir
    for name in ("config.json", "split.json", "metrics.jsonl", "log.txt"):
        assert (run / name).is_file(), name
    for which in ("last", "best"):
        assert {p.name for p in (run / "checkpoints" / which).iterdir()} == {"model.safetensors", "state.pt"}
    assert len(list((run / "samples").glob("*.png"))) == 3
    config = json.loads((run / "config.json").read_text())
    assert config["image_size"] == 32 and config["model"]["embed_dim"] == TINY_MODEL["embed_dim"]
    assert config["runtime"]["device"] == "cpu" and "torch" in config["runtime"]["versions"]
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3] and lines == full_run.history
    for key in ("train_loss", "val_loss", "val_psnr_masked", "lr", "images_per_s", "seconds"):
        assert all(isinstance(x[key], float) for x in lines), key
    assert lines[-1]["val_loss"] < lines[0]["val_loss"]  # it learns (val: unaugmented, fixed masks)
    assert full_run.best_val_loss == min(x["val_loss"] for x in lines)
    assert 5.0 < lines[-1]["val_psnr_masked"] < 60.0
    assert "epoch 3/3" in (run / "log.txt").read_text()
    model = load_model(run / "checkpoints" / "best")
    assert isinstance(model, MaskedAutoencoder) and model.img_size == 32


@pytest.mark.slow
def test_resume_after_crash_matches_uninterrupted(full_run, tmp_path, monkeypatch):
    cfg = TrainConfig(**SMALL, out_dir=str(tmp_path / "run"))
    real_epoch = train_mod._train_epoch

    def crash_in_third_epoch(run, epoch, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt("simulated crash")
        return real_epoch(run, epoch, **kwargs)

    monkeypatch.setattr(train_mod, "_train_epoch", crash_in_third_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg)
    monkeypatch.undo()
    assert ckpt.load_state(tmp_path / "run" / "checkpoints" / "last")["epoch"] == 2

    resumed = fit(cfg, resume=True)
    a, b = _weights(full_run.run_dir), _weights(resumed.run_dir)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    drop = lambda h: [{k: v for k, v in x.items() if k not in ("seconds", "images_per_s")} for x in h]  # noqa: E731
    assert drop(resumed.history) == drop(full_run.history)
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 3


@pytest.mark.slow
def test_fresh_run_refuses_existing_dir_and_resume_can_extend(full_run, tmp_path):
    cfg = TrainConfig(**SMALL, out_dir=str(full_run.run_dir))
    with pytest.raises(ValueError, match="already holds a run"):
        fit(cfg)
    with pytest.raises(ValueError, match="image_size"):
        fit(dataclasses.replace(cfg, image_size=48), resume=True)
    # extend by one epoch through the command line (a copy, so other tests see the original)
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(full_run.run_dir, copy)
    assert cli.main(["train", "--resume", str(copy), "--epochs", "4"]) == 0
    lines = [json.loads(x) for x in (copy / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2, 3, 4]
    assert json.loads((copy / "config.json").read_text())["epochs"] == 4
    assert cli.main(["train", "--resume", str(copy), "--image-size", "48"]) == 2


@pytest.mark.slow
def test_non_finite_loss_stops_and_keeps_last_good(tmp_path, monkeypatch):
    real_epoch = train_mod._train_epoch
    real_loss = MaskedAutoencoder.forward_loss
    poisoned = {"on": False}

    def epoch_hook(run, epoch, **kwargs):
        poisoned["on"] = epoch == 1
        return real_epoch(run, epoch, **kwargs)

    def loss(self, imgs, pred, mask):
        value = real_loss(self, imgs, pred, mask)
        return value * float("nan") if poisoned["on"] else value

    monkeypatch.setattr(train_mod, "_train_epoch", epoch_hook)
    monkeypatch.setattr(MaskedAutoencoder, "forward_loss", loss)
    run_dir = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"nan.*epoch 2.*last good checkpoint \(epoch 1\)"):
        fit(TrainConfig(**{**SMALL, "epochs": 2}, out_dir=str(run_dir)))
    state = ckpt.load_state(run_dir / "checkpoints" / "last")
    assert state["epoch"] == 1
    assert all(torch.isfinite(v).all() for v in _weights(run_dir).values())
    assert "error: training loss became nan" in (run_dir / "log.txt").read_text()


# ---------------------------------------------------------------------- faults
def test_resume_with_fewer_epochs_than_done(tmp_path, tiny_run, capsys):
    run = copy_run(tiny_run, tmp_path)
    err = cli_error(capsys, ["train", "--resume", str(run), "--epochs", "1"])
    assert "has already trained 2 epochs; --epochs 1 cannot undo them: give --epochs 2 or more" in err
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 2  # untouched


@pytest.mark.slow
def test_the_advice_after_a_non_finite_loss_works(tmp_path, faces, monkeypatch):
    real_epoch, real_loss = train_mod._train_epoch, MaskedAutoencoder.forward_loss
    poisoned = {"on": False}

    def epoch_hook(run, epoch, **kwargs):
        poisoned["on"] = epoch == 1 and run.config.base_lr > 5e-4  # only the too-fast setting diverges
        return real_epoch(run, epoch, **kwargs)

    monkeypatch.setattr(train_mod, "_train_epoch", epoch_hook)
    monkeypatch.setattr(MaskedAutoencoder, "forward_loss",
                        lambda self, *a: real_loss(self, *a) * (float("nan") if poisoned["on"] else 1.0))  # fmt: skip
    run = tmp_path / "run"
    with pytest.raises(NonFiniteLossError) as info:
        fit(TrainConfig(**TINY, data_dir=str(faces), out_dir=str(run), cache_dir="off"))
    advice = str(info.value).split("continue from it with a lower learning rate: ")[1]
    assert advice == f"--resume {run} --base-lr 0.0001"
    assert cli.main(["train", *advice.split()]) == 0  # exactly what it said
    assert json.loads((run / "config.json").read_text())["base_lr"] == 1e-4
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == 2
    assert "base_lr 0.001 -> 0.0001 from step" in (run / "log.txt").read_text()



# ---------------------------------------------------------------------- mistakes a user makes
@pytest.mark.parametrize("value", ["", "  "])
def test_an_empty_resume_is_an_error_not_a_new_run(tmp_path, capsys, monkeypatch, value):
    monkeypatch.chdir(tmp_path)
    err = cli_error(capsys, ["train", "--resume", value])
    assert "--resume needs a run folder" in err
    assert list(tmp_path.iterdir()) == []  # no runs/mae started


@pytest.mark.slow
def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    """A scheduler's stop: the epoch in flight is abandoned, the lock released, --resume continues."""
    import signal
    import subprocess
    import sys
    import time

    from mae_utils.util.rundir import LOCK_FILE
    from tiny_runs import ROOT, TINY_FLAGS, subprocess_env

    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "mae_utils", "train", "--out-dir", str(run), "--max-images", "64",
                             *TINY_FLAGS, "--epochs", "200"], cwd=ROOT, env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "metrics.jsonl").is_file() or not (run / "metrics.jsonl").read_text():
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=60)[1]
    assert proc.returncode == 130 and "Traceback" not in err, err
    assert "stopped (SIGTERM)" in err and not (run / LOCK_FILE).exists()
    done = ckpt.load_state(run / "checkpoints" / "last")["epoch"]
    assert cli.main(["train", "--resume", str(run), "--epochs", str(done + 1)]) == 0
    assert ckpt.load_state(run / "checkpoints" / "last")["epoch"] == done + 1


def test_a_non_finite_loss_error_is_printed_once(tmp_path, capsys, monkeypatch):
    from tiny_runs import TINY_FLAGS

    real_loss = MaskedAutoencoder.forward_loss
    monkeypatch.setattr(MaskedAutoencoder, "forward_loss", lambda self, *a: real_loss(self, *a) * float("nan"))
    capsys.readouterr()
    assert cli.main(["train", "--out-dir", str(tmp_path / "run"), "--max-images", "24", *TINY_FLAGS]) == 2
    captured = capsys.readouterr()
    assert (captured.out + captured.err).count("training loss became") == 1, captured
    assert "error: training loss became" in captured.err


def test_sigterm_during_data_preparation_is_handled_like_ctrl_c(tmp_path):
    """A stop before the first epoch (while the data is prepared) also ends cleanly: exit 130, no lock,
    and the folder left as it was found (this attempt created it, so it is gone)."""
    import subprocess
    import sys

    from tiny_runs import ROOT, TINY_FLAGS, subprocess_env

    run = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "from mae_utils import splits\n"
        "from mae_utils.app import cli\n"
        "real = splits.prepare_data\n"
        "def stopped_here(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "splits.prepare_data = stopped_here\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "train", "--out-dir", str(run), "--max-images", "24",
                           *TINY_FLAGS], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    assert "stopped (SIGTERM)" in proc.stderr and "--resume" in proc.stderr
    assert not run.exists()  # no lock, no leftovers: the attempt removed the folder it made
