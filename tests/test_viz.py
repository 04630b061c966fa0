"""Figures: built through matplotlib's object API, with the panels their docstrings promise."""

from __future__ import annotations

import pytest
import torch

from mae_utils import viz
from mae_utils.model import MaskedAutoencoder, class_token_attention
from mae_utils.util.errors import UserError


def _attention(n: int = 3, heads: int = 2):
    torch.manual_seed(0)
    model = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=heads,
                              decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2).eval()
    images = torch.rand(n, 3, 32, 32)
    attn, mask, ids_keep = model.encoder_attention(images * 2 - 1, mask_ratio=0.5)
    return images, class_token_attention(attn[-1], ids_keep, 16), mask


def test_attention_figure_has_the_masked_input_the_mean_and_every_head() -> None:
    images, attention, mask = _attention(n=3, heads=2)
    fig = viz.attention_figure(images, attention, mask, patch_size=8, title="last block")
    assert len(fig.axes) == 3 * (2 + 2)
    titles = [ax.get_title() for ax in fig.axes[:4]]
    assert titles == ["masked input", "mean of heads", "head 1", "head 2"]
    overlay = fig.axes[1].get_images()[1].get_array()  # the heat map drawn over the face
    hidden = mask[0].reshape(4, 4).repeat_interleave(8, 0).repeat_interleave(8, 1).bool().numpy()
    assert overlay.mask[hidden].all() and not overlay.mask[~hidden].any()
    assert float(overlay.max()) == pytest.approx(1.0)  # each map scaled to its largest weight


def test_attention_figure_refuses_mismatched_shapes() -> None:
    images, attention, mask = _attention(n=2)
    with pytest.raises(UserError, match="attention must be"):
        viz.attention_figure(images, attention[:1], mask, patch_size=8)
