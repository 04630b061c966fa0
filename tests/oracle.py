"""A stand-in model that predicts every patch exactly (the input's own pixels): whatever the
pipeline around it does, it must then score the maximum, and the masks it was given are kept."""

from __future__ import annotations

import torch
from torch import nn

from mae_utils.model import patchify, unpatchify


class Oracle(nn.Module):
    """Predicts every patch exactly; ``calls`` records each mask it got."""

    def __init__(self, img_size: int = 32, patch_size: int = 8):
        super().__init__()
        self.img_size, self.patch_size, self.in_chans, self.norm_pix_loss = img_size, patch_size, 3, False
        self.dummy = nn.Parameter(torch.zeros(1))
        self.calls: list[torch.Tensor] = []

    def forward(self, imgs, mask_ratio=0.75, noise=None, mask=None):
        self.calls.append(mask.clone())
        return torch.zeros(()), patchify(imgs, self.patch_size), mask

    def unpatchify(self, pred):
        return unpatchify(pred, self.patch_size, self.img_size)

    def prediction_to_images(self, pred, imgs):
        return self.unpatchify(pred.float())
