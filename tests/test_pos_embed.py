import math

import pytest
import torch

from mae_utils.util.errors import UserError
from mae_utils.pos_embed import sincos_2d


def test_shape_and_cls_row():
    t = sincos_2d(16, 4)
    assert t.shape == (17, 16) and t.dtype == torch.float32
    assert torch.all(t[0] == 0)


def test_layout_by_hand():
    """First half encodes the column, second half the row; each half is [sin, cos]."""
    d, grid = 8, (3, 5)
    t = sincos_2d(d, grid, cls_token=False)
    r, c = 2, 3
    row = t[r * 5 + c]
    omegas = [1.0, 1.0 / 10000 ** 0.5]  # k / (D/4) for k = 0, 1 with D/4 = 2
    expected = [math.sin(c * w) for w in omegas] + [math.cos(c * w) for w in omegas]
    expected += [math.sin(r * w) for w in omegas] + [math.cos(r * w) for w in omegas]
    assert torch.allclose(row, torch.tensor(expected), atol=1e-6)


def test_bad_width():
    with pytest.raises(UserError, match="multiple of 4"):
        sincos_2d(10, 4)
