from pathlib import Path

import pytest
import torch

from mae_utils.masking import make_mask, mask_to_indices, masking_ids, masking_noise, random_masking, structured_mask
from mae_utils.util.errors import UserError

from conftest import write_faces
from tiny_runs import cli_error


@pytest.mark.parametrize("length,ratio", [(16, 0.75), (64, 0.75), (49, 0.75), (196, 0.9), (10, 0.33), (64, 0.0)])
def test_hidden_count_per_row(length, ratio):
    x = torch.randn(5, length, 8)
    kept, mask, ids_restore = random_masking(x, ratio)
    expected_hidden = length - int(length * (1 - ratio))
    assert kept.shape == (5, length - expected_hidden, 8)
    assert torch.all(mask.sum(1) == expected_hidden)
    assert sorted(ids_restore[0].tolist()) == list(range(length))


def test_smallest_noise_stays_visible_and_kept_tokens_are_those():
    x = torch.arange(8.0).reshape(1, 8, 1)
    noise = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3, 0.6, 0.4]])
    kept, mask, _ = random_masking(x, 0.75, noise=noise)
    assert kept.flatten().tolist() == [1.0, 3.0]  # noise 0.1 then 0.2
    assert mask.tolist() == [[1, 0, 1, 0, 1, 1, 1, 1]]


def test_same_noise_same_mask():
    x = torch.randn(3, 16, 4)
    noise = torch.rand(3, 16)
    a = random_masking(x, 0.75, noise=noise.clone())
    b = random_masking(x, 0.75, noise=noise.clone())
    for u, v in zip(a, b):
        assert torch.equal(u, v)


def test_explicit_mask_keeps_order_and_restores():
    x = torch.arange(6.0).reshape(1, 6, 1)
    mask = torch.tensor([[1.0, 0, 1, 0, 0, 1]])
    kept, out_mask, ids_restore = mask_to_indices(x, mask)
    assert kept.flatten().tolist() == [1.0, 3.0, 4.0]
    assert torch.equal(out_mask, mask)
    shuffled = torch.cat([kept, torch.full((1, 3, 1), -1.0)], 1)
    restored = torch.gather(shuffled, 1, ids_restore.unsqueeze(-1))
    assert restored.flatten().tolist() == [-1.0, 1.0, -1.0, 3.0, 4.0, -1.0]


def test_masking_ids_keep_the_smallest_noise_and_restore_patch_order():
    noise = torch.tensor([[0.9, 0.1, 0.8, 0.2, 0.7, 0.3]])
    ids_keep, mask, ids_restore = masking_ids(noise, keep=2)
    assert ids_keep.tolist() == [[1, 3]] and mask.tolist() == [[1, 0, 1, 0, 1, 1]]
    order = torch.cat([ids_keep, torch.tensor([[5, 4, 2, 0]])], dim=1)  # visible, then hidden by noise
    assert torch.gather(order, 1, ids_restore).tolist() == [[0, 1, 2, 3, 4, 5]]


def test_explicit_mask_errors():
    with pytest.raises(UserError, match="same number"):
        masking_noise(2, 4, mask=torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0]]))
    with pytest.raises(UserError, match="shape"):
        masking_noise(2, 4, mask=torch.zeros(2, 5))
    with pytest.raises(UserError, match="0 \\(visible\\) and 1"):
        masking_noise(1, 4, mask=torch.tensor([[0.5, 0, 0, 1]]))
    with pytest.raises(UserError, match="every patch"):
        masking_noise(1, 4, mask=torch.ones(1, 4))
    with pytest.raises(UserError, match="mask_ratio"):
        masking_noise(1, 4, mask_ratio=1.0)


def test_structured_masks_shapes():
    g = 8
    center = structured_mask("center", g, mask_ratio=0.25).reshape(g, g)
    assert center[3:5, 3:5].all() and center.sum() == 16 and center[0].sum() == 0
    left = structured_mask("left", g).reshape(g, g)
    assert left[:, :4].all() and not left[:, 4:].any()
    right = structured_mask("right", g).reshape(g, g)
    assert right[:, 4:].all() and not right[:, :4].any()
    eyes = structured_mask("eyes", g).reshape(g, g)
    rows = eyes.any(1).nonzero().flatten().tolist()
    assert rows == [2, 3]
    mouth = structured_mask("mouth", g).reshape(g, g).any(1).nonzero().flatten().tolist()
    assert mouth == [5, 6]
    for grid, ratio, side in ((8, 0.75, 6), (16, 0.75, 14), (7, 0.75, 5), (8, 0.25, 4)):
        block = structured_mask("center", grid, mask_ratio=ratio).reshape(grid, grid)
        rows = block.any(1).nonzero().flatten().tolist()
        cols = block.any(0).nonzero().flatten().tolist()
        assert len(rows) == len(cols) == side, (grid, ratio)
        assert rows[0] == grid - 1 - rows[-1] and cols[0] == grid - 1 - cols[-1]  # centred
    listed = structured_mask("patches", g, patches=[0, 9, 63])
    assert listed.nonzero().flatten().tolist() == [0, 9, 63]
    with pytest.raises(UserError, match="outside"):
        structured_mask("patches", g, patches=[64])
    with pytest.raises(UserError, match="unknown mask kind"):
        structured_mask("stripes", g)


def test_make_mask_random_is_seeded_and_per_image():
    a = make_mask("random", 4, 8, mask_ratio=0.75, seed=3)
    b = make_mask("random", 4, 8, mask_ratio=0.75, seed=3)
    assert torch.equal(a, b)
    assert torch.all(a.sum(1) == 48)
    assert not torch.equal(a[0], a[1])
    assert make_mask("left", 3, 8).shape == (3, 64)


# ---------------------------------------------------------------------- faults
def test_center_mask_ratio_zero_is_refused_and_the_area_is_the_closest(tiny_run, capsys, tmp_path):
    (photo,) = write_faces(tmp_path, 1, size=32, seed=0)
    err = cli_error(capsys, ["reconstruct", "--run", str(tiny_run), "--images", str(photo),
                              "--out", str(tmp_path / "o.png"), "--mask", "center", "--mask-ratio", "0"])  # fmt: skip
    assert "the center mask's mask_ratio is the block's area and must be between 0 and 1" in err
    for grid in (4, 5, 8, 14, (6, 8)):
        rows, cols = (grid, grid) if isinstance(grid, int) else grid
        blocks = [r * c / (rows * cols) for r in range(rows % 2 or 2, rows, 2) for c in range(cols % 2 or 2, cols, 2)]
        for ratio in (0.1, 0.25, 0.5, 0.75, 0.9):
            hidden = float(structured_mask("center", grid, mask_ratio=ratio).mean())
            assert abs(hidden - ratio) == pytest.approx(min(abs(b - ratio) for b in blocks), abs=1e-6), (grid, ratio)
    assert float(structured_mask("center", 8, mask_ratio=0.75).mean()) == 36 / 64  # as the help says

