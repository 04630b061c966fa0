"""Which patches the encoder sees.

Training hides a random subset of each image's patches, the MAE recipe (He et al. 2021, sec. 3:
uniform random sampling, 75% hidden). The trick is :func:`masking_ids`: sort one random number per
patch, keep the smallest; the model, :func:`random_masking` and the notebook all use it. Evaluation
and demos use structured masks (center block, half face, eyes or mouth band, an explicit list); they
enter the model as an explicit (N, L) 0/1 tensor, which :func:`masking_noise` turns into numbers
that sort the visible patches first.

Convention everywhere: ``mask`` is (N, L) float, 1 = hidden, 0 = visible; patches in row-major
order.
"""

from __future__ import annotations

from typing import Sequence

import torch

from .util.errors import UserError, check_seed

MASK_KINDS = ("random", "center", "left", "right", "eyes", "mouth", "patches")


def num_visible(num_patches: int, mask_ratio: float) -> int:
    """How many patches stay visible: ``int(L * (1 - ratio))``, the official rounding."""
    if not 0.0 <= mask_ratio < 1.0:
        raise UserError(f"mask_ratio must be in [0, 1), got {mask_ratio}")
    keep = int(num_patches * (1 - mask_ratio))
    if keep < 1:
        raise UserError(f"mask_ratio {mask_ratio} leaves no visible patch out of {num_patches}")
    return keep


def gather_tokens(x: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """Rows of tokens picked per image: x (N, L, D), ids (N, K) -> (N, K, D)."""
    return torch.gather(x, 1, ids.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def masking_ids(noise: torch.Tensor, keep: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The MAE masking trick: one random number per patch; the ``keep`` smallest stay visible.

    noise (N, L) -> ``ids_keep`` (N, K): the visible patches, ``mask`` (N, L): 1 = hidden, in patch
    order, ``ids_restore`` (N, L): where each patch went in the sorted order, which puts the
    encoder's [visible, then mask tokens] sequence back into patch order. The model and the notebook
    both call it.
    """
    ids_shuffle = torch.argsort(noise, dim=1)  # each row's patches, smallest noise first
    ids_restore = torch.argsort(ids_shuffle, dim=1)  # the inverse permutation: undoes the sort
    mask = (ids_restore >= keep).float()  # a patch sorted past the first `keep` is hidden
    return ids_shuffle[:, :keep], mask, ids_restore


def masking_noise(
    n: int,
    length: int,
    device: torch.device | str = "cpu",
    *,
    mask_ratio: float = 0.75,
    noise: torch.Tensor | None = None,
    mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, int]:
    """(noise (N, L), keep): what :func:`masking_ids` sorts, checked.

    Fresh uniform noise unless ``noise`` is given; ``keep`` = ``int(L * (1 - mask_ratio))``. An
    explicit (N, L) ``mask`` (1 = hidden) wins: it becomes noise that sorts its visible patches
    first, in patch order.
    """
    if mask is not None:
        keep = check_mask(mask, n, length)
        order = torch.arange(length, device=device, dtype=torch.float32)
        return mask.to(device, torch.float32) * length + order, keep
    keep = num_visible(length, mask_ratio)
    if noise is None:
        return torch.rand(n, length, device=device), keep
    if noise.shape != (n, length):
        raise UserError(f"noise must have shape (N, L) = {(n, length)}, got {tuple(noise.shape)}")
    return noise.to(device), keep


def random_masking(
    x: torch.Tensor, mask_ratio: float, noise: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hide a random ``mask_ratio`` of each row's tokens (the official MAE function's signature).

    x: (N, L, D). ``noise`` (N, L) decides the mask: the ``int(L * (1 - mask_ratio))`` tokens with
    the smallest noise stay visible (official MAE and Hugging Face semantics), so equal noise gives
    an equal mask. Returns ``(x_kept (N, K, D), mask (N, L) 1=hidden, ids_restore (N, L))``.
    """
    noise, keep = masking_noise(*x.shape[:2], x.device, mask_ratio=mask_ratio, noise=noise)
    ids_keep, mask, ids_restore = masking_ids(noise, keep)
    return gather_tokens(x, ids_keep), mask.to(x.dtype), ids_restore


def check_mask(mask: torch.Tensor, n: int, length: int) -> int:
    """Validate an explicit mask; return how many patches each row keeps visible."""
    if mask.shape != (n, length):
        raise UserError(f"mask must have shape (N, L) = {(n, length)}, got {tuple(mask.shape)}")
    if not torch.all((mask == 0) | (mask == 1)):
        raise UserError("mask must hold only 0 (visible) and 1 (hidden)")
    hidden = mask.sum(dim=1)
    if not torch.all(hidden == hidden[0]):
        raise UserError(
            "every row of mask must hide the same number of patches "
            f"(got {sorted(set(int(h) for h in hidden.tolist()))})"
        )
    keep = length - int(hidden[0])
    if keep < 1:
        raise UserError("mask hides every patch: at least one must stay visible")
    return keep


def mask_to_indices(
    x: torch.Tensor, mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Like :func:`random_masking`, for an explicit (N, L)
    mask (1 = hidden); visible tokens keep their order."""
    noise, keep = masking_noise(*x.shape[:2], x.device, mask=mask)
    ids_keep, mask, ids_restore = masking_ids(noise, keep)
    return gather_tokens(x, ids_keep), mask.to(x.dtype), ids_restore


# ---------------------------------------------------------------- evaluation and demo masks
def _grid(grid: int | tuple[int, int]) -> tuple[int, int]:
    return (grid, grid) if isinstance(grid, int) else (int(grid[0]), int(grid[1]))


def _rows_mask(grid: tuple[int, int], start: float, stop: float) -> torch.Tensor:
    rows, cols = grid
    r0, r1 = int(round(start * rows)), max(int(round(stop * rows)), int(round(start * rows)) + 1)
    m = torch.zeros(rows, cols)
    m[r0:r1] = 1
    return m


def centred_block(rows: int, cols: int, mask_ratio: float) -> tuple[int, int]:
    """(height, width) in patches of the center mask's block: its area the closest to ``mask_ratio``
    that a block exactly in the middle of the grid allows.

    Exactly centred means each side has the grid's parity (a 7x7 block cannot sit in the middle of
    8x8) and leaves a margin (never the full height or width). So the area moves in steps: on an 8x8
    grid the blocks are 2, 4 or 6 patches a side, and 0.75 gives 6x6 = 56% (the closest; 7x7 would
    be off-centre). Ties go to the squarer block. ``mask_ratio`` must be in (0, 1).
    """
    if not 0.0 < mask_ratio < 1.0:
        raise UserError(
            "the center mask's mask_ratio is the block's area and must be between 0 and 1 "
            f"(exclusive); got {mask_ratio}"
        )
    side_r = [s for s in range(rows % 2 or 2, rows, 2)] or [rows]
    side_c = [s for s in range(cols % 2 or 2, cols, 2)] or [cols]
    pairs = [(r, c) for r in side_r for c in side_c]

    # area gap first, then how far from square
    def closeness(rc: tuple[int, int]) -> tuple[float, float]:
        return abs(rc[0] * rc[1] / (rows * cols) - mask_ratio), abs(rc[0] / rows - rc[1] / cols)

    return min(pairs, key=closeness)


def structured_mask(
    kind: str,
    grid: int | tuple[int, int],
    *,
    mask_ratio: float = 0.75,
    patches: Sequence[int] | None = None,
) -> torch.Tensor:
    """One (L,) mask of a named shape on a patch grid (rows, cols); 1 = hidden.

    center: a block exactly in the middle, its area the closest to ``mask_ratio`` that a centred
    block allows (:func:`centred_block`: on an 8x8 grid, 6x6 = 56% at 0.75); left/right: that half
    of the face; eyes: the band at 30-50% of the height where aligned faces have their eyes; mouth:
    the band at 65-85%; patches: the explicit list of patch indices (row-major).
    """
    rows, cols = _grid(grid)
    if kind == "center":
        side_r, side_c = centred_block(rows, cols, mask_ratio)
        m = torch.zeros(rows, cols)
        r0, c0 = (rows - side_r) // 2, (cols - side_c) // 2
        m[r0 : r0 + side_r, c0 : c0 + side_c] = 1
    elif kind in ("left", "right"):
        m = torch.zeros(rows, cols)
        half = cols // 2
        if kind == "left":
            m[:, :half] = 1
        else:
            m[:, cols - half :] = 1
    elif kind == "eyes":
        m = _rows_mask((rows, cols), 0.30, 0.50)
    elif kind == "mouth":
        m = _rows_mask((rows, cols), 0.65, 0.85)
    elif kind == "patches":
        if not patches:
            raise UserError("mask kind 'patches' needs a non-empty list of patch indices")
        bad = [p for p in patches if not 0 <= int(p) < rows * cols]
        if bad:
            grid = f"{rows}x{cols} grid (0..{rows * cols - 1})"
            raise UserError(f"patch indices {bad[:5]} are outside the {grid}")
        m = torch.zeros(rows * cols)
        m[torch.as_tensor([int(p) for p in patches])] = 1
    elif kind == "random":
        raise UserError("use make_mask(kind='random', ...) for random masks (they need a seed)")
    else:
        raise UserError(f"unknown mask kind {kind!r}; choose one of {', '.join(MASK_KINDS)}")
    m = m.reshape(-1)
    if m.sum() >= m.numel():
        raise UserError(f"mask {kind!r} hides every patch of the {rows}x{cols} grid")
    return m


def make_mask(
    kind: str,
    n: int,
    grid: int | tuple[int, int],
    *,
    mask_ratio: float = 0.75,
    patches: Sequence[int] | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """(N, L) masks for ``n`` images: random ones (seeded,
    per image) or one structured shape repeated."""
    rows, cols = _grid(grid)
    if kind == "random":
        check_seed(seed)
        length = rows * cols
        keep = num_visible(length, mask_ratio)
        noise = torch.rand(n, length, generator=torch.Generator().manual_seed(seed))
        ids = torch.argsort(noise, dim=1)
        mask = torch.ones(n, length)
        mask.scatter_(1, ids[:, :keep], 0.0)
        return mask
    shape = structured_mask(kind, (rows, cols), mask_ratio=mask_ratio, patches=patches)
    return shape.expand(n, -1).clone()
