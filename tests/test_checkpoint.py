"""Checkpoints: atomic replacement, no code execution on load, exact round trips."""

from __future__ import annotations

import functools
import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mae_utils.pretrained import load_model
from mae_utils.model import build_mae
from mae_utils.model import MaskedAutoencoder
from mae_utils.util import checkpoint as ckpt
from mae_utils.util.errors import UserError

from tiny_runs import cli_error, copy_run


def _save(path, value: float):
    weights = {"w": torch.full((3, 2), value), "b": torch.arange(4.0) + value}
    state = {"epoch": int(value), "history": [{"loss": value}], "t": torch.tensor([value])}
    return ckpt.save_checkpoint(path, weights, state, model_config={"value": value})


def test_round_trip(tmp_path):
    _save(tmp_path / "last", 1.0)
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1
    assert torch.equal(ckpt.load_model_state(tmp_path / "last")["w"], torch.full((3, 2), 1.0))
    assert ckpt.read_model_config(tmp_path / "last") == {"value": 1.0}
    _save(tmp_path / "last", 2.0)  # replace
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # no temp or .old folders left


def test_crash_while_writing_keeps_previous(tmp_path, monkeypatch):
    _save(tmp_path / "last", 1.0)

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 half a zip file")  # partial bytes, then the "power cut"
        raise OSError("simulated crash mid-write")

    monkeypatch.setattr(ckpt.torch, "save", dying_save)
    with pytest.raises(UserError, match="simulated.*previous checkpoint .* is kept"):
        _save(tmp_path / "last", 2.0)
    monkeypatch.undo()
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1
    assert torch.equal(ckpt.load_model_state(tmp_path / "last")["b"], torch.arange(4.0) + 1.0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_crash_between_renames_falls_back_to_old(tmp_path, monkeypatch):
    _save(tmp_path / "last", 1.0)
    real_replace = os.replace
    calls = []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # old -> last.old done; new -> last never happens
            raise OSError("simulated crash between renames")
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", replace_then_die)
    with pytest.raises(OSError):
        _save(tmp_path / "last", 2.0)
    monkeypatch.undo()
    assert not (tmp_path / "last").exists()
    assert ckpt.resolve(tmp_path / "last").name == "last.old"
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1  # the previous checkpoint, intact
    _save(tmp_path / "last", 3.0)  # the next save recovers the layout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 3


class _Evil:
    """A pickle that runs a command when unpickled by an unrestricted loader."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_pickle_is_refused(tmp_path):
    marker = tmp_path / "pwned"
    _save(tmp_path / "last", 1.0)
    state_file = tmp_path / "last" / ckpt.STATE_FILE
    torch.save({"epoch": 1, "payload": _Evil(marker)}, state_file)
    # the crafted file is real: an unrestricted load would run it
    torch.load(state_file, weights_only=False)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(UserError, match="refused"):
        ckpt.load_state(tmp_path / "last")
    assert not marker.exists()

    state_file.write_bytes(pickle.dumps(_Evil(marker), protocol=2))  # a bare (legacy) pickle too
    with pytest.raises(UserError):
        ckpt.load_state(tmp_path / "last")
    assert not marker.exists()


def test_damaged_weights_are_a_user_error(tmp_path):
    _save(tmp_path / "last", 1.0)
    (tmp_path / "last" / ckpt.MODEL_FILE).write_bytes(b"\x00\x01not safetensors")
    with pytest.raises(UserError, match="safetensors"):
        ckpt.load_model_state(tmp_path / "last")
    with pytest.raises(UserError, match="no checkpoint"):
        ckpt.load_state(tmp_path / "nothing")


def test_model_rebuilds_from_its_folder(tmp_path):
    torch.manual_seed(0)
    model = build_mae("tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1)
    ckpt.save_checkpoint(tmp_path / "best", model.state_dict(), {"epoch": 0}, model.config)
    loaded = load_model(tmp_path / "best")
    assert loaded.config == model.config
    for (k, a), (k2, b) in zip(model.state_dict().items(), loaded.state_dict().items()):
        assert k == k2 and torch.equal(a, b)


def test_rng_states_round_trip(tmp_path):
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    state = ckpt.capture_rng()
    ckpt.save_checkpoint(tmp_path / "c", {"x": torch.zeros(1)}, {"rng": state})
    expected = (torch.rand(3), np.random.rand(3), random.random())
    torch.manual_seed(99), np.random.seed(99), random.seed(99)
    ckpt.restore_rng(ckpt.load_state(tmp_path / "c")["rng"])
    got = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], got[0]) and np.array_equal(expected[1], got[1]) and expected[2] == got[2]


# ---------------------------------------------------------------------- faults
def test_disk_full_while_saving_a_checkpoint(tmp_path, monkeypatch):
    model = build_mae("tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1)
    ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 1}, model.config)
    real_mkdtemp = ckpt.tempfile.mkdtemp

    def full_disk_mkdtemp(**kwargs):
        folder = Path(real_mkdtemp(**kwargs))
        for name in (ckpt.MODEL_FILE, ckpt.STATE_FILE):
            (folder / name).symlink_to("/dev/full")
        return str(folder)

    monkeypatch.setattr(ckpt.tempfile, "mkdtemp", full_disk_mkdtemp)
    with pytest.raises(UserError, match=r"cannot save checkpoint .*last.*the previous checkpoint .* is kept"):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 2}, model.config)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]  # temporaries removed
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1
    # the state file alone failing (torch's own error text) gives the same kind of message
    monkeypatch.setattr(ckpt.tempfile, "mkdtemp", lambda **kw: _state_only_full(real_mkdtemp(**kw)))
    with pytest.raises(UserError, match="disk full"):
        ckpt.save_checkpoint(tmp_path / "last", model.state_dict(), {"epoch": 2}, model.config)
    assert ckpt.load_state(tmp_path / "last")["epoch"] == 1


def _state_only_full(folder: str) -> str:
    (Path(folder) / ckpt.STATE_FILE).symlink_to("/dev/full")
    return folder


def _rewrite(ckpt_dir: Path, *, config=None, raw_config: str | None = None, change=None) -> Path:
    path = ckpt_dir / ckpt.MODEL_FILE
    tensors = load_file(str(path))
    meta = {"format": "pt", "mae_config": json.dumps({**ckpt.read_model_config(ckpt_dir), **(config or {})})}
    if raw_config is not None:
        meta["mae_config"] = raw_config
    if change is not None:
        change(tensors)
    save_file(tensors, str(path), metadata=meta)
    return path


def test_an_edited_config_fails_before_anything_is_allocated(tmp_path, tiny_run, capsys, monkeypatch):
    run = copy_run(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", config={"embed_dim": 16384, "depth": 64})
    built = []
    real_init = MaskedAutoencoder.__init__

    @functools.wraps(real_init)
    def spy(self, *args, **kwargs):
        built.append(kwargs)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(MaskedAutoencoder, "__init__", spy)
    err = cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "model.safetensors: mae_config embed_dim is 16384 but the stored tensors imply 32" in err
    assert built == []  # not even a meta-device model was built
    err = cli_error(capsys, ["reconstruct", "--run", str(run), "--images", str(tmp_path),
                              "--out", str(tmp_path / "o.png")])  # fmt: skip
    assert "mae_config embed_dim" in err


@pytest.mark.parametrize(
    "edit, message",
    [
        (dict(change=lambda t: t.update({"decoder_pred.weight": torch.zeros(10, 32)})),
         "tensor decoder_pred.weight has shape [10, 32], the model needs [192, 32]"),
        (dict(change=lambda t: t.pop("norm.bias")), "missing norm.bias"),
        (dict(change=lambda t: t.update({"extra": torch.zeros(2)})), "unexpected extra"),
        (dict(config={"dropout": 0.1}), "mae_config has unknown key(s) dropout"),
        (dict(config={"num_heads": "two"}), "mae_config num_heads must be a positive int"),
        (dict(raw_config="{not json"), "mae_config metadata is not valid JSON"),
        (dict(raw_config="[1, 2]"), "mae_config metadata must be a JSON object"),
    ],
)
def test_inconsistent_weights_are_user_errors(tmp_path, tiny_run, capsys, edit, message):
    run = copy_run(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", **edit)
    err = cli_error(capsys, ["evaluate", "--run", str(run)])
    assert "model.safetensors" in err and message in err, err


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.update({k: v.to(torch.int8) for k, v in t.items()}), "is I8, not floating point"),
        (lambda t: t.update({k: torch.full_like(v, float("nan")) for k, v in t.items()}), "NaN/inf value"),
        (lambda t: t["blocks.0.mlp.fc1.weight"].view(-1)[3].fill_(float("inf")), "blocks.0.mlp.fc1.weight holds 1"),
    ],
)
def test_int8_or_non_finite_weights_are_refused(tmp_path, tiny_run, capsys, change, message):
    run = copy_run(tiny_run, tmp_path)
    _rewrite(run / "checkpoints" / "best", change=change)
    assert message in cli_error(capsys, ["evaluate", "--run", str(run)])
    # resuming from such weights is refused the same way
    _rewrite(run / "checkpoints" / "last", change=change)
    assert message in cli_error(capsys, ["train", "--resume", str(run), "--epochs", "3"])



# ---------------------------------------------------------------------- damaged checkpoint files
@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda p: p.write_bytes(b""), "state.pt is empty (0 bytes)"),
        (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "state.pt"),
        (lambda p: torch.save([1, 2, 3], p), "state.pt holds a list, not a checkpoint's state"),
        (lambda p: torch.save({"epoch": "two"}, p), "state.pt lacks"),
    ],
    ids=["empty", "truncated", "a list", "wrong entries"],
)
def test_damaged_state_files_are_named_errors(tmp_path, tiny_run, capsys, damage, message):
    run = copy_run(tiny_run, tmp_path)
    damage(run / "checkpoints" / "best" / ckpt.STATE_FILE)
    err = cli_error(capsys, ["evaluate", "--run", str(run), "--baselines", "mean_fill"])
    assert message in err and "checkpoints/best" in err, err
    last = run / "checkpoints" / "last" / ckpt.STATE_FILE
    damage(last)
    damaged = last.read_bytes()
    err = cli_error(capsys, ["train", "--resume", str(run), "--epochs", "3"])
    assert message in err and "checkpoints/last" in err, err
    assert last.read_bytes() == damaged  # nothing replaced: the file is still there to inspect or restore


@pytest.mark.parametrize("size", [0, 100], ids=["empty", "truncated"])
def test_damaged_weights_files_are_named_errors(tmp_path, tiny_run, capsys, size):
    run = copy_run(tiny_run, tmp_path)
    weights = run / "checkpoints" / "best" / ckpt.MODEL_FILE
    weights.write_bytes(weights.read_bytes()[:size])
    err = cli_error(capsys, ["evaluate", "--run", str(run), "--baselines", "mean_fill"])
    assert "model.safetensors" in err and "damaged" in err, err


def test_state_file_permissions_match_the_weights(tmp_path):
    _save(tmp_path / "last", 1.0)
    modes = {p.name: p.stat().st_mode & 0o777 for p in (tmp_path / "last").iterdir()}
    assert modes[ckpt.STATE_FILE] == modes[ckpt.MODEL_FILE], modes


def test_an_interrupted_overwrite_points_at_the_previous_run_and_resume_restores_it(tmp_path, tiny_run, capsys):
    """An ``--overwrite`` killed before its first checkpoint leaves the old run in RUN/.replaced/ (and
    maybe the new run's config.json and a stale lock): evaluate names it and the way back, which works."""
    run = copy_run(tiny_run, tmp_path)
    weights = (run / "checkpoints" / "best" / ckpt.MODEL_FILE).read_bytes()
    aside = run / ".replaced"
    aside.mkdir()
    for name in ("config.json", "split.json", "metrics.jsonl", "log.txt", "checkpoints"):
        os.replace(run / name, aside / name)
    (run / "config.json").write_text((aside / "config.json").read_text())  # the new run had written its own
    (run / ".lock").write_text(json.dumps({"pid": 2**22 + 17, "host": os.uname().nodename, "started": "?"}))
    err = cli_error(capsys, ["evaluate", "--run", str(run), "--baselines", "mean_fill"])
    assert str(aside) in err and f"--resume {run}" in err, err
    from mae_utils.app import cli

    assert cli.main(["train", "--resume", str(run)]) == 0
    assert not aside.exists() and (run / "checkpoints" / "best" / ckpt.MODEL_FILE).read_bytes() == weights
    assert cli.main(["evaluate", "--run", str(run), "--baselines", "mean_fill"]) == 0
