"""diffusers' ``UNet2DModel`` as a crossguide denoiser (``--model diffusers-unet``; needs ``crossguide[diffusers]``).

The network is diffusers' own pixel U-Net (Ho et al. 2020, App. B, as diffusers builds it), unchanged; the adapter
adds what crossguide's contract needs and diffusers does not have: conditioning on *every* attribute through the
project's per-attribute :class:`~crossguide.embeddings.ConditionEmbedding` (one table per attribute, each with a
learned null row, summed), fed to the U-Net as ``class_labels`` with ``class_embed_type="identity"``, so the
embedding is added to the time embedding exactly where diffusers adds its class embedding. The classifier-free
null condition is each attribute's null row and a partial condition keeps the rows of the attributes it states:
no joint class label over the value combinations, which could not express either.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from crossguide.conditions import Attributes, Condition
from crossguide.config import dataclass_from_json, dataclass_to_json
from crossguide.denoiser import Denoiser
from crossguide.embeddings import ConditionEmbedding
from crossguide.errors import UsageError


@dataclass(frozen=True)
class UNet2DConfig:
    """The adapter's constructor arguments; every field but ``size``, ``in_channels`` and ``zero_out`` is passed to
    ``UNet2DModel`` under the same name (diffusers' documentation says what each does)."""

    size: int  # image height and width: must be divisible by 2 ** (len(block_out_channels) - 1)
    in_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 128)
    layers_per_block: int = 1
    # the lowest resolution attends, as in ADM (Dhariwal & Nichol 2021) and crossguide's own U-Net
    down_block_types: tuple[str, ...] = ("DownBlock2D", "DownBlock2D", "AttnDownBlock2D")
    up_block_types: tuple[str, ...] = ("AttnUpBlock2D", "UpBlock2D", "UpBlock2D")
    attention_head_dim: int = 32
    norm_num_groups: int = 8  # one count for every GroupNorm: it must divide every width
    dropout: float = 0.0
    resnet_time_scale_shift: str = "default"  # "scale_shift": ADM's adaptive GroupNorm
    # zero the output convolution, so training starts from eps = 0 as crossguide's U-Net does; diffusers does not
    zero_out: bool = True

    def __post_init__(self) -> None:
        for name in ("block_out_channels", "down_block_types", "up_block_types"):  # lists from JSON
            object.__setattr__(self, name, tuple(getattr(self, name)))
        levels = len(self.block_out_channels)
        if self.size < 1 or self.size % 2 ** (levels - 1):
            raise UsageError(f"diffusers-unet: image size {self.size} is not divisible by 2**{levels - 1} for "
                             f"block_out_channels={list(self.block_out_channels)}")
        if not len(self.down_block_types) == len(self.up_block_types) == levels:
            raise UsageError("diffusers-unet: block_out_channels, down_block_types and up_block_types need one entry "
                             f"per level, got {levels}, {len(self.down_block_types)}, {len(self.up_block_types)}")
        bad = [c for c in self.block_out_channels if c % self.norm_num_groups]
        if bad:
            raise UsageError(f"diffusers-unet: norm_num_groups={self.norm_num_groups} does not divide the widths {bad}")

    @classmethod
    def from_json(cls, config: Mapping[str, Any]) -> UNet2DConfig:
        """The config from a JSON dict; an unknown key is a one-line error naming the valid ones."""
        return dataclass_from_json(cls, config, "diffusers-unet option")

    def to_json(self) -> dict[str, Any]:
        return dataclass_to_json(self)


class DiffusersUNet2D(Denoiser):
    """An eps-predicting ``UNet2DModel`` over ``[B, in_channels, size, size]`` images in ``[-1, 1]``, conditioned on
    every attribute (module docstring).

    Args:
        attributes: attribute -> value names; one embedding table each, with a learned null row.
        config: the U-Net's shape (:class:`UNet2DConfig`).
    """

    prediction = "eps"  # diffusers' "epsilon" (Ho et al. 2020, Eq. 12)

    def __init__(self, attributes: Attributes, config: UNet2DConfig):
        from diffusers import UNet2DModel

        super().__init__(attributes, (config.in_channels, config.size, config.size))
        self.settings = config
        self.unet = UNet2DModel(
            sample_size=config.size, in_channels=config.in_channels, out_channels=config.in_channels,
            block_out_channels=config.block_out_channels, layers_per_block=config.layers_per_block,
            down_block_types=config.down_block_types, up_block_types=config.up_block_types,
            attention_head_dim=config.attention_head_dim, norm_num_groups=config.norm_num_groups,
            dropout=config.dropout, resnet_time_scale_shift=config.resnet_time_scale_shift,
            class_embed_type="identity")
        # "identity" adds class_labels to the time embedding as given: they must have its width
        self.cond = ConditionEmbedding(attributes, self.unet.time_embedding.linear_2.out_features)
        if config.zero_out:
            nn.init.zeros_(self.unet.conv_out.weight)
            nn.init.zeros_(self.unet.conv_out.bias)

    def condition(self, cond: Condition) -> Tensor:
        """The ``class_labels`` diffusers' U-Net takes for ``cond``: ``[B, time embedding width]``."""
        return self.cond(cond)

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:  # [B, C, H, W], [B] -> [B, C, H, W]
        return self.unet(x_t, t, class_labels=self.condition(cond)).sample

    def snap(self, x0: Tensor) -> Tensor:
        """Clip the predicted ``x0`` to the data range ``[-1, 1]`` at every sampling step, as crossguide's U-Net does
        (diffusers' ``clip_sample``): near ``t = T`` the cosine schedule's ``1 / sqrt(alpha_bar)`` is ~2e4."""
        return x0.clamp(-1.0, 1.0)

    def config(self) -> dict[str, Any]:
        return self.settings.to_json()


def build(config: Mapping[str, Any], attributes: Mapping[str, list[str]], info: Mapping[str, Any]) -> DiffusersUNet2D:
    """The :class:`~crossguide.registry.DenoiserEntry` factory: a fresh adapter from its JSON config, sized by the
    dataset's ``info`` (``size``, ``channels``) unless the config (a checkpoint's) fixes it."""
    sized = {"size": info.get("size"), "in_channels": info.get("channels", 3), **config}
    if sized["size"] is None:
        raise UsageError("diffusers-unet needs an image size: neither its config nor the dataset info has one")
    return DiffusersUNet2D(attributes, UNet2DConfig.from_json(sized))
