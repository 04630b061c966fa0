"""The seam refiner: an identity at the start, visible pixels untouched, trained with the
MAE's masked loss without writing a byte of the MAE's files, resumed exactly, saved and loaded
faithfully, and used by evaluate and reconstruct only when the run has one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from mae_utils.pretrained import load_model_from_run
from mae_utils.baselines import blend_seams
from mae_utils.masking import make_mask
from mae_utils.model import MaskedAutoencoder
from mae_utils.tools.evaluate import evaluate_run
from mae_utils.tools.reconstruct import reconstruct_images
from mae_utils.tools.refine import (
    REFINE,
    RefineSettings,
    SeamRefiner,
    load_refiner,
    pasted_prediction,
    refine_loss,
    refine_reconstruction,
    refine_run,
    refiner_files,
)
from mae_utils.transforms import batch_to_input, denormalize
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli
from mae_utils.util.errors import UserError
from mae_utils.util.fileio import file_sha256

from conftest import write_faces
from tiny_runs import cli_error, copy_run

QUIET = dict(progress=False, log=lambda _m: None)
FAST = dict(batch_size=4, lr=3e-3, width=8)


def _mae_files(run: Path) -> dict[str, str]:
    """SHA-256 of every file of the run outside refiner/ (and eval/, which evaluate writes)."""
    return {str(p.relative_to(run)): file_sha256(p) for p in sorted(run.rglob("*"))
            if p.is_file() and p.relative_to(run).parts[0] not in ("refiner", "eval")}  # fmt: skip


@pytest.fixture(scope="module")
def refined(tmp_path_factory, tiny_run) -> tuple[Path, dict[str, str], object]:
    """A copy of the tiny run with a 5-epoch refiner; the MAE's file hashes taken before refining."""
    run = copy_run(tiny_run, tmp_path_factory.mktemp("refined"))
    before = _mae_files(run)
    result = refine_run(run, RefineSettings(epochs=5, **FAST), **QUIET)
    return run, before, result


def _batch(run: Path, n: int = 3):
    model, _ = load_model_from_run(run)
    g = torch.Generator().manual_seed(5)
    imgs = torch.randn(n, 3, model.img_size, model.img_size, generator=g)
    mask = make_mask("random", n, model.img_size // model.patch_size, mask_ratio=0.75, seed=1)
    return model, imgs, mask


def test_a_fresh_refiner_is_the_identity_and_visible_pixels_always_pass_through():
    g = torch.Generator().manual_seed(0)
    pasted = torch.randn(2, 3, 16, 16, generator=g)
    pixel_mask = (torch.rand(2, 1, 16, 16, generator=g) > 0.5).float()
    refiner = SeamRefiner(3, width=8)
    assert torch.equal(refiner(pasted, pixel_mask), pasted)
    with torch.no_grad():
        for p in refiner.parameters():
            p.normal_(0, 0.5, generator=g)
    out = refiner(pasted, pixel_mask)
    visible = (pixel_mask == 0).expand_as(pasted)
    assert torch.equal(out[visible], pasted[visible])
    assert not torch.allclose(out[~visible], pasted[~visible])
    assert refiner.config == {"in_chans": 3, "width": 8, "layers": 4}


def test_the_refiner_loss_at_the_identity_is_the_mae_loss(tiny_run):
    model, imgs, mask = _batch(tiny_run)
    pasted, pixel_mask, used = pasted_prediction(model, imgs, mask)
    assert torch.equal(used, mask)
    loss, _, _ = model(imgs, mask=mask)
    assert refine_loss(pasted, imgs, pixel_mask).item() == pytest.approx(loss.item(), rel=1e-5)
    assert refine_loss(pasted, imgs, pixel_mask, grad_weight=1.0) > refine_loss(pasted, imgs, pixel_mask)


def test_training_lowers_the_masked_loss_and_leaves_the_mae_files_alone(refined):
    run, before, result = refined
    assert _mae_files(run) == before  # weights, checkpoints, config, split: byte for byte
    last = result.history[-1]
    assert last["val_loss"] < last["val_loss_raw"] and last["val_psnr_refined"] > last["val_psnr_raw"]
    assert len(result.history) == 5 and result.weights_path == run / "refiner" / "weights.safetensors"
    keys = set(ckpt.read_header(run / "checkpoints" / "best" / "model.safetensors")[1])
    with torch.device("meta"):
        official = set(MaskedAutoencoder(**ckpt.read_model_config(run / "checkpoints" / "best")).state_dict())
    assert keys == official
    log = (run / "refiner" / "log.txt").read_text()
    assert "refine epoch 5/5" in log and "val masked PSNR raw" in log
    # the training loop's files, as a run's: checkpoints last and best, one metrics line an epoch
    last = ckpt.load_state(run / "refiner" / "checkpoints" / "last", required=ckpt.STATE_TYPES)
    best = ckpt.load_state(run / "refiner" / "checkpoints" / "best", required=ckpt.STATE_TYPES)
    assert last["epoch"] == 5 and last["best_val_loss"] == min(h["val_loss"] for h in result.history)
    assert best["best_val_loss"] == last["best_val_loss"] and best["epoch"] <= 5
    lines = (run / "refiner" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == result.history


def test_two_epochs_equal_one_and_a_resumed_one(tiny_run, tmp_path):
    straight = refine_run(copy_run(tiny_run, tmp_path, "a"), RefineSettings(epochs=2, **FAST), **QUIET)

    def stop_after_first(message: str) -> None:
        if message.startswith("refine epoch 1/2"):
            raise KeyboardInterrupt

    run = copy_run(tiny_run, tmp_path, "b")
    with pytest.raises(KeyboardInterrupt):
        refine_run(run, RefineSettings(epochs=2, **FAST), progress=False, log=stop_after_first)
    resumed = refine_run(run, RefineSettings(epochs=2, **FAST), resume=True, **QUIET)
    a, b = straight.refiner.state_dict(), resumed.refiner.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [h["train_loss"] for h in straight.history] == [h["train_loss"] for h in resumed.history]
    with pytest.raises(UserError, match="width"):
        refine_run(run, RefineSettings(epochs=3, **{**FAST, "width": 16}), resume=True, **QUIET)
    with pytest.raises(UserError, match="already trained 2 epochs"):
        refine_run(run, RefineSettings(epochs=1, **FAST), resume=True, **QUIET)


def test_images_per_epoch_shortens_each_epoch_and_still_resumes_exactly(tiny_run, tmp_path):
    """At 256 px on CPU a full refiner epoch takes over an hour: --images-per-epoch trains on a prefix."""
    short = {**FAST, "images_per_epoch": 5}  # one batch of 4 per epoch (a partial batch is dropped)
    lines: list[str] = []
    straight = refine_run(copy_run(tiny_run, tmp_path, "a"), RefineSettings(epochs=2, **short),
                          progress=False, log=lines.append)
    assert any("1 steps/epoch" in line for line in lines), lines
    state = torch.load(refiner_files(straight.run_dir)["state"], weights_only=False)
    assert state["step"] == 2 and state["settings"]["images_per_epoch"] == 5
    run = copy_run(tiny_run, tmp_path, "b")

    def stop_after_first(message: str) -> None:
        if message.startswith("refine epoch 1/2"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        refine_run(run, RefineSettings(epochs=2, **short), progress=False, log=stop_after_first)
    resumed = refine_run(run, RefineSettings(epochs=2, **short), resume=True, **QUIET)
    a, b = straight.refiner.state_dict(), resumed.refiner.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    another = RefineSettings(epochs=3, **{**short, "images_per_epoch": 8})
    with pytest.raises(UserError, match="different images_per_epoch"):
        refine_run(run, another, resume=True, **QUIET)
    too_few = RefineSettings(epochs=1, **{**FAST, "images_per_epoch": 3})
    with pytest.raises(UserError, match="at least one batch"):
        refine_run(copy_run(tiny_run, tmp_path, "c"), too_few, **QUIET)


def test_save_load_round_trip_and_damaged_files(refined, tiny_run, tmp_path):
    run, _, result = refined
    model, imgs, mask = _batch(run)
    loaded = load_refiner(run, checkpoint="best")
    assert torch.equal(refine_reconstruction(model, loaded, imgs, mask),
                       refine_reconstruction(model, result.refiner, imgs, mask))  # fmt: skip
    assert load_refiner(tiny_run) is None
    broken = copy_run(run, tmp_path, "broken")
    weights = refiner_files(broken)["weights"]
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(UserError, match="weights.safetensors"):
        load_refiner(broken)
    weights.unlink()
    with pytest.raises(UserError, match="weights.safetensors is missing"):
        load_refiner(broken)
    state = refiner_files(broken)["state"]
    state.write_bytes(b"")
    with pytest.raises(UserError, match="state.pt"):
        refine_run(broken, RefineSettings(epochs=6, **FAST), resume=True, **QUIET)


def test_evaluate_has_the_refined_row_only_with_a_refiner(refined, tiny_run, tmp_path):
    run, _, _ = refined
    settings = dict(baselines=("mean_fill",), limit=3, progress=False)
    res = evaluate_run(run, out_dir=tmp_path / "ev", **settings)
    assert list(res.summary) == ["model", "model+blend", REFINE, "mean_fill"]
    assert set(res.paired_refine) == {"model", "model+blend", "mean_fill"}
    assert f"{REFINE} - model:" in res.table
    record = json.loads(res.json_path.read_text())
    assert REFINE in record["summary"] and record["refiner"]["config"]["width"] == 8
    assert set(record["paired_refine_minus_other_psnr_masked"]) == {"model", "model+blend", "mean_fill"}
    without = evaluate_run(run, refine=False, write=False, **settings)
    assert REFINE not in without.summary and without.paired_refine == {}
    assert torch.equal(without.per_image["model"]["psnr_masked"], res.per_image["model"]["psnr_masked"])
    assert REFINE not in evaluate_run(tiny_run, write=False, **settings).summary


def test_the_refined_output_is_the_refiners_made_seam_free(refined):
    run, _, result = refined
    model, imgs, mask = _batch(run, n=2)
    photos = denormalize(imgs).clamp(0, 1)
    out = reconstruct_images(model, photos, mask=mask, refiner=result.refiner)
    as_input = batch_to_input((out["original"] * 255).round().to(torch.uint8))
    raw = refine_reconstruction(model, result.refiner, as_input, mask).clamp(0, 1)
    expected = blend_seams(out["original"], out["pixel_mask"], raw, model.patch_size)
    assert torch.allclose(out["recon_refine"], expected, atol=1e-5)
    visible = out["pixel_mask"].expand_as(expected) < 0.5
    assert torch.equal(out["recon_refine"][visible], out["original"][visible])
    assert out["blockiness_refine"].shape == (2,) and "recon_refine" not in reconstruct_images(model, photos, mask=mask)


def test_reconstruct_shows_the_refined_output_unless_raw(refined, tmp_path, capsys):
    run, _, _ = refined
    photos = [str(p) for p in write_faces(tmp_path / "photos", n=2)]
    argv = ["reconstruct", "--run", str(run), "--images", *photos, "--device", "cpu", "--out"]
    assert cli.main([*argv, str(tmp_path / "a.png")]) == 0
    assert "| refined:" in capsys.readouterr().out
    assert cli.main([*argv, str(tmp_path / "b.png"), "--raw"]) == 0
    assert "refined" not in capsys.readouterr().out


def test_command_line_errors(refined, tiny_run, tmp_path, capsys):
    run, _, _ = refined
    assert "does not exist" in cli_error(capsys, ["refine", "--run", str(tmp_path / "nope")])
    assert "epochs must be a positive integer" in cli_error(capsys, ["refine", "--run", str(run), "--epochs", "0"])
    assert "width must be a positive integer" in cli_error(capsys, ["refine", "--run", str(run), "--width", "0"])
    held = cli_error(capsys, ["refine", "--run", str(run)])
    assert "already holds a refiner" in held and "--resume" in held and "--overwrite" in held
    norm = copy_run(tiny_run, tmp_path, "norm")
    config = json.loads((norm / "config.json").read_text())
    (norm / "config.json").write_text(json.dumps({**config, "norm_pix_loss": True}))
    assert "norm_pix_loss" in cli_error(capsys, ["refine", "--run", str(norm)])
    assert not (norm / "refiner").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert cli_error(capsys, ["refine", "--run", str(empty)]).startswith("error: ")


def test_resume_takes_the_saved_settings_and_a_refused_resume_writes_nothing(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    settings = {**FAST, "images_per_epoch": 5}  # none of them the command line's defaults

    def stop_after_second(message: str) -> None:
        if message.startswith("refine epoch 2/3"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        refine_run(run, RefineSettings(epochs=3, **settings), progress=False, log=stop_after_second)
    log = refiner_files(run)["log"]
    before = log.read_bytes()
    width = cli_error(capsys, ["refine", "--run", str(run), "--resume", "--width", "16"])
    assert "different width (saved: width 8)" in width and "leave it out" in width and "--overwrite" in width
    undo = cli_error(capsys, ["refine", "--run", str(run), "--resume", "--epochs", "1"])
    assert "already trained 2 epochs" in undo
    assert log.read_bytes() == before  # neither refusal wrote a line
    assert cli.main(["refine", "--run", str(run), "--resume"]) == 0
    state = torch.load(refiner_files(run)["state"], weights_only=False)
    assert state["epoch"] == 3 and state["settings"] == {**state["settings"], **settings, "epochs": 3}
    assert log.read_text().count("resumed after epoch 2") == 1


@pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad")  # the planted NaN loss
def test_a_failure_after_the_start_is_logged_and_a_refused_first_start_leaves_no_folder(tiny_run, tmp_path,
                                                                                        capsys, monkeypatch):
    run = copy_run(tiny_run, tmp_path)
    assert "at least one batch" in cli_error(capsys, ["refine", "--run", str(run), "--images-per-epoch", "3"])
    assert "cannot be continued" not in cli_error(capsys, ["refine", "--run", str(run), "--resume"])
    assert not refiner_files(run)["folder"].exists()
    import mae_utils.tools.refine as refine_module

    monkeypatch.setattr(refine_module, "refine_loss", lambda *a, **k: torch.tensor(float("nan"), requires_grad=True))
    err = cli_error(capsys, ["refine", "--run", str(run), "--batch-size", "4", "--width", "8"])
    assert "the refiner's loss became nan" in err
    assert refiner_files(run)["log"].read_text().splitlines()[-1] == err


def test_a_refiner_without_its_state_names_overwrite(refined, tmp_path, capsys):
    run = copy_run(refined[0], tmp_path)
    refiner_files(run)["state"].unlink()
    err = cli_error(capsys, ["refine", "--run", str(run), "--resume"])
    assert "cannot be continued" in err and f"refine --run {run} --overwrite" in err and "leave out" not in err
    assert cli.main(["refine", "--run", str(run), "--overwrite", "--epochs", "1", "--batch-size", "4"]) == 0
    assert refiner_files(run)["state"].is_file()


def test_damaged_refiner_weights_name_both_ways_out(refined, tmp_path, capsys):
    run = copy_run(refined[0], tmp_path)
    weights = refiner_files(run)["weights"]
    weights.write_bytes(weights.read_bytes()[:-50])
    photo = str(write_faces(tmp_path / "photos", n=1)[0])
    for argv in (["evaluate", "--run", str(run), "--limit", "2", "--baselines", "mean_fill", "--device", "cpu"],
                 ["reconstruct", "--run", str(run), "--images", photo, "--out", str(tmp_path / "r.png"), "--blend",
                  "--device", "cpu"]):
        err = cli_error(capsys, argv)
        assert "weights.safetensors" in err and f"refine --run {run} --overwrite" in err and "--no-refine" in err
        assert cli.main([*argv, "--no-refine"]) == 0


def test_sigterm_during_refine_says_how_to_continue(tiny_run, tmp_path):
    """A stop after the first epoch's save: exit 130 as train, one line naming --resume, the same in
    the refiner's log, and --resume finishes the job."""
    import subprocess
    import sys

    from tiny_runs import ROOT, subprocess_env

    run = copy_run(tiny_run, tmp_path)
    script = (
        "import os, signal, sys\n"
        "from mae_utils.app import cli\n"
        "from mae_utils.tools import refine\n"
        "real = refine._publish\n"
        "def save_then_stop(job):\n"
        "    real(job)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "refine._publish = save_then_stop\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, "refine", "--run", str(run), "--batch-size", "4", "--width",
                           "8"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 130 and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr)
    last = proc.stderr.strip().splitlines()[-1]
    assert last == f"stopped (SIGTERM); 1 epoch(s) saved: continue with python -m mae_utils refine --run {run} --resume"
    assert refiner_files(run)["log"].read_text().splitlines()[-1] == last
    assert cli.main(["refine", "--run", str(run), "--resume"]) == 0
    assert torch.load(refiner_files(run)["state"], weights_only=False)["epoch"] == 2
