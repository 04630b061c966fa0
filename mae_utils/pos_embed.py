"""Fixed 2-D sine-cosine position tables (Vaswani et al. 2017, extended to 2-D as in MAE).

MAE keeps its position tables fixed rather than learned, so a model trained at one grid can be
moved to another by recomputing the table. The layout matches the official MAE weights: for the
token at row ``r`` and column ``c`` of the patch grid (tokens in row-major order), the first half of
the channels encodes the column ``c`` and the second half the row ``r``; each half is
``[sin(pos * w_k), cos(pos * w_k)]`` with ``w_k = 10000 ** (-k / (D/4))``.
"""

from __future__ import annotations

import torch

from .util.errors import UserError


def sincos_1d(embed_dim: int, positions: torch.Tensor) -> torch.Tensor:
    """(P,) positions -> (P, embed_dim) table: sines in the first half, cosines in the second."""
    if embed_dim % 2:
        raise UserError(f"embed_dim must be even for a sin-cos table, got {embed_dim}")
    k = torch.arange(embed_dim // 2, dtype=torch.float64) / (embed_dim / 2.0)
    omega = 1.0 / (10000.0**k)
    angles = positions.to(torch.float64)[:, None] * omega[None, :]
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos_2d(embed_dim: int, grid: int | tuple[int, int], cls_token: bool = True) -> torch.Tensor:
    """Position table for a ``grid`` of patches (an int for square grids, or (rows, cols)).

    Returns float32 of shape (rows*cols [+1], embed_dim); with ``cls_token`` the first row is zeros,
    the class token's slot.
    """
    rows, cols = (grid, grid) if isinstance(grid, int) else grid
    if embed_dim % 4:
        raise UserError(
            f"embed_dim must be a multiple of 4 for a 2-D sin-cos table, got {embed_dim}"
        )
    if rows < 1 or cols < 1:
        raise UserError(f"the patch grid must be at least 1x1, got {rows}x{cols}")
    row_idx, col_idx = torch.meshgrid(torch.arange(rows), torch.arange(cols), indexing="ij")
    half = embed_dim // 2  # half the channels encode the column, half the row
    cols_table = sincos_1d(half, col_idx.reshape(-1))
    rows_table = sincos_1d(half, row_idx.reshape(-1))
    table = torch.cat([cols_table, rows_table], dim=1)
    if cls_token:
        table = torch.cat([torch.zeros(1, embed_dim, dtype=table.dtype), table], dim=0)
    return table.float()
