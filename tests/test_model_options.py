"""The model options: partial decoding, the fill-started mask token and per-image standardisation.

Off, each leaves the paper's model (its weights, keys and outputs); on, partial decoding decodes a
seeded share of the hidden patches in training only, the fill reads no hidden pixel, standardisation
takes its statistics from visible pixels only and is undone on output, and a run with all three
resumes exactly and rebuilds the same model from its checkpoint."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

from mae_utils.pretrained import load_model, load_model_from_run
from mae_utils import train as train_mod
from mae_utils.baselines import harmonic_start, inpaint_mean_fill
from mae_utils.config import TrainConfig, load_run_config
from mae_utils.metrics import patch_mask_to_pixel_mask
from mae_utils.model import MaskedAutoencoder, patchify
from mae_utils.train import build_model, dry_run, fit, with_options
from mae_utils.util import checkpoint as ckpt
from mae_utils.app import cli
from mae_utils.util.errors import UserError

from tiny_runs import cli_error

from conftest import TINY_MODEL

SIZES = dict(img_size=32, patch_size=8, embed_dim=32, depth=1, num_heads=2, decoder_embed_dim=32,
             decoder_depth=1, decoder_num_heads=2)  # fmt: skip
ALL_ON = dict(decode_fraction=0.5, fill_start="harmonic", standardize_visible=True)


def _model(seed: int = 0, **options) -> MaskedAutoencoder:
    torch.manual_seed(seed)
    return MaskedAutoencoder(**SIZES, **options)


def _batch(n: int = 3, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.rand(n, 16, generator=g)


def _trained_fill(model: MaskedAutoencoder) -> MaskedAutoencoder:
    """A fill map that is no longer zero, as after training (a zero one would hide a leak)."""
    with torch.no_grad():
        model.decoder_fill_embed.weight.normal_(0, 0.5)
    return model


# ---------------------------------------------------------------------- off = the paper's model
def test_options_off_leave_the_official_model():
    plain, off = _model(), _model(decode_fraction=1.0, fill_start="none", standardize_visible=False)
    assert off.config == plain.config and "fill_start" not in off.config
    assert off.state_dict().keys() == plain.state_dict().keys()
    imgs, noise = _batch()
    for mode in ("train", "eval"):
        a, b = getattr(plain, mode)()(imgs, noise=noise), getattr(off, mode)()(imgs, noise=noise)
        assert all(torch.equal(u, v) for u, v in zip(a, b)), mode


def test_a_fresh_fill_started_model_is_the_paper_model():
    """Zero-initialised fill map, built without a random draw: the same weights and outputs as the
    plain model from the same seed, plus the two new tensors."""
    plain, fill = _model(), _model(fill_start="harmonic")
    extra = set(fill.state_dict()) - set(plain.state_dict())
    assert extra == {"decoder_fill_embed.weight", "decoder_fill_embed.bias"}
    assert not any(fill.state_dict()[k].any() for k in extra)
    assert all(torch.equal(v, fill.state_dict()[k]) for k, v in plain.state_dict().items())
    imgs, noise = _batch()
    a, b = plain.eval()(imgs, noise=noise), fill.eval()(imgs, noise=noise)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


# ---------------------------------------------------------------------- partial decoding
def test_partial_decoding_predicts_the_first_hidden_patches_in_noise_order_and_scores_only_them():
    model = _model(decode_fraction=0.5).train()
    imgs, noise = _batch()
    loss, pred, mask = model(imgs, noise=noise)
    keep, hidden = 4, 12  # 16 patches, mask ratio 0.75
    order = noise.argsort(dim=1)
    decoded = torch.zeros_like(mask).scatter(1, order[:, keep : keep + 6], 1.0)
    assert torch.equal(mask, torch.zeros_like(mask).scatter(1, order[:, keep:], 1.0))
    assert model.decoded_count(hidden) == 6
    undecoded = (mask - decoded).bool()
    assert not pred[undecoded].any() and pred[decoded.bool()].abs().sum(-1).gt(0).all()
    want = ((pred - patchify(imgs, 8)) ** 2).mean(-1)[decoded.bool()].mean()
    assert torch.allclose(loss, want, rtol=1e-5)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_evaluation_and_explicit_masks_decode_every_hidden_patch():
    full, partial = _model(), _model(decode_fraction=0.25)
    imgs, noise = _batch()
    a, b = full.eval()(imgs, noise=noise), partial.eval()(imgs, noise=noise)
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    mask = a[2]
    full.train(), partial.train()
    _, pred_full, _ = full(imgs, mask=mask)
    _, pred_partial, _ = partial(imgs, mask=mask)
    assert torch.equal(pred_full, pred_partial)


def test_decoding_every_hidden_patch_the_short_way_matches_the_full_decoder():
    model = _trained_fill(_model(fill_start="harmonic"))
    imgs, noise = _batch()
    latent, mask, ids_restore = model.forward_encoder(imgs, noise=noise)
    fill = model.fill_guess(imgs, mask)
    full = model.forward_decoder(latent, ids_restore, fill=fill)
    short = model.forward_decoder(latent, ids_restore, fill=fill, decode=12)
    assert torch.allclose(full, short, atol=1e-5)


@pytest.mark.parametrize("bad", [0.0, -0.5, 1.5, float("nan")])
def test_decode_fraction_outside_0_1_is_refused(bad):
    with pytest.raises(UserError, match="decode_fraction must be"):
        TrainConfig(decode_fraction=bad).validate()


# ---------------------------------------------------------------------- the fill
def test_the_fill_reads_no_hidden_pixel_and_keeps_the_visible_ones():
    imgs, noise = _batch()
    mask = _model().eval()(imgs, noise=noise)[2]
    pixel_mask = patch_mask_to_pixel_mask(mask, 8, 32)
    fill = harmonic_start(imgs, pixel_mask)
    changed = torch.where(pixel_mask.bool().expand_as(imgs), torch.randn_like(imgs) * 50, imgs)
    assert torch.equal(harmonic_start(changed, pixel_mask), fill)
    visible = ~pixel_mask.bool().expand_as(imgs)
    assert torch.equal(fill[visible], imgs[visible])


def test_the_fill_follows_a_smooth_image_far_better_than_the_mean():
    ramp = torch.linspace(0.1, 0.9, 32)
    imgs = (ramp[None, :] * 0.5 + ramp[:, None] * 0.5).expand(2, 3, 32, 32).contiguous()
    mask = torch.zeros(2, 16)
    mask[:, [5, 6, 9, 10]] = 1  # the centre 16x16 pixels hidden
    pixel_mask = patch_mask_to_pixel_mask(mask, 8, 32)
    err = lambda x: ((x - imgs) ** 2 * pixel_mask).sum() / pixel_mask.sum() / 3  # noqa: E731
    assert err(harmonic_start(imgs, pixel_mask)) < 0.05 * err(inpaint_mean_fill(imgs, pixel_mask))


def test_the_fill_reaches_the_decoder_tokens():
    """A trained fill map changes the prediction: the fill enters the hidden slots' tokens."""
    model = _trained_fill(_model(fill_start="harmonic")).eval()
    imgs, noise = _batch()
    _, pred, mask = model(imgs, noise=noise)
    latent, _, ids_restore = model.forward_encoder(imgs, noise=noise)
    without = model.forward_decoder(latent, ids_restore)
    assert not torch.allclose(pred, without)


# ---------------------------------------------------------------------- standardisation
@pytest.mark.parametrize("fill_start", ["none", "harmonic"])
def test_standardisation_leaks_no_hidden_pixel(fill_start):
    model = _model(standardize_visible=True, fill_start=fill_start)
    model = (_trained_fill(model) if fill_start != "none" else model).eval()
    imgs, noise = _batch()
    mask = model(imgs, noise=noise)[2]
    _, pred, _ = model(imgs, mask=mask)
    pixel_mask = patch_mask_to_pixel_mask(mask, 8, 32).bool().expand_as(imgs)
    changed = torch.where(pixel_mask, imgs * 7 + 3, imgs)
    _, pred2, _ = model(changed, mask=mask)
    assert torch.equal(pred2, pred)


def test_standardisation_uses_visible_statistics_and_is_undone_on_output():
    model = _model(standardize_visible=True).eval()
    imgs, noise = _batch()
    _, pred, mask = model(imgs, noise=noise)
    mean, std = model.visible_stats(imgs, mask)
    patches = patchify(imgs, 8).reshape(3, 16, 64, 3)
    for i in range(3):
        visible = patches[i][mask[i] == 0].reshape(-1, 3)
        assert torch.allclose(mean[i].flatten(), visible.mean(0), atol=1e-5)
        assert torch.allclose(std[i].flatten(), (visible.var(0, unbiased=False) + 1e-2).sqrt(), atol=1e-5)
    # a brightness shift of the whole image shifts the prediction by as much: the model works in
    # each image's own units and hands back the input's
    shift = torch.tensor([0.5, -1.0, 2.0]).reshape(1, 3, 1, 1)
    _, shifted, _ = model(imgs + shift, noise=noise)
    assert torch.allclose(model.prediction_to_images(shifted, imgs + shift),
                          model.prediction_to_images(pred, imgs) + shift, atol=1e-4)  # fmt: skip


def test_standardisation_and_norm_pix_loss_do_not_combine():
    with pytest.raises(UserError, match="choose one"):
        TrainConfig(standardize_visible=True, norm_pix_loss=True).validate()


# ---------------------------------------------------------------------- configuration and runs
def test_flags_config_and_old_run_folders(tmp_path, capsys):
    parser, _ = cli.build_parser()
    args = parser.parse_args(["train", "--decode-fraction", "0.5", "--fill-start", "harmonic",
                              "--standardize-visible"])  # fmt: skip
    config, _ = train_mod.config_for_cli(args)
    assert (config.decode_fraction, config.fill_start, config.standardize_visible) == (0.5, "harmonic", True)
    assert build_model(config).config | ALL_ON == build_model(config).config
    with pytest.raises(UserError, match="fill_start must be one of none, harmonic"):
        TrainConfig(fill_start="nearest").validate()
    err = cli_error(capsys, ["train", "--decode-fraction", "2", "--out-dir", str(tmp_path / "x")])
    assert "decode_fraction must be in (0, 1]" in err
    # a run folder written before these settings existed loads with them off
    old = {k: v for k, v in TrainConfig().to_dict().items() if k not in ALL_ON}
    (tmp_path / "config.json").write_text(json.dumps(old))
    loaded = load_run_config(tmp_path)
    assert (loaded.decode_fraction, loaded.fill_start, loaded.standardize_visible) == (1.0, "none", False)


def test_dry_run_names_the_options(tmp_path):
    base = TrainConfig(**TINY_MODEL, out_dir=str(tmp_path / "r"), max_images=40)
    assert "options:" not in dry_run(base)
    line = [x for x in dry_run(dataclasses.replace(base, **ALL_ON)).splitlines() if x.startswith("options:")]
    assert line == ["options: training decodes 0.5 of the hidden patches; mask tokens start from the harmonic "
                    "fill; each image standardised by its visible pixels"]  # fmt: skip


def test_checkpoint_rebuilds_the_options_and_refuses_unknown_values(tmp_path):
    model = _trained_fill(_model(**ALL_ON))
    ckpt.save_checkpoint(tmp_path / "best", model.state_dict(), {"epoch": 0}, model.config)
    loaded = load_model(tmp_path / "best")
    assert loaded.config == model.config and loaded.fill_start == "harmonic" and loaded.standardize_visible
    imgs, noise = _batch()
    assert torch.equal(loaded(imgs, noise=noise)[1], model.eval()(imgs, noise=noise)[1])
    meta = {"format": "pt", "mae_config": json.dumps({**model.config, "fill_start": "nearest"})}
    from safetensors.torch import save_file  # local: only this test writes a hand-made header

    save_file(model.state_dict(), str(tmp_path / "best" / ckpt.MODEL_FILE), metadata=meta)
    with pytest.raises(UserError, match="model.safetensors: mae_config fill_start must be one of"):
        load_model(tmp_path / "best")


def test_starting_weights_gain_the_options():
    """init_from: weights of a plain model in a model with every option on, the fill map at zero,
    so the start predicts (in evaluation, without standardisation) exactly what the weights did."""
    plain = _model(seed=3)
    config = TrainConfig(**TINY_MODEL, decode_fraction=0.5, fill_start="harmonic", init_from="weights")
    started = with_options(plain, config, log=lambda _: None)
    assert started.config == {**plain.config, "decode_fraction": 0.5, "fill_start": "harmonic"}
    assert not started.decoder_fill_embed.weight.any()
    imgs, noise = _batch()
    assert torch.equal(started.eval()(imgs, noise=noise)[1], plain.eval()(imgs, noise=noise)[1])
    back = with_options(started, dataclasses.replace(config, decode_fraction=1.0, fill_start="none"), log=print)
    assert back.config == plain.config and back.state_dict().keys() == plain.state_dict().keys()


@pytest.mark.slow
def test_a_run_with_every_option_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    config = tiny_config(epochs=2, **ALL_ON, out_dir=str(tmp_path / "straight"))
    straight = fit(config)
    real_epoch = train_mod._train_epoch

    def crash_in_second_epoch(run, epoch, **kwargs):
        if epoch == 1:
            raise KeyboardInterrupt("simulated crash")
        return real_epoch(run, epoch, **kwargs)

    stopped = dataclasses.replace(config, out_dir=str(tmp_path / "stopped"))
    monkeypatch.setattr(train_mod, "_train_epoch", crash_in_second_epoch)
    with pytest.raises(KeyboardInterrupt):
        fit(stopped)
    monkeypatch.undo()
    resumed = fit(stopped, resume=True)
    a = ckpt.load_model_state(straight.run_dir / "checkpoints" / "last")
    b = ckpt.load_model_state(resumed.run_dir / "checkpoints" / "last")
    assert a.keys() == b.keys() and "decoder_fill_embed.weight" in a
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert a["decoder_fill_embed.weight"].any()  # the fill map trained
    model, saved = load_model_from_run(resumed.run_dir, "last")
    assert model.config == build_model(saved).config  # evaluate rebuilds the trained model
