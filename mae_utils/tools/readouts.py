"""Frozen readouts of the encoder: the numbers per face that a linear probe (or a small head) reads.

The encoder sees the *whole* face (every patch in order, no masking), as in the MAE paper's linear
probe (He et al. 2021, sec. 4 and appendix A.2). From its tokens, one row of numbers per face:

* ``mean`` / ``cls``: the mean patch token / the class token after the final norm (the usual);
* ``grid``: the patch tokens after the final norm averaged over coarse regions of the face, a 2 x 2
  and a 4 x 4 grid, concatenated (20 x the width): a single mean forgets *where* a feature is, and
  a beard or glasses live in one region;
* ``blocks``: the mean patch token of every block's output (before any norm): frozen MAE features
  are often best in a middle block, not the last.

A probe standardises each readout per feature with the *training* faces' mean and standard
deviation (:class:`Standardiser`), which is what the official probe's BatchNorm without affine
parameters does: the test faces never shape it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..util.progress import tqdm
from ..model import MaskedAutoencoder
from ..transforms import batch_to_input

__all__ = [
    "GRID_SIZES", "READOUTS", "EncoderFeatures", "Standardiser", "encode", "grid_pool",
    "pixels", "random_twin", "readout_features",
]

#: The readouts a probe can read (see the module docstring).
READOUTS = ("mean", "cls", "grid", "blocks")
#: The coarse grids the patch tokens are averaged over (regions per side), concatenated.
GRID_SIZES = (2, 4)
#: Added to the variance before the square root, as BatchNorm does (a constant feature stays 0).
STANDARDISE_EPS = 1e-6


@dataclass
class EncoderFeatures:
    """Pooled encoder outputs of N faces, numpy float32.

    ``mean`` / ``cls`` (N, D): the mean patch token / the class token after the final norm;
    ``grid`` (N, 20 D): :func:`grid_pool` of the same tokens; with ``all_blocks``: ``block_mean`` /
    ``block_cls`` (N, depth + 1, D), every block's output *before* any norm (index 0: the embedded
    patches, k: after block k). ``seconds``: the wall time it took."""

    mean: np.ndarray
    cls: np.ndarray
    grid: np.ndarray
    block_mean: np.ndarray | None
    block_cls: np.ndarray | None
    seconds: float


def grid_pool(tokens: torch.Tensor, sizes: Sequence[int] = GRID_SIZES) -> torch.Tensor:
    """Patch tokens (N, L, D) of a square grid, averaged over ``s`` x ``s`` regions for each ``s``
    in ``sizes``: (N, D * sum(s * s)), each size's regions row-major, every region a D-block."""
    n, length, d = tokens.shape
    side = int(round(length**0.5))
    maps = tokens.transpose(1, 2).reshape(n, d, side, side)
    parts = [F.adaptive_avg_pool2d(maps, s).permute(0, 2, 3, 1).reshape(n, -1) for s in sizes]
    return torch.cat(parts, dim=1)


def _batches(dataset: Any, positions: np.ndarray, batch_size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(positions), batch_size):
        yield torch.stack([dataset[int(i)] for i in positions[start : start + batch_size]])


def _whole_face_tokens(model: MaskedAutoencoder, x: torch.Tensor) -> torch.Tensor:
    """The encoder's input sequence with every patch visible, in patch order: (N, 1 + L, D)."""
    patches = model.patch_embed.flatten_patches(x)
    tokens = model.patch_embed(patches) + model.pos_embed[:, 1:]
    cls = (model.cls_token + model.pos_embed[:, :1]).expand(len(x), -1, -1)
    return torch.cat([cls, tokens], dim=1)


def _encode_batch(model: MaskedAutoencoder, x: torch.Tensor, all_blocks: bool) -> dict[str, Any]:
    h = _whole_face_tokens(model, x)
    per_block = [h]
    for block in model.blocks:
        h = block(h)
        per_block.append(h)
    final = model.norm(h)
    out = {"mean": final[:, 1:].mean(1), "cls": final[:, 0], "grid": grid_pool(final[:, 1:])}
    if all_blocks:
        out["block_mean"] = torch.stack([b[:, 1:].mean(1) for b in per_block], 1)
        out["block_cls"] = torch.stack([b[:, 0] for b in per_block], 1)
    return {k: v.float().cpu() for k, v in out.items()}


@torch.no_grad()
def encode(
    model: MaskedAutoencoder,
    dataset: Any,
    positions: Sequence[int] | np.ndarray | None = None,
    *,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    all_blocks: bool = False,
    progress: bool = True,
    desc: str = "encoding faces",
) -> EncoderFeatures:
    """The frozen encoder on whole faces (no masking), pooled per face."""
    if positions is None:
        positions = np.arange(len(dataset))
    positions = np.asarray(positions, dtype=np.int64)
    model = model.to(torch.device(device)).eval()
    outs: dict[str, list[torch.Tensor]] = {}
    started = time.perf_counter()
    bar = tqdm(total=len(positions), desc=desc, unit="img", disable=not progress)
    for batch in _batches(dataset, positions, batch_size):
        for key, value in _encode_batch(model, batch_to_input(batch, device), all_blocks).items():
            outs.setdefault(key, []).append(value)
        bar.update(len(batch))
    bar.close()
    cat = {k: torch.cat(v).numpy() for k, v in outs.items()}
    return EncoderFeatures(cat["mean"], cat["cls"], cat["grid"], cat.get("block_mean"),
                           cat.get("block_cls"), time.perf_counter() - started)


def readout_features(
    enc: EncoderFeatures, readouts: Sequence[str] = READOUTS
) -> dict[str, np.ndarray]:
    """The rows a probe reads, by name: ``mean``, ``cls``, ``grid`` and, for ``blocks``,
    ``block1`` .. ``blockK`` (each block's mean patch token; needs ``encode(all_blocks=True)``)."""
    out = {name: getattr(enc, name) for name in ("mean", "cls", "grid") if name in readouts}
    if "blocks" in readouts:
        if enc.block_mean is None:
            raise ValueError("the 'blocks' readout needs encode(..., all_blocks=True)")
        for k in range(1, enc.block_mean.shape[1]):
            out[f"block{k}"] = enc.block_mean[:, k]
    return out


@dataclass
class Standardiser:
    """Per-feature standardisation with statistics of the training faces only: the official linear
    probe's BatchNorm without affine parameters, frozen after one pass over the training set."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x_train: np.ndarray) -> "Standardiser":
        x = np.asarray(x_train, dtype=np.float64)
        return cls(x.mean(0), np.sqrt(x.var(0) + STANDARDISE_EPS))

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, dtype=np.float64) - self.mean) / self.scale).astype(np.float32)


def random_twin(model: MaskedAutoencoder, seed: int = 0) -> MaskedAutoencoder:
    """The same architecture with fresh, seeded initial weights: the never-trained baseline."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return MaskedAutoencoder(**model.config).eval()


def pixels(
    dataset: Any, positions: Sequence[int] | np.ndarray, batch_size: int = 512
) -> np.ndarray:
    """Faces as flat pixel rows in [0, 1], float32 (N, H * W * 3): the input of the PCA baseline."""
    positions = np.asarray(positions, dtype=np.int64)
    rows = [b.reshape(len(b), -1).numpy().astype(np.float32) / 255.0
            for b in _batches(dataset, positions, batch_size)]
    return np.concatenate(rows) if rows else np.zeros((0, 0), np.float32)
