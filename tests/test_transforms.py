"""From uint8 items to model input: per-image augmentation draws, batched application, normalisation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image

from mae_utils.util.errors import UserError
from mae_utils.splits import TrainItems
from mae_utils.transforms import (MEAN, STD, ZOOM_FILLS, Augment, apply_augment, batch_to_input, denormalize,
                                  normalize, zoom_out)

S = 24


def _pixels(n: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, S, S), generator=g, dtype=torch.uint8)


def _smooth() -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(S), torch.arange(S), indexing="ij")
    return torch.stack([xx * 255 // (S - 1), yy * 255 // (S - 1), torch.full_like(xx, 128)]).to(torch.uint8)


def _batched(params: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return torch.utils.data.default_collate(params)


def test_draw_depends_only_on_the_generator_and_respects_the_ranges():
    aug = Augment(crop_scale=(0.5, 0.9), crop_ratio=(0.8, 1.25), hflip=0.5)
    draws = [aug.draw(torch.Generator().manual_seed(k)) for k in range(200)]
    again = aug.draw(torch.Generator().manual_seed(7))
    assert torch.equal(again["box"], draws[7]["box"]) and torch.equal(again["flip"], draws[7]["flip"])
    boxes = torch.stack([d["box"] for d in draws]).double()
    top, left, h, w = boxes.unbind(1)
    assert (top >= 0).all() and (left >= 0).all() and (top + h <= 1 + 1e-6).all() and (left + w <= 1 + 1e-6).all()
    area, ratio = h * w, w / h
    assert (area >= 0.5 - 1e-6).all() and (area <= 0.9 + 1e-6).all()  # no clipping at these ranges
    assert (ratio >= 0.8 - 1e-5).all() and (ratio <= 1.25 + 1e-5).all()
    flips = torch.stack([d["flip"] for d in draws]).float().mean()
    assert 0.35 < flips < 0.65 and len({tuple(b) for b in boxes.tolist()}) == 200
    with pytest.raises(UserError, match="crop_scale"):
        Augment(crop_scale=(0.9, 0.5))
    with pytest.raises(UserError, match="hflip"):
        Augment(hflip=2.0)


def test_trivial_parameters_are_exact():
    x = batch_to_input(_pixels())
    full = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0)
    mirror = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=1.0)
    g = torch.Generator().manual_seed(0)
    assert torch.equal(apply_augment(x, _batched([full.draw(g) for _ in range(3)])), x)
    assert torch.equal(apply_augment(x, _batched([mirror.draw(g) for _ in range(3)])), x.flip(-1))
    assert torch.equal(batch_to_input(_pixels(), augment={}), x)


def test_crop_resamples_like_pillow_and_each_image_gets_its_own_parameters():
    aug = Augment(crop_scale=(0.5, 0.8), hflip=0.5)
    imgs = _pixels(4, seed=3)
    params = [aug.draw(torch.Generator().manual_seed(k)) for k in range(4)]
    out = apply_augment(imgs.float(), _batched(params))
    for i, p in enumerate(params):
        # one at a time gives the same rows: nothing leaks between images of a batch
        alone = apply_augment(imgs[i : i + 1].float(), _batched([p]))
        torch.testing.assert_close(out[i : i + 1], alone, rtol=0, atol=1e-4)
        # the same box through Pillow (the previous implementation): within rounding to 8 bits
        top, left, h, w = (float(v) * S for v in p["box"])
        pil = Image.fromarray(imgs[i].permute(1, 2, 0).numpy())
        ref = np.asarray(pil.resize((S, S), Image.Resampling.BILINEAR, box=(left, top, left + w, top + h)))
        ref = torch.from_numpy(ref.copy()).permute(2, 0, 1).float()
        if bool(p["flip"]):
            ref = ref.flip(-1)
        diff = (out[i] - ref).abs()
        assert diff.mean() < 0.6 and diff.max() <= 1.5, (i, float(diff.mean()), float(diff.max()))
    # a zoomed crop of a smooth image stays close to it (no wrap-around, no mirrored axes)
    smooth = _smooth()[None]
    p = Augment(hflip=0.0).draw(torch.Generator().manual_seed(1))
    assert (apply_augment(smooth.float(), _batched([p])) - smooth.float()).abs().mean() < 20


def test_batch_to_input_normalises_on_the_device_and_commutes_with_augmentation():
    imgs = _pixels(2, seed=5)
    aug = Augment(crop_scale=(0.6, 0.7))
    params = _batched([aug.draw(torch.Generator().manual_seed(k)) for k in range(2)])
    got = batch_to_input(imgs, torch.device("cpu"), augment=params)
    want = normalize(apply_augment(imgs.float() / 255, params))
    torch.testing.assert_close(got, want, rtol=0, atol=1e-5)
    mean, std = torch.tensor(MEAN).view(3, 1, 1), torch.tensor(STD).view(3, 1, 1)
    torch.testing.assert_close(batch_to_input(imgs), (imgs.float() / 255 - mean) / std)
    torch.testing.assert_close(denormalize(batch_to_input(imgs)), imgs.float() / 255)
    with pytest.raises(UserError, match="uint8 pixels"):
        batch_to_input(imgs.to(torch.int32))


def test_training_items_draw_augmentation_per_seed_epoch_and_index():
    ds = [t for t in _pixels(4)]
    a = TrainItems(ds, num_patches=9, seed=3, salt=1, augment=Augment())
    b = TrainItems(ds, num_patches=9, seed=3, salt=1, augment=Augment())
    a.epoch = b.epoch = 2
    for i in (3, 0, 2):  # any order, any instance (a worker, a resumed run): the same draws
        img, noise, params = a[i]
        assert torch.equal(img, ds[i]) and img.dtype == torch.uint8
        _, noise_b, params_b = b[i]
        assert torch.equal(noise, noise_b) and torch.equal(params["box"], params_b["box"])
    b.epoch = 3
    assert not torch.equal(a[1][2]["box"], b[1][2]["box"])
    plain = TrainItems(ds, num_patches=9, seed=3, salt=1)
    plain.epoch = 2
    assert plain[1][2] == {} and torch.equal(plain[1][1], a[1][1])  # masks do not depend on augmentation
    batch = torch.utils.data.default_collate([a[i] for i in range(4)])
    assert batch[0].dtype == torch.uint8 and batch[2]["box"].shape == (4, 4) and batch[2]["flip"].shape == (4,)
    assert math.isfinite(float(batch_to_input(batch[0], augment=batch[2]).sum()))


def test_zoom_out_fills_beyond_the_photo_with_the_mean_colour_and_keeps_it_whole():
    aug = Augment(crop_scale=(2.0, 2.0), crop_ratio=(1.0, 1.0), hflip=0.0)
    p = aug.draw(torch.Generator().manual_seed(4))
    top, left, h, w = p["box"].tolist()
    assert h == pytest.approx(2**0.5) and w == pytest.approx(2**0.5)
    assert -(h - 1) <= top <= 0 and -(w - 1) <= left <= 0  # the photo lies inside the larger box
    imgs = _smooth()[None]
    out = denormalize(apply_augment(batch_to_input(imgs), _batched([p])))[0]
    mean = torch.tensor(MEAN).view(3, 1, 1)
    # the photo shrinks to 1/sqrt(2) of the side; outside it every pixel is the mean colour
    y0, x0 = int(round(-top / h * S)), int(round(-left / w * S))
    inner = round(S / h)
    frame = torch.ones(S, S, dtype=torch.bool)
    frame[max(y0 - 1, 0) : y0 + inner + 1, max(x0 - 1, 0) : x0 + inner + 1] = False
    assert frame.any()
    torch.testing.assert_close(out[:, frame], mean.expand(3, S, S)[:, frame], rtol=0, atol=1e-5)
    # and the photo is all there, shrunk: its mean colour survives the resampling
    photo = out[:, y0 + 1 : y0 + inner - 1, x0 + 1 : x0 + inner - 1]
    assert (photo.mean((1, 2)) - imgs[0].float().mean((1, 2)) / 255).abs().max() < 0.03


def test_grey_and_colour_jitter_change_pixels_only_as_documented():
    imgs = _pixels(6, seed=2)
    x = batch_to_input(imgs)
    grey = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, grey=1.0)
    out = denormalize(apply_augment(x, _batched([grey.draw(torch.Generator().manual_seed(k)) for k in range(6)])))
    assert torch.allclose(out[:, 0], out[:, 1], atol=1e-5) and torch.allclose(out[:, 1], out[:, 2], atol=1e-5)
    luma = (imgs.float() / 255 * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    torch.testing.assert_close(out[:, 0], luma, rtol=0, atol=1e-5)
    jit = Augment(crop_scale=(1.0, 1.0), crop_ratio=(1.0, 1.0), hflip=0.0, jitter=0.4)
    draws = [jit.draw(torch.Generator().manual_seed(k)) for k in range(200)]
    color = torch.stack([d["color"] for d in draws])
    assert (color >= 0.6 - 1e-6).all() and (color <= 1.4 + 1e-6).all() and color.std(0).min() > 0.15
    assert not any(bool(d["grey"]) for d in draws)  # grey is off unless asked for
    one = _batched(draws[:6])
    out = denormalize(apply_augment(x, one))
    assert (out - imgs.float() / 255).abs().mean() > 0.01 and out.min() >= 0 and out.max() <= 1
    # brightness alone scales the pixels (within the [0, 1] clamp)
    bright = {"color": torch.tensor([[1.2, 1.0, 1.0]] * 6)}
    torch.testing.assert_close(denormalize(apply_augment(x, bright)), (imgs.float() / 255 * 1.2).clamp(0, 1),
                               rtol=0, atol=1e-5)  # fmt: skip
    # unit factors and no grey are free: the exact input comes back
    assert torch.equal(apply_augment(x, {"color": torch.ones(6, 3), "grey": torch.zeros(6, dtype=torch.bool)}), x)


def test_every_option_draws_the_same_numbers_so_defaults_do_not_move():
    """Turning grey or jitter on must not change the crops and flips of the same (seed, epoch, index)."""
    plain, rich = Augment(), Augment(grey=0.5, jitter=0.3)
    for k in range(20):
        a, b = plain.draw(torch.Generator().manual_seed(k)), rich.draw(torch.Generator().manual_seed(k))
        assert torch.equal(a["box"], b["box"]) and torch.equal(a["flip"], b["flip"])
    with pytest.raises(UserError, match="jitter"):
        Augment(jitter=1.0)
    with pytest.raises(UserError, match="grey"):
        Augment(grey=-0.1)
    with pytest.raises(UserError, match="crop_scale"):
        Augment(crop_scale=(0.5, 5.0))


def _zoomed(fill: str, background: torch.Tensor | None = None, side: float = 0.5) -> torch.Tensor:
    params = {"box": torch.tensor([[-(1 / side - 1) / 2, -(1 / side - 1) / 2, 1 / side, 1 / side]]),
              "fill": torch.tensor([ZOOM_FILLS.index(fill)])}  # fmt: skip
    if background is not None:
        params["background"] = background
    return denormalize(apply_augment(batch_to_input(_smooth()[None]), params))[0]


def test_zoom_out_surround_comes_from_real_content_not_flat_colour():
    """reflect: the photo's borders mirrored; photo: another image behind, met by the mirrored borders."""
    frame = torch.ones(S, S, dtype=torch.bool)
    frame[S // 4 - 1 : 3 * S // 4 + 1, S // 4 - 1 : 3 * S // 4 + 1] = False  # the surround of a centred half-size photo
    flat = _zoomed("mean")
    assert flat[:, frame].std(1).max() < 1e-5  # the old fill: one colour
    mirrored = _zoomed("reflect")
    assert mirrored[:2, frame].std(1).min() > 0.05  # the gradients go on beyond the photo (channel 2 is flat)
    # mirrored: the column just left of the photo repeats the photo's first column
    torch.testing.assert_close(mirrored[:, S // 4 : 3 * S // 4, S // 4 - 1], mirrored[:, S // 4 : 3 * S // 4, S // 4],
                               rtol=0, atol=0.03)  # fmt: skip
    other = _pixels(1, seed=9)
    photo = _zoomed("photo", other)
    far = torch.zeros(S, S, dtype=torch.bool)
    far[:2], far[-2:], far[:, :2], far[:, -2:] = True, True, True, True  # > PHOTO_FEATHER photo sides away
    torch.testing.assert_close(photo[:, far], other[0].float()[:, far] / 255, rtol=0, atol=1e-5)
    inner = slice(S // 4 + 1, 3 * S // 4 - 1)
    torch.testing.assert_close(photo[:, inner, inner], mirrored[:, inner, inner], rtol=0, atol=1e-6)  # the face itself
    assert photo[:, frame].std(1).min() > 0.05
    with pytest.raises(UserError, match="background"):
        _zoomed("photo")


def test_log_scale_draw_spreads_doublings_evenly_and_options_keep_the_old_draws():
    plain = Augment(crop_scale=(0.5, 4.0))
    wide = Augment(crop_scale=(0.5, 4.0), scale_draw="log", fill="photo", grey=0.3, jitter=0.2)
    areas = []
    for k in range(400):
        a, b = plain.draw(torch.Generator().manual_seed(k)), wide.draw(torch.Generator().manual_seed(k))
        assert torch.equal(a["flip"], b["flip"]) and torch.equal(a["other"], b["other"])
        assert int(a["fill"]) == 0 and int(b["fill"]) == ZOOM_FILLS.index("photo")
        top, left, h, w = b["box"].double().tolist()
        assert 0.5 - 1e-5 <= h * w <= 4 + 1e-5 or h * w < 1  # zoom-in crops are clipped to the image
        for start, side in ((top, h), (left, w)):  # zoomed out: the photo inside the box; in: the box inside it
            assert min(0.0, 1 - side) - 1e-6 <= start <= max(0.0, 1 - side) + 1e-6
        areas.append(h * w)
    areas_t = torch.tensor(areas)
    thirds = [float(((areas_t > lo) & (areas_t <= hi)).double().mean()) for lo, hi in ((0, 1), (1, 2), (2, 9))]
    assert all(0.25 < t < 0.42 for t in thirds), thirds  # log-uniform: each doubling about a third
    # the first nine draws are those of the older nine-number draw: old runs reproduce
    g = torch.Generator().manual_seed(3)
    u = torch.rand(9, generator=g, dtype=torch.float64).tolist()
    assert float(Augment().draw(torch.Generator().manual_seed(3))["box"][2]) == pytest.approx(
        math.sqrt((0.85 + 0.15 * u[0]) / math.exp(math.log(0.95) + (math.log(1 / 0.95) - math.log(0.95)) * u[1])),
        rel=1e-6)  # fmt: skip
    with pytest.raises(UserError, match="fill"):
        Augment(fill="blur")
    with pytest.raises(UserError, match="scale_draw"):
        Augment(scale_draw="normal")


def test_training_items_carry_another_photo_as_background_per_seed_epoch_and_index():
    ds = [t for t in _pixels(5, seed=1)]
    aug = Augment(crop_scale=(2.0, 3.0), fill="photo")
    a, b = TrainItems(ds, 9, seed=3, salt=1, augment=aug), TrainItems(ds, 9, seed=3, salt=1, augment=aug)
    a.epoch = b.epoch = 1
    seen = set()
    for i in range(5):
        bg = a[i][2]["background"]
        match = [j for j in range(5) if torch.equal(bg, ds[j])]
        assert match and match[0] != i  # another photo of the split, never the image itself
        assert torch.equal(bg, b[i][2]["background"])  # the same for any instance (resume, workers)
        seen.add(match[0])
    assert len(seen) > 1
    batch = torch.utils.data.default_collate([a[i] for i in range(5)])
    assert batch[2]["background"].shape == (5, 3, S, S)
    out = denormalize(batch_to_input(batch[0], augment=batch[2]))
    assert out[:, :, :2, :2].std() > 0.05  # corners show the backgrounds, not one colour
    assert TrainItems(ds, 9, seed=3, salt=1, augment=Augment())[0][2].get("background") is None


def test_zoom_out_for_evaluation_centres_the_face_in_a_surround():
    imgs, bg = _pixels(2, seed=4), _pixels(2, seed=5)
    out = zoom_out(imgs, 0.5, fill="photo", background=bg)
    assert out.dtype == torch.uint8 and out.shape == imgs.shape
    torch.testing.assert_close(out[:, :, :2, :2].float(), bg[:, :, :2, :2].float(), rtol=0, atol=1.0)
    shrunk = torch.nn.functional.avg_pool2d(imgs.float(), 2)  # half size: 2x2 averages, near enough
    centre = out[:, :, S // 4 + 1 : 3 * S // 4 - 1, S // 4 + 1 : 3 * S // 4 - 1].float()
    assert (centre - shrunk[:, :, 1:-1, 1:-1]).abs().mean() < 20
    assert torch.equal(zoom_out(imgs, 1.0, fill="reflect"), imgs)
    with pytest.raises(UserError, match="side"):
        zoom_out(imgs, 1.5)
    with pytest.raises(UserError, match="background"):
        zoom_out(imgs, 0.5, fill="photo")
