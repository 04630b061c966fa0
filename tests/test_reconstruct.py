"""The reconstruct command and its library call: photos decoded as the training data were, the
four panels consistent with each other, the flip test-time average, and the command line."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mae_utils.masking import make_mask
from mae_utils.model import MaskedAutoencoder
from mae_utils.synthetic import generate_faces
from mae_utils.tools.inference import fill
from mae_utils.tools.reconstruct import FillSettings, prepare_images, reconstruct_images
from mae_utils.transforms import batch_to_input, denormalize
from mae_utils.app import cli
from mae_utils.util.errors import UserError

from conftest import write_faces
from oracle import Oracle
from tiny_runs import cli_error


def _write_photos(folder, n=2, size=48):
    return write_faces(folder, n=n, size=size, seed=5, prefix="p")


def test_reconstruct_images_panels_are_consistent(tmp_path):
    paths = _write_photos(tmp_path)
    res = reconstruct_images(Oracle(), paths, FillSettings("center", mask_ratio=0.5))
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


def test_reconstruct_cli_writes_the_figure(tiny_run, tmp_path, capsys):
    paths = _write_photos(tmp_path)
    out = tmp_path / "fig" / "out.png"
    argv = ["reconstruct", "--run", str(tiny_run), "--images", *map(str, paths), "--out", str(out), "--mask", "eyes"]
    assert cli.main(argv) == 0
    assert out.is_file() and out.stat().st_size > 1000
    assert "p0.png" in capsys.readouterr().out
    blended = tmp_path / "fig" / "blend.png"
    assert cli.main([*argv[:-3], str(blended), "--mask", "eyes", "--blend"]) == 0 and blended.is_file()
    assert "seam-free blend" in capsys.readouterr().out
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    assert cli.main(["reconstruct", "--run", str(tiny_run), "--images", str(bad), "--out", str(out)]) == 2
    assert "broken.jpg" in capsys.readouterr().err
    txt = str(tmp_path / "x.txt")
    assert cli.main(["reconstruct", "--run", str(tiny_run), "--images", str(paths[0]), "--out", txt]) == 2
    assert "--out" in capsys.readouterr().err



def test_reconstruct_out_cannot_be_one_of_the_inputs(tiny_run, tmp_path, capsys):
    photo = tmp_path / "me.png"
    Image.fromarray(generate_faces(1, size=32)[0]).save(photo)
    before = photo.read_bytes()
    err = cli_error(capsys, ["reconstruct", "--run", str(tiny_run), "--images", str(photo), "--out",
                             str(tmp_path / "." / "me.png")])  # fmt: skip
    assert "--out" in err and "is one of the input images" in err
    assert photo.read_bytes() == before



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


def test_fill_settings_are_checked_once():
    with pytest.raises(UserError, match="unknown mask kind 'nose'"):
        FillSettings("nose")
    with pytest.raises(UserError, match="needs patches"):
        FillSettings("patches")
    with pytest.raises(UserError, match="tta must be one of flip"):
        FillSettings(tta="mirror")
    assert FillSettings("patches", patches=[3, 5]).patches == (3, 5)


def test_the_flip_average_fills_every_panel(tmp_path):
    torch.manual_seed(0)
    model = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).eval()
    paths = _write_photos(tmp_path)
    plain = reconstruct_images(model, paths, FillSettings("center", seed=1))
    flip = reconstruct_images(model, paths, FillSettings("center", seed=1, tta="flip"))
    assert torch.equal(plain["mask"], flip["mask"]) and not torch.allclose(plain["recon"], flip["recon"])
    x = batch_to_input((flip["original"] * 255).round().to(torch.uint8))
    expected = fill(model, x, flip["mask"], tta="flip")
    assert torch.allclose(flip["recon_visible"], expected, atol=1e-5)
    assert torch.allclose(plain["recon_visible"], fill(model, x, plain["mask"]), atol=1e-5)


def test_reconstruct_cli_takes_the_flip_average(tiny_run, tmp_path, capsys):
    paths = _write_photos(tmp_path)
    out = tmp_path / "flip.png"
    argv = ["reconstruct", "--run", str(tiny_run), "--images", *map(str, paths), "--out", str(out)]
    assert cli.main([*argv, "--tta", "flip"]) == 0 and out.is_file()
    assert "flip test-time average" in capsys.readouterr().out
