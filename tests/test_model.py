import re

import pytest
import torch
import torch.nn.functional as F

from mae_utils import PRESETS, MaskedAutoencoder, build_mae, patchify, unpatchify
from mae_utils.model import class_token_attention
from mae_utils.util.errors import UserError


def small_model(**kw):
    args = dict(img_size=32, patch_size=8, embed_dim=32, depth=2, num_heads=4,
                decoder_embed_dim=16, decoder_depth=1, decoder_num_heads=2)
    args.update(kw)
    torch.manual_seed(0)
    return MaskedAutoencoder(**args)


@pytest.mark.parametrize("chans,h,w,p", [(3, 32, 32, 8), (1, 16, 24, 4), (3, 64, 64, 16)])
def test_patchify_round_trip_and_layout(chans, h, w, p):
    imgs = torch.randn(2, chans, h, w)
    x = patchify(imgs, p)
    assert x.shape == (2, (h // p) * (w // p), p * p * chans)
    assert torch.equal(unpatchify(x, p, (h, w), chans), imgs)
    # patch 1 is row 0, column 1; inside it pixels are (row, col, channel)
    assert torch.equal(x[0, 1].reshape(p, p, chans), imgs[0, :, :p, p : 2 * p].permute(1, 2, 0))


def test_patchify_odd_size_error():
    with pytest.raises(UserError, match="not divisible by patch_size"):
        patchify(torch.randn(1, 3, 30, 32), 8)


def test_forward_shapes_and_mask_counts():
    m = small_model()
    loss, pred, mask = m(torch.randn(3, 3, 32, 32), mask_ratio=0.75)
    assert pred.shape == (3, 16, 8 * 8 * 3) and mask.shape == (3, 16)
    assert torch.all(mask.sum(1) == 16 - int(16 * 0.25))
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_same_noise_same_output():
    m = small_model().eval()
    imgs, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    a = m(imgs, noise=noise)
    b = m(imgs, noise=noise)
    for u, v in zip(a, b):
        assert torch.equal(u, v)
    c = m(imgs, noise=torch.rand(2, 16))
    assert not torch.equal(a[2], c[2])


@pytest.mark.parametrize("norm_pix", [False, True])
def test_loss_is_mse_over_hidden_patches(norm_pix):
    m = small_model(norm_pix_loss=norm_pix)
    imgs = torch.randn(2, 3, 32, 32)
    loss, pred, mask = m(imgs)
    target = patchify(imgs, 8)
    if norm_pix:
        target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    errs = []
    for i in range(2):
        for j in range(16):
            if mask[i, j] == 1:
                errs.append(((pred[i, j] - target[i, j]) ** 2).mean())
    assert torch.allclose(loss, torch.stack(errs).mean(), rtol=1e-5)
    # changing a visible patch's pixels in the target would not change the loss: only hidden ones count
    visible = (mask[0] == 0).nonzero()[0].item()
    imgs2 = imgs.clone()
    r, c = divmod(visible, 4)
    latent, mask2, ids = m.forward_encoder(imgs, noise=None, mask=mask)
    pred2 = m.forward_decoder(latent, ids)
    imgs2[0, :, r * 8 : (r + 1) * 8, c * 8 : (c + 1) * 8] += 5
    assert torch.allclose(m.forward_loss(imgs, pred2, mask2), m.forward_loss(imgs2, pred2, mask2))


def test_gradients_reach_every_trainable_parameter():
    m = small_model()
    loss, _, _ = m(torch.randn(2, 3, 32, 32))
    loss.backward()
    for name, p in m.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert not m.pos_embed.requires_grad and not m.decoder_pos_embed.requires_grad


def test_one_channel_input():
    m = small_model(in_chans=1)
    loss, pred, _ = m(torch.randn(2, 1, 32, 32))
    assert pred.shape == (2, 16, 64) and torch.isfinite(loss)
    assert m.unpatchify(pred).shape == (2, 1, 32, 32)


def test_visible_only_patch_embedding_equals_convolution():
    m = small_model()
    imgs = torch.randn(2, 3, 32, 32)
    conv = m.patch_embed.proj(imgs).flatten(2).transpose(1, 2)
    linear = m.patch_embed(m.patch_embed.flatten_patches(imgs))
    assert torch.allclose(conv, linear, atol=1e-5)


def test_explicit_mask_in_forward():
    m = small_model()
    mask = torch.zeros(2, 16)
    mask[:, :12] = 1
    _, _, out = m(torch.randn(2, 3, 32, 32), mask=mask)
    assert torch.equal(out, mask)
    bad = mask.clone()
    bad[1, 12] = 1
    with pytest.raises(UserError, match="same number"):
        m(torch.randn(2, 3, 32, 32), mask=bad)


def test_clear_errors_for_bad_sizes():
    with pytest.raises(UserError, match="not divisible by patch_size"):
        small_model(img_size=30)
    with pytest.raises(UserError, match="not divisible by num_heads"):
        small_model(num_heads=3)
    with pytest.raises(UserError, match="multiple of 4"):
        small_model(embed_dim=30, num_heads=3)
    m = small_model()
    with pytest.raises(UserError, match=r"takes \(3, 32, 32\) images"):
        m(torch.randn(1, 3, 64, 64))
    with pytest.raises(UserError, match="unknown preset"):
        build_mae("huge")


def test_base_parameter_count_matches_official_vit_b():
    # official MAE ViT-B/16 pretraining model at 224 px: 111,907,840 parameters, fixed tables included
    m = build_mae("base", img_size=224, patch_size=16)
    assert sum(p.numel() for p in m.parameters()) == 111_907_840


OFFICIAL_KEY = re.compile(
    r"^(cls_token|pos_embed|mask_token|decoder_pos_embed|patch_embed\.proj\.(weight|bias)|norm\.(weight|bias)"
    r"|decoder_(embed|norm|pred)\.(weight|bias)"
    r"|(decoder_)?blocks\.\d+\.(norm1|norm2|attn\.qkv|attn\.proj|mlp\.fc1|mlp\.fc2)\.(weight|bias))$"
)


def test_state_dict_round_trip_official_keys(tmp_path):
    m = build_mae("tiny", img_size=64, patch_size=8)
    sd = m.state_dict()
    assert all(OFFICIAL_KEY.match(k) for k in sd), [k for k in sd if not OFFICIAL_KEY.match(k)]
    assert sum(k.startswith("blocks.") and k.endswith("attn.qkv.weight") for k in sd) == 12
    assert all(mod.eps == 1e-6 for mod in m.modules() if isinstance(mod, torch.nn.LayerNorm))
    torch.save({"model": sd}, tmp_path / "w.pth")
    fresh = build_mae("tiny", img_size=64, patch_size=8)
    fresh.load_state_dict(torch.load(tmp_path / "w.pth", weights_only=True)["model"], strict=True)
    imgs, noise = torch.randn(2, 3, 64, 64), torch.rand(2, 64)
    assert torch.equal(m.eval()(imgs, noise=noise)[1], fresh.eval()(imgs, noise=noise)[1])


def test_presets_are_consistent():
    for name, cfg in PRESETS.items():
        assert cfg["embed_dim"] % cfg["num_heads"] == 0, name
        assert cfg["decoder_embed_dim"] % cfg["decoder_num_heads"] == 0, name
    m = build_mae("tiny", img_size=32, patch_size=8, embed_dim=64, num_heads=4)
    assert m.cls_token.shape[-1] == 64


def test_set_grid_rebuilds_tables():
    m = small_model()
    m.set_grid(6)
    assert m.pos_embed.shape == (1, 37, 32) and m.img_size == 48
    loss, pred, _ = m(torch.randn(1, 3, 48, 48))
    assert pred.shape == (1, 36, 192)


def test_prediction_to_images_undoes_norm_pix():
    """With norm_pix_loss, a prediction equal to the normalised target maps back to the input."""
    m = small_model(norm_pix_loss=True)
    imgs = torch.randn(2, 3, 32, 32)
    target = patchify(imgs, 8)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert torch.allclose(m.prediction_to_images(normed, imgs), imgs, atol=1e-4)
    plain = small_model()
    assert torch.equal(plain.prediction_to_images(target, imgs), imgs)


# ---------------------------------------------------------------------- attention maps
def test_attention_weights_are_what_the_fused_kernel_uses():
    """Attention.weights makes SDPA's probabilities visible: rows sum to 1, and weights @ v
    through the output projection is the block's own attention output."""
    attn = small_model().eval().blocks[0].attn
    x = torch.randn(2, 5, 32)
    w = attn.weights(x)
    assert w.shape == (2, 4, 5, 5) and torch.allclose(w.sum(-1), torch.ones(2, 4, 5), atol=1e-5)
    _, _, v = attn._heads(x)
    manual = attn.proj((w @ v).transpose(1, 2).reshape(2, 5, 32))
    assert torch.allclose(manual, attn(x), atol=1e-5)


def test_encoder_attention_follows_the_encoders_masking():
    m = small_model().eval()
    imgs, noise = torch.randn(2, 3, 32, 32), torch.rand(2, 16)
    before = m(imgs, noise=noise)[1]
    attn, mask, ids_keep = m.encoder_attention(imgs, mask_ratio=0.75, noise=noise)
    assert attn.shape == (2, 2, 4, 1 + 4, 1 + 4)  # depth, N, heads, class token + 4 visible patches
    assert torch.allclose(attn.sum(-1), torch.ones(attn.shape[:-1]), atol=1e-5)
    assert torch.equal(mask, m.forward_encoder(imgs, noise=noise)[1])
    assert torch.equal(mask.gather(1, ids_keep), torch.zeros(2, 4))  # the tokens are visible patches
    assert torch.equal(m(imgs, noise=noise)[1], before)  # the default forward is untouched
    assert set(m.state_dict()) == set(small_model().state_dict())


def test_class_token_attention_covers_only_the_visible_patches():
    m = small_model().eval()
    mask = torch.zeros(2, 16)
    mask[0, :12] = 1
    mask[1, 4:] = 1
    attn, _, ids_keep = m.encoder_attention(torch.randn(2, 3, 32, 32), mask=mask)
    grid = class_token_attention(attn[-1], ids_keep, 16)
    assert grid.shape == (2, 4, 16)
    hidden = mask.bool()[:, None, :].expand_as(grid)
    assert torch.all(grid[hidden] == 0) and torch.all(grid[~hidden] > 0)
    # with what the class token gives itself, its row sums to 1
    assert torch.allclose(grid.sum(-1) + attn[-1][:, :, 0, 0], torch.ones(2, 4), atol=1e-5)
    whole, _, ids_all = m.encoder_attention(torch.randn(1, 3, 32, 32), mask=torch.zeros(1, 16))
    assert torch.all(class_token_attention(whole[0], ids_all, 16) > 0)
