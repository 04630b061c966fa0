"""``init_from``: training starts from an official MAE ``.pth``, a Hugging Face ViTMAE folder, or another
run; the architecture comes from the weights and the position tables follow the new image size.
Every checkpoint here is small and written by the test itself."""

from __future__ import annotations

import json

import pytest
import torch

from mae_utils.pretrained import load_model
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli
from mae_utils.util.errors import UserError
from mae_utils.model import build_mae
from mae_utils.pos_embed import sincos_2d
from mae_utils.train import TrainConfig, fit, initial_model

from conftest import TINY_MODEL
from test_pretrained import make_hf_model

# the config asks for the notebook's model (the cpu preset) and 8 px patches; the weights have others
RUN = dict(image_size=48, patch_size=8, preset="cpu", max_images=20, batch_size=8, epochs=1, device="cpu",
           base_lr=1e-3, sample_every=0, seed=3)  # fmt: skip
SHAPE = ("patch_size", "embed_dim", "depth", "num_heads", "decoder_embed_dim", "decoder_depth", "decoder_num_heads")


def _source_official(tmp_path):
    # official files hold no head counts: standard widths (192: ViT-Ti, 3 heads; a 128-wide decoder, 4 heads)
    shape = dict(patch_size=16, embed_dim=192, depth=1, num_heads=3, decoder_embed_dim=128, decoder_depth=1,
                 decoder_num_heads=4)  # fmt: skip
    m = build_mae("tiny", img_size=32, **shape)
    torch.save({"model": m.state_dict(), "epoch": 799}, tmp_path / "mae_pretrain.pth")
    return tmp_path / "mae_pretrain.pth", m.state_dict(), shape


def _source_hf(tmp_path):
    from mae_utils.pretrained import hf_to_official

    hf = make_hf_model(image_size=32, patch_size=8)
    hf.save_pretrained(tmp_path / "hf")
    return tmp_path / "hf", hf_to_official(hf.state_dict()), dict(patch_size=8, embed_dim=64, depth=2, num_heads=4,
                                                                decoder_embed_dim=32, decoder_depth=2,
                                                                decoder_num_heads=4)


def _source_run(tmp_path):
    src = TrainConfig(**{**RUN, **TINY_MODEL}, out_dir=str(tmp_path / "source"))
    fit(src)
    return tmp_path / "source", ckpt.load_model_state(tmp_path / "source" / "checkpoints" / "best"), dict(
        patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2)


@pytest.mark.parametrize("make_source", [_source_official, _source_hf, _source_run], ids=["official", "hf", "run"])
def test_training_starts_from_the_weights(tmp_path, make_source):
    path, weights, shape = make_source(tmp_path)
    cfg = TrainConfig(**RUN, init_from=str(path), out_dir=str(tmp_path / "tuned"))
    model, resolved = initial_model(cfg, log=lambda _m: None)
    assert {k: getattr(resolved, k) for k in SHAPE} == shape  # the architecture is the weights'
    grid = 48 // shape["patch_size"]
    assert model.img_size == 48 and model.pos_embed.shape[1] == grid * grid + 1  # tables follow the new size
    assert torch.equal(model.pos_embed[0], sincos_2d(shape["embed_dim"], grid))
    state = model.state_dict()
    for key, value in weights.items():  # every learned tensor is the source's
        if "pos_embed" not in key:
            assert torch.equal(state[key], value), key

    result = fit(cfg)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["init_from"] == str(path) and {k: config[k] for k in SHAPE} == shape
    assert config["model"]["img_size"] == 48
    assert "architecture comes from the weights" in (result.run_dir / "log.txt").read_text()
    tuned = load_model(result.run_dir / "checkpoints" / "last")
    assert tuned.img_size == 48 and tuned.patch_size == shape["patch_size"]
    assert not torch.equal(tuned.state_dict()["decoder_pred.weight"], weights["decoder_pred.weight"])  # it trained


@pytest.mark.slow
def test_a_run_started_from_weights_resumes_and_extends(tmp_path):
    path, _, shape = _source_official(tmp_path)
    run_dir = tmp_path / "tuned"
    fit(TrainConfig(**RUN, init_from=str(path), out_dir=str(run_dir)))
    assert cli.main(["train", "--resume", str(run_dir), "--epochs", "2"]) == 0
    lines = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]


def test_init_from_errors_name_the_problem(tmp_path):
    with pytest.raises(UserError, match="init_from .*no such file"):
        TrainConfig(init_from=str(tmp_path / "missing.pth")).validate()
    path, _, _ = _source_official(tmp_path)
    with pytest.raises(UserError, match="not divisible by the checkpoint's patch_size 16"):
        initial_model(TrainConfig(**{**RUN, "image_size": 40}, init_from=str(path)))
    (tmp_path / "empty_run" / "checkpoints").mkdir(parents=True)
    with pytest.raises(UserError, match="no finished checkpoint"):
        initial_model(TrainConfig(**RUN, init_from=str(tmp_path / "empty_run")))
    assert cli.main(["train", "--init-from", str(tmp_path / "nope"), "--out-dir", str(tmp_path / "r")]) == 2


# ---------------------------------------------------------------------- init_from is recorded
def test_the_run_records_its_source_and_resumes_without_it(tmp_path, monkeypatch):
    import hashlib
    import shutil

    path, _, _ = _source_official(tmp_path)
    monkeypatch.chdir(tmp_path)  # a relative init_from, as typed in a shell
    small = {**RUN, "epochs": 1}
    fit(TrainConfig(**small, init_from=path.name, out_dir="tuned"))
    record = json.loads((tmp_path / "tuned" / "config.json").read_text())["init_source"]
    assert record["path"] == str(path.resolve()) and record["checkpoint"] is None
    assert record["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    shutil.move(str(path), str(tmp_path / "moved.pth"))  # the source is gone
    monkeypatch.chdir(tmp_path / "tuned")  # and the working directory differs
    assert cli.main(["train", "--resume", str(tmp_path / "tuned"), "--epochs", "2"]) == 0
    assert ckpt.load_state(tmp_path / "tuned" / "checkpoints" / "last")["epoch"] == 2


def test_init_from_a_run_without_best_says_it_uses_last(tmp_path):
    import shutil

    src, _, _ = _source_run(tmp_path)
    shutil.rmtree(src / "checkpoints" / "best")
    lines: list[str] = []
    _, cfg = initial_model(TrainConfig(**RUN, init_from=str(src), out_dir=str(tmp_path / "t")), log=lines.append)
    assert any("checkpoints/last" in x and "no best" in x for x in lines), lines
