"""The Masked Autoencoder (He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners").

One class, the algorithm in four steps to read top to bottom in :meth:`MaskedAutoencoder.forward`:

1. cut the image into patches and keep a random 25% of them (``masking.masking_ids``);
2. the encoder, a ViT, embeds and transforms only those visible patches (plus a class token);
3. the light decoder puts a shared, learned mask token in every hidden slot, adds position
   information, and predicts the pixels of every patch;
4. the loss is the mean squared error on the hidden patches only.

Three options, all off by default (off = the paper's model, its weights and outputs unchanged),
spend the compute where the reconstruction is made: ``decode_fraction`` (training decodes only a
random share of the hidden patches, as CrossMAE does, arXiv 2401.14391), ``fill_start`` (each mask
token starts from a classical harmonic fill of its patch, so the network learns the residual) and
``standardize_visible`` (each image works in its own units, from its visible pixels only).

Parameter names (``state_dict`` keys) and LayerNorm eps (1e-6) follow the official MAE release, so
its pixel-target checkpoints load with ``strict=True``. Written from the paper and that key list.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .util.errors import UserError
from .baselines import harmonic_start
from .masking import gather_tokens, masking_ids, masking_noise
from .pos_embed import sincos_2d

DEFAULT_LAYER_NORM_EPS = 1e-6  # the official MAE's; Hugging Face configs may carry another

# Encoder width/depth/heads and decoder width/depth/heads. `base` and `large` are the paper's
# ViT-B/L encoders with its 512-wide, 8-block decoder; `cpu` (the default: ~1 M parameters at 64 px,
# minutes on 2 cores), `tiny` and `small` fit CPUs (decoder kept light, as the paper finds depth
# matters little for reconstruction, Table 1a).
PRESETS: dict[str, dict[str, int]] = {
    "cpu": dict(embed_dim=128, depth=4, num_heads=4,
                decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=3),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3,
                 decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4),
    "small": dict(embed_dim=384, depth=12, num_heads=6,
                  decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "base": dict(embed_dim=768, depth=12, num_heads=12,
                 decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "large": dict(embed_dim=1024, depth=24, num_heads=16,
                  decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
}

# What a hidden slot's decoder token starts from: the mask token alone (the paper), or plus a
# learned map of the harmonic fill of that patch from the visible pixels (baselines.harmonic_start).
FILL_STARTS = ("none", "harmonic")
# The option constructor arguments and their "off" values; config holds only those switched on, so
# a model with all off has exactly the official constructor arguments.
OPTION_DEFAULTS: dict[str, object] = dict(
    decode_fraction=1.0, fill_start="none", standardize_visible=False
)
# Added to each image's per-channel variance of its visible pixels before the square root: a flat
# visible region (a grey background) must not blow the hidden pixels up to huge values.
STANDARDIZE_EPS = 1e-2


def patchify(imgs: torch.Tensor, patch_size: int) -> torch.Tensor:
    """(N, C, H, W) -> (N, L, p*p*C): patches row-major, pixels (p, p, C) inside a patch."""
    n, c, h, w = imgs.shape
    p = patch_size
    if h % p or w % p:
        raise UserError(f"image size {h}x{w} is not divisible by patch_size {p}")
    x = imgs.reshape(n, c, h // p, p, w // p, p)
    return x.permute(0, 2, 4, 3, 5, 1).reshape(n, (h // p) * (w // p), p * p * c)


def unpatchify(
    x: torch.Tensor, patch_size: int, img_size: int | tuple[int, int], in_chans: int = 3
) -> torch.Tensor:
    """Inverse of :func:`patchify`: (N, L, p*p*C) -> (N, C, H, W)."""
    h, w = (img_size, img_size) if isinstance(img_size, int) else img_size
    p = patch_size
    n, length, dim = x.shape
    if h % p or w % p or length != (h // p) * (w // p) or dim != p * p * in_chans:
        raise UserError(
            f"cannot unpatchify {tuple(x.shape)} into {in_chans}x{h}x{w} images with patch_size {p}"
        )
    x = x.reshape(n, h // p, w // p, p, p, in_chans)
    return x.permute(0, 5, 1, 3, 2, 4).reshape(n, in_chans, h, w)


class PatchEmbed(nn.Module):
    """Linear projection of flattened patches, stored as the official stride-p convolution."""

    def __init__(self, patch_size: int, in_chans: int, embed_dim: int):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def flatten_patches(self, imgs: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, L, C*p*p) in the convolution's (C, p, p) weight order."""
        n, c, h, w = imgs.shape
        p = self.patch_size
        x = imgs.reshape(n, c, h // p, p, w // p, p).permute(0, 2, 4, 1, 3, 5)
        return x.reshape(n, (h // p) * (w // p), c * p * p)

    def forward(self, flat_patches: torch.Tensor) -> torch.Tensor:
        """Embed already flattened patches: only the visible ones need to be paid for."""
        weight = self.proj.weight.reshape(self.proj.out_channels, -1)
        return F.linear(flat_patches, weight, self.proj.bias)


class Attention(nn.Module):
    """Multi-head self-attention with one fused q/k/v projection, through PyTorch's SDPA kernels."""

    def __init__(self, dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """q, k, v, each (N, heads, T, D / heads)."""
        n, t, d = x.shape
        qkv = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        return q, k, v

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        x = F.scaled_dot_product_attention(*self._heads(x))
        return self.proj(x.transpose(1, 2).reshape(n, t, d))

    def weights(self, x: torch.Tensor) -> torch.Tensor:
        """The attention probabilities the forward pass uses inside its fused kernel, made visible:
        (N, heads, T, T), softmax(q k^T / sqrt(head width)); each row sums to 1 over T tokens."""
        q, k, _ = self._heads(x)
        return torch.softmax((q @ k.transpose(-2, -1)) * q.shape[-1] ** -0.5, dim=-1)


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float,
                 eps: float = DEFAULT_LAYER_NORM_EPS):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class MaskedAutoencoder(nn.Module):
    """ViT encoder over the visible patches, light Transformer decoder with mask tokens."""

    def __init__(
        self,
        img_size: int = 256,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        decoder_embed_dim: int = 512,
        decoder_depth: int = 8,
        decoder_num_heads: int = 16,
        mlp_ratio: float = 4.0,
        norm_pix_loss: bool = False,
        layer_norm_eps: float = DEFAULT_LAYER_NORM_EPS,
        decode_fraction: float = 1.0,
        fill_start: str = "none",
        standardize_visible: bool = False,
    ):
        super().__init__()
        check_sizes(img_size, patch_size, in_chans, embed_dim, num_heads, decoder_embed_dim,
                    decoder_num_heads)
        self.config = dict(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans,
            embed_dim=embed_dim, depth=depth, num_heads=num_heads,
            decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads,
            mlp_ratio=mlp_ratio, norm_pix_loss=norm_pix_loss, layer_norm_eps=layer_norm_eps,
        )
        self._set_options(decode_fraction, fill_start, standardize_visible)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.norm_pix_loss = norm_pix_loss

        # encoder
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim),
                                      requires_grad=False)
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, layer_norm_eps) for _ in range(depth)]
        )
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

        self._build_decoder(decoder_embed_dim, decoder_depth, decoder_num_heads)
        self.initialize_weights()

    # ------------------------------------------------------------------ set-up
    def _build_decoder(self, width: int, depth: int, num_heads: int) -> None:
        """The light decoder's layers (official names); the rest of ``config`` gives their sizes."""
        mlp_ratio, eps = self.config["mlp_ratio"], self.config["layer_norm_eps"]
        patch_pixels = self.patch_size * self.patch_size * self.in_chans
        self.decoder_embed = nn.Linear(self.config["embed_dim"], width)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, width))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, self.num_patches + 1, width), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            [Block(width, num_heads, mlp_ratio, eps) for _ in range(depth)]
        )
        self.decoder_norm = nn.LayerNorm(width, eps=eps)
        self.decoder_pred = nn.Linear(width, patch_pixels)
        if self.fill_start != "none":  # built without a random draw: other weights as without it
            self.decoder_fill_embed = nn.utils.skip_init(
                nn.Linear, patch_pixels, width, device=self.mask_token.device
            )

    def _set_options(self, decode_fraction: float, fill_start: str,
                     standardize_visible: bool) -> None:
        """Check and keep the options; ``config`` records only those switched on."""
        norm_pix_loss = self.config["norm_pix_loss"]
        check_options(decode_fraction, fill_start, standardize_visible, norm_pix_loss)
        options = dict(decode_fraction=decode_fraction, fill_start=fill_start,
                       standardize_visible=standardize_visible)
        self.config.update({k: v for k, v in options.items() if v != OPTION_DEFAULTS[k]})
        self.decode_fraction, self.fill_start = float(decode_fraction), fill_start
        self.standardize_visible = standardize_visible

    def initialize_weights(self) -> None:
        """Paper init: fixed sin-cos tables, xavier-uniform linears (the patch embedding as a
        linear), tokens N(0, 0.02)."""
        self.set_grid(self.grid_size)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        fill_embed = getattr(self, "decoder_fill_embed", None)
        for module in self.modules():
            if module is fill_embed:  # zero: a fresh model's tokens are the paper's mask tokens
                nn.init.zeros_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def set_grid(self, grid_size: int) -> None:
        """(Re)compute the fixed position tables for a ``grid_size`` x ``grid_size`` patch grid."""
        enc = sincos_2d(self.pos_embed.shape[-1], grid_size)
        dec = sincos_2d(self.decoder_pos_embed.shape[-1], grid_size)
        device = self.pos_embed.device
        self.pos_embed = nn.Parameter(enc.unsqueeze(0).to(device), requires_grad=False)
        self.decoder_pos_embed = nn.Parameter(dec.unsqueeze(0).to(device), requires_grad=False)
        self.grid_size, self.num_patches = grid_size, grid_size**2
        self.img_size = grid_size * self.patch_size
        self.config["img_size"] = self.img_size

    # ------------------------------------------------------------------ the algorithm
    def forward_encoder(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the visible patches only. Returns (latent (N, 1+K, D), mask (N, L), ids_restore).

        With ``standardize_visible`` the encoder sees the patches in the image's own units
        (:meth:`visible_stats`)."""
        x, mask, ids_restore, _ = self._visible_sequence(imgs, mask_ratio, noise, mask)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask.to(imgs.dtype), ids_restore

    def _visible_sequence(
        self,
        imgs: torch.Tensor,
        mask_ratio: float,
        noise: torch.Tensor | None,
        mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The encoder's input: (class token + visible patch tokens (N, 1+K, D), mask (N, L),
        ids_restore (N, L), ids_keep (N, K): which patch each visible token is)."""
        self._check_input(imgs)
        patches = self.patch_embed.flatten_patches(imgs)
        n, length, _ = patches.shape
        noise, keep = masking_noise(n, length, imgs.device, mask_ratio=mask_ratio, noise=noise,
                                    mask=mask)
        ids_keep, mask, ids_restore = masking_ids(noise, keep)
        if self.standardize_visible:
            stats = self.visible_stats(imgs, mask)
            patches = self.patch_embed.flatten_patches(standardize(imgs, stats))
        # embed and position only what the encoder will see
        x = self.patch_embed(gather_tokens(patches, ids_keep))
        x = x + gather_tokens(self.pos_embed[:, 1:].expand(n, -1, -1), ids_keep)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        return torch.cat([cls, x], dim=1), mask, ids_restore, ids_keep

    @torch.no_grad()
    def encoder_attention(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """What each encoder block attends to, for figures: the forward pass of
        :meth:`forward_encoder` (same masking arguments), with every block's attention
        probabilities (:meth:`Attention.weights`) kept.

        Returns (attention (depth, N, heads, 1+K, 1+K), mask (N, L), ids_keep (N, K)). Token 0 is
        the class token, token 1 + j the visible patch ``ids_keep[:, j]``; hidden patches are not
        in the sequence, so nothing attends to them. :func:`class_token_attention` puts the class
        token's row back on the patch grid."""
        x, mask, _, ids_keep = self._visible_sequence(imgs, mask_ratio, noise, mask)
        maps = []
        for block in self.blocks:
            maps.append(block.attn.weights(block.norm1(x)))
            x = block(x)
        return torch.stack(maps), mask.to(imgs.dtype), ids_keep

    def forward_decoder(
        self,
        latent: torch.Tensor,
        ids_restore: torch.Tensor,
        fill: torch.Tensor | None = None,
        decode: int | None = None,
    ) -> torch.Tensor:
        """Mask tokens fill the hidden slots; predict every patch's pixels: (N, L, p*p*C).

        ``fill`` (N, L, p*p*C), patchified like the prediction: a guess of every patch; each hidden
        slot's token adds its learned map (``fill_start``). ``decode``: how many hidden patches to
        predict, those that come first in the masking order (``ids_restore``); None = all. Then only
        the visible tokens and those mask tokens enter the decoder, and the rows of the other hidden
        patches hold zeros."""
        x = self.decoder_embed(latent)
        n, kept, length = x.shape[0], x.shape[1] - 1, ids_restore.shape[1]
        count = length - kept if decode is None else decode
        mask_tokens = self.mask_token.to(x.dtype).expand(n, count, -1)
        ids_shuffle = None
        if fill is not None or decode is not None:
            ids_shuffle = torch.argsort(ids_restore, dim=1)  # masking order: visible, then hidden
        if fill is not None:
            guess = gather_tokens(fill.to(x.dtype), ids_shuffle[:, kept : kept + count])
            mask_tokens = mask_tokens + self.decoder_fill_embed(guess)
        if decode is None:
            tokens = torch.cat([x[:, 1:], mask_tokens], dim=1)
            patches = gather_tokens(tokens, ids_restore)  # patch order
            x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        else:  # visible tokens, then the decoded mask tokens, each with its patch's position
            ids = ids_shuffle[:, : kept + count]
            pos = gather_tokens(self.decoder_pos_embed[:, 1:].expand(n, -1, -1), ids)
            tokens = torch.cat([x[:, 1:], mask_tokens], dim=1) + pos
            x = torch.cat([x[:, :1] + self.decoder_pos_embed[:, :1], tokens], dim=1)
        for block in self.decoder_blocks:
            x = block(x)
        pred = self.decoder_pred(self.decoder_norm(x[:, 1:]))  # the class token predicts nothing
        if decode is None:
            return pred
        rows = ids.unsqueeze(-1).expand(-1, -1, pred.shape[-1])
        return pred.new_zeros(n, length, pred.shape[-1]).scatter(1, rows, pred)

    def loss_target(self, imgs: torch.Tensor) -> torch.Tensor:
        """What the prediction is compared with: each patch's pixels (N, L, p*p*C), per-patch
        normalised with ``norm_pix_loss`` (paper sec. 3)."""
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(
        self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """Mean squared error over hidden patches (of :meth:`loss_target`)."""
        per_patch = (pred.float() - self.loss_target(imgs).float()).pow(2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum()

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float = 0.75,
        noise: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs (N, C, H, W) normalised -> (loss, pred (N, L, p*p*C), mask (N, L) 1=hidden).

        ``pred`` is in the input's normalised space whatever the options. With ``decode_fraction``
        < 1, in training mode and without an explicit ``mask``, only :meth:`decoded_count` hidden
        patches are predicted (and scored); the rows of the other hidden patches hold zeros.
        Evaluation mode and an explicit ``mask`` always predict every patch.
        """
        partial = self.training and mask is None and self.decode_fraction < 1.0
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise=noise, mask=mask)
        stats = self.visible_stats(imgs, mask) if self.standardize_visible else None
        x = imgs if stats is None else standardize(imgs, stats)  # the space the loss is taken in
        fill = self.fill_guess(x, mask) if self.fill_start != "none" else None
        decode, scored = None, mask
        if partial:  # the hidden patches that sort first by the mask's own noise: a uniform
            # random subset, fixed per image like the mask (exact resume; any number of processes)
            keep = mask.shape[1] - int(mask[0].sum())
            decode = self.decoded_count(mask.shape[1] - keep)
            scored = (ids_restore < keep + decode).to(mask.dtype) * mask  # hidden and decoded
        pred = self.forward_decoder(latent, ids_restore, fill=fill, decode=decode)
        loss = self.forward_loss(x, pred, scored)
        if stats is not None:
            pred = destandardize(pred, stats, self.in_chans)
            if decode is not None:
                pred = pred * (1 - mask + scored).unsqueeze(-1)  # the undecoded rows stay zero
        return loss, pred, mask

    # ------------------------------------------------------------------ the options
    def decoded_count(self, hidden: int) -> int:
        """How many of ``hidden`` patches a training step decodes: ``decode_fraction``, >= 1."""
        return max(1, min(hidden, round(self.decode_fraction * hidden)))

    def visible_stats(
        self, imgs: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each (N, C, 1, 1): every image's per-channel statistics over its visible
        pixels only (``mask`` (N, L), 1 = hidden; the hidden pixels are never read)."""
        n, c = imgs.shape[:2]
        p = self.patch_size
        patches = patchify(imgs.float(), p).reshape(n, -1, p * p, c)
        keep = mask.shape[1] - int(mask[0].sum())
        ids = torch.argsort(mask, dim=1, stable=True)[:, :keep]  # the visible patches
        rows = ids[:, :, None, None].expand(-1, -1, p * p, c)
        visible = torch.gather(patches, 1, rows).reshape(n, -1, c)
        mean = visible.mean(dim=1)
        std = (visible.var(dim=1, unbiased=False) + STANDARDIZE_EPS).sqrt()
        return mean.reshape(n, c, 1, 1), std.reshape(n, c, 1, 1)

    @torch.no_grad()
    def fill_guess(self, imgs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The classical fill each hidden slot's token starts from, patchified (N, L, p*p*C): the
        harmonic fill from the visible pixels only (:func:`mae_utils.baselines.harmonic_start`)."""
        p, grid = self.patch_size, self.img_size // self.patch_size
        hidden = mask.reshape(-1, 1, grid, grid).repeat_interleave(p, 2).repeat_interleave(p, 3)
        return patchify(harmonic_start(imgs.float(), hidden), p)

    # ------------------------------------------------------------------ helpers
    def unpatchify(self, pred: torch.Tensor) -> torch.Tensor:
        """Per-patch predictions back to images (in the normalised pixel space of the input)."""
        return unpatchify(pred, self.patch_size, self.img_size, self.in_chans)

    def prediction_to_images(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        """Predictions as images in the input's normalised space, float32: (N, C, H, W).

        A ``norm_pix_loss`` model predicts per-patch normalised pixels; they are mapped back with
        each patch's true mean and std taken from ``imgs``, as the paper's figures do. That borrows
        information from hidden patches, so such reconstructions flatter the model.
        """
        pred = pred.float()
        if self.norm_pix_loss:
            target = patchify(imgs.float(), self.patch_size)
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1.0e-6) ** 0.5 + mean
        return self.unpatchify(pred)

    def _check_input(self, imgs: torch.Tensor) -> None:
        if imgs.ndim != 4:
            raise UserError(f"imgs must be (N, C, H, W), got shape {tuple(imgs.shape)}")
        if not imgs.is_floating_point():
            raise UserError(
                f"imgs must be the normalised float input, got {imgs.dtype}; make it from dataset "
                "items with mae_utils.transforms.batch_to_input"
            )
        if tuple(imgs.shape[1:]) != (self.in_chans, self.img_size, self.img_size):
            raise UserError(
                f"this model takes ({self.in_chans}, {self.img_size}, {self.img_size}) images, got "
                f"{tuple(imgs.shape[1:])}; build it with img_size/in_chans to match, or resize "
                "the images"
            )


def check_sizes(img_size: int, patch_size: int, in_chans: int, embed_dim: int, num_heads: int,
                decoder_embed_dim: int, decoder_num_heads: int) -> None:
    """The architecture's shape rules (the one check: the model's constructor and
    ``TrainConfig`` use it)."""
    for name, value in dict(img_size=img_size, patch_size=patch_size, in_chans=in_chans).items():
        if not isinstance(value, int) or value < 1:
            raise UserError(f"{name} must be a positive integer, got {value!r}")
    if img_size % patch_size:
        raise UserError(f"img_size {img_size} is not divisible by patch_size {patch_size}")
    for width_name, width, heads_name, heads in (
        ("embed_dim", embed_dim, "num_heads", num_heads),
        ("decoder_embed_dim", decoder_embed_dim, "decoder_num_heads", decoder_num_heads),
    ):
        if width % 4:
            raise UserError(f"{width_name} must be a multiple of 4 (2-D sin-cos positions), "
                            f"got {width}")
        if heads < 1 or width % heads:
            raise UserError(f"{width_name} {width} is not divisible by {heads_name} {heads}")


def check_options(decode_fraction: float, fill_start: str, standardize_visible: bool,
                  norm_pix_loss: bool = False) -> None:
    """The options' rules (the one check: the constructor, ``TrainConfig``, checkpoints)."""
    if isinstance(decode_fraction, bool) or not isinstance(decode_fraction, (int, float)) or not (
            0.0 < decode_fraction <= 1.0):
        raise UserError(f"decode_fraction must be in (0, 1] (1 = decode every hidden patch); "
                        f"got {decode_fraction!r}")
    if fill_start not in FILL_STARTS:
        raise UserError(f"fill_start must be one of {', '.join(FILL_STARTS)}; got {fill_start!r}")
    if not isinstance(standardize_visible, bool):
        raise UserError(f"standardize_visible must be true or false; got {standardize_visible!r}")
    if standardize_visible and norm_pix_loss:
        raise UserError("standardize_visible and norm_pix_loss both rescale the target: "
                        "choose one of them")


def class_token_attention(
    attention: torch.Tensor, ids_keep: torch.Tensor, num_patches: int
) -> torch.Tensor:
    """The class token's attention on the patch grid: (..., heads, 1+K, 1+K) attention of one
    block (:meth:`MaskedAutoencoder.encoder_attention`) -> (N, heads, L) in patch order, each
    visible patch its weight, each hidden patch 0 (it was not in the sequence). What the class token
    gives itself is left out, so a row sums to 1 minus that."""
    cls_row = attention[..., 0, 1:]  # (N, heads, K)
    n, heads, _ = cls_row.shape
    grid = cls_row.new_zeros(n, heads, num_patches)
    return grid.scatter(2, ids_keep[:, None, :].expand(-1, heads, -1), cls_row)


def standardize(imgs: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """Images in their own units: ``(imgs - mean) / std`` (``MaskedAutoencoder.visible_stats``)."""
    mean, std = stats
    return ((imgs.float() - mean) / std).to(imgs.dtype)


def destandardize(
    pred: torch.Tensor, stats: tuple[torch.Tensor, torch.Tensor], in_chans: int
) -> torch.Tensor:
    """Per-patch predictions (N, L, p*p*C) in an image's own units back to the normalised input."""
    mean, std = (t.reshape(t.shape[0], 1, 1, in_chans) for t in stats)
    n, length, dim = pred.shape
    out = pred.float().reshape(n, length, dim // in_chans, in_chans) * std + mean
    return out.reshape(n, length, dim).to(pred.dtype)


def build_mae(
    preset: str = "base", img_size: int = 256, patch_size: int = 16, **overrides
) -> MaskedAutoencoder:
    """A model from a named preset; ``overrides`` are constructor arguments (``embed_dim=192``)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    kwargs = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return MaskedAutoencoder(img_size=img_size, patch_size=patch_size, **kwargs)
