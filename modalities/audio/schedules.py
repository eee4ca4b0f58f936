"""DiffWave's noise schedules (Kong et al. 2020), registered next to the core ones.

* ``diffwave``: ``T = 50`` training steps, betas linear from 1e-4 to 0.05 (the paper's vocoder schedule), with the
  paper's 6-step fast sampling schedule (betas 1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5) as ``Schedule.grids[6]``.
* ``diffwave200``: ``T = 200``, betas linear from 1e-4 to 0.02 (the unconditional / class-conditional models).

A fast schedule with its own betas is sampled by feeding the network fractional diffusion steps: each fast
level's ``alpha_bar`` (``gamma_s = prod_{i<=s} (1 - beta_i)``) is placed between the two training steps that
bracket its ``sqrt(alpha_bar)`` and interpolated linearly there (Kong et al. 2020, App. B, "fast sampling"):
``t_s = t + (sqrt(abar_t) - sqrt(gamma_s)) / (sqrt(abar_t) - sqrt(abar_{t+1}))``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from crossguide.errors import UsageError
from crossguide.schedules import Schedule, from_betas, register_schedule

FAST_BETAS = (1e-4, 1e-3, 1e-2, 5e-2, 0.2, 0.5)  # DiffWave's 6-step fast schedule (App. B)


def align(alpha_bar: Tensor, fast_betas: Tensor) -> tuple[Tensor, Tensor]:
    """Fractional training steps ``[S]`` and ``alpha_bar`` ``[S]`` of a fast schedule, most noisy first."""
    gamma = torch.cumprod(1.0 - fast_betas.double(), 0)  # [S], least noisy first
    root, groot = alpha_bar.double().sqrt(), gamma.sqrt()  # decreasing in t
    if bool((groot > root[0] + 1e-12).any() | (groot < root[-1]).any()):
        raise UsageError(f"fast schedule alpha_bar {gamma.tolist()} lies outside the trained range "
                         f"[{float(alpha_bar[-1]):.4g}, {float(alpha_bar[0]):.4g}]")
    # t: the last training step whose sqrt(alpha_bar) is >= the fast level's (clamped to T-2 so t+1 exists)
    t = (torch.searchsorted(-root, -groot, right=True) - 1).clamp(0, len(root) - 2)
    frac = (root[t] - groot) / (root[t] - root[t + 1])
    return (t.double() + frac).flip(0).float(), gamma.flip(0)


def diffwave(T: int = 50) -> Schedule:  # noqa: N803
    """Betas linear from 1e-4 to 0.05 over ``T`` steps (the paper's ``T = 50``), with the 6-step fast grid."""
    if T < 2:
        raise UsageError(f"the diffwave schedule needs T >= 2, got {T}")
    betas = torch.linspace(1e-4, 0.05, T, dtype=torch.float64)
    fast = torch.tensor(FAST_BETAS, dtype=torch.float64)
    return from_betas("diffwave", betas, {len(fast): align(from_betas("diffwave", betas).alpha_bar, fast)})


def diffwave200(T: int = 200) -> Schedule:  # noqa: N803
    """Betas linear from 1e-4 to 0.02 over ``T`` steps (the paper's ``T = 200`` for SC09 generation)."""
    return from_betas("diffwave200", torch.linspace(1e-4, 0.02, T, dtype=torch.float64))


register_schedule("diffwave", diffwave)
register_schedule("diffwave200", diffwave200)
