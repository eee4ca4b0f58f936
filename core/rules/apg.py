"""Adaptive projected guidance (Sadat et al. 2025, "Eliminating Oversaturation and Artifacts of High Guidance
Scales in Diffusion Models", Alg. 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from crossguide.errors import UsageError
from crossguide.parameterization import append_dims
from crossguide.rules import register
from crossguide.rules.base import Output, Space, SpaceRule, StepInput, flat_dot

if TYPE_CHECKING:
    from torch import Tensor


def full_when_guided(weights: Tensor) -> list[bool]:
    """Branches of a rule that reads every term (to project onto it) and the base only while guiding: at w = 0
    with one term only the conditional branch runs."""
    k = weights.shape[0]
    return [bool(weights.ne(0).any()) or k > 1, *[True] * k]


@register
@dataclass(frozen=True)
class APG(SpaceRule):
    """Split each term's guidance ``d = P(x, c) - P(x)`` into the parts parallel and orthogonal to ``P(x, c)``
    and down-weight the parallel one, which oversaturates (Sadat et al. 2025, Eqs. 5-9):

    ``d <- d + momentum * d_prev`` (a running average over steps, negative momentum pushes away from the last
    direction), ``d <- d * min(1, r / |d|)`` when ``r > 0``, then
    ``P~ = P(x, c) + w (d_orth + eta d_par)``.
    With ``eta = 1``, ``r = 0`` and no momentum it is CFG. Compositions: ``P~ = P(x) + sum_i (P(x, c_i) - P(x))
    + sum_i w_i (d_i,orth + eta d_i,par)``, with a running average per term.

    Args:
        eta: weight of the parallel component (the paper recommends 0).
        r: norm threshold on ``d`` per example (0: off); in the units of ``space``.
        momentum: ``beta`` of the running average (the paper uses -0.5 to -0.75; 0: off).
        space: where it acts; the paper guides the denoised estimate (``x0``).
    """

    name: ClassVar[str] = "apg"
    eta: float = 0.0
    r: float = 0.0
    momentum: float = 0.0
    space: Space = "x0"

    def __post_init__(self) -> None:
        if not self.r >= 0:
            raise UsageError(f"apg norm threshold r must be >= 0, got {self.r}")
        if not -1.0 < self.momentum < 1.0:
            raise UsageError(f"apg momentum must be in (-1, 1), got {self.momentum}")
        if not abs(self.eta) < float("inf"):
            raise UsageError(f"apg eta must be finite, got {self.eta}")
        super().__post_init__()

    def needed(self, weights: Tensor) -> list[bool]:
        return full_when_guided(weights)

    def __call__(self, s: StepInput, state: Any) -> Output:
        import torch

        terms = [s.to_space(t, self.space) for t in s.terms if t is not None]  # K x [B, ...]
        if s.base is None:  # one term, not guiding: the conditional model
            return Output(s.terms[0], state=state)
        base = s.to_space(s.base, self.space)
        diffs = torch.stack([p - base for p in terms])  # [K, B, ...]
        if self.momentum and state is not None:
            diffs = diffs + self.momentum * state
        running = diffs
        if self.r > 0:
            norm = diffs.flatten(2).norm(dim=2)  # [K, B]
            diffs = diffs * append_dims(torch.clamp(self.r / norm.clamp(min=1e-12), max=1.0), diffs.ndim)
        out = base + sum(p - base for p in terms)
        for p, d, w in zip(terms, diffs, s.weights, strict=True):
            unit = p / append_dims(p.flatten(1).norm(dim=1).clamp(min=1e-12), p.ndim)
            parallel = append_dims(flat_dot(d, unit), d.ndim) * unit
            out = out + s.per_example(w) * ((d - parallel) + self.eta * parallel)
        return Output(s.from_space(out, self.space), state=running if self.momentum else None)

