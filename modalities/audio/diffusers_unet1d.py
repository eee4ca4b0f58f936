"""diffusers' ``UNet1DModel``, the Dance Diffusion waveform U-Net, as a crossguide denoiser (``--model
diffusers-unet1d``; needs ``crossguide[diffusers]``).

The network is diffusers' own (Dance Diffusion's blocks: residual 5-tap convolutions with single-group GroupNorm
and GELU, cubic-kernel down- and upsampling, self-attention in the lowest levels), unchanged. ``UNet1DModel`` has
no class conditioning, and takes its time the Dance Diffusion way: sinusoidal features broadcast over the clip and
concatenated to the input channels. The adapter conditions the same way: the project's per-attribute
:class:`~crossguide.embeddings.ConditionEmbedding` (one table per attribute, each with a learned null row, summed)
is broadcast over time and concatenated to the waveform as ``cond_dim`` extra input channels, so the
classifier-free null condition is each attribute's null row and partial conditions keep the stated attributes'
rows (no joint class label).

The U-Net halves the clip once per level (the first level's block keeps it; the mid block halves it once more), so
it needs a length divisible by ``2 ** len(block_out_channels)``: the adapter pads ``x_t`` with zeros at the end up
to the next such length and crops the output back, so every clip length works.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from crossguide.conditions import Attributes, Condition
from crossguide.config import dataclass_from_json, dataclass_to_json
from crossguide.denoiser import Denoiser
from crossguide.embeddings import ConditionEmbedding
from crossguide.errors import UsageError


@dataclass(frozen=True)
class UNet1DConfig:
    """The adapter's constructor arguments; ``block_out_channels``, ``down_block_types`` and ``up_block_types`` go to
    ``UNet1DModel`` under the same names (Dance Diffusion's block types by default)."""

    length: int  # samples per clip (fixes sample_shape; the network itself takes any length)
    block_out_channels: tuple[int, ...] = (32, 32, 64)
    down_block_types: tuple[str, ...] = ("DownBlock1DNoSkip", "DownBlock1D", "AttnDownBlock1D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock1D", "UpBlock1D", "UpBlock1DNoSkip")
    cond_dim: int = 16  # condition channels concatenated to the waveform
    # zero the last convolution and its skip, so training starts from eps = 0 as DiffWave does; diffusers does not
    zero_out: bool = True

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "down_block_types", "up_block_types"):  # lists from JSON
            object.__setattr__(self, name, tuple(getattr(self, name)))
        levels = len(self.block_out_channels)
        if self.length < 1 or self.cond_dim < 1:
            raise UsageError(f"diffusers-unet1d: length and cond_dim must be >= 1, got {self.length}, {self.cond_dim}")
        if not len(self.down_block_types) == len(self.up_block_types) == levels:
            raise UsageError("diffusers-unet1d: block_out_channels, down_block_types and up_block_types need one "
                             f"entry per level, got {levels}, {len(self.down_block_types)}, {len(self.up_block_types)}")
        if self.block_out_channels[-1] < 32:  # the mid block attends with channels // 32 heads
            raise UsageError(f"diffusers-unet1d: the last width must be >= 32, got {self.block_out_channels[-1]}")

    @property
    def multiple(self) -> int:
        """The length the network's down-sampling needs a multiple of (module docstring)."""
        return 2 ** len(self.block_out_channels)

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> UNet1DConfig:
        """The config from a JSON dict; an unknown key is a one-line error naming the valid ones."""
        return dataclass_from_json(cls, config, "diffusers-unet1d option")

    def to_json(self) -> dict[str, Any]:
        return dataclass_to_json(self)


class DiffusersUNet1D(Denoiser):
    """An eps-predicting ``UNet1DModel`` over mono waveforms ``[B, 1, length]`` in ``[-1, 1]``, conditioned on every
    attribute through concatenated condition channels (module docstring).

    Args:
        attributes: attribute -> value names; one embedding table each, with a learned null row.
        config: the U-Net's shape (:class:`UNet1DConfig`).
    """

    prediction = "eps"  # diffusers' "epsilon" (Ho et al. 2020, Eq. 12)

    def __init__(self, attributes: Attributes, config: UNet1DConfig):
        from diffusers import UNet1DModel

        super().__init__(attributes, (1, config.length))
        self.settings = config
        # positional time features (sinusoids over training steps, crossguide's model time; Dance Diffusion's
        # Fourier features assume t in [0, 1]), broadcast and concatenated: block_out_channels[0] channels
        self.unet = UNet1DModel(
            sample_size=config.length, in_channels=1 + config.cond_dim, out_channels=1,
            extra_in_channels=config.block_out_channels[0], time_embedding_type="positional",
            use_timestep_embedding=False, block_out_channels=config.block_out_channels,
            down_block_types=config.down_block_types, up_block_types=config.up_block_types,
            mid_block_type="UNetMidBlock1D")
        self.cond = ConditionEmbedding(attributes, config.cond_dim)
        for table in self.cond.tables.values():
            # input channels beside a unit-variance waveform and unit-amplitude sinusoids: unit scale too. At the
            # embedding's default 0.02 the quick model learned to ignore the condition where noise is high (its
            # loss gap between null and true condition at t = 35 of 50 was 0.0067 after 1500 steps; 0.0158
            # after 300 at unit scale)
            nn.init.normal_(table.weight, std=1.0)
        if config.zero_out:
            last = self.unet.up_blocks[-1].resnets[-1]
            for p in (last.conv_2.weight, last.conv_2.bias, *([last.conv_skip.weight] if last.has_conv_skip else [])):
                nn.init.zeros_(p)

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:  # [B, 1, L], [B] -> [B, 1, L]
        b, _, length = x_t.shape
        padded = -(-length // self.settings.multiple) * self.settings.multiple
        x = nn.functional.pad(x_t, (0, padded - length))  # [B, 1, L']
        c = self.cond(cond)[:, :, None].expand(b, -1, padded).to(x.dtype)  # [B, cond_dim, L']
        out = self.unet(torch.cat([x, c], dim=1), t).sample  # [B, 1, L']
        return out[..., :length]

    def snap(self, x0: Tensor) -> Tensor:
        """Clamp the clean-waveform estimate to the data range ``[-1, 1]``, as DiffWave does: ``eps -> x0`` amplifies
        errors by ``1 / sqrt(alpha_bar)``."""
        return x0.clamp(-1.0, 1.0)

    def config(self) -> dict[str, Any]:
        return self.settings.to_json()


def build(config: Mapping[str, Any], attributes: Mapping[str, list[str]], info: Mapping[str, Any]) -> DiffusersUNet1D:
    """The :class:`~crossguide.registry.DenoiserEntry` factory: a fresh adapter from its JSON config, its clip length
    from the dataset's ``info`` unless the config (a checkpoint's) fixes it."""
    sized = {"length": info.get("length"), **config}
    if not sized["length"]:
        raise UsageError("diffusers-unet1d needs a clip length: neither its config nor the dataset info has one")
    return DiffusersUNet1D(attributes, UNet1DConfig.from_json({**sized, "length": int(sized["length"])}))
