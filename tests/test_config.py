"""TrainConfig: validation names the field; CLI flags come from the dataclass fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import pytest

from mae_utils.config import TrainConfig, add_config_arguments, config_from_args, load_run_config
from mae_utils.model import PRESETS
from mae_utils.app import cli
from mae_utils.util.errors import UserError

from tiny_runs import cli_error


def test_defaults_validate():
    cfg = TrainConfig().validate()
    assert cfg.preset == "cpu" and cfg.data_dir is None


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("image_size", 60, "patch_size"),  # not a multiple of patch 8
        ("image_size", 0, "image_size"),
        ("patch_size", -8, "patch_size"),
        ("mask_ratio", 1.0, "mask_ratio"),
        ("mask_ratio", 0.999, "mask_ratio"),  # no visible patch left
        ("epochs", 0, "epochs"),
        ("batch_size", 2.5, "batch_size"),
        ("base_lr", 0.0, "base_lr"),
        ("base_lr", float("nan"), "base_lr"),
        ("weight_decay", -0.1, "weight_decay"),
        ("warmup_frac", 1.0, "warmup_frac"),
        ("grad_clip", 0.0, "grad_clip"),
        ("device", "tpu", "device"),
        ("amp", "fp8", "amp"),
        ("preset", "huge", "preset"),
        ("val_frac", 0.0, "val_frac"),
        ("test_frac", 0.95, "test_frac"),
        ("num_workers", -1, "num_workers"),
        ("max_images", 0, "max_images"),
        ("patience", 0, "patience"),
        ("augment", "yes", "augment"),
        ("crop_scale_min", 0.0, "crop_scale_min"),
        ("crop_scale_min", 1.8, "crop_scale_min"),  # above crop_scale_max (1.6)
        ("crop_scale_max", 4.5, "crop_scale_max"),
        ("grey_prob", 1.5, "grey_prob"),
        ("color_jitter", 1.0, "color_jitter"),
        ("data_dir", "/no/such/folder/anywhere", "data_dir"),
        ("num_heads", 5, "num_heads"),  # 192 not divisible by 5
        ("decoder_embed_dim", 130, "decoder_embed_dim"),  # not a multiple of 4 / heads
    ],
)
def test_bad_value_names_the_field(field, value, expected):
    cfg = dataclasses.replace(TrainConfig(), **{field: value})
    with pytest.raises(UserError, match=expected):
        cfg.validate()


def test_choices_listed_in_message():
    with pytest.raises(UserError, match="auto, cpu, cuda, mps"):
        TrainConfig(device="gpu").validate()


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(UserError, match="learning_rate"):
        TrainConfig.from_dict({"learning_rate": 1.0})


def test_load_run_config_ignores_extra_keys(tmp_path):
    record = {**TrainConfig(epochs=3).to_dict(), "model": {"embed_dim": 192}, "runtime": {"device": "cpu"}}
    (tmp_path / "config.json").write_text(json.dumps(record))
    assert load_run_config(tmp_path).epochs == 3
    with pytest.raises(UserError, match="config.json"):
        load_run_config(tmp_path / "missing")


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    return config_from_args(parser.parse_args(argv))


def test_fields_added_later_keep_an_old_runs_behaviour(tmp_path):
    """A config.json written before zoom_fill / crop_scale_draw existed resumes as it trained: flat fill,
    uniform areas; a new run gets the new defaults, and a recorded value wins."""
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 3, "crop_scale_max": 1.4}))
    old = load_run_config(tmp_path)
    assert (old.zoom_fill, old.crop_scale_draw) == ("mean", "uniform")
    assert old.augmentation().fill == "mean" and TrainConfig().augmentation().fill == "photo"
    (tmp_path / "config.json").write_text(json.dumps({"epochs": 3, "zoom_fill": "reflect", "crop_scale_draw": "log"}))
    new = load_run_config(tmp_path)
    assert (new.zoom_fill, new.crop_scale_draw) == ("reflect", "log")
    assert new.augmentation().scale_draw == "log"


def test_flags_parse_types_and_none():
    given = _parse(["--image-size", "48", "--max-images", "none", "--no-augment", "--grad-clip", "0.5",
                    "--depth", "3", "--compile"])  # fmt: skip
    assert given == {"image_size": 48, "max_images": None, "augment": False, "grad_clip": 0.5, "depth": 3,
                     "compile": True}  # fmt: skip
    assert _parse([]) == {}  # defaults are not injected: --resume can tell what the user typed


def test_help_lists_every_field(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["train", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        assert flag in out, flag
    assert "--resume" in out and "synthetic" in out


@pytest.mark.parametrize(
    "argv, expected",
    [
        (["--image-size", "abc"], "--image-size"),  # argparse type error
        (["--preset", "huge"], "--preset"),  # argparse choices
        (["--mask-ratio", "1.5"], "mask_ratio"),  # TrainConfig.validate
        (["--image-size", "60"], "patch_size"),
        (["--resume", "/no/such/run"], "config.json"),
    ],
)
def test_bad_cli_values_exit_2(argv, expected, capsys, tmp_path):
    argv = ["train", "--out-dir", str(tmp_path / "run"), *argv]
    try:
        code = cli.main(argv)
    except SystemExit as exc:  # argparse's own errors
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert "error:" in err and expected in err
    assert "Traceback" not in err


# ---------------------------------------------------------------------- faults
def test_seed_out_of_range(tiny_run, faces, capsys, tmp_path):
    huge = "99999999999999999999"
    err = cli_error(capsys, ["train", "--data-dir", str(faces), "--out-dir", str(tmp_path / "r"), "--seed", huge])
    assert "seed must be an integer from 0 to 4294967295" in err
    assert not (tmp_path / "r").exists()
    assert "seed must be" in cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--seed", huge])
    err = cli_error(capsys, ["evaluate", "--run", str(tiny_run), "--seed", "-1", "--mask", "eyes"])
    assert "--seed must be an integer from 0 to 4294967295; got -1" in err


def test_presets_mean_what_they_say_and_old_runs_keep_their_model():
    """Architecture fields default to the preset's; a run saved with explicit widths (before the cpu
    preset existed) describes the same model and counts as the same settings."""
    from mae_utils.config import same_settings
    from mae_utils.train import build_model

    def count(cfg):
        return sum(p.numel() for p in build_model(cfg).parameters())

    assert TrainConfig().architecture() == PRESETS["cpu"]
    assert TrainConfig(preset="base").architecture() == PRESETS["base"]
    assert TrainConfig(preset="base", depth=6).architecture() == {**PRESETS["base"], "depth": 6}
    old = TrainConfig(preset="tiny", embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=96, decoder_depth=2,
                      decoder_num_heads=3)  # fmt: skip
    # the old run trained the 14 epochs that were then the default; the cpu preset now trains 28
    then = TrainConfig(epochs=14)
    assert same_settings(old, then) and not same_settings(old, TrainConfig(epochs=14, depth=3))
    assert not same_settings(old, TrainConfig())
    assert count(old) == count(TrainConfig()) == 1_087_712
    assert count(TrainConfig(preset="base", image_size=256, patch_size=16)) == 111_984_640


# ---------------------------------------------------------------------- presets carry their recipe
def test_the_default_recipe_is_the_measured_cpu_one_and_base_brings_the_papers():
    cpu = TrainConfig()
    assert (cpu.image_size, cpu.patch_size, cpu.batch_size, cpu.base_lr, cpu.warmup_frac, cpu.weight_decay,
            cpu.epochs) == (64, 8, 16, 3.2e-2, 0.1, 0.05, 28)  # fmt: skip
    base = TrainConfig(preset="base").validate()
    assert (base.image_size, base.patch_size, base.batch_size, base.base_lr, base.warmup_frac, base.weight_decay,
            base.epochs) == (256, 16, 64, 1.5e-4, 0.05, 0.05, 400)  # fmt: skip
    assert TrainConfig(preset="base", epochs=3, image_size=128).epochs == 3  # a set value wins
    assert TrainConfig(preset="base", image_size=None).image_size == 256  # None: the preset's
    assert dataclasses.replace(base, batch_size=8).base_lr == 1.5e-4


def test_a_learning_rate_far_above_the_recipe_is_refused_unless_forced(tmp_path, capsys):
    argv = ["train", "--preset", "base", "--out-dir", str(tmp_path / "r"), "--base-lr", "3.2e-2", "--dry-run"]
    err = cli_error(capsys, argv)
    assert "base_lr 0.032" in err and "preset base's base_lr 0.00015" in err and "--force-lr" in err
    assert cli.main(argv + ["--force-lr"]) == 0 and "peak lr: 0.008 " in capsys.readouterr().out
    assert cli.main(argv[:-3] + ["--base-lr", "1.5e-3", "--dry-run"]) == 0  # 10x is still allowed
    capsys.readouterr()
    # a width overridden towards ViT-Base: that width's recipe is the reference, whatever the preset
    err = cli_error(capsys, ["train", "--out-dir", str(tmp_path / "r"), "--embed-dim", "768", "--num-heads", "12",
                             "--dry-run"])  # fmt: skip
    assert "768-wide encoder" in err and "--preset base" in err
    with pytest.raises(UserError, match="over 10x"):
        TrainConfig(preset="large", base_lr=1e-2).validate()
    TrainConfig(preset="large", base_lr=1e-2, force_lr=True).validate()


def test_dry_run_says_where_each_setting_came_from(tmp_path, capsys):
    assert cli.main(["train", "--preset", "base", "--out-dir", str(tmp_path / "r"), "--epochs", "3",
                     "--max-images", "400", "--dry-run"]) == 0  # fmt: skip
    out = capsys.readouterr().out.replace("\n  ", " ")  # wrapped lines joined
    groups = dict(line.split(": ", 1) for line in out.splitlines() if "settings" in line.split(": ", 1)[0])
    assert set(groups) == {"settings from flags", "settings from preset base", "default settings"}
    flags, preset, default = groups["settings from flags"], groups["settings from preset base"], groups["default settings"]
    assert "epochs=3" in flags and "max_images=400" in flags and "epochs" not in preset
    assert "base_lr=0.00015" in preset and "image_size=256" in preset and "embed_dim=768" in preset
    assert "seed=0" in default and "base_lr" not in default
    assert "peak lr: 3.75e-05 (base_lr 0.00015 x effective batch 64 / 256)" in out
