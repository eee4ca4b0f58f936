"""Samplers as pure functions (k-diffusion style): ``(denoise_fn, x_T, schedule, steps, *, generator,
callback) -> x_0``. ``denoise_fn(x_t, t, alpha_bar)`` returns an :class:`Estimate` (guided or not); no sampler
keeps state between calls, and all randomness comes from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from core.errors import check_choice
from core.parameterization import Estimate
from core.schedules import Schedule, respace

DenoiseFn = Callable[[Tensor, Tensor, Tensor], Estimate]  # (x_t [B, ...], t [B], alpha_bar [B]) -> Estimate
Callback = Callable[[int, Tensor, Estimate], None]  # (step index, x_t, estimate at x_t)


def _levels(schedule: Schedule, steps: int, x: Tensor) -> tuple[list[Tensor], list[float]]:
    """Per-step model-time tensors ``[B]`` and alpha_bars, plus a final clean level (alpha_bar = 1)."""
    grid = respace(schedule, steps)
    ts = [torch.full((x.shape[0],), float(t), device=x.device) for t in grid.t]
    return ts, [float(a) for a in grid.alpha_bar] + [1.0]


def ddim(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: Schedule,
    steps: int,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DDIM (Song et al. 2021, Eq. 12); ``eta = 1`` is DDPM ancestral sampling on the respaced schedule.

    ``x_prev = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - ab_prev) / (1 - ab) (1 - ab / ab_prev))`` (Eq. 16).
    """
    ts, abs_ = _levels(schedule, steps, x)
    for i, t in enumerate(ts):
        ab, ab_prev = abs_[i], abs_[i + 1]
        est = denoise_fn(x, t, torch.full_like(t, ab, dtype=torch.float64))
        if callback is not None:
            callback(i, x, est)
        sigma = eta * ((1 - ab_prev) / (1 - ab) * (1 - ab / ab_prev)) ** 0.5
        x = ab_prev**0.5 * est.x0 + max(1 - ab_prev - sigma**2, 0.0) ** 0.5 * est.eps
        if sigma > 0:
            # drawn on the CPU so a seed gives the same samples on any device
            x = x + sigma * torch.randn(x.shape, generator=generator, dtype=x.dtype).to(x.device)
    return x


def ddpm(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: Schedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Alg. 2) with the posterior variance ``beta~``: DDIM at eta = 1."""
    return ddim(denoise_fn, x, schedule, steps, eta=1.0, generator=generator, callback=callback)


def dpmpp_2m(
    denoise_fn: DenoiseFn,
    x: Tensor,
    schedule: Schedule,
    steps: int,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022b, Alg. 2): second-order multistep in ``lambda = log(alpha / sigma)``
    on data predictions; first order on the first step and on the final step to clean data."""
    ts, abs_ = _levels(schedule, steps, x)
    prev_x0, prev_h = None, None
    for i, t in enumerate(ts):
        ab, ab_next = abs_[i], abs_[i + 1]
        est = denoise_fn(x, t, torch.full_like(t, ab, dtype=torch.float64))
        if callback is not None:
            callback(i, x, est)
        if ab_next >= 1.0:  # last step: sigma_next = 0, the update is the data prediction itself
            return est.x0
        lam, lam_next = _lambda(ab), _lambda(ab_next)
        h = lam_next - lam
        sigma, sigma_next, alpha_next = (1 - ab) ** 0.5, (1 - ab_next) ** 0.5, ab_next**0.5
        d = est.x0
        if prev_x0 is not None:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * est.x0 - (1 / (2 * r)) * prev_x0
        x = (sigma_next / sigma) * x - alpha_next * math.expm1(-h) * d
        prev_x0, prev_h = est.x0, h
    return x


def _lambda(alpha_bar: float) -> float:
    """Half log-SNR ``log(alpha / sigma)`` of a noise level."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


Sampler = Callable[..., Tensor]
SAMPLERS: dict[str, Sampler] = {"ddim": ddim, "ddpm": ddpm, "dpmpp2m": dpmpp_2m}


def get(name: str) -> Sampler:
    check_choice("sampler", name, SAMPLERS)
    return SAMPLERS[name]
