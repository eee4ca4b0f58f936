"""A 1-D convolution whose backward pass runs as forward convolutions and matrix products.

PyTorch's CPU backward for (dilated) ``conv1d`` is several times slower than its forward (measured 3-4x on a
2-core Xeon, torch 2.14); DiffWave on a CPU spends most of its training time there. The gradients are the
textbook ones: ``dL/dx`` is the convolution of ``dL/dy`` with the flipped, transposed kernel (same dilation),
and ``dL/dW[:, :, k]`` is ``dL/dy`` times the input shifted by ``k * dilation``, one matrix product per tap.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor, nn


class _Conv1dFn(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor, dilation: int, padding: int) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.dilation, ctx.padding = dilation, padding
        return F.conv1d(x, weight, bias, padding=padding, dilation=dilation)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors  # x [B, I, L], weight [O, I, K], grad [B, O, L]
        d, p = ctx.dilation, ctx.padding
        k, length = weight.shape[-1], x.shape[-1]
        gx = F.conv1d(grad, weight.flip(-1).transpose(0, 1), padding=d * (k - 1) - p, dilation=d)  # [B, I, L]
        xp = F.pad(x, (p, p))  # [B, I, L + 2p]
        g = grad.transpose(0, 1).reshape(grad.shape[1], -1)  # [O, B*L]
        taps = [g @ xp[..., j * d : j * d + length].transpose(0, 1).reshape(x.shape[1], -1).T for j in range(k)]
        return gx, torch.stack(taps, -1), grad.sum((0, 2)), None, None


def conv1d(x: Tensor, weight: Tensor, bias: Tensor, dilation: int = 1) -> Tensor:
    """``F.conv1d`` with "same" padding, stride 1 and the fast backward: ``[B, I, L] -> [B, O, L]``, odd kernels."""
    return _Conv1dFn.apply(x, weight, bias, dilation, dilation * (weight.shape[-1] - 1) // 2)


class Conv1d(nn.Conv1d):
    """``nn.Conv1d`` (same parameters and state dict) with a faster CPU backward; "same" padding, stride 1."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int = 1):
        super().__init__(in_channels, out_channels, kernel_size, padding=dilation * (kernel_size - 1) // 2,
                         dilation=dilation)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd for 'same' padding, got {kernel_size}")

    def forward(self, x: Tensor) -> Tensor:  # [B, I, L] -> [B, O, L]
        return conv1d(x, self.weight, self.bias, self.dilation[0])
