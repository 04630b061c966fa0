"""Checkpoints that load without running code, and that a crash cannot corrupt.

A checkpoint is a folder with two files:

* ``model.safetensors``: the weights. safetensors is a plain header + raw tensor bytes, so loading it
  cannot execute anything; its metadata holds the model's constructor arguments (``mae_config``), so
  the folder alone rebuilds the model.
* ``state.pt``: optimizer, scheduler, grad scaler, epoch, step, RNG states, history and config, only
  tensors and plain Python values, read back with ``torch.load(weights_only=True)``, PyTorch's
  restricted unpickler that refuses arbitrary objects (a crafted pickle fails instead of running).

Writing is atomic: both files go into a fresh temporary folder next to the target, which then
replaces the old folder by two renames (old -> ``NAME.old``, new -> ``NAME``). A crash at any point
leaves either the new or the previous checkpoint readable; :func:`resolve` falls back to
``NAME.old`` for the one instant when only that exists.
"""

from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from .errors import UserError

MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"


# ---------------------------------------------------------------------- writing
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as fh:
        os.fsync(fh.fileno())


def save_checkpoint(
    ckpt_dir: str | Path,
    model_state: dict[str, torch.Tensor],
    state: dict[str, Any],
    model_config: dict[str, Any] | None = None,
) -> Path:
    """Atomically replace ``ckpt_dir`` by a folder holding ``model.safetensors`` and ``state.pt``.

    ``model_state`` is a ``state_dict``; ``state`` must hold only tensors and plain Python values
    (what ``torch.load(weights_only=True)`` accepts); ``model_config`` (JSON-able) is stored in the
    safetensors metadata.
    """
    ckpt_dir = Path(ckpt_dir)
    parent = ckpt_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    old = parent / f"{ckpt_dir.name}.old"
    if not ckpt_dir.exists() and _complete(old):  # a previous save died between its two renames
        os.replace(old, ckpt_dir)
    tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.tmp-", dir=parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        metadata = {"format": "pt"}
        if model_config is not None:
            metadata["mae_config"] = json.dumps(model_config)
        save_file(tensors, str(tmp / MODEL_FILE), metadata=metadata)
        torch.save(state, tmp / STATE_FILE)
        for name in (MODEL_FILE, STATE_FILE):
            _fsync_file(tmp / name)
        if old.exists():
            shutil.rmtree(old)
        if ckpt_dir.exists():
            os.replace(ckpt_dir, old)
        os.replace(tmp, ckpt_dir)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    shutil.rmtree(old, ignore_errors=True)
    return ckpt_dir


# ---------------------------------------------------------------------- reading
def _complete(path: Path) -> bool:
    return (path / MODEL_FILE).is_file() and (path / STATE_FILE).is_file()


def resolve(ckpt_dir: str | Path) -> Path:
    """The readable folder for ``ckpt_dir``: itself, or ``NAME.old`` if a save died mid-swap."""
    ckpt_dir = Path(ckpt_dir)
    if _complete(ckpt_dir):
        return ckpt_dir
    old = ckpt_dir.parent / f"{ckpt_dir.name}.old"
    if _complete(old):
        return old
    raise UserError(f"no checkpoint in {ckpt_dir} (expected {MODEL_FILE} and {STATE_FILE})")


def load_state(ckpt_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """``state.pt`` through PyTorch's restricted unpickler: tensors and plain values only."""
    path = resolve(ckpt_dir) / STATE_FILE
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError) as exc:
        raise UserError(
            f"{path}: refused to load (not a plain tensor/state file, or damaged): {str(exc).splitlines()[0]}"
        ) from exc


def load_model_state(ckpt_dir: str | Path, device: str | torch.device = "cpu") -> dict[str, torch.Tensor]:
    """The weights from ``model.safetensors`` (no pickle involved)."""
    path = resolve(ckpt_dir) / MODEL_FILE
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file: {exc}") from exc


def read_model_config(ckpt_dir: str | Path) -> dict[str, Any]:
    """The ``MaskedAutoencoder`` constructor arguments stored with the weights."""
    path = resolve(ckpt_dir) / MODEL_FILE
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file: {exc}") from exc
    if "mae_config" not in meta:
        raise UserError(f"{path}: no mae_config in its metadata; was it written by maskAE?")
    return json.loads(meta["mae_config"])


def load_model(ckpt_dir: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the :class:`~mae_utils.model.MaskedAutoencoder` saved in ``ckpt_dir`` (eval mode)."""
    from .model import MaskedAutoencoder

    model = MaskedAutoencoder(**read_model_config(ckpt_dir))
    model.load_state_dict(load_model_state(ckpt_dir), strict=True)
    return model.to(device).eval()


def load_model_from_run(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu"):
    """``(model, TrainConfig)`` of a training run; ``which`` is 'best' or 'last'."""
    from .config import load_run_config

    if which not in ("best", "last"):
        raise UserError(f"which must be 'best' or 'last'; got {which!r}")
    config = load_run_config(run_dir)
    return load_model(Path(run_dir) / "checkpoints" / which, device), config


# ---------------------------------------------------------------------- RNG states
def capture_rng() -> dict[str, Any]:
    """torch (CPU and CUDA), numpy and Python RNG states as tensors and plain values."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "name": str(np_state[0]),
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"].cpu())
    n = state["numpy"]
    np.random.set_state(
        (n["name"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
