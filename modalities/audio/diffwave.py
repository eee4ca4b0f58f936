"""DiffWave (Kong et al. 2020, https://arxiv.org/abs/2009.09761) with global conditioning, as a crossguide denoiser.

A stack of residual layers over the raw waveform ``[B, 1, L]``: each adds the diffusion-step embedding, applies a
dilated convolution (dilation ``2^(i mod cycle)``), adds the layer's projection of the global condition, and gates
with ``tanh * sigmoid`` (Sec. 3.1, Fig. 2); the layer's output is split into a residual and a skip connection.
The skips are summed, scaled by ``1/sqrt(layers)`` and mapped to the output by two 1x1 convolutions, the last one
zero-initialised. The global conditioner (Sec. 3.2, "class-conditional generation") is one embedding table per
attribute with a learned null row (:class:`crossguide.embeddings.ConditionEmbedding`), projected by every layer to
``2C`` channels and added as a bias after the dilated convolution; classifier-free guidance needs nothing else.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from crossguide.conditions import Attributes, Condition
from crossguide.denoiser import Denoiser
from crossguide.embeddings import ConditionEmbedding, TimeEmbedding
from crossguide.errors import UsageError
from crossguide.modalities.audio.conv import Conv1d


class ResidualLayer(nn.Module):
    """One DiffWave residual layer (Kong et al. 2020, Fig. 2) with a global condition bias."""

    def __init__(self, channels: int, dilation: int, step_dim: int, cond_dim: int):
        super().__init__()
        self.step = nn.Linear(step_dim, channels)
        self.cond = nn.Linear(cond_dim, 2 * channels)
        self.dilated = Conv1d(channels, 2 * channels, 3, dilation)
        self.out = Conv1d(channels, 2 * channels, 1)
        nn.init.kaiming_normal_(self.dilated.weight)
        nn.init.kaiming_normal_(self.out.weight)

    def forward(self, x: Tensor, step: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        # x [B, C, L], step [B, step_dim], cond [B, cond_dim]
        y = self.dilated(x + self.step(step)[..., None]) + self.cond(cond)[..., None]  # [B, 2C, L]
        gate, filt = y.chunk(2, dim=1)
        residual, skip = self.out(torch.sigmoid(gate) * torch.tanh(filt)).chunk(2, dim=1)  # [B, C, L] each
        return (x + residual) / math.sqrt(2.0), skip


class DiffWave(Denoiser):
    """DiffWave's eps-predicting network over waveforms ``[B, 1, length]`` in [-1, 1].

    Args:
        attributes: the dataset's attributes (one embedding table each, plus a null row).
        length: samples per clip (the model is convolutional; ``length`` fixes :attr:`sample_shape`).
        layers: residual layers (paper: 30 for the vocoder, 36 for SC09 generation).
        channels: residual channels C (paper: 64 vocoder, 256 generation).
        cycle: dilation cycle length (paper: 10 vocoder, 12 generation).
        step_dim: sinusoidal diffusion-step features (paper: 128, then an MLP to 512).
        cond_dim: width of the global condition embedding.
    """

    prediction = "eps"

    def __init__(self, attributes: Attributes, length: int, layers: int = 30, channels: int = 64, cycle: int = 10,
                 step_dim: int = 128, cond_dim: int = 128):
        super().__init__(attributes, (1, length))
        for name, value in (("length", length), ("layers", layers), ("channels", channels), ("cycle", cycle)):
            if value < 1:
                raise UsageError(f"DiffWave {name} must be >= 1, got {value}")
        self.length, self.layers, self.channels, self.cycle = length, layers, channels, cycle
        self.step_dim, self.cond_dim = step_dim, cond_dim
        self.inp = Conv1d(1, channels, 1)
        self.time = TimeEmbedding(step_dim, 4 * step_dim)
        self.cond = ConditionEmbedding(attributes, cond_dim)
        self.res = nn.ModuleList(
            ResidualLayer(channels, 2 ** (i % cycle), self.time.out_dim, cond_dim) for i in range(layers)
        )
        self.skip = Conv1d(channels, channels, 1)
        self.out = Conv1d(channels, 1, 1)
        nn.init.zeros_(self.out.weight)  # zero output: the untrained model predicts eps = 0
        nn.init.zeros_(self.out.bias)

    @property
    def receptive_field(self) -> int:
        """Samples of ``x_t`` that one output sample sees: ``1 + 2 sum_i 2^(i mod cycle)`` (kernel size 3)."""
        return 1 + 2 * sum(2 ** (i % self.cycle) for i in range(self.layers))

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        # x_t [B, 1, L], t [B] (fractional on DiffWave's fast grid), cond: [B] per attribute
        x = torch.relu(self.inp(x_t))  # [B, C, L]
        step = self.time(t)  # [B, 4 step_dim]
        c = self.cond(cond)  # [B, cond_dim]
        skips = None
        for layer in self.res:
            x, s = layer(x, step, c)
            skips = s if skips is None else skips + s
        h = torch.relu(self.skip(skips / math.sqrt(self.layers)))
        return self.out(h)  # [B, 1, L]

    def snap(self, x0: Tensor) -> Tensor:
        """Clamp the clean-waveform estimate to [-1, 1]: eps -> x0 amplifies errors by ``1/sqrt(alpha_bar)``."""
        return x0.clamp(-1.0, 1.0)

    def config(self) -> dict:
        return {"length": self.length, "layers": self.layers, "channels": self.channels, "cycle": self.cycle,
                "step_dim": self.step_dim, "cond_dim": self.cond_dim}
