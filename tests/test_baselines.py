"""The classical inpainting baselines (mae_utils.baselines): mean, harmonic and biharmonic fills
against hand-computed values and their defining equations, and the seam-free blend of a guess."""

from __future__ import annotations

import pytest
import torch

from mae_utils import baselines
from mae_utils.baselines import BASELINES, inpaint_biharmonic, inpaint_harmonic, inpaint_mean_fill
from mae_utils.masking import make_mask
from mae_utils.metrics import paste_visible, patch_mask_to_pixel_mask, psnr_masked, seam_scores
from mae_utils.synthetic import generate_faces
from mae_utils.util.errors import UserError


def _faces01(n: int, size: int = 32, seed: int = 0) -> torch.Tensor:
    """Synthetic faces in [0, 1]: images with real structure (edges, eyes, hair)."""
    return torch.from_numpy(generate_faces(n, size=size, seed=seed)).permute(0, 3, 1, 2).float() / 255


def _random_pixel_mask(n: int, grid: int, patch: int, seed: int) -> torch.Tensor:
    mask = make_mask("random", n, grid, mask_ratio=0.75, seed=seed)
    return patch_mask_to_pixel_mask(mask, patch, grid * patch)


def _smooth(n: int, size: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    img = torch.stack([
        0.5 + 0.4 * torch.sin(2 * xx + yy),
        0.5 + 0.4 * torch.cos(1.5 * yy - xx),
        0.3 + 0.5 * xx * yy,
    ])
    return img.expand(n, -1, -1, -1).clone()


def _ramp(size: int = 32) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    return torch.stack([0.1 + 0.8 * xx, 0.2 + 0.6 * yy, 0.5 + 0.2 * xx - 0.2 * yy]).unsqueeze(0)


# ---------------------------------------------------------------- the fills
@pytest.mark.parametrize("name", sorted(BASELINES))
def test_baselines_keep_visible_and_fill_hidden(name):
    imgs = _faces01(2, seed=1)
    pm = _random_pixel_mask(2, 4, 8, seed=2)
    out = BASELINES[name](imgs, pm)
    assert out.shape == imgs.shape and out.dtype == imgs.dtype
    hidden = pm.bool().expand_as(imgs)
    assert torch.equal(out[~hidden], imgs[~hidden])
    assert torch.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    # Hidden pixels got a real fill: not left as they were and not all zeros.
    assert not torch.equal(out[hidden], imgs[hidden])
    assert out[hidden].abs().sum() > 0


def test_mean_fill_uses_visible_mean_colour():
    imgs = torch.rand(1, 3, 8, 8, generator=torch.Generator().manual_seed(3))
    pm = torch.zeros(1, 1, 8, 8)
    pm[..., 2:6, 2:6] = 1
    out = inpaint_mean_fill(imgs, pm)
    vis = ~pm[0, 0].bool()
    expected = imgs[0][:, vis].mean(1)
    assert torch.allclose(out[0, :, 3, 3], expected, atol=1e-6)
    assert torch.allclose(out[0, :, 2:6, 2:6], expected.view(3, 1, 1).expand(3, 4, 4), atol=1e-6)


def test_harmonic_fill_reproduces_a_linear_ramp_in_a_hidden_patch():
    """A linear function is harmonic: the Laplace fill of a hidden patch is the ramp itself."""
    img = _ramp()
    mask = torch.zeros(1, 16)
    mask[0, 5] = 1  # one hidden 8 x 8 patch, away from the border
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    out = inpaint_harmonic(img, pm)
    assert (out - img).abs().max() < 1e-4
    assert not torch.equal(inpaint_mean_fill(img, pm), img)  # a fill that does not know it misses it


@pytest.mark.parametrize("fill", [inpaint_harmonic, inpaint_biharmonic])
def test_smooth_fills_recover_a_linear_ramp(fill):
    # Linear functions are harmonic and biharmonic: both fills must reproduce them in an interior hole.
    img = _ramp()
    pm = torch.zeros(1, 1, 32, 32)
    pm[..., 8:24, 8:24] = 1
    out = fill(img, pm)
    assert psnr_masked(out, img, pm).item() > 45


def test_harmonic_solves_laplace_on_hidden_pixels():
    imgs = _faces01(1, seed=4)
    pm = _random_pixel_mask(1, 4, 8, seed=4)
    out = inpaint_harmonic(imgs, pm)
    p = torch.nn.functional.pad(out, (1, 1, 1, 1), mode="replicate")
    lap = p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:] - 4 * out
    hidden = pm.bool().expand_as(out)
    assert lap[hidden].abs().max() < 1e-4  # converged: each hidden pixel is the mean of its neighbours


def test_harmonic_in_chunks_matches_one_batch(monkeypatch):
    # Large batches of large images are solved a few images at a time; each image keeps its own result.
    imgs = _faces01(5, seed=5)
    pm = _random_pixel_mask(5, 4, 8, seed=5)
    whole = inpaint_harmonic(imgs, pm)
    monkeypatch.setattr(baselines, "HARMONIC_CHUNK_PIXELS", 2 * 32 * 32)  # chunks of 2, 2 and 1
    chunked = inpaint_harmonic(imgs, pm)
    assert chunked.shape == whole.shape
    torch.testing.assert_close(chunked, whole, atol=1e-4, rtol=0)
    single = torch.cat([inpaint_harmonic(imgs[i : i + 1], pm[i : i + 1]) for i in range(5)])
    torch.testing.assert_close(chunked, single, atol=1e-4, rtol=0)


def test_smooth_baselines_rank_as_expected_on_a_smooth_image():
    # On a smooth image, smoother interpolants do better: mean fill < harmonic < biharmonic.
    imgs = _smooth(2, 32)
    pm = _random_pixel_mask(2, 8, 4, seed=6)
    mean_db = psnr_masked(inpaint_mean_fill(imgs, pm), imgs, pm)
    harmonic_db = psnr_masked(inpaint_harmonic(imgs, pm), imgs, pm)
    biharmonic_db = psnr_masked(inpaint_biharmonic(imgs, pm), imgs, pm)
    assert (harmonic_db > mean_db + 4).all(), (harmonic_db, mean_db)
    assert (biharmonic_db > harmonic_db + 3).all(), (biharmonic_db, harmonic_db)


def test_baselines_refuse_fully_hidden_images():
    with pytest.raises(UserError, match=r"image\(s\) \[0\] have every pixel hidden"):
        inpaint_mean_fill(torch.rand(1, 3, 8, 8), torch.ones(1, 1, 8, 8))


# ---------------------------------------------------------------- seam-free blend of a guess
def _quadratic(n: int = 2, size: int = 32) -> torch.Tensor:
    """Smooth photos whose second differences are constant: a right guess of them has no seam to fix."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    imgs = [0.5 + 0.2 * ((xx - 10 - k) ** 2 - 0.5 * (yy - 20) ** 2 + 3 * xx * yy / 4) / size**2 for k in range(n)]
    return torch.stack([torch.stack([im, 0.9 * im, 1.1 * im - 0.05]) for im in imgs]).clamp(0, 1)


def test_blend_returns_a_right_guess_and_keeps_visible_pixels():
    x = _quadratic()
    mask = make_mask("random", 2, 4, mask_ratio=0.75, seed=3)
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    out = baselines.blend_seams(x, pm, x, 8)
    torch.testing.assert_close(out, x, rtol=0, atol=2e-5)
    wild = baselines.blend_seams(x, pm, torch.rand_like(x), 8)
    visible = (pm < 0.5).expand_as(x)
    assert torch.equal(wild[visible], x[visible]) and wild.min() >= 0 and wild.max() <= 1


def test_blend_removes_per_patch_offsets_and_a_flat_guess_is_about_the_harmonic_fill():
    x = _quadratic()
    mask = make_mask("random", 2, 4, mask_ratio=0.75, seed=4)
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    g = torch.Generator().manual_seed(1)
    offsets = ((torch.rand(2, 1, 4, 4, generator=g) - 0.5) * 0.2).repeat_interleave(8, 2).repeat_interleave(8, 3)
    mosaic = x + offsets  # each patch guessed right but for its own offset: a seam at every border
    before = psnr_masked(paste_visible(mosaic.clamp(0, 1), x, pm), x, pm)
    out = baselines.blend_seams(x, pm, mosaic, 8)
    assert (psnr_masked(out, x, pm) > 45).all() and (before < 32).all()
    assert (seam_scores(out, x, mask, 8)["blockiness"] - 1).abs().max() < 0.01
    # a flat guess brings no structure: nearly the harmonic fill (only the visible slopes beside borders guide it)
    flat = baselines.blend_seams(x, pm, torch.full_like(x, 0.3), 8)
    assert (flat - inpaint_harmonic(x, pm)).abs().max() < 0.01
    with pytest.raises(UserError, match="guess01"):
        baselines.blend_seams(x, pm, x[:1], 8)
