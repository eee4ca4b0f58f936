"""Samplers as pure functions (k-diffusion style): ``(denoise_fn, x_T, schedule, steps, *, generator,
callback) -> x_0``.

``denoise_fn(x_t, step, state) -> (Estimate, state)``: the estimate's ``x0`` is what the sampler denoises with
and its ``eps`` what it re-noises with (the two agree with ``x_t`` unless a guidance rule, such as CFG++, says
otherwise). ``state`` belongs to the trajectory: each sampler call starts from ``None`` and threads what
``denoise_fn`` returns into the next step, so nothing outlives one trajectory and a repeated call with the same
state gives the same answer. All randomness comes from ``generator``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from crossguide.errors import check_choice
from crossguide.parameterization import Estimate

if TYPE_CHECKING:  # torch is imported where samples are drawn: the command line names the samplers without it
    import torch
    from torch import Tensor

    from crossguide.schedules import Schedule


class Step(NamedTuple):
    """Where a denoiser call sits: its noise level and its place in the trajectory."""

    t: Tensor  # [B] model time (training-step units, may be fractional)
    alpha_bar: Tensor  # [B] float64 noise level
    index: int  # 0 is the noisiest step of the trajectory
    count: int  # steps in the trajectory


State = Any  # opaque to samplers: whatever denoise_fn returned last (None before the first step)
DenoiseFn = Callable[["Tensor", Step, State], tuple[Estimate, State]]
Callback = Callable[[int, "Tensor", Estimate], None]  # (step index, x_t, estimate at x_t)


def _levels(schedule: Schedule, steps: int, x: Tensor) -> tuple[list[Step], list[float]]:
    """Per-step :class:`Step` s and alpha_bars, plus a final clean level (alpha_bar = 1)."""
    import torch

    from crossguide.schedules import respace

    grid = respace(schedule, steps)
    n = len(grid.t)
    out = [Step(torch.full((x.shape[0],), float(t), device=x.device),
                torch.full((x.shape[0],), float(ab), device=x.device, dtype=torch.float64), i, n)
           for i, (t, ab) in enumerate(zip(grid.t.tolist(), grid.alpha_bar.tolist(), strict=True))]
    return out, [float(a) for a in grid.alpha_bar] + [1.0]


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
    import torch

    levels, abs_ = _levels(schedule, steps, x)
    state = None
    for i, step in enumerate(levels):
        ab, ab_prev = abs_[i], abs_[i + 1]
        est, state = denoise_fn(x, step, state)
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
    on data predictions; first order on the first step and on the final step to clean data.

    The update ``x' = (sigma'/sigma) x - alpha' expm1(-h) D`` is written with ``x = alpha x0 + sigma eps``
    substituted, ``x' = sigma' eps + alpha' (e^-h x0 - expm1(-h) D)``, so that a re-noising ``eps`` other than the
    one implied by ``x_t`` (CFG++) is honoured; the two forms agree whenever the estimate is consistent.
    """
    levels, abs_ = _levels(schedule, steps, x)
    prev_x0, prev_h, state = None, None, None
    for i, step in enumerate(levels):
        ab, ab_next = abs_[i], abs_[i + 1]
        est, state = denoise_fn(x, step, state)
        if callback is not None:
            callback(i, x, est)
        if ab_next >= 1.0:  # last step: sigma_next = 0, the update is the data prediction itself
            return est.x0
        h = _lambda(ab_next) - _lambda(ab)
        sigma_next, alpha_next = (1 - ab_next) ** 0.5, ab_next**0.5
        d = est.x0
        if prev_x0 is not None:
            r = prev_h / h
            d = (1 + 1 / (2 * r)) * est.x0 - (1 / (2 * r)) * prev_x0
        x = sigma_next * est.eps + alpha_next * (math.exp(-h) * est.x0 - math.expm1(-h) * d)
        prev_x0, prev_h = est.x0, h
    return x


def _lambda(alpha_bar: float) -> float:
    """Half log-SNR ``log(alpha / sigma)`` of a noise level."""
    return 0.5 * (math.log(alpha_bar) - math.log1p(-alpha_bar))


Sampler = Callable[..., "Tensor"]
SAMPLERS: dict[str, Sampler] = {"ddim": ddim, "ddpm": ddpm, "dpmpp2m": dpmpp_2m}


def get(name: str) -> Sampler:
    check_choice("sampler", name, SAMPLERS)
    return SAMPLERS[name]
