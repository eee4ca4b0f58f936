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
from crossguide.modalities.audio.conv import Conv1d, conv1d

SQRT_HALF = math.sqrt(0.5)
# On a CPU, inference runs the batch in pieces whose [rows, C, L] activations hold about this many floats (4 MiB:
# 32 rows of the quick preset), so a layer's tensors stay in the cache: on a 2-core EPYC (torch 2.14) that cut the
# CPU time of 64-row forwards by 14% and of 128-row ones by 18% (issue 15). Each piece adds rounds of thread
# synchronisation, which cost more than they save when the cores are oversubscribed.
CPU_PIECE = 2**20


class ResidualLayer(nn.Module):
    """One DiffWave residual layer (Kong et al. 2020, Fig. 2) with a global condition bias."""

    def __init__(self, channels: int, dilation: int, step_dim: int, cond_dim: int):
        super().__init__()
        self.channels = channels
        self.step = nn.Linear(step_dim, channels)
        self.cond = nn.Linear(cond_dim, 2 * channels)
        self.dilated = Conv1d(channels, 2 * channels, 3, dilation)
        self.out = Conv1d(channels, 2 * channels, 1)
        nn.init.kaiming_normal_(self.dilated.weight)
        nn.init.kaiming_normal_(self.out.weight)

    def forward(self, x: Tensor, step: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        # x [R, C, L], step [B, step_dim], cond [A*B, cond_dim]; R = B while the A branches share x (the first
        # layer, where the condition has not entered yet), else R = A*B. Returns x and skip, [A*B, C, L] each.
        c = self.channels
        a = cond.shape[0] // x.shape[0]  # branches that share x
        s = self.step(step).repeat(x.shape[0] // step.shape[0], 1)  # [R, C]
        # tanh(f) = 2 sigmoid(2f) - 1: the filter half's weights are doubled (exactly), then one sigmoid serves both
        # halves; torch's CPU tanh costs 3 sigmoids
        gain = torch.cat([torch.ones(c), torch.full((c,), 2.0)]).to(x)  # [2C]
        y = conv1d(x + s[..., None], self.dilated.weight * gain[:, None, None], self.dilated.bias * gain,
                   self.dilated.dilation[0])  # [R, 2C, L]
        y = (y + (self.cond(cond) * gain).view(a, -1, 2 * c, 1)).flatten(0, 1)  # [A*B, 2C, L]
        gate, filt = y.sigmoid_().chunk(2, dim=1)  # sigmoid(g), sigmoid(2f)
        h = gate * filt.mul(2).sub_(1)  # sigmoid(g) tanh(f), [A*B, C, L]
        # the residual half's weights carry the 1/sqrt(2) of (x + residual) / sqrt(2)
        gain = torch.cat([torch.full((c,), SQRT_HALF), torch.ones(c)]).to(x)
        residual, skip = conv1d(h, self.out.weight * gain[:, None, None], self.out.bias * gain).chunk(2, dim=1)
        return torch.add(residual.unflatten(0, (a, -1)), x, alpha=SQRT_HALF).flatten(0, 1), skip


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
    # Guidance evaluates its A branches at one x_t and t. forward also takes ``cond`` with A*B rows for ``x_t`` and
    # ``t`` of B rows (row a*B + b: example b under branch a, as ``conditions.concat`` stacks them) and returns
    # [A*B, 1, L]; the input projection, the step embedding and the first dilated convolution, which the condition
    # has not reached yet, are then computed once for all branches. A = 1 is the plain denoiser contract.
    shared_branches = True

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
        # x_t [B, 1, L], t [B] (fractional on DiffWave's fast grid), cond: [A*B] per attribute (see shared_branches)
        b, length = x_t.shape[0], x_t.shape[-1]
        c = self.cond(cond)  # [A*B, cond_dim]
        if c.shape[0] % b:
            raise ValueError(f"DiffWave: the condition's {c.shape[0]} rows are not a multiple of x_t's {b}")
        a = c.shape[0] // b
        step = self.time(t)  # [B, 4 step_dim]
        n = b  # rows of x_t per piece; training keeps whole batches, its activations are kept for backward anyway
        if x_t.device.type == "cpu" and not torch.is_grad_enabled():
            n = max(1, CPU_PIECE // (a * self.channels * length))
        c = c.view(a, b, -1)
        parts = [self._forward(x_t[i : i + n], step[i : i + n], c[:, i : i + n].flatten(0, 1)).view(a, -1, 1, length)
                 for i in range(0, b, n)]
        return torch.cat(parts, dim=1).flatten(0, 1)  # [A*B, 1, L]

    def _forward(self, x_t: Tensor, step: Tensor, c: Tensor) -> Tensor:
        # x_t [B, 1, L], step [B, 4 step_dim], c [A*B, cond_dim]
        x = torch.relu(self.inp(x_t))  # [B, C, L], shared by the A branches
        skips = None
        for layer in self.res:
            x, s = layer(x, step, c)  # [A*B, C, L] each
            skips = s if skips is None else skips + s
        h = torch.relu(conv1d(skips, self.skip.weight / math.sqrt(self.layers), self.skip.bias))
        return self.out(h)  # [A*B, 1, L]

    def snap(self, x0: Tensor) -> Tensor:
        """Clamp the clean-waveform estimate to [-1, 1]: eps -> x0 amplifies errors by ``1/sqrt(alpha_bar)``."""
        return x0.clamp(-1.0, 1.0)

    def config(self) -> dict:
        return {"length": self.length, "layers": self.layers, "channels": self.channels, "cycle": self.cycle,
                "step_dim": self.step_dim, "cond_dim": self.cond_dim}
