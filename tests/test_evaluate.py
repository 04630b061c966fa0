"""The evaluate and reconstruct commands: which images are scored, that every method sees the same
mask, that numbers match an independent computation, and the command-line behaviour."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from mae_utils.baselines import inpaint_mean_fill
from mae_utils.data import SyntheticFaces
from mae_utils.masking import make_mask
from mae_utils.metrics import PSNR_MAX_DB, patch_mask_to_pixel_mask, psnr_masked
from mae_utils.model import patchify, unpatchify
from mae_utils.tools.evaluate import ZoomedOut, evaluate_model, evaluate_run, format_table
from mae_utils.tools.reconstruct import prepare_images, reconstruct_images
from mae_utils.train import TrainConfig, fit
from mae_utils.transforms import batch_to_input, denormalize
from mae_utils.app import cli
from mae_utils.util.errors import UserError

from conftest import TINY_MODEL, write_faces
from tiny_runs import cli_error, copy_run

# one quick epoch on 2 shared CPU cores: 32 px images, 8 px patches (16 patches), a 1-block encoder
SMALL = dict(TINY_MODEL, max_images=40, batch_size=8, epochs=1, device="cpu", base_lr=1e-3, seed=3, sample_every=0)
FAST = ("mean_fill", "harmonic")  # biharmonic is checked once, it is the slow one


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return fit(TrainConfig(**SMALL, out_dir=str(tmp_path_factory.mktemp("ev") / "run")), log=lambda _m: None).run_dir


class Oracle(nn.Module):
    """Predicts every patch exactly (the input's own pixels): the pipeline must then score 100 dB."""

    def __init__(self, img_size: int = 32, patch_size: int = 8):
        super().__init__()
        self.img_size, self.patch_size, self.in_chans, self.norm_pix_loss = img_size, patch_size, 3, False
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls: list[torch.Tensor] = []

    def forward(self, imgs, mask_ratio=0.75, noise=None, mask=None):
        self.calls.append(mask.clone())
        return torch.zeros(()), patchify(imgs, self.patch_size), mask

    def unpatchify(self, pred):
        return unpatchify(pred, self.patch_size, self.img_size)

    def prediction_to_images(self, pred, imgs):
        return self.unpatchify(pred.float())


def _faces(n: int = 5, size: int = 32, seed: int = 9) -> SyntheticFaces:
    return SyntheticFaces(n, size, seed, progress=False)


# ---------------------------------------------------------------------- evaluate_model
def test_oracle_scores_perfectly_and_baselines_see_the_same_masks():
    ds, model = _faces(), Oracle()
    res = evaluate_model(model, ds, baselines=FAST, batch_size=3, seed=4, progress=False, keep_images=True)
    assert res.n_images == 5 and res.hidden_fraction == 0.75
    assert torch.allclose(res.per_image["model"]["psnr_masked"], torch.full((5,), PSNR_MAX_DB), atol=0.5)
    assert torch.equal(torch.cat(model.calls), res.masks)  # the model got exactly the recorded masks
    assert torch.equal(res.masks, make_mask("random", 5, 4, mask_ratio=0.75, seed=4))
    # mean fill recomputed independently on those masks
    orig = denormalize(torch.stack([ds[i] for i in range(5)]))
    pm = patch_mask_to_pixel_mask(res.masks, 8, 32)
    expected = psnr_masked(inpaint_mean_fill(orig, pm), orig, pm)
    assert torch.allclose(res.per_image["mean_fill"]["psnr_masked"], expected, atol=1e-4)
    assert torch.allclose(res.images["mean_fill"], inpaint_mean_fill(orig, pm), atol=1e-6)
    # summary and paired difference follow from the per-image values
    diff = res.per_image["model"]["psnr_masked"].double() - expected.double()
    assert res.paired["mean_fill"]["mean"] == pytest.approx(float(diff.mean()), abs=1e-3)
    assert res.summary["harmonic"]["psnr_masked"]["mean"] == pytest.approx(
        float(res.per_image["harmonic"]["psnr_masked"].double().mean()), abs=1e-5
    )


def test_results_do_not_depend_on_batch_size_and_limit_is_a_seeded_subset():
    ds = _faces(7)
    a = evaluate_model(Oracle(), ds, baselines=("mean_fill",), batch_size=1, progress=False)
    b = evaluate_model(Oracle(), ds, baselines=("mean_fill",), batch_size=64, progress=False)
    assert torch.equal(a.masks, b.masks)
    assert torch.allclose(a.per_image["mean_fill"]["psnr_masked"], b.per_image["mean_fill"]["psnr_masked"])
    c = evaluate_model(Oracle(), ds, baselines=(), limit=3, seed=1, progress=False)
    d = evaluate_model(Oracle(), ds, baselines=(), limit=3, seed=1, progress=False)
    e = evaluate_model(Oracle(), ds, baselines=(), limit=3, seed=2, progress=False)
    assert c["indices"] == d["indices"] and len(c["indices"]) == 3 and c["indices"] == sorted(c["indices"])
    assert c["indices"] != e["indices"]  # the seed picks the subset (not simply the first three)
    assert c["names"] == [ds.names[i] for i in c["indices"]]


def test_structured_mask_is_the_same_for_every_image_and_bad_input_is_refused():
    res = evaluate_model(Oracle(), _faces(3), mask="left", baselines=FAST, progress=False)
    assert torch.equal(res.masks, make_mask("left", 3, 4))
    assert res.hidden_fraction == 0.5
    with pytest.raises(UserError, match="unknown baseline"):
        evaluate_model(Oracle(), _faces(2), baselines=("telea",), progress=False)
    with pytest.raises(UserError, match="mask kind"):
        evaluate_model(Oracle(), _faces(2), mask="nose", progress=False)
    with pytest.raises(UserError, match="patch indices"):
        evaluate_model(Oracle(), _faces(2), mask="patches", patches=[99], progress=False)


def test_trained_model_scores_match_an_independent_forward_pass(run_dir):
    from mae_utils import load_model_from_run

    model, _ = load_model_from_run(run_dir)
    ds = _faces(4)
    res = evaluate_model(model, ds, baselines=(), seed=2, progress=False)
    imgs = batch_to_input(torch.stack([ds[i] for i in range(4)]))
    with torch.no_grad():
        _, pred, _ = model(imgs, mask=res.masks)
    recon = denormalize(model.unpatchify(pred))
    orig = denormalize(imgs)
    pm = patch_mask_to_pixel_mask(res.masks, 8, 32)
    expected = psnr_masked(recon, orig, pm)
    assert torch.allclose(res.per_image["model"]["psnr_masked"], expected, atol=1e-4)
    assert (expected < 60).all()  # a real, imperfect model


# ---------------------------------------------------------------------- evaluate_run and the command
def test_evaluate_run_scores_the_held_out_split_and_writes_json_and_figure(run_dir):
    res = evaluate_run(run_dir, baselines=("mean_fill", "harmonic", "biharmonic"), progress=False)
    split = json.loads((run_dir / "split.json").read_text())
    assert res.names == split["test"] and res.data["split"] == "test"
    assert not set(res.names) & set(split["train"])
    record = json.loads(res.json_path.read_text())
    assert res.json_path.name == "test_random75_best.json" and res.figure_path.is_file()
    assert set(record["summary"]) == {"model", "model+blend", "mean_fill", "harmonic", "biharmonic"}
    assert set(record["summary"]["model"]) >= {"psnr_masked", "ssim_masked", "blockiness", "detail"}
    assert set(record["paired_blend_minus_other_psnr_masked"]) == {"model", "mean_fill", "harmonic", "biharmonic"}
    assert record["names"] == split["test"] and record["data"]["n_images"] == len(split["test"])
    vals = record["per_image"]["biharmonic"]["psnr_masked"]
    assert record["summary"]["biharmonic"]["psnr_masked"]["mean"] == pytest.approx(np.mean(vals), abs=1e-3)
    assert record["best_baseline"] in ("mean_fill", "harmonic", "biharmonic")
    assert res.images is None  # only kept when asked
    for method in ("model", "model+blend", "mean_fill", "harmonic", "biharmonic"):
        assert any(line.startswith(method + " ") for line in res.table.splitlines())
    assert "blockiness" in res.table and "model+blend - model:" in res.table
    assert res["table"] is res.table and res["names"] is res.names  # dict-style reads of older notebooks
    with pytest.raises(KeyError):
        res["nope"]
    val = evaluate_run(run_dir, split="val", mask="center", baselines=FAST, write=False, progress=False)
    assert val.names == split["val"] and val.json_path is None


def test_evaluate_on_another_folder_uses_all_its_images(run_dir, face_folder):
    folder = face_folder("other_faces", n=6, size=40, seed=77)
    (folder / "notes.txt").write_text("not an image")
    res = evaluate_run(run_dir, data_dir=folder, baselines=("mean_fill",), progress=False,
                       mask="eyes", name="other")  # fmt: skip
    assert res.n_images == 6 and res.data["source"] == "folder" and res.data["split"] == "all"
    assert sorted(res.names) == [f"face_{i}.png" for i in range(6)]
    assert (run_dir / "eval" / "other.json").is_file()
    # a split only selects from the run's own data: with another folder it is refused, not ignored
    with pytest.raises(UserError, match="--split val selects from the run's own data"):
        evaluate_run(run_dir, data_dir=folder, split="val", baselines=("mean_fill",), progress=False, write=False)


def test_evaluate_cli_prints_the_table_and_reports_user_errors(run_dir, tmp_path, capsys):
    assert cli.main(["evaluate", "--run", str(run_dir), "--limit", "3", "--baselines", "mean_fill",
                     "--mask", "mouth", "--name", "cli"]) == 0  # fmt: skip
    out = capsys.readouterr().out
    assert "PSNR masked (dB)" in out and "mean_fill" in out and "model - mean_fill" in out
    assert json.loads((run_dir / "eval" / "cli.json").read_text())["data"]["n_images"] == 3
    assert cli.main(["evaluate", "--run", str(tmp_path / "nope")]) == 2
    assert "nope" in capsys.readouterr().err
    assert cli.main(["evaluate", "--run", str(run_dir), "--limit", "0"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_zoomed_out_faces_sit_in_another_evaluation_photo_seeded(run_dir, capsys):
    faces = _faces(6)
    zoomed = ZoomedOut(faces, 0.5, "photo", seed=4)
    again = ZoomedOut(faces, 0.5, "photo", seed=4)
    others = [zoomed.other(i) for i in range(6)]
    assert all(j != i for i, j in enumerate(others)) and others == [again.other(i) for i in range(6)]
    assert others != [ZoomedOut(faces, 0.5, "photo", seed=5).other(i) for i in range(6)]
    for i in (0, 3):
        item, behind = zoomed[i], faces[others[i]]
        assert item.dtype == torch.uint8 and item.shape == faces[i].shape
        assert (item[:, :2, :2].float() - behind[:, :2, :2].float()).abs().max() <= 1  # the corner: the other photo
        assert not torch.equal(item, faces[i])
    res = evaluate_run(run_dir, baselines=("mean_fill",), progress=False, zoom_out_side=0.5, limit=3)
    assert res.json_path.name == "test_zoom50photo_random75_best.json" and "shrunk to 0.5" in res.table
    assert json.loads(res.json_path.read_text())["data"]["zoom_fill"] == "photo"
    assert cli.main(["evaluate", "--run", str(run_dir), "--zoom-out", "1.5", "--limit", "2"]) == 2
    assert "--zoom-out" in capsys.readouterr().err


def test_format_table_handles_a_single_image():
    res = evaluate_model(Oracle(), _faces(1), baselines=("mean_fill",), progress=False)
    text = format_table(res, "one")
    assert "n/a" in text and text.splitlines()[0] == "one"


# ---------------------------------------------------------------------- reconstruct
def _write_photos(folder, n=2, size=48):
    return write_faces(folder, n=n, size=size, seed=5, prefix="p")


def test_reconstruct_images_panels_are_consistent(tmp_path):
    paths = _write_photos(tmp_path)
    res = reconstruct_images(Oracle(), paths, "center", mask_ratio=0.5)
    pm = res["pixel_mask"]
    assert res["original"].shape == (2, 3, 32, 32) and res["mask"].shape == (2, 16)
    assert torch.equal(res["mask"], make_mask("center", 2, 4, mask_ratio=0.5))
    # an oracle reconstructs the original; visible pixels are pasted; hidden ones are grey in "masked"
    assert torch.allclose(res["recon"], res["original"], atol=1e-5)
    assert torch.equal(res["recon_visible"][pm.expand_as(res["original"]) == 0],
                       res["original"][pm.expand_as(res["original"]) == 0])  # fmt: skip
    assert torch.all(res["masked"][pm.expand_as(res["masked"]) == 1] == 0.5)
    assert (res["psnr_masked"] > 90).all()
    visible = pm.expand_as(res["original"]) == 0
    assert torch.equal(res["recon_blend"][visible], res["original"][visible])  # the blend keeps what was seen
    assert res["recon_blend"].min() >= 0 and res["recon_blend"].max() <= 1
    assert res["psnr_masked_blend"].shape == res["blockiness_blend"].shape == (len(paths),)
    # the file is decoded like training data: PIL image and [0, 1] tensor inputs give the same batch
    pil = Image.open(paths[0])
    t01 = torch.from_numpy(np.array(pil)).permute(2, 0, 1).float() / 255
    a, b, c = prepare_images([paths[0]], 32), prepare_images(pil, 32), prepare_images(t01, 32)
    d = prepare_images(np.array(pil), 32)  # uint8 (H, W, 3) array: treated as a photo
    assert torch.equal(a, b) and torch.equal(a, d) and a.shape == c.shape == (1, 3, 32, 32)
    assert (denormalize(a) - denormalize(c)).abs().mean() < 0.02  # same picture, a different resampler


def test_reconstruct_refuses_bad_inputs(tmp_path):
    with pytest.raises(UserError, match="missing.png"):
        reconstruct_images(Oracle(), [tmp_path / "missing.png"])
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        prepare_images(torch.full((3, 32, 32), 2.0), 32)
    with pytest.raises(UserError, match="empty"):
        prepare_images([], 32)
    with pytest.raises(UserError, match="shape"):
        reconstruct_images(Oracle(), torch.rand(2, 3, 32, 32), mask=torch.zeros(2, 5))


def test_reconstruct_cli_writes_the_figure(run_dir, tmp_path, capsys):
    paths = _write_photos(tmp_path)
    out = tmp_path / "fig" / "out.png"
    argv = ["reconstruct", "--run", str(run_dir), "--images", *map(str, paths), "--out", str(out), "--mask", "eyes"]
    assert cli.main(argv) == 0
    assert out.is_file() and out.stat().st_size > 1000
    assert "p0.png" in capsys.readouterr().out
    blended = tmp_path / "fig" / "blend.png"
    assert cli.main([*argv[:-3], str(blended), "--mask", "eyes", "--blend"]) == 0 and blended.is_file()
    assert "seam-free blend" in capsys.readouterr().out
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli.main(["reconstruct", "--run", str(run_dir), "--images", str(bad), "--out", str(out)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    txt = str(tmp_path / "x.txt")
    assert cli.main(["reconstruct", "--run", str(run_dir), "--images", str(paths[0]), "--out", txt]) == 2
    assert "--out" in capsys.readouterr().err


# ---------------------------------------------------------------------- faults
@pytest.mark.parametrize("name", ["/tmp/escaped", "../../escaped", "sub/escaped", "..", ".hidden"])
def test_evaluate_name_must_be_a_file_name(tiny_run, capsys, name):
    err = cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--name", name])
    assert "must be a plain file name" in err
    assert not Path("/tmp/escaped.json").exists() and not (tiny_run.parent.parent / "escaped.json").exists()


def test_evaluate_refuses_a_folder_mixing_two_runs(tmp_path, tiny_run, capsys):
    run = copy_run(tiny_run, tmp_path)
    split = json.loads((run / "split.json").read_text())
    split["run_id"] = "another-run"
    (run / "split.json").write_text(json.dumps(split))
    err = cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "mixes files of different runs" in err and "split.json (run another-)" in err



# ---------------------------------------------------------------------- moved data
def test_a_run_whose_data_moved_scores_its_own_test_split(tmp_path, faces, capsys, monkeypatch):
    import shutil

    from mae_utils.train import fit as fit_run
    from tiny_runs import TINY

    shutil.copytree(faces, tmp_path / "work" / "faces")
    monkeypatch.chdir(tmp_path / "work")  # trained with a relative data_dir
    fit_run(TrainConfig(**{**TINY, "epochs": 1}, data_dir="faces", out_dir=str(tmp_path / "run"), cache_dir="off"))
    test_split = json.loads((tmp_path / "run" / "split.json").read_text())["test"]
    shutil.move(str(tmp_path / "work" / "faces"), str(tmp_path / "moved"))
    err = cli_error(capsys, ["evaluate", "--run", str(tmp_path / "run"), "--baselines", "mean_fill"])
    assert "pass --data-dir with its new location" in err
    for name, extra in (("moved", []), ("moved_test", ["--split", "test"])):
        assert cli.main(["evaluate", "--run", str(tmp_path / "run"), "--data-dir", str(tmp_path / "moved"),
                         "--baselines", "mean_fill", "--name", name, *extra]) == 0  # fmt: skip
        record = json.loads((tmp_path / "run" / "eval" / f"{name}.json").read_text())
        assert record["data"]["split"] == "test" and sorted(record["names"]) == sorted(test_split)


def test_reconstruct_out_cannot_be_one_of_the_inputs(tiny_run, tmp_path, capsys):
    (photo,) = write_faces(tmp_path, 1, size=32, seed=0, prefix="me")
    before = photo.read_bytes()
    err = cli_error(capsys, ["reconstruct", "--run", str(tiny_run), "--images", str(photo), "--out",
                             str(tmp_path / "." / photo.name)])  # fmt: skip
    assert "--out" in err and "is one of the input images" in err
    assert photo.read_bytes() == before


# ---------------------------------------------------------------------- where results go
def test_an_evaluation_with_other_settings_does_not_replace_an_earlier_one(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    base = ["evaluate", "--run", str(run), "--baselines", "mean_fill", "--limit", "3"]
    assert cli.main(base) == 0
    result = run / "eval" / "test_random75_best.json"
    first = result.read_text()
    for extra, what in ((["--seed", "1"], "seed 0 -> 1"), (["--limit", "2"], "limit 3 -> 2"),
                        (["--baselines", "mean_fill", "harmonic"], "baselines")):  # fmt: skip
        err = cli_error(capsys, [*base, *extra])
        assert str(result) in err and what in err and "--name" in err and "--overwrite" in err, err
        assert result.read_text() == first  # the earlier evaluation is kept
    assert cli.main(base) == 0  # a rerun with the same settings replaces its own result
    assert json.loads(result.read_text())["mask"]["seed"] == 0
    assert cli.main([*base, "--seed", "1", "--overwrite"]) == 0
    assert json.loads(result.read_text())["mask"]["seed"] == 1
    # the recipe scripts' explicit names keep working, reruns included
    for _ in range(2):
        assert cli.main([*base, "--name", "test"]) == 0 and (run / "eval" / "test.json").is_file()


def test_an_unwritable_results_folder_is_named_before_scoring_and_out_dir_saves_there(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    (run / "eval").write_text("not a folder")  # a folder that cannot take the results (root ignores chmod)
    err = cli_error(capsys, ["evaluate", "--run", str(run), "--baselines", "mean_fill"])
    assert f"cannot write evaluation results to {run / 'eval'}" in err and "--out-dir DIR" in err, err
    out = tmp_path / "elsewhere"
    assert cli.main(["evaluate", "--run", str(run), "--baselines", "mean_fill", "--out-dir", str(out)]) == 0
    assert (out / "test_random75_best.json").is_file() and (out / "test_random75_best.png").is_file()


def test_a_failed_write_after_scoring_still_shows_the_scores(tiny_run, tmp_path, capsys, monkeypatch):
    import errno

    from mae_utils.tools import evaluate as ev

    def full(path, text):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(ev, "atomic_write_text", full)
    run = copy_run(tiny_run, tmp_path)
    capsys.readouterr()
    assert cli.main(["evaluate", "--run", str(run), "--baselines", "mean_fill"]) == 2
    captured = capsys.readouterr()
    assert "PSNR masked (dB)" in captured.out and "model - mean_fill" in captured.out  # the scores, not lost
    errors = [line for line in captured.err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and str(run / "eval") in errors[0] and "--out-dir" in errors[0], captured.err


def test_evaluate_refuses_a_run_folder_as_data_dir(tiny_run, tmp_path, capsys):
    run = copy_run(tiny_run, tmp_path)
    write_faces(run / "samples", n=4, size=40, prefix="epoch_")  # the figures training writes there
    err = cli_error(capsys, ["evaluate", "--run", str(run), "--data-dir", str(run), "--device", "cpu"])
    assert err == (f"error: --data-dir {run} is a training run's folder, not a folder of face photos: leave "
                   "--data-dir out to score the run's own held-out faces, or give a folder of photos")
    assert not (run / "eval").exists()


@pytest.mark.parametrize(("width", "height", "why"), [(1, 1, "too small to reconstruct"), (12, 20, "at least 16 px"),
                                                      (10000, 10, "10000x10 pixels, 1000:1: too elongated"),
                                                      (400, 40, "at most 4:1")])
def test_reconstruct_refuses_degenerate_photos_naming_the_file(tiny_run, tmp_path, capsys, width, height, why):
    photo = tmp_path / f"odd_{width}x{height}.png"
    Image.new("RGB", (width, height), (150, 110, 90)).save(photo)
    out = tmp_path / "o.png"
    argv = ["reconstruct", "--run", str(tiny_run), "--images", str(photo), "--out", str(out), "--device", "cpu"]
    err = cli_error(capsys, argv)
    assert err.startswith(f"error: image {photo} is {width}x{height} pixels") and why in err and not out.exists()
    with pytest.raises(UserError, match=f"image is {width}x{height} pixels"):
        prepare_images(Image.open(photo), 32)
    fine = tmp_path / "fine.png"
    Image.new("RGB", (16, 60), (150, 110, 90)).save(fine)  # 16 px and 3.75:1: within the limits
    assert cli.main([*argv[:4], str(fine), *argv[5:]]) == 0


def test_sigterm_during_evaluate_says_what_happened(tiny_run):
    """The stop every command shares: exit 130 as train, one line saying what stopped it and how to
    go on, and no results written."""
    import subprocess
    import sys

    from tiny_runs import ROOT, subprocess_env

    script = (
        "import os, signal, sys\n"
        "from mae_utils.app import cli\n"
        "from mae_utils.tools import evaluate\n"
        "def stopped_here(*a, **k):\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "evaluate.evaluate_model = stopped_here\n"
        "sys.exit(cli.main(sys.argv[1:]))\n"
    )
    out = tiny_run.parent / "stopped_eval"
    done = subprocess.run([sys.executable, "-c", script, "evaluate", "--run", str(tiny_run), "--out-dir", str(out),
                           "--device", "cpu"], cwd=ROOT, env=subprocess_env(), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 130 and "Traceback" not in done.stderr, (done.returncode, done.stderr)
    last = done.stderr.strip().splitlines()[-1]
    assert last == "stopped (SIGTERM); evaluate writes its results at the end: run the same command again"
    assert not out.exists() or not any(out.iterdir())
