"""Fine-tuning a run's encoder on a labelled target: the network, its recipe, the labels it learns
from, exact resume, the from-scratch control and the honesty checks, on tiny synthetic-face runs."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from mae_utils import config as config_module
from mae_utils.util import checkpoint as ckpt
from mae_utils.util.errors import UserError
from mae_utils.util.fileio import file_sha256
from mae_utils.model import MaskedAutoencoder
from mae_utils.train import fit
from mae_utils.tools import finetune as ft
from mae_utils.tools.finetune import FinetuneConfig, finetune, label_fraction

from conftest import write_faces
from tiny_runs import TINY, cli_error

FAST = dict(epochs=1, batch_size=8, device="cpu", base_lr=1e-2)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    """A one-epoch tiny MAE (two encoder blocks) on 120 synthetic faces."""
    out = tmp_path_factory.mktemp("source") / "run"
    settings = {**TINY, "depth": 2, "epochs": 1, "augment": True}
    fit(config_module.TrainConfig(**settings, max_images=120, out_dir=str(out), cache_dir="off"))
    return out


def _settings(run: Path, out: Path, **changes) -> FinetuneConfig:
    return FinetuneConfig(run=str(run), out_dir=str(out), **{"target": "beard", **FAST, **changes})


def _weights(folder: Path, which: str = "last") -> dict[str, torch.Tensor]:
    return load_file(str(folder / "checkpoints" / which / ckpt.MODEL_FILE))


def _lines(folder: Path) -> list[dict]:
    lines = [json.loads(s) for s in (folder / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


# ---------------------------------------------------------------------- a fine-tune's folder
def test_finetune_writes_a_run_folder_that_names_its_source(synthetic_run, tmp_path) -> None:
    result = finetune(_settings(synthetic_run, tmp_path / "ft"), log=lambda _m: None)
    out = result.run_dir
    for name in ("config.json", "split.json", "metrics.jsonl", "log.txt", "results.json"):
        assert (out / name).is_file(), name
    record = json.loads((out / "config.json").read_text())
    weights = synthetic_run / "checkpoints" / "best" / ckpt.MODEL_FILE
    assert record["source_sha256"] == file_sha256(weights) and record["weights_loaded"]
    assert record["finetune"]["target"] == "beard" and record["classes"] == ["0", "1"]
    # the run's own data: the run's test faces stay the test faces
    source_split = json.loads((synthetic_run / "split.json").read_text())
    assert json.loads((out / "split.json").read_text())["test"] == source_split["test"]
    saved = json.loads((out / "results.json").read_text())
    assert saved["metric"] == "accuracy" and saved["rows"][0]["n"] == len(source_split["test"])
    assert saved["rows"][0]["low"] <= saved["rows"][0]["score"] <= saved["rows"][0]["high"]
    assert "fine-tuned from the MAE" in result.table and "95% interval" in result.table
    assert len(_lines(out)) == 1 and "val_score" in _lines(out)[0]


def test_a_number_is_regressed_with_its_mean_absolute_error(synthetic_run, tmp_path) -> None:
    result = finetune(_settings(synthetic_run, tmp_path / "ft", target="yaw"), log=lambda _m: None)
    assert result.task == "regress" and result.rows[1]["name"] == "chance (training mean)"
    assert result.rows[0]["score"] > 0 and "mean abs. error" in result.table


# ---------------------------------------------------------------------- the network and recipe
def test_from_scratch_loads_no_pretrained_weight(synthetic_run, tmp_path, monkeypatch) -> None:
    def refuse(*_args, **_kwargs):
        raise AssertionError("a from-scratch fine-tune read pre-trained weights")

    monkeypatch.setattr(ft, "load_model_from_run", refuse)
    monkeypatch.setattr(ckpt, "load_weights_file", refuse)
    settings = _settings(synthetic_run, tmp_path / "scratch", from_scratch=True, seed=3)
    net = ft.initial_network(settings, outputs=2)
    torch.manual_seed(3)
    fresh = MaskedAutoencoder(**ckpt.read_model_config(synthetic_run / "checkpoints" / "best"))
    monkeypatch.undo()
    trained = _weights(synthetic_run, "best")
    for name, value in fresh.state_dict().items():
        assert torch.equal(net.mae.state_dict()[name], value), name
    assert not torch.equal(net.mae.blocks[0].attn.qkv.weight, trained["blocks.0.attn.qkv.weight"])
    # the whole command too: it trains and scores without reading a pre-trained weight
    monkeypatch.setattr(ft, "load_model_from_run", refuse)
    monkeypatch.setattr(ckpt, "load_weights_file", refuse)
    result = finetune(settings, log=lambda _m: None)
    assert "from scratch" in result.rows[0]["name"]
    assert json.loads((result.run_dir / "config.json").read_text())["weights_loaded"] is False


def test_pretrained_start_is_the_runs_encoder_and_a_seeded_head(synthetic_run, tmp_path) -> None:
    settings = _settings(synthetic_run, tmp_path / "ft")
    net = ft.initial_network(settings, outputs=2)
    trained = _weights(synthetic_run, "best")
    assert all(torch.equal(net.mae.state_dict()[k], v) for k, v in trained.items())
    again = ft.initial_network(settings, outputs=2)
    assert torch.equal(net.head[1].weight, again.head[1].weight)
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 2)


def test_layer_decay_and_frozen_blocks(synthetic_run, tmp_path) -> None:
    settings = _settings(synthetic_run, tmp_path / "ft", freeze_blocks=1, layer_decay=0.5)
    net = ft.initial_network(settings, outputs=3)
    optimizer, _, _ = ft.finetune_optimizer(net, settings, total_steps=10)
    scale = {id(p): g["lr_scale"] for g in optimizer.param_groups for p in g["params"]}
    named = dict(net.named_parameters())
    assert scale[id(named["head.1.weight"])] == 1.0 and scale[id(named["mae.norm.weight"])] == 1.0
    assert scale[id(named["mae.blocks.1.attn.qkv.weight"])] == 0.5  # depth 2: block 1 is layer 2
    for frozen in ("mae.patch_embed.proj.weight", "mae.cls_token", "mae.blocks.0.attn.qkv.weight",
                   "mae.decoder_pred.weight"):
        assert id(named[frozen]) not in scale and not named[frozen].requires_grad, frozen
    with pytest.raises(UserError, match="more than the encoder's 2 blocks"):
        ft.initial_network(_settings(synthetic_run, tmp_path / "x", freeze_blocks=3), outputs=2)


# ---------------------------------------------------------------------- exact resume
def test_resumed_finetune_equals_an_uninterrupted_one(synthetic_run, tmp_path) -> None:
    settings = _settings(synthetic_run, tmp_path / "whole", epochs=2)
    finetune(settings, log=lambda _m: None)

    def stop_after_first_epoch(message: str) -> None:
        if message.startswith("epoch 1/2:"):
            raise KeyboardInterrupt("stopped")

    cut = _settings(synthetic_run, tmp_path / "cut", epochs=2)
    with pytest.raises(KeyboardInterrupt):
        finetune(cut, log=stop_after_first_epoch)
    assert len(_lines(tmp_path / "cut")) == 1
    finetune(ft.resume_settings(tmp_path / "cut"), resume=True, log=lambda _m: None)
    whole, resumed = _weights(tmp_path / "whole"), _weights(tmp_path / "cut")
    assert all(torch.equal(whole[k], resumed[k]) for k in whole)
    assert _lines(tmp_path / "whole") == _lines(tmp_path / "cut")


def test_resume_refuses_other_settings(synthetic_run, tmp_path, capsys) -> None:
    finetune(_settings(synthetic_run, tmp_path / "ft"), log=lambda _m: None)
    line = cli_error(capsys, ["finetune", "--resume", str(tmp_path / "ft"), "--target", "glasses"])
    assert "cannot change --target" in line


# ---------------------------------------------------------------------- labels
def test_label_fraction_keeps_class_shares_and_is_seeded() -> None:
    values = np.array(["a"] * 70 + ["b"] * 30)
    kept = label_fraction(values, "classify", 0.2, seed=1)
    assert Counter(values[kept].tolist()) == {"a": 14, "b": 6}
    assert np.array_equal(kept, label_fraction(values, "classify", 0.2, seed=1))
    assert not np.array_equal(kept, label_fraction(values, "classify", 0.2, seed=2))
    assert len(label_fraction(values, "classify", 1.0, seed=1)) == 100


def test_label_fraction_of_a_number_keeps_its_quantiles() -> None:
    values = np.arange(100, dtype=np.float64)
    kept = values[label_fraction(values, "regress", 0.1, seed=0)]
    assert len(kept) == 10
    assert sorted(np.floor(kept / 20).tolist()) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]  # 2 per quintile


def test_train_fraction_trains_on_its_share(synthetic_run, tmp_path) -> None:
    lines: list[str] = []
    finetune(_settings(synthetic_run, tmp_path / "ft", train_fraction=0.5, target="glasses"),
             log=lines.append)
    share = [line for line in lines if "stratified 0.5 share" in line]
    assert share and " 48 of 96 faces" in share[0]


def test_shuffled_labels_score_at_chance(synthetic_run, tmp_path) -> None:
    result = finetune(_settings(synthetic_run, tmp_path / "ft", shuffle_labels=True, epochs=2),
                      log=lambda _m: None)
    net, chance = result.rows
    assert net["low"] <= chance["score"] <= net["high"]


def test_labelled_folder(synthetic_run, tmp_path) -> None:
    for kind, seed in (("smiling", 1), ("neutral", 2)):
        write_faces(tmp_path / "faces" / kind, n=12, size=32, seed=seed)
    result = finetune(_settings(synthetic_run, tmp_path / "ft", target="mood",
                                data_dir=str(tmp_path / "faces")), log=lambda _m: None)
    record = json.loads((result.run_dir / "config.json").read_text())
    assert record["classes"] == ["neutral", "smiling"] and result.rows[0]["n"] >= 4


def test_file_name_pattern(synthetic_run, tmp_path) -> None:
    for kind, seed in (("young", 1), ("old", 2)):
        write_faces(tmp_path / "faces", n=12, size=32, seed=seed, prefix=f"{kind}_")
    result = finetune(_settings(synthetic_run, tmp_path / "ft", target="age",
                                data_dir=str(tmp_path / "faces"),
                                label_regex=r"^(?P<age>young|old)_"), log=lambda _m: None)
    assert json.loads((result.run_dir / "config.json").read_text())["classes"] == ["old", "young"]


def test_a_run_on_several_folders_is_fine_tuned_on_its_own_split(tmp_path) -> None:
    folders = []
    for kind, seed in (("young", 1), ("old", 2)):
        folders.append(str(tmp_path / kind))
        write_faces(tmp_path / kind, n=15, size=32, seed=seed, prefix=f"{kind}_")
    run = tmp_path / "run"
    fit(config_module.TrainConfig(**TINY, data_dir=folders, out_dir=str(run), cache_dir="off",
                                  val_frac=0.2, test_frac=0.2), log=lambda _m: None)
    result = finetune(_settings(run, tmp_path / "ft", target="age",
                                label_regex=r"^(?P<age>young|old)_"), log=lambda _m: None)
    source_split = json.loads((run / "split.json").read_text())
    split = json.loads((result.run_dir / "split.json").read_text())
    assert split["folders"] == source_split["folders"]
    assert result.rows[0]["n"] == 6


# ---------------------------------------------------------------------- mistakes
@pytest.mark.parametrize("flags, says", [
    (["--target", "halo"], "synthetic faces have no attribute 'halo'"),
    (["--target", "beard", "--label-regex", "(?P<beard"], "is not a valid regular expression"),
    (["--target", "beard", "--train-fraction", "0"], "--train-fraction must lie in (0, 1]"),
    (["--target", "beard", "--train-fraction", "0.01"], "--train-fraction 0.01 of 96"),
])
def test_mistakes_are_one_line_errors(synthetic_run, tmp_path, capsys, flags, says) -> None:
    line = cli_error(capsys, ["finetune", "--run", str(synthetic_run), "--out-dir",
                              str(tmp_path / "ft"), "--device", "cpu", *flags])
    assert says in line
    assert not (tmp_path / "ft").exists()  # a failed start leaves nothing behind


def test_a_stop_keeps_the_saved_epochs_and_names_resume(synthetic_run, tmp_path, capsys,
                                                        monkeypatch) -> None:
    from mae_utils.app import cli
    from mae_utils.util.errors import Terminated

    validate = ft._validate

    def stop_in_second_epoch(job, epoch):
        if epoch == 1:
            raise Terminated("stopped (SIGTERM)")
        return validate(job, epoch)

    monkeypatch.setattr(ft, "_validate", stop_in_second_epoch)
    out = tmp_path / "ft"
    code = cli.main(["finetune", "--run", str(synthetic_run), "--target", "beard", "--out-dir",
                     str(out), "--epochs", "2", "--batch-size", "8", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 130 and "stopped (SIGTERM)" in err and "--resume" in err
    assert len(_lines(out)) == 1 and not (out / "results.json").exists()
    assert (out / "checkpoints" / "last" / ckpt.MODEL_FILE).is_file()


def test_augmentation_is_off_by_default_and_the_runs_when_asked(synthetic_run, tmp_path) -> None:
    """Off: training faces come as stored; --augment: the run's crops and flips, drawn per face."""
    source = config_module.load_run_config(synthetic_run)
    assert FinetuneConfig().augment is False
    for augment in (False, True):
        out = tmp_path / f"ft_{augment}"
        out.mkdir()
        data = ft.finetune_data(_settings(synthetic_run, out, augment=augment), source, out,
                                lambda _m: None)
        train = data.items["train"]
        train.epoch = 0
        params = [train[i][2] for i in range(len(train))]
        if augment:
            assert train.augment is not None and any(p for p in params)
        else:
            assert train.augment is None and not any(p for p in params)
        assert data.items["val"].augment is None  # never on the faces that are scored
