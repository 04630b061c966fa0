"""Figures (mae_utils.viz): the four-panel figure's panels and titles, the grey of hidden pixels,
the tutorial's grids and schedule, and figures that leave no pyplot state behind."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from PIL import Image

from mae_utils import viz
from mae_utils.config import TrainConfig
from mae_utils.masking import make_mask
from mae_utils.metrics import patch_mask_to_pixel_mask
from mae_utils.model import MaskedAutoencoder, build_mae, class_token_attention
from mae_utils.optim import build_optimizer, schedule_rates
from mae_utils.util.errors import UserError


def _images(n: int = 2, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(n))


def _panels(n: int = 2):
    original = _images(n)
    pm = patch_mask_to_pixel_mask(make_mask("random", n, 2, mask_ratio=0.75, seed=1), 8, 16)
    recon = torch.full_like(original, 0.25)
    return original, viz.masked_image(original, pm), recon, torch.where(pm.bool(), recon, original)


def test_masked_image_paints_hidden_pixels_grey_and_keeps_the_rest():
    img = _images(1)[0]
    pm = torch.zeros(1, 16, 16)
    pm[:, :8, :8] = 1
    out = viz.masked_image(img, pm, grey=0.4)
    assert torch.equal(out[:, :8, :8], torch.full((3, 8, 8), 0.4))
    assert torch.equal(out[:, 8:, :], img[:, 8:, :]) and torch.equal(out[:, :8, 8:], img[:, :8, 8:])
    with pytest.raises(UserError, match="does not match image"):
        viz.masked_image(img, torch.zeros(1, 8, 8))


def test_four_panels_show_each_image_in_its_column_and_title_the_first_row(tmp_path):
    panels = _panels(3)
    fig = viz.four_panel_figure(*panels, path=tmp_path / "figs" / "four.png")
    axes = fig.axes
    assert len(axes) == 3 * 4
    assert [ax.get_title() for ax in axes[:4]] == list(viz.DEFAULT_TITLES)
    assert all(ax.get_title() == "" for ax in axes[4:])  # only the first row is titled
    for r in range(3):
        for c in range(4):
            shown = np.asarray(axes[4 * r + c].images[0].get_array())
            np.testing.assert_allclose(shown, panels[c][r].permute(1, 2, 0).numpy(), atol=1e-6)
    with Image.open(tmp_path / "figs" / "four.png") as png:  # saved, its folder created
        assert png.size == (round(4 * 1.8 * 100), round((3 * 1.8 + 0.3) * 100))


def test_four_panels_take_titles_and_refuse_mismatched_panels():
    original, masked, recon, pasted = _panels(2)
    titles = ("photo", "what the encoder sees", "guess", "guess + photo")
    fig = viz.four_panel_figure(original[0], masked[0], recon[0], pasted[0], titles=titles)
    assert [ax.get_title() for ax in fig.axes] == list(titles)  # one image: a single row
    with pytest.raises(UserError, match="the four panels differ in shape"):
        viz.four_panel_figure(original, masked, recon[:1], pasted)
    with pytest.raises(UserError, match="titles must name the 4 panels; got 3"):
        viz.four_panel_figure(original, masked, recon, pasted, titles=titles[:3])
    with pytest.raises(UserError, match="recon01 must be"):
        viz.four_panel_figure(original, masked, recon[:, :2], pasted)


def test_face_grid_fills_rows_and_blanks_the_rest():
    fig = viz.face_grid_figure(_images(5), cols=3, title="five faces")
    assert len(fig.axes) == 6 and fig._suptitle.get_text() == "five faces"
    assert [len(ax.images) for ax in fig.axes] == [1, 1, 1, 1, 1, 0]
    assert not fig.axes[5].axison
    with pytest.raises(UserError, match="non-empty"):
        viz.face_grid_figure(torch.zeros(0, 3, 8, 8))


def test_patch_grid_numbers_every_patch_in_row_major_order():
    fig = viz.patch_grid_figure(_images(1, size=32)[0], patch_size=8)
    (ax,) = fig.axes
    assert [t.get_text() for t in ax.texts] == [str(k) for k in range(16)]
    assert ax.texts[1].get_position() == (11.5, 3.5)  # patch 1: first row, second column
    assert ax.get_title() == "4 x 4 = 16 patches of 8 x 8 px"


def test_the_schedule_figure_plots_the_optimisers_rates():
    model = build_mae("tiny", img_size=32, patch_size=8, depth=1, decoder_depth=1)
    _, scheduler, _ = build_optimizer(model, TrainConfig(warmup_frac=0.2), total_steps=20)
    fig = viz.schedule_figure(scheduler, steps_per_epoch=5)
    (ax,) = fig.axes
    line = ax.lines[0]
    np.testing.assert_allclose(line.get_ydata(), schedule_rates(scheduler))
    assert list(line.get_xdata()) == list(range(1, 21))
    assert len(ax.lines) == 1 + 3  # the rates, and a grey line between each two of the 4 epochs
    assert ax.texts[0].get_text().endswith("at step 4")


def test_figures_leave_no_pyplot_figures_open():
    plt.close("all")
    viz.four_panel_figure(*_panels(2))
    viz.face_grid_figure(_images(3))
    viz.patch_grid_figure(_images(1)[0], patch_size=8)
    assert plt.get_fignums() == []  # built without pyplot: nothing to close, nothing leaks


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
