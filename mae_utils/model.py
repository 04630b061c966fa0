"""The Masked Autoencoder (He et al. 2021, "Masked Autoencoders Are Scalable Vision Learners").

One class, the algorithm in four steps you can read top to bottom in :meth:`MaskedAutoencoder.forward`:

1. cut the image into patches and keep a random 25% of them (``masking.masking_ids``);
2. the encoder, a ViT, embeds and transforms only those visible patches (plus a class token);
3. the light decoder puts a shared, learned mask token in every hidden slot, adds position
   information, and predicts the pixels of every patch;
4. the loss is the mean squared error on the hidden patches only.

Parameter names (``state_dict`` keys) and LayerNorm eps (1e-6) follow the official MAE release, so
its pixel-target checkpoints load with ``strict=True``. Written from the paper and that key list.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .util.errors import UserError
from .masking import gather_tokens, masking_ids, masking_noise
from .pos_embed import sincos_2d

DEFAULT_LAYER_NORM_EPS = 1e-6  # the official MAE's; Hugging Face configs may carry another

# Encoder width/depth/heads and decoder width/depth/heads. `base` and `large` are the paper's
# ViT-B/L encoders with its 512-wide, 8-block decoder; `cpu` (the default: ~1 M parameters at 64 px,
# minutes on 2 cores), `tiny` and `small` fit CPUs (decoder kept light, as the paper finds depth
# matters little for reconstruction, Table 1a).
PRESETS: dict[str, dict[str, int]] = {
    "cpu": dict(embed_dim=128, depth=4, num_heads=4, decoder_embed_dim=96, decoder_depth=2, decoder_num_heads=3),
    "tiny": dict(embed_dim=192, depth=12, num_heads=3, decoder_embed_dim=128, decoder_depth=4, decoder_num_heads=4),
    "small": dict(embed_dim=384, depth=12, num_heads=6, decoder_embed_dim=256, decoder_depth=4, decoder_num_heads=8),
    "base": dict(embed_dim=768, depth=12, num_heads=12, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
    "large": dict(embed_dim=1024, depth=24, num_heads=16, decoder_embed_dim=512, decoder_depth=8, decoder_num_heads=16),
}


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

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(n, t, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm Transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, eps: float = DEFAULT_LAYER_NORM_EPS):
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
    ):
        super().__init__()
        check_sizes(img_size, patch_size, in_chans, embed_dim, num_heads, decoder_embed_dim, decoder_num_heads)
        self.config = dict(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim, depth=depth,
            num_heads=num_heads, decoder_embed_dim=decoder_embed_dim, decoder_depth=decoder_depth,
            decoder_num_heads=decoder_num_heads, mlp_ratio=mlp_ratio, norm_pix_loss=norm_pix_loss,
            layer_norm_eps=layer_norm_eps,
        )  # fmt: skip
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.grid_size = img_size // patch_size
        self.num_patches = self.grid_size**2
        self.norm_pix_loss = norm_pix_loss

        # encoder
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, self.num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = nn.ModuleList([Block(embed_dim, num_heads, mlp_ratio, layer_norm_eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=layer_norm_eps)

        # decoder
        self.decoder_embed = nn.Linear(embed_dim, decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_embed_dim))
        self.decoder_pos_embed = nn.Parameter(
            torch.zeros(1, self.num_patches + 1, decoder_embed_dim), requires_grad=False
        )
        self.decoder_blocks = nn.ModuleList(
            [Block(decoder_embed_dim, decoder_num_heads, mlp_ratio, layer_norm_eps)
             for _ in range(decoder_depth)]
        )
        self.decoder_norm = nn.LayerNorm(decoder_embed_dim, eps=layer_norm_eps)
        self.decoder_pred = nn.Linear(decoder_embed_dim, patch_size * patch_size * in_chans)

        self.initialize_weights()

    # ------------------------------------------------------------------ set-up
    def initialize_weights(self) -> None:
        """Paper init: fixed sin-cos tables, xavier-uniform linears (patch embedding as a linear), tokens N(0, 0.02)."""
        self.set_grid(self.grid_size)
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.zeros_(self.patch_embed.proj.bias)
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for module in self.modules():
            if isinstance(module, nn.Linear):
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
        """Encode the visible patches only. Returns (latent (N, 1+K, D), mask (N, L), ids_restore)."""
        self._check_input(imgs)
        patches = self.patch_embed.flatten_patches(imgs)
        n, length, _ = patches.shape
        noise, keep = masking_noise(n, length, imgs.device, mask_ratio=mask_ratio, noise=noise, mask=mask)
        ids_keep, mask, ids_restore = masking_ids(noise, keep)
        # embed and position only what the encoder will see
        x = self.patch_embed(gather_tokens(patches, ids_keep))
        x = x + gather_tokens(self.pos_embed[:, 1:].expand(n, -1, -1), ids_keep)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(n, -1, -1)
        x = torch.cat([cls, x], dim=1)
        for block in self.blocks:
            x = block(x)
        return self.norm(x), mask.to(imgs.dtype), ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Mask tokens fill the hidden slots; predict every patch's pixels: (N, L, p*p*C)."""
        x = self.decoder_embed(latent)
        n, kept, dim = x.shape[0], x.shape[1] - 1, x.shape[2]
        mask_tokens = self.mask_token.to(x.dtype).expand(n, ids_restore.shape[1] - kept, -1)
        patches = gather_tokens(torch.cat([x[:, 1:], mask_tokens], dim=1), ids_restore)  # patch order
        x = torch.cat([x[:, :1], patches], dim=1) + self.decoder_pos_embed
        for block in self.decoder_blocks:
            x = block(x)
        return self.decoder_pred(self.decoder_norm(x[:, 1:]))  # the class token predicts nothing

    def loss_target(self, imgs: torch.Tensor) -> torch.Tensor:
        """What the prediction is compared with: each patch's pixels (N, L, p*p*C), per-patch
        normalised with ``norm_pix_loss`` (paper sec. 3)."""
        target = patchify(imgs, self.patch_size)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1.0e-6) ** 0.5
        return target

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
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
        """imgs (N, C, H, W) normalised -> (loss, pred (N, L, p*p*C), mask (N, L) 1=hidden)."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, noise=noise, mask=mask)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    # ------------------------------------------------------------------ helpers
    def unpatchify(self, pred: torch.Tensor) -> torch.Tensor:
        """Per-patch predictions back to images (in the normalised pixel space of the input)."""
        return unpatchify(pred, self.patch_size, self.img_size, self.in_chans)

    def prediction_to_images(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        """Predictions as images in the input's normalised space, float32: (N, C, H, W).

        A ``norm_pix_loss`` model predicts per-patch normalised pixels; they are mapped back with each
        patch's true mean and std taken from ``imgs``, as the paper's figures do. That borrows
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
                f"imgs must be the normalised float input, got {imgs.dtype}; make it from dataset items "
                "with mae_utils.transforms.batch_to_input"
            )
        if imgs.shape[1] != self.in_chans or imgs.shape[2] != self.img_size or imgs.shape[3] != self.img_size:
            raise UserError(
                f"this model takes ({self.in_chans}, {self.img_size}, {self.img_size}) images, got "
                f"{tuple(imgs.shape[1:])}; build it with img_size/in_chans to match, or resize the images"
            )


def check_sizes(img_size: int, patch_size: int, in_chans: int, embed_dim: int, num_heads: int,
                decoder_embed_dim: int, decoder_num_heads: int) -> None:
    """The architecture's shape rules (the one check: the model's constructor and ``TrainConfig`` use it)."""
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
            raise UserError(f"{width_name} must be a multiple of 4 (2-D sin-cos positions), got {width}")
        if heads < 1 or width % heads:
            raise UserError(f"{width_name} {width} is not divisible by {heads_name} {heads}")


def build_mae(preset: str = "base", img_size: int = 256, patch_size: int = 16, **overrides) -> MaskedAutoencoder:
    """A model from a named preset; ``overrides`` are constructor arguments (e.g. ``embed_dim=192``)."""
    if preset not in PRESETS:
        raise UserError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    kwargs = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
    return MaskedAutoencoder(img_size=img_size, patch_size=patch_size, **kwargs)
