"""Metrics against hand-computed values and scikit-image (the baselines: test_baselines)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mae_utils import metrics
from mae_utils.util.errors import UserError
from mae_utils.baselines import inpaint_harmonic
from mae_utils.masking import make_mask
from mae_utils.metrics import (
    PSNR_MAX_DB,
    evaluate_batch,
    mean_ci95,
    paste_visible,
    patch_mask_to_pixel_mask,
    psnr,
    psnr_masked,
    seam_scores,
    ssim,
    ssim_masked,
    summarize,
)

skmetrics = pytest.importorskip("skimage.metrics")


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed))


def _structured(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """Gradients, a disc and stripes: images with real structure, in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    out = []
    for _ in range(n):
        cx, cy, r = (torch.rand(3, generator=g) * torch.tensor([0.6, 0.6, 0.3]) + 0.2).tolist()
        disc = ((xx - cx) ** 2 + (yy - cy) ** 2 < r * r).float()
        stripes = 0.5 + 0.5 * torch.sin(2 * math.pi * 4 * (xx + yy))
        red, green = 0.6 * xx + 0.3 * disc, 0.5 * yy + 0.3 * stripes * (1 - disc)
        out.append(torch.stack([red, green, 0.2 + 0.6 * disc]))
    return torch.stack(out).clamp(0, 1)


def _random_patch_mask(n: int, grid: int, ratio: float, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    L = grid * grid
    keep = int(L * (1 - ratio))
    noise = torch.rand(n, L, generator=g)
    mask = torch.ones(n, L)
    mask.scatter_(1, noise.argsort(1)[:, :keep], 0.0)
    return mask


# ---------------------------------------------------------------- masks
def test_patch_mask_layout_row_major_non_square():
    p, h, w = 4, 16, 24
    gw = w // p
    L = (h // p) * gw
    for k in range(L):
        mask = torch.zeros(1, L)
        mask[0, k] = 1
        pm = patch_mask_to_pixel_mask(mask, p, (h, w))
        assert pm.shape == (1, 1, h, w)
        expected = torch.zeros(h, w)
        r, c = k // gw, k % gw
        expected[r * p : (r + 1) * p, c * p : (c + 1) * p] = 1
        assert torch.equal(pm[0, 0], expected), k


def test_patch_mask_matches_unfold_order():
    mask = _random_patch_mask(3, 4, 0.5)
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    # torch's unfold also enumerates patches row-major: every pixel of patch k must equal mask[k].
    patches = torch.nn.functional.unfold(pm, kernel_size=8, stride=8)  # (N, 64, L)
    assert torch.equal(patches.amin(1), mask) and torch.equal(patches.amax(1), mask)


@pytest.mark.parametrize(
    "mask, p, size, words",
    [
        (torch.zeros(1, 15), 4, 16, "16"),  # wrong L
        (torch.zeros(1, 16), 5, 16, "patch_size"),  # size not a multiple
        (torch.zeros(16), 4, 16, "(N, L)"),  # 1-D
    ],
)
def test_patch_mask_errors(mask, p, size, words):
    with pytest.raises(UserError) as info:
        patch_mask_to_pixel_mask(mask, p, size)
    assert words in str(info.value)


def test_paste_visible_takes_each_region_from_the_right_image():
    orig, recon = _rand(2, 3, 8, 8, seed=1), _rand(2, 3, 8, 8, seed=2)
    pm = patch_mask_to_pixel_mask(_random_patch_mask(2, 2, 0.5), 4, 8)
    out = paste_visible(recon, orig, pm)
    hidden = pm.bool().expand_as(orig)
    assert torch.equal(out[hidden], recon[hidden]) and torch.equal(out[~hidden], orig[~hidden])


# ---------------------------------------------------------------- PSNR
def test_psnr_masked_constant_error_is_20db_and_ignores_visible():
    target = _rand(2, 3, 16, 16) * 0.8
    pm = patch_mask_to_pixel_mask(_random_patch_mask(2, 4, 0.75), 4, 16)
    hidden = pm.bool().expand_as(target)
    pred = target.clone()
    pred[hidden] += 0.1
    pred[~hidden] = _rand(2, 3, 16, 16, seed=5)[~hidden]  # garbage on visible pixels must not count
    assert torch.allclose(psnr_masked(pred, target, pm), torch.full((2,), 20.0), atol=1e-4)


def test_psnr_masked_hand_computed_values():
    target = torch.full((2, 3, 8, 8), 0.5)
    pm = torch.zeros(2, 1, 8, 8)
    pm[:, :, :4] = 1  # top half hidden: 3 * 32 hidden values per image
    pred = target.clone()
    pred[0, :, :2] += 0.1  # image 0: error 0.1 on half the hidden pixels -> MSE 0.005
    pred[1, 0, :4] -= 0.03  # image 1: error 0.03 in one channel of three -> MSE 0.0003
    expected = torch.tensor([10 * math.log10(1 / 0.005), 10 * math.log10(1 / 0.0003)])
    assert torch.allclose(psnr_masked(pred, target, pm), expected, atol=1e-3)
    assert expected[0] == pytest.approx(23.0103, abs=1e-4)


def test_psnr_full_hand_computed_and_perfect_is_capped():
    target = torch.full((1, 3, 8, 8), 0.25)
    assert psnr(target + 0.05, target).item() == pytest.approx(26.0206, abs=1e-3)
    assert psnr(target, target).item() == pytest.approx(PSNR_MAX_DB)
    assert PSNR_MAX_DB == pytest.approx(100.0)


def test_psnr_refuses_normalised_targets_and_bad_shapes():
    x = _rand(1, 3, 8, 8) * 2 - 1  # [-1, 1]: the seed's mistake
    with pytest.raises(UserError, match="denormalize"):
        psnr(x, x)
    y = _rand(1, 3, 8, 8)
    with pytest.raises(UserError, match="shape"):
        psnr(y, _rand(1, 3, 8, 9))
    with pytest.raises(UserError, match="uint8"):
        psnr((y * 255).byte(), (y * 255).byte())
    with pytest.raises(UserError, match="pixel_mask"):
        psnr_masked(y, y, torch.ones(1, 1, 4, 4))
    with pytest.raises(UserError, match="no hidden pixel"):
        psnr_masked(y, y, torch.zeros(1, 1, 8, 8))


# ---------------------------------------------------------------- SSIM
def _skimage_ssim(a: torch.Tensor, b: torch.Tensor, full: bool = False):
    return skmetrics.structural_similarity(
        a.permute(1, 2, 0).double().numpy(),
        b.permute(1, 2, 0).double().numpy(),
        data_range=1.0,
        channel_axis=-1,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        full=full,
    )


def _ssim_cases():
    rnd_a, rnd_b = _rand(2, 3, 24, 20, seed=3), _rand(2, 3, 24, 20, seed=4)
    st = _structured(3, 32)
    noisy = (st + 0.08 * torch.randn(st.shape, generator=torch.Generator().manual_seed(7))).clamp(0, 1)
    blurred = torch.nn.functional.avg_pool2d(st, 3, stride=1, padding=1, count_include_pad=False)
    darker = st * 0.7 + 0.05
    return [(rnd_a, rnd_b), (noisy, st), (blurred, st), (darker, st), (st.flip(-1), st)]


@pytest.mark.parametrize("case", range(5))
def test_ssim_matches_skimage(case):
    pred, target = _ssim_cases()[case]
    ours = ssim(pred, target)
    ref = torch.tensor([_skimage_ssim(p, t) for p, t in zip(pred, target)], dtype=torch.float32)
    assert torch.allclose(ours, ref, atol=1e-5), (ours, ref)


@pytest.mark.parametrize("case", range(5))
def test_ssim_masked_is_skimage_map_over_hidden_pixels(case):
    pred, target = _ssim_cases()[case]
    n, _, h, w = target.shape
    pm = (_rand(n, 1, h, w, seed=case) < 0.6).float()
    ours = ssim_masked(pred, target, pm)
    ref = []
    for i in range(n):
        _, smap = _skimage_ssim(pred[i], target[i], full=True)  # (H, W, C)
        hidden = pm[i, 0].bool().numpy()
        ref.append(smap[hidden].mean())
    assert torch.allclose(ours, torch.tensor(ref, dtype=torch.float32), atol=1e-5)


def test_ssim_identity_and_size_check():
    x = _structured(2, 16)
    assert torch.allclose(ssim(x, x), torch.ones(2), atol=1e-6)
    assert torch.allclose(ssim_masked(x, x, torch.ones(2, 1, 16, 16)), torch.ones(2), atol=1e-6)
    with pytest.raises(UserError, match="11x11"):
        ssim(_rand(1, 3, 8, 8), _rand(1, 3, 8, 8))


# ---------------------------------------------------------------- confidence interval
def test_mean_ci95_known_values():
    mean, half = mean_ci95([1.0, 2.0, 3.0, 4.0, 5.0])
    # t(0.975, 4) = 2.776 (tables), s = sqrt(2.5): 2.776 * 1.5811 / sqrt(5) = 1.963
    assert mean == pytest.approx(3.0)
    assert half == pytest.approx(2.776 * math.sqrt(2.5) / math.sqrt(5), abs=1e-3)
    mean, half = mean_ci95(torch.tensor([7.0, 7.0, 7.0]))
    assert (mean, half) == (pytest.approx(7.0), pytest.approx(0.0))
    mean, half = mean_ci95(np.array([4.2]))
    assert mean == pytest.approx(4.2) and math.isnan(half)
    with pytest.raises(UserError, match="no values"):
        mean_ci95([])


def test_summarize_shapes():
    s = summarize({"psnr_masked": torch.tensor([10.0, 12.0])})
    assert s["psnr_masked"]["mean"] == pytest.approx(11.0) and s["psnr_masked"]["n"] == 2
    assert s["psnr_masked"]["ci95"] == pytest.approx(12.706 * math.sqrt(2) / math.sqrt(2), abs=1e-2)


# ---------------------------------------------------------------- evaluate_batch
def test_evaluate_batch_perfect_and_visible_garbage():
    orig = _structured(2, 32)
    mask = _random_patch_mask(2, 4, 0.75, seed=8)
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    recon = torch.where(pm.bool().expand_as(orig), orig, torch.full_like(orig, 3.0))
    res = evaluate_batch(orig, recon, mask, 8)
    assert set(res) == {"psnr_masked", "ssim_masked", "psnr_full", "ssim_full", "blockiness", "detail"}
    assert torch.equal(res["blockiness"], torch.ones(2)) and torch.equal(res["detail"], torch.ones(2))
    for v in res.values():
        assert v.shape == (2,) and v.dtype == torch.float32
    # Hidden pixels are exact and visible ones are pasted back, so everything is perfect.
    assert torch.allclose(res["psnr_masked"], torch.full((2,), PSNR_MAX_DB))
    assert torch.allclose(res["psnr_full"], torch.full((2,), PSNR_MAX_DB))
    assert torch.allclose(res["ssim_masked"], torch.ones(2), atol=1e-6)
    assert torch.allclose(res["ssim_full"], torch.ones(2), atol=1e-6)


def test_evaluate_batch_full_psnr_is_masked_psnr_diluted():
    orig = _structured(1, 32) * 0.8
    mask = _random_patch_mask(1, 4, 0.75, seed=9)  # 12 of 16 patches hidden
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    recon = orig + 0.1 * pm  # error 0.1 on hidden pixels only
    res = evaluate_batch(orig, recon, mask, 8)
    assert res["psnr_masked"].item() == pytest.approx(20.0, abs=1e-3)
    assert res["psnr_full"].item() == pytest.approx(10 * math.log10(1 / (0.01 * 0.75)), abs=1e-3)
    # A pixel mask gives the same answer as the patch mask.
    res_px = evaluate_batch(orig, recon, pm)
    for k in res_px:  # (seam scores need the patch grid: only with the patch mask)
        assert torch.allclose(res[k], res_px[k])


def test_evaluate_batch_errors():
    orig = _structured(2, 32)
    mask = _random_patch_mask(2, 4, 0.75)
    with pytest.raises(UserError, match="shape"):
        evaluate_batch(orig, orig[:, :, :16], mask, 8)
    with pytest.raises(UserError, match="rows"):
        evaluate_batch(orig, orig, mask[:1], 8)
    with pytest.raises(UserError, match="patch_size"):
        evaluate_batch(orig, orig, mask, None)
    with pytest.raises(UserError, match="patches"):
        evaluate_batch(orig, orig, mask, 4)


# ---------------------------------------------------------------- blockiness and detail
def _texture(n: int = 3, size: int = 32) -> torch.Tensor:
    """Smooth, patch-unaligned structure in [0.1, 0.9]: sines of periods that share nothing with 8 px."""
    yy, xx = torch.meshgrid(torch.arange(size).double(), torch.arange(size).double(), indexing="ij")
    imgs = []
    for k in range(n):
        base = torch.sin(xx / (2.3 + k) + 0.7 * k) * torch.cos(yy / (3.1 + 0.5 * k)) + 0.3 * torch.sin((xx + yy) / 1.7)
        imgs.append(torch.stack([base, base.roll(3, 0), base.roll(5, 1)]))
    t = torch.stack(imgs)
    return (0.5 + 0.3 * t / t.abs().amax()).float()


def _seam_mask(n: int = 3, seed: int = 0) -> torch.Tensor:
    return make_mask("random", n, 4, mask_ratio=0.75, seed=seed)


def test_seam_scores_identical_is_exactly_one_and_smooth_error_stays_near_one():
    x, mask = _texture(), _seam_mask()
    same = seam_scores(x, x, mask, 8)
    assert torch.equal(same["blockiness"], torch.ones(3)) and torch.equal(same["detail"], torch.ones(3))
    # a smooth photo (x^2 - y^2 + a ramp: harmonic, so the Laplace fill recovers it) filled from its
    # visible patches by another route than copying: ~1
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    smooth = (0.5 + 0.3 * ((xx - 16) ** 2 - (yy - 16) ** 2) / 256 + 0.004 * xx).expand(1, 3, 32, 32).contiguous()
    inner = torch.zeros(1, 16)
    inner[0, [5, 10]] = 1  # hidden patches away from the image border
    res = seam_scores(inpaint_harmonic(smooth, patch_mask_to_pixel_mask(inner, 8, 32)), smooth, inner, 8)
    assert (res["blockiness"] - 1).abs().max() < 0.02 and (res["detail"] - 1).abs().max() < 0.02, res


def test_seam_scores_see_a_mosaic_and_a_blur():
    x, mask = _texture(), _seam_mask(seed=1)
    g = torch.Generator().manual_seed(0)
    offsets = (torch.rand(3, 1, 4, 4, generator=g) - 0.5) * 0.3  # each patch guessed with its own offset
    blocky = (x + offsets.repeat_interleave(8, 2).repeat_interleave(8, 3)).clamp(0, 1)
    res = seam_scores(blocky, x, mask, 8)
    assert (res["blockiness"] > 1.5).all()
    assert (res["detail"] - 1).abs().max() < 0.05  # the inside of each patch kept its structure
    blurred = torch.nn.functional.avg_pool2d(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="replicate"), 5, 1)
    res = seam_scores(blurred, x, mask, 8)
    assert (res["detail"] < 0.8).all()
    flat = torch.nn.functional.avg_pool2d(x, 8).repeat_interleave(8, 2).repeat_interleave(8, 3)  # patch means
    res = seam_scores(flat, x, mask, 8)
    assert (res["blockiness"] > 5).all() and (res["detail"] < 0.2).all()  # the mosaic of a blurred MAE, at worst


def test_seam_scores_count_only_borders_touching_hidden_patches():
    x = _texture(1)
    mask = torch.zeros(1, 16)
    mask[0, 5] = 1  # one hidden patch inside the grid: its four borders count, no other border
    noisy = x.clone()
    noisy[..., :8, :8] = 0.0  # a change in a visible patch is pasted over: it cannot matter
    torch.testing.assert_close(seam_scores(noisy, x, mask, 8)["blockiness"], torch.ones(1))
    res = evaluate_batch(x, x.flip(-1), mask, 8)
    assert set(res) == {"psnr_masked", "ssim_masked", "psnr_full", "ssim_full", "blockiness", "detail"}
    assert "blockiness" not in evaluate_batch(x, x, patch_mask_to_pixel_mask(mask, 8, 32))


def test_wilson_interval() -> None:
    lo, hi = metrics.wilson_interval(80, 100)
    assert lo == pytest.approx(0.7112, abs=1e-3) and hi == pytest.approx(0.8666, abs=1e-3)
    assert metrics.wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)


def test_prediction_score_of_classes_and_numbers() -> None:
    truth, guess = np.array(["a", "b", "a", "b"]), np.array(["a", "b", "b", "b"])
    acc = metrics.prediction_score("classify", truth, guess)
    assert acc["score"] == 0.75 and acc["low"] < 0.75 < acc["high"]
    err = metrics.prediction_score("regress", np.array([1.0, 2.0, 3.0]), np.array([1.5, 2.0, 2.0]))
    assert err["score"] == pytest.approx(0.5) and err["low"] < 0.5 < err["high"]
