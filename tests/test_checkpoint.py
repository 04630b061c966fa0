"""Checkpoints: atomic replacement, no code execution on load, exact round trips."""

from __future__ import annotations

import os
import pickle
import random

import numpy as np
import pytest
import torch

from mae_utils.util import checkpoint as ckpt
from mae_utils.util.errors import UserError
from mae_utils.model import build_mae


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
    loaded = ckpt.load_model(tmp_path / "best")
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
