"""Variance-preserving noise schedules, defined by ``alpha_bar(t)`` on ``T`` discrete training steps.

``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps`` (Ho et al. 2020, Eq. 4). A :class:`Schedule` is
trained once and sampled with any number of steps through :func:`respace`, which picks a sub-grid of the
training steps (Nichol & Dhariwal 2021, Sec. 4) or a schedule's own predefined fast grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from crossguide.errors import UsageError, check_choice


@dataclass(frozen=True, eq=False)
class Schedule:
    """``alpha_bar[t]`` for ``t = 0 .. T-1`` (``t = 0`` is the least noisy step), float64."""

    name: str
    alpha_bar: Tensor
    # Predefined sampling grids keyed by step count: (model time [S], alpha_bar [S]), most noisy first.
    # DiffWave's 6-step fast schedule is one (Kong et al. 2020, Sec. 4 / App. B).
    grids: Mapping[int, tuple[Tensor, Tensor]] = field(default_factory=dict)

    @property
    def T(self) -> int:  # noqa: N802 (the papers' name)
        return int(self.alpha_bar.shape[0])

    def at(self, t: Tensor) -> Tensor:
        """``alpha_bar`` at integer training steps ``t`` ([B]), float32 on ``t``'s device."""
        return self.alpha_bar.to(t.device)[t.long()].float()


def from_betas(name: str, betas: Tensor, grids: Mapping[int, tuple[Tensor, Tensor]] | None = None) -> Schedule:
    """A schedule from its per-step variances: ``alpha_bar_t = prod_{s<=t} (1 - beta_s)`` (Ho et al. 2020)."""
    betas = betas.double()
    return Schedule(name, torch.cumprod(1.0 - betas, 0), dict(grids or {}))


def linear(T: int = 1000) -> Schedule:  # noqa: N803
    """Ho et al. 2020: betas linear from 1e-4 to 0.02 at T = 1000 (rescaled for other T)."""
    scale = 1000 / T
    return from_betas("linear", torch.linspace(scale * 1e-4, scale * 0.02, T, dtype=torch.float64))


def cosine(T: int = 1000, s: float = 0.008) -> Schedule:  # noqa: N803
    """Nichol & Dhariwal 2021, Eq. 17: ``alpha_bar(t) = cos^2(((t/T + s) / (1 + s)) pi/2)``, betas <= 0.999."""
    steps = torch.arange(T + 1, dtype=torch.float64) / T
    f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=0.999)
    return from_betas("cosine", betas)


def sqrt(T: int = 2000, s: float = 1e-4) -> Schedule:  # noqa: N803
    """Li et al. 2022 (Diffusion-LM), App. A: ``alpha_bar(t) = 1 - sqrt(t/T + s)``; noise rises fast at first."""
    steps = torch.arange(1, T + 1, dtype=torch.float64) / T
    return Schedule("sqrt", (1 - torch.sqrt(steps + s)).clamp(min=1e-8))


SCHEDULES: dict[str, Callable[[int], Schedule]] = {"linear": linear, "cosine": cosine, "sqrt": sqrt}


def register_schedule(name: str, factory: Callable[[int], Schedule]) -> None:
    """Let a modality add a schedule (e.g. DiffWave's) next to the core ones."""
    SCHEDULES[name] = factory


def make(name: str, T: int) -> Schedule:  # noqa: N803
    check_choice("schedule", name, SCHEDULES)
    return SCHEDULES[name](T)


def to_tensors(schedule: Schedule) -> dict[str, Tensor]:
    """Everything sampling needs from ``schedule`` as named tensors, for a checkpoint: a model trained on a
    schedule registered at run time (a plug-in's) still samples where that code is not imported."""
    out = {"alpha_bar": schedule.alpha_bar}
    for steps, (t, ab) in schedule.grids.items():
        out[f"grid.{steps}.t"], out[f"grid.{steps}.alpha_bar"] = t, ab
    return out


def from_tensors(name: str, tensors: Mapping[str, Tensor]) -> Schedule:
    """The inverse of :func:`to_tensors`; raises :class:`UsageError` on a table that is no schedule."""
    alpha_bar = tensors.get("alpha_bar")
    if alpha_bar is None or alpha_bar.ndim != 1 or not len(alpha_bar) or not bool(
            ((alpha_bar > 0) & (alpha_bar < 1)).all()):
        raise UsageError("the schedule table needs 'alpha_bar': a 1-D tensor of values in (0, 1)")
    grids = {}
    for key in tensors:
        if key.startswith("grid.") and key.endswith(".t"):
            steps = int(key.split(".")[1])
            grids[steps] = (tensors[key], tensors[f"grid.{steps}.alpha_bar"])
    return Schedule(name, alpha_bar.double(), grids)


class Grid(NamedTuple):
    """The noise levels a sampler visits, most noisy first; after the last it jumps to clean data."""

    t: Tensor  # [S] model time (training-step units, may be fractional), float32
    alpha_bar: Tensor  # [S] float64


def respace(schedule: Schedule, steps: int) -> Grid:
    """``steps`` evenly spaced training steps from ``T-1`` down to 0, or the schedule's own grid for ``steps``."""
    if not isinstance(steps, int) or steps < 1:
        raise UsageError(f"steps must be an integer >= 1, got {steps!r}")
    if steps in schedule.grids:
        t, ab = schedule.grids[steps]
        return Grid(t.float(), ab.double())
    if steps > schedule.T:
        raise UsageError(f"steps={steps} exceeds the {schedule.T} training steps of schedule {schedule.name!r}")
    t = torch.linspace(schedule.T - 1, 0, steps, dtype=torch.float64).round().long()
    return Grid(t.float(), schedule.alpha_bar[t])
