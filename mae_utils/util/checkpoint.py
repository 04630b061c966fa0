"""Checkpoints that load without running code, and that a crash cannot corrupt.

A checkpoint is a folder with two files:

* ``model.safetensors``: the weights. safetensors is a plain header + raw tensor bytes, so
  loading it cannot execute anything; its metadata holds the model's constructor arguments
  (``mae_config``), so the folder alone rebuilds the model.
* ``state.pt``: optimizer, scheduler, grad scaler, epoch, step, RNG states, history and config, only
  tensors and plain Python values, read back with ``torch.load(weights_only=True)``, PyTorch's
  restricted unpickler that refuses arbitrary objects (a crafted pickle fails instead of running).

Writing is atomic: both files go into a fresh temporary folder next to the target, which then
replaces the old folder by two renames (old -> ``NAME.old``, new -> ``NAME``). A crash at any point
leaves either the new or the previous checkpoint readable; :func:`resolve` falls back to
``NAME.old`` for the one instant when only that exists. A write that fails (disk full, folder not
writable) removes its temporary folder and raises a :class:`UserError`; the previous checkpoint
stays.

Reading validates before allocating: :func:`mae_utils.pretrained.load_model` checks the stored
``mae_config`` (known keys only, sizes equal to what the tensors' shapes imply) against the
safetensors header, builds nothing bigger than the file describes, and refuses non-float or
non-finite weights, naming the file and the field or tensor.
"""

from __future__ import annotations

import errno
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
from .fileio import environment_error

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
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{ckpt_dir.name}.tmp-", dir=parent))
    except OSError as exc:
        raise environment_error(exc, parent, "write a checkpoint in") from None
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in model_state.items()}
        metadata = {"format": "pt"}
        if model_config is not None:
            metadata["mae_config"] = json.dumps(model_config)
        try:
            save_file(tensors, str(tmp / MODEL_FILE), metadata=metadata)
            # safetensors can drop a write error: read it back
            _, written = _header(tmp / MODEL_FILE)
            if set(written) != set(tensors):
                raise OSError(errno.EIO, "model.safetensors read back incomplete")
            torch.save(state, tmp / STATE_FILE)
            mode = (tmp / MODEL_FILE).stat().st_mode & 0o777
            os.chmod(tmp / STATE_FILE, mode)  # as private as the weights
            for name in (MODEL_FILE, STATE_FILE):
                _fsync_file(tmp / name)
        except (OSError, RuntimeError, SafetensorError, UserError) as exc:
            raise _write_error(exc, ckpt_dir) from None
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


def _write_error(exc: BaseException, ckpt_dir: Path) -> UserError:
    """A failed checkpoint write as one line; torch and safetensors report a full disk in their
    own words."""
    kept = "nothing was saved"
    if _complete(ckpt_dir):
        kept = f"the previous checkpoint in {ckpt_dir} is kept"
    if isinstance(exc, OSError):
        return UserError(f"{environment_error(exc, ckpt_dir, 'save checkpoint')}; {kept}")
    free = shutil.disk_usage(ckpt_dir.parent).free
    reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return UserError(f"cannot save checkpoint {ckpt_dir}: the write failed (disk full? "
                     f"{free / 2**20:.0f} MiB free): {reason}; {kept}")


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


#: What every ``state.pt`` of the training loop (:mod:`mae_utils.util.loop`) holds, by type.
STATE_TYPES: dict[str, type | tuple[type, ...]] = {
    "epoch": int,
    "step": int,
    "best_val_loss": (int, float),
    "stale_evals": int,
    "optimizer": dict,
    "scheduler": dict,
    "scaler": dict,
    "rng": dict,
    "history": list,
}

#: What a training run's ``state.pt`` must hold, and of which type, to be resumed or evaluated.
TRAIN_STATE_TYPES = {**STATE_TYPES, "config": dict, "world_size": int}

#: What torch.load raises on a file that is no plain state (or a damaged one).
_UNREADABLE = (pickle.UnpicklingError, RuntimeError, EOFError, AttributeError, ValueError, OSError)

_DAMAGED = "restore it from a backup, or use the run's other checkpoint (--checkpoint last / best)"


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def load_state(
    ckpt_dir: str | Path,
    map_location: str | torch.device = "cpu",
    required: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """``state.pt`` through PyTorch's restricted unpickler: tensors and plain values only.

    ``required`` (e.g. :data:`TRAIN_STATE_TYPES`) names entries that must be present with those
    types; an empty, truncated or otherwise damaged file is a :class:`UserError` naming it.
    """
    return load_state_file(resolve(ckpt_dir) / STATE_FILE, map_location, required, _DAMAGED)


def load_state_file(
    path: str | Path,
    map_location: str | torch.device = "cpu",
    required: dict[str, Any] | None = None,
    advice: str = "restore it from a backup",
) -> dict[str, Any]:
    """One ``state.pt``-style file through the restricted unpickler (see :func:`load_state`); a
    missing, empty, damaged or incomplete file is a :class:`UserError` naming it and ending with
    ``advice``."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is missing; {advice}")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: {path.name} is empty (0 bytes), a damaged file; {advice}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except _UNREADABLE as exc:
        raise UserError(f"{path}: refused to load (not a plain tensor/state file, or damaged): "
                        f"{_first_line(exc)}") from None
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise UserError(f"{path}: {path.name} holds a {kind}, not a checkpoint's state; {advice}")
    bad = [k for k, kind in (required or {}).items() if not _is(state.get(k), kind)]
    if bad:
        raise UserError(f"{path}: {path.name} lacks {', '.join(bad)} (or holds the wrong type); "
                        f"{advice}")
    return state


def _is(value: Any, kind: type | tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is no int (nor float)."""
    return isinstance(value, kind) and not isinstance(value, bool)


def load_model_state(
    ckpt_dir: str | Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The weights from ``model.safetensors`` (no pickle involved)."""
    return load_weights_file(resolve(ckpt_dir) / MODEL_FILE, device)


def _header(path: Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {tensor name: (dtype, shape)}) from a safetensors header, without reading
    tensors."""
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            tensors = {}
            for k in fh.keys():
                sl = fh.get_slice(k)
                tensors[k] = (sl.get_dtype(), tuple(sl.get_shape()))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file (empty, truncated or damaged?): "
                        f"{_first_line(exc)}") from None
    return meta, tensors


def read_header(path: str | Path) -> tuple[dict[str, str], dict[str, tuple[str, tuple[int, ...]]]]:
    """(metadata, {tensor: (dtype, shape)}) of any safetensors file, without reading its tensors."""
    return _header(Path(path))


def read_header_metadata(path: str | Path) -> dict[str, str]:
    return _header(Path(path))[0]


def load_weights_file(
    path: str | Path, device: str | torch.device = "cpu"
) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file (no pickle involved)."""
    try:
        return load_file(str(path), device=str(device))
    except (SafetensorError, OSError) as exc:
        raise UserError(f"{path}: not a readable safetensors file (damaged?): "
                        f"{_first_line(exc)}") from None


def read_model_config(ckpt_dir: str | Path) -> dict[str, Any]:
    """The ``MaskedAutoencoder`` constructor arguments stored with the weights."""
    return read_file_config(resolve(ckpt_dir) / MODEL_FILE)


def read_file_config(path: str | Path) -> dict[str, Any]:
    """The ``mae_config`` metadata of one ``model.safetensors`` file."""
    path = Path(path)
    meta, _ = _header(path)
    if "mae_config" not in meta:
        raise UserError(f"{path}: no mae_config in its metadata; was it written by maskAE?")
    try:
        config = json.loads(meta["mae_config"])
    except ValueError as exc:
        raise UserError(f"{path}: its mae_config metadata is not valid JSON ({exc})") from None
    if not isinstance(config, dict):
        kind = type(config).__name__
        raise UserError(f"{path}: its mae_config metadata must be a JSON object, not {kind}")
    return config


_FLOAT_DTYPES = ("F16", "BF16", "F32", "F64")  # safetensors' names
_DTYPE_NAMES = {
    torch.float16: "F16", torch.bfloat16: "BF16", torch.float32: "F32", torch.float64: "F64"
}


def describe_tensors(state: dict[str, torch.Tensor]) -> dict[str, tuple[str, tuple[int, ...]]]:
    """{name: (safetensors dtype name, shape)} of loaded tensors, for :func:`check_tensor_set`."""
    def name(dtype: torch.dtype) -> str:
        return _DTYPE_NAMES.get(dtype, str(dtype).replace("torch.", ""))

    return {k: (name(v.dtype), tuple(v.shape)) for k, v in state.items()}


def check_tensor_set(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[str, tuple[int, ...]]], source: str
) -> None:
    """Same names, same shapes, floating-point dtypes; else a :class:`UserError` naming the
    tensor."""
    missing, unexpected = sorted(set(expected) - set(found)), sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = ([f"missing {', '.join(missing[:5])}"] if missing else []) + (
            [f"unexpected {', '.join(unexpected[:5])}"] if unexpected else [])
        raise UserError(f"{source}: weights do not match the model: {'; '.join(parts)}")
    for name, shape in expected.items():
        dtype, got = found[name]
        if got != shape:
            raise UserError(f"{source}: tensor {name} has shape {list(got)}, the model needs "
                            f"{list(shape)}")
        if dtype not in _FLOAT_DTYPES:
            raise UserError(f"{source}: tensor {name} is {dtype}, not floating point")


def check_finite(state: dict[str, torch.Tensor], source: str) -> None:
    """Refuse weights holding NaN or infinity: they give NaN reconstructions and meaningless
    scores."""
    for name, t in state.items():
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            bad = int((~torch.isfinite(t)).sum())
            raise UserError(f"{source}: tensor {name} holds {bad} NaN/inf value(s) of "
                            f"{t.numel()}; refused")


def load_weights_into(
    model: torch.nn.Module, ckpt_dir: str | Path, device: str | torch.device = "cpu"
) -> None:
    """Load ``model.safetensors`` into ``model`` after checking names, shapes, dtypes and
    finiteness."""
    path = resolve(ckpt_dir) / MODEL_FILE
    _, tensors = _header(path)
    check_tensor_set({k: tuple(v.shape) for k, v in model.state_dict().items()}, tensors, str(path))
    state = load_model_state(ckpt_dir, device)
    check_finite(state, str(path))
    model.load_state_dict(state, strict=True)


def check_not_half_replaced(run_dir: str | Path, which: str = "best") -> None:
    """Refuse, with the way back, a run whose ``--overwrite`` was killed before the new run saved:
    the old run then sits in ``RUN/.replaced/`` and ``train --resume RUN`` moves it back."""
    run_dir = Path(run_dir)
    aside = run_dir / ".replaced"  # rundir.REPLACED_DIR (rundir imports this module)
    if not aside.is_dir():
        return
    try:
        resolve(run_dir / "checkpoints" / which)
    except UserError:
        raise UserError(
            f"no checkpoint in {run_dir}/checkpoints/{which}: an --overwrite was interrupted "
            f"before the new run saved one, and the previous run sits in {aside}; restore it with "
            f"'python -m mae_utils train --resume {run_dir}' (it moves the previous run back and "
            "continues it)"
        ) from None


def check_run_files(run_dir: str | Path, which: str = "best") -> None:
    """Refuse a run folder whose ``config.json``, ``split.json`` and checkpoint come from
    different runs.

    Each run records one ``run_id`` in all three (runs written before ids existed have none and
    pass).
    A mixed folder would otherwise be scored on a "test" split the model trained on.
    """
    run_dir = Path(run_dir)
    ids = {}
    for name in ("config.json", "split.json"):
        try:
            data = json.loads((run_dir / name).read_text())
            ids[name] = data.get("run_id") if isinstance(data, dict) else None
        except (OSError, ValueError):
            ids[name] = None
    state = load_state(run_dir / "checkpoints" / which, required=TRAIN_STATE_TYPES)
    ids[f"checkpoints/{which}"] = state.get("run_id")
    known = {k: v for k, v in ids.items() if v}
    if len(set(known.values())) > 1:
        listed = ", ".join(f"{k} (run {v[:8]})" for k, v in known.items())
        raise UserError(
            f"{run_dir} mixes files of different runs: {listed}; re-train it, or copy a complete "
            "run folder"
        )


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
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["name"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
