"""Published weights straight to pictures: ``reconstruct`` and ``evaluate`` take ``--init-from`` (an
official MAE ``.pth``, a Hugging Face ViTMAE folder, a maskAE ``.safetensors``) in place of ``--run``,
with no training step and no run folder. Every weights file here is small and written by the test."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from mae_utils.model import build_mae
from mae_utils.pretrained import load_for_inference, load_pretrained
from mae_utils.tools.reconstruct import FillSettings, reconstruct_images
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli

from conftest import write_faces
from test_pretrained import make_hf_model

ROOT = Path(__file__).resolve().parents[1]


def _official(tmp_path: Path) -> Path:
    """The official release's layout: a ``.pth`` whose ``model`` entry holds the state dict (standard
    widths, as official files carry no head counts: a 192-wide encoder, a 128-wide decoder)."""
    torch.manual_seed(0)
    model = build_mae("tiny", img_size=64, patch_size=16, depth=1, decoder_depth=1)
    torch.save({"model": model.state_dict()}, tmp_path / "official.pth")
    return tmp_path / "official.pth"


def _hugging_face(tmp_path: Path) -> Path:
    make_hf_model(image_size=32, patch_size=8).save_pretrained(tmp_path / "hf")
    return tmp_path / "hf"


def _safetensors(tmp_path: Path) -> Path:
    """A maskAE weights file on its own (its metadata holds the model's shape)."""
    torch.manual_seed(0)
    model = build_mae("cpu", img_size=32, patch_size=8, depth=1, decoder_depth=1)
    ckpt.save_checkpoint(tmp_path / "ck", model.state_dict(), {"epoch": 1}, model.config)
    shutil.copy(tmp_path / "ck" / ckpt.MODEL_FILE, tmp_path / "faces_mae.safetensors")
    return tmp_path / "faces_mae.safetensors"


LAYOUTS = [_official, _hugging_face, _safetensors]


@pytest.mark.parametrize("make_weights", LAYOUTS, ids=["official", "hugging-face", "safetensors"])
def test_reconstruct_draws_the_figure_from_published_weights(make_weights, tmp_path, monkeypatch, capsys):
    weights = make_weights(tmp_path)
    photos = write_faces(tmp_path / "photos", n=2, size=48)
    monkeypatch.chdir(tmp_path)
    argv = ["reconstruct", "--init-from", str(weights), "--images", *map(str, photos), "--out", "fig.png",
            "--mask", "center", "--device", "cpu"]  # fmt: skip
    assert cli.main(argv) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert Image.open(tmp_path / "fig.png").size[0] > 100
    assert not (tmp_path / "runs").exists()  # no run folder made or needed
    # the figure's scores are those of these weights (a model loaded here, not any other)
    model = load_pretrained(weights)
    expected = reconstruct_images(model, photos, FillSettings("center"))["psnr_masked"]
    printed = [float(m) for m in re.findall(r"face_\d\.png: ([\d.]+) /", out)]
    assert printed == pytest.approx([round(float(v), 2) for v in expected], abs=0.011)


@pytest.mark.parametrize("make_weights", [_official, _hugging_face], ids=["official", "hugging-face"])
def test_the_documented_reconstruct_command_runs_without_a_run_folder(make_weights, tmp_path):
    weights = make_weights(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    Image.open(write_faces(tmp_path / "photos", n=1, size=48)[0]).convert("RGB").save(work / "a.jpg")
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "mae_utils", "reconstruct", "--init-from", str(weights),
                           "--images", "a.jpg", "--out", "out.png"], cwd=work, env=env, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote out.png" in done.stdout and "Traceback" not in done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["a.jpg", "out.png"]


def test_exactly_one_model_source(tmp_path, capsys):
    weights = _official(tmp_path)
    photo = str(write_faces(tmp_path / "photos", n=1, size=48)[0])
    for command in (["reconstruct", "--images", photo, "--out", str(tmp_path / "o.png")],
                    ["evaluate", "--data-dir", str(tmp_path / "photos")]):  # fmt: skip
        with pytest.raises(SystemExit) as info:
            cli.main(command)
        assert info.value.code == 2
        assert "one of the arguments --run --init-from is required" in capsys.readouterr().err
        with pytest.raises(SystemExit) as info:
            cli.main(command + ["--run", str(tmp_path), "--init-from", str(weights)])
        assert info.value.code == 2
        assert "--init-from: not allowed with argument --run" in capsys.readouterr().err
    assert cli.main(["reconstruct", "--init-from", str(tmp_path / "nothing.pth"), "--images", photo,
                     "--out", str(tmp_path / "o.png")]) == 2  # fmt: skip
    assert "nothing.pth: no such file or folder" in capsys.readouterr().err


def test_evaluate_scores_published_weights_on_a_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MASKAE_CACHE_DIR", str(tmp_path / "cache"))
    weights = _hugging_face(tmp_path)
    faces = tmp_path / "faces"
    write_faces(faces, n=6, size=40)
    capsys.readouterr()  # the weights' writer prints a progress bar
    base = ["evaluate", "--init-from", str(weights), "--device", "cpu", "--baselines", "mean_fill"]
    for extra, named in (([], "--data-dir"), (["--data-dir", str(faces)], "--out-dir"),
                         (["--data-dir", str(faces), "--out-dir", "r", "--split", "val"], "--split")):  # fmt: skip
        assert cli.main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and named in err and "Traceback" not in err
    assert cli.main(base + ["--data-dir", str(faces), "--out-dir", str(tmp_path / "results")]) == 0
    out = capsys.readouterr().out
    assert f"{weights} (published weights): 6 all images of {faces}" in out
    [result] = (tmp_path / "results").glob("*.json")
    record = json.loads(result.read_text())
    assert record["init_from"] == str(weights) and "run" not in record
    assert record["data"]["n_images"] == 6 and record["model"]["embed_dim"] == 64
    assert not list(weights.glob("eval*"))  # nothing written beside the weights


def test_load_for_inference_keeps_the_weights_own_size_and_target(tmp_path):
    hf = _hugging_face(tmp_path)
    config = json.loads((hf / "config.json").read_text())
    (hf / "config.json").write_text(json.dumps({**config, "norm_pix_loss": True}))
    model = load_for_inference(hf)
    assert model.img_size == 32 and model.norm_pix_loss and not model.training
    assert load_for_inference(_official(tmp_path)).patch_size == 16


def test_the_docs_and_the_loader_name_the_same_official_files():
    def named(path: Path) -> set[str]:
        return set(re.findall(r"mae_\w+\.pth", path.read_text()))

    loader = named(ROOT / "mae_utils" / "pretrained.py")
    assert loader == named(ROOT / "docs" / "data.md")
    shown = named(ROOT / "docs" / "model.md")
    assert "mae_visualize_vit_large.pth" in shown and shown <= loader


def test_the_reconstruct_notebook_takes_published_weights(tmp_path, monkeypatch):
    """The notebook's own code cells, run in order in this process (no kernel, a 64 px model), with
    ``init_from`` set as papermill's injected cell sets it: figures of the weights, nothing trained."""
    weights = _official(tmp_path)
    nb = json.loads((ROOT / "notebooks" / "reconstruct_your_photos.ipynb").read_text())
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    for cell in (c for c in nb["cells"] if c["cell_type"] == "code"):
        exec("".join(line for line in cell["source"] if not line.startswith("%")), namespace)  # noqa: S102
        if "parameters" in cell["metadata"].get("tags", []):  # papermill's cell: -p init_from ... -y mask_kinds
            exec(f"init_from = {str(weights)!r}\nmask_kinds = ['center']\n", namespace)  # noqa: S102
    assert namespace["model"].patch_size == 16 and namespace["refiner"] is None
    assert (tmp_path / "runs" / "published" / "eval" / "photos_center.png").is_file()
    assert not (tmp_path / "runs" / "quick").exists()  # no model was trained
