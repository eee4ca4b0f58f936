"""The image modality's noise classifier for classifier guidance: ADM's (Dhariwal & Nichol 2021, Sec. 4.1, "we use
the downsampling trunk of the UNet model") U-Net encoder on ``x_t`` with the time embedding, here pooled by
global averaging instead of attention pooling."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from crossguide.embeddings import TimeEmbedding
from crossguide.modalities.image.unet import Level, down_path, group_norm


class NoisyEncoder(nn.Module):
    """``(x_t [B, C, H, W], t [B]) -> [B, dim]``: the U-Net's downsampling half and a middle block, pooled.

    Args mirror :class:`crossguide.modalities.image.unet.UNet` (same meaning, no condition and no upsampling half).
    """

    def __init__(self, *, size: int, in_channels: int = 3, channels: int = 32, mults: Sequence[int] = (1, 2, 2),
                 res_blocks: int = 1, attention: Sequence[int] = (), heads: int = 4):
        super().__init__()
        self.time = TimeEmbedding(channels)
        emb = self.time.out_dim
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)
        self.down, widths, _ = down_path(size, channels, mults, res_blocks, attention, heads, emb, 0.0)
        self.dim = widths[-1]
        self.mid = Level(self.dim, self.dim, emb, 0.0, True, heads)
        self.out = nn.Sequential(group_norm(self.dim), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.to(memory_format=torch.channels_last)

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        emb = self.time(t)  # [B, 4 * channels]
        h = self.inp(x_t.contiguous(memory_format=torch.channels_last))
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
        return self.out(self.mid(h, emb))  # [B, dim]
