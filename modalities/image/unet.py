"""An attribute-conditional pixel U-Net (Ho et al. 2020, App. B; Dhariwal & Nichol 2021, Sec. 3, "ADM").

Residual blocks with GroupNorm and SiLU whose scale and shift come from the summed time and attribute
embeddings (ADM's adaptive GroupNorm), self-attention at the lowest resolutions, strided-conv downsampling and
nearest-neighbour upsampling, and a zero-initialised output convolution so training starts from ``eps = 0``.
The classifier-free null condition is each attribute's learned null row in :class:`ConditionEmbedding`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from crossguide.conditions import Attributes, Condition
from crossguide.denoiser import Denoiser
from crossguide.embeddings import ConditionEmbedding, TimeEmbedding
from crossguide.errors import UsageError, check_choice
from crossguide.parameterization import PREDICTIONS, Prediction


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm (Wu & He 2018) with up to 32 groups of at least 4 channels, as in ADM at 128+ channels. Thin
    layers get fewer groups: one channel per group would be instance norm, which erases each image's colour."""
    groups = next(g for g in (32, 16, 8, 4, 2, 1) if channels % g == 0 and (channels // g >= 4 or g == 1))
    return nn.GroupNorm(groups, channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """``x + conv(SiLU(AdaGN(conv(SiLU(GN(x))), emb)))``; AdaGN is ``GN(h) * (1 + scale) + shift``
    (Dhariwal & Nichol 2021, Sec. 3)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float):
        super().__init__()
        self.in_layers = nn.Sequential(group_norm(c_in), nn.SiLU(), nn.Conv2d(c_in, c_out, 3, padding=1))
        self.emb = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * c_out))
        self.out_norm = group_norm(c_out)
        self.out_layers = nn.Sequential(nn.SiLU(), nn.Dropout(dropout), _zero(nn.Conv2d(c_out, c_out, 3, padding=1)))
        self.skip = nn.Identity() if c_in == c_out else nn.Conv2d(c_in, c_out, 1)

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:  # x [B, C_in, H, W], emb [B, E] -> [B, C_out, H, W]
        h = self.in_layers(x)
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)  # [B, C_out, 1, 1] each
        h = self.out_layers(self.out_norm(h) * (1 + scale) + shift)
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head self-attention over the ``H * W`` positions, pre-GroupNorm, zero-initialised projection."""

    def __init__(self, channels: int, heads: int):
        super().__init__()
        if channels % heads:
            raise UsageError(f"attention channels {channels} are not divisible by heads={heads}")
        self.heads = heads
        self.norm = group_norm(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv1d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:  # [B, C, H, W]
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x).reshape(b, c, h * w))  # [B, 3C, L]
        q, k, v = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).transpose(-1, -2).unbind(1)  # [B, h, L, d]
        out = nn.functional.scaled_dot_product_attention(q, k, v)  # [B, heads, L, d]
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h * w)).reshape(b, c, h, w)


class Level(nn.Module):
    """A residual block, optionally followed by attention: one unit of the U-Net at one resolution."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float, attention: bool, heads: int):
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, dropout)
        self.attn = Attention(c_out, heads) if attention else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.res(x, emb))


def down_path(size: int, channels: int, mults: Sequence[int], res_blocks: int, attention: Sequence[int], heads: int,
              emb: int, dropout: float) -> tuple[nn.ModuleList, list[int], int]:
    """ADM's downsampling half: per level ``res_blocks`` :class:`Level` s, then a strided convolution (not after the
    last level). Returns the layers, the widths of the skip connections in push order (the input convolution's
    first; the last is the output width) and the final resolution."""
    layers, widths, c, res = nn.ModuleList(), [channels], channels, size
    for i, m in enumerate(mults):
        for _ in range(res_blocks):
            layers.append(Level(c, channels * m, emb, dropout, res in attention, heads))
            c = channels * m
            widths.append(c)
        if i < len(mults) - 1:
            layers.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
            widths.append(c)
            res //= 2
    return layers, widths, res


class UNet(Denoiser):
    """Pixel-space eps-predicting U-Net for ``[B, channels, size, size]`` images in ``[-1, 1]``.

    Args:
        attributes: attribute -> value names; one embedding table each, with a learned null row.
        size: image height and width; must be divisible by ``2 ** (len(mults) - 1)``.
        in_channels: image channels.
        channels: base width; level ``i`` has ``channels * mults[i]`` channels.
        mults: per-resolution width multipliers, highest resolution first.
        res_blocks: residual blocks per level on the way down (``res_blocks + 1`` on the way up, as in ADM).
        attention: resolutions (side lengths) that get self-attention after each residual block.
        heads: attention heads.
        dropout: dropout inside residual blocks (Ho et al. 2020 use 0.1 on CIFAR-10).
        prediction: what the network predicts; ``eps`` as in Ho et al. 2020.
    """

    def __init__(
        self,
        attributes: Attributes,
        *,
        size: int,
        in_channels: int = 3,
        channels: int = 64,
        mults: Sequence[int] = (1, 2, 2),
        res_blocks: int = 2,
        attention: Sequence[int] = (8,),
        heads: int = 4,
        dropout: float = 0.0,
        prediction: Prediction = "eps",
    ):
        super().__init__(attributes, (in_channels, size, size))
        check_choice("prediction type", prediction, PREDICTIONS)
        if size % 2 ** (len(mults) - 1):
            raise UsageError(f"image size {size} is not divisible by 2**{len(mults) - 1} for mults={list(mults)}")
        self.prediction = prediction
        self._config = {"size": size, "in_channels": in_channels, "channels": channels, "mults": list(mults),
                        "res_blocks": res_blocks, "attention": list(attention), "heads": heads, "dropout": dropout,
                        "prediction": prediction}
        self.time = TimeEmbedding(channels)
        emb = self.time.out_dim  # 4 * channels
        self.cond = ConditionEmbedding(attributes, emb)
        self.inp = nn.Conv2d(in_channels, channels, 3, padding=1)

        self.down, widths, res = down_path(size, channels, mults, res_blocks, attention, heads, emb, dropout)
        self.up = nn.ModuleList()
        c = widths[-1]
        self.mid = nn.ModuleList([Level(c, c, emb, dropout, True, heads), Level(c, c, emb, dropout, False, heads)])
        for i, m in reversed(list(enumerate(mults))):
            for j in range(res_blocks + 1):
                self.up.append(Level(c + widths.pop(), channels * m, emb, dropout, res in attention, heads))
                c = channels * m
                if i > 0 and j == res_blocks:
                    # conv before the nearest upsampling, not after as in ADM: same parameters, a quarter of the cost
                    self.up.append(nn.Sequential(nn.Conv2d(c, c, 3, padding=1),
                                                 nn.Upsample(scale_factor=2, mode="nearest")))
                    res *= 2
        self.out = nn.Sequential(group_norm(c), nn.SiLU(), _zero(nn.Conv2d(c, in_channels, 3, padding=1)))
        self.to(memory_format=torch.channels_last)  # NHWC: oneDNN convolutions skip a reorder (~15% faster on CPU)

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:  # [B, C, H, W], [B] -> [B, C, H, W]
        emb = self.time(t) + self.cond(cond)  # [B, 4 * channels]
        h = self.inp(x_t.contiguous(memory_format=torch.channels_last))
        skips = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, Level) else layer(h)
            skips.append(h)
        for layer in self.mid:
            h = layer(h, emb)
        for layer in self.up:
            h = layer(torch.cat([h, skips.pop()], dim=1), emb) if isinstance(layer, Level) else layer(h)
        return self.out(h)

    def snap(self, x0: Tensor) -> Tensor:
        """Clip the predicted ``x0`` to the data range ``[-1, 1]`` at every sampling step (improved-diffusion's
        ``clip_denoised``); without it the cosine schedule's ``alpha_bar(T-1) ~ 2e-9`` blows up ``eps -> x0``."""
        return x0.clamp(-1.0, 1.0)

    def config(self) -> dict[str, Any]:
        return dict(self._config)
