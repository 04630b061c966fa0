"""The model's fill of the hidden patches: the prediction is the model's own, pasting keeps the
visible pixels, the blend and the refiner are applied on top, and the flip test-time average is
the mean of the two passes."""

from __future__ import annotations

import pytest
import torch

from mae_utils.baselines import blend_seams
from mae_utils.masking import make_mask
from mae_utils.metrics import patch_mask_to_pixel_mask
from mae_utils.model import MaskedAutoencoder
from mae_utils.tools.inference import SeamRefiner, fill, fill_from, paste, predict, predict_pasted
from mae_utils.transforms import denormalize
from mae_utils.util.errors import UserError

from oracle import Oracle


def _model_and_batch(n: int = 3, seed: int = 0):
    torch.manual_seed(seed)
    model = MaskedAutoencoder(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2,
                              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).eval()
    imgs = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed + 1))
    mask = make_mask("random", n, 4, mask_ratio=0.75, seed=seed)
    return model, imgs, mask


def test_predict_is_the_models_forward_pass_on_the_given_or_drawn_mask():
    model, imgs, mask = _model_and_batch()
    pred, used = predict(model, imgs, mask)
    with torch.no_grad():
        _, raw, _ = model(imgs, mask=mask)
    assert torch.equal(used, mask) and torch.allclose(pred, model.unpatchify(raw))
    noise = torch.rand(3, 16, generator=torch.Generator().manual_seed(5))
    _, drawn = predict(model, imgs, noise=noise, mask_ratio=0.5)
    kept = noise.argsort(dim=1)[:, :8]  # the 8 lowest-noise patches stay visible
    assert torch.equal(drawn.gather(1, kept), torch.zeros(3, 8)) and drawn.sum() == 3 * 8


def test_the_flip_average_is_the_mean_of_the_two_passes_computed_by_hand():
    model, imgs, mask = _model_and_batch()
    mirrored_mask = mask.reshape(3, 4, 4).flip(-1).reshape(3, 16)
    with torch.no_grad():
        one = model.unpatchify(model(imgs, mask=mask)[1])
        two = model.unpatchify(model(imgs.flip(-1), mask=mirrored_mask)[1]).flip(-1)
    pred, used = predict(model, imgs, mask, tta="flip")
    assert torch.equal(used, mask)
    assert torch.allclose(pred, (one + two) / 2, atol=1e-6)
    assert not torch.allclose(pred, one, atol=1e-3)  # the second pass did change the guess
    # the same pixels stay hidden in the mirrored pass: a perfect model is still perfect
    oracle = Oracle()
    exact, _ = predict(oracle, imgs, mask, tta="flip")
    assert torch.allclose(exact, imgs, atol=1e-6)
    assert torch.equal(oracle.calls[1], mirrored_mask)
    with pytest.raises(UserError, match="tta must be one of flip"):
        predict(model, imgs, mask, tta="rotate")


def test_paste_keeps_the_visible_pixels_and_fill_is_pixels_with_the_photo_pasted():
    model, imgs, mask = _model_and_batch()
    pm = patch_mask_to_pixel_mask(mask, 8, 32)
    pred, _ = predict(model, imgs, mask)
    pasted = paste(pred, imgs, pm)
    hidden = pm.expand_as(imgs) > 0.5
    assert torch.equal(pasted[hidden], pred[hidden]) and torch.equal(pasted[~hidden], imgs[~hidden])
    again, pixel_mask, used = predict_pasted(model, imgs, mask)
    assert torch.equal(again, pasted) and torch.equal(pixel_mask, pm) and torch.equal(used, mask)
    raw = fill(model, imgs, mask)
    photo = denormalize(imgs)
    assert torch.equal(raw[~hidden], photo[~hidden])
    assert torch.allclose(raw[hidden], denormalize(pred)[hidden])
    blended = fill(model, imgs, mask, blend=True)
    assert torch.allclose(blended, blend_seams(photo, pm, denormalize(pred), 8), atol=1e-6)
    assert torch.equal(fill(model, imgs, mask, tta="flip"),
                       fill_from(predict(model, imgs, mask, tta="flip")[0], imgs, pm, 8))


def test_a_fresh_refiner_leaves_the_fill_as_it_was_and_a_trained_one_changes_hidden_pixels():
    model, imgs, mask = _model_and_batch()
    refiner = SeamRefiner(3, width=8)
    assert torch.allclose(fill(model, imgs, mask, refiner=refiner), fill(model, imgs, mask), atol=1e-6)
    with torch.no_grad():
        refiner.out.bias.fill_(0.5)
    refined = fill(model, imgs, mask, refiner=refiner)
    hidden = patch_mask_to_pixel_mask(mask, 8, 32).expand_as(imgs) > 0.5
    assert torch.equal(refined[~hidden], denormalize(imgs)[~hidden])
    assert not torch.allclose(refined[hidden], fill(model, imgs, mask)[hidden])
