"""Classifier-free guidance and the rules that correct its linear combination.

All four start from the same combination, in the paper's ``w`` (Ho & Salimans 2021, Eq. 6; compositions as in
Liu et al. 2022, Eq. 10): ``base + sum_i (1 + w_i) (term_i - base)``. Corrections act only on examples that are
being guided at this step, so at ``w = 0`` (or outside an interval) every rule here is the conditional model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from crossguide.errors import UsageError
from crossguide.parameterization import Estimate, eps_from_x0
from crossguide.rules import register
from crossguide.rules.base import Output, Rule, Space, SpaceRule, StepInput, combine, linear_coefficients

if TYPE_CHECKING:
    import torch


@register
@dataclass(frozen=True)
class CFG(Rule):
    """Classifier-free guidance (Ho & Salimans 2021, Eq. 6): ``eps~ = (1 + w) eps(x, c) - w eps(x)``.

    Linear with coefficients summing to 1, so the same in every parameterization.
    """

    name: ClassVar[str] = "cfg"

    def __call__(self, s: StepInput, state: Any) -> Output:
        return Output(combine(s, linear_coefficients(s.weights)))


@register
@dataclass(frozen=True)
class Rescale(SpaceRule):
    """Guidance rescale (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps Are Flawed",
    Sec. 3.4, Eqs. 15-16): ``x_rescaled = x_cfg std(x_cond) / std(x_cfg)``, ``x = phi x_rescaled + (1 - phi)
    x_cfg``, per example, where ``x_cond`` is the unguided (w = 0) combination.

    Args:
        phi: blend of the rescaled and the plain guided prediction (the paper uses 0.7).
        space: where the std is matched; the paper's model predicts ``v``; "model" uses the denoiser's own.
    """

    name: ClassVar[str] = "rescale"
    phi: float = 0.7
    space: Space = "model"

    def __post_init__(self) -> None:
        if not 0.0 <= self.phi <= 1.0:
            raise UsageError(f"rescale phi must be in [0, 1], got {self.phi}")
        super().__post_init__()

    def needed(self, weights: torch.Tensor) -> list[bool]:
        ref = linear_coefficients(weights.new_zeros(weights.shape))
        return (linear_coefficients(weights).ne(0) | ref.ne(0)).any(1).tolist()

    def __call__(self, s: StepInput, state: Any) -> Output:
        cfg = combine(s, linear_coefficients(s.weights))
        guided = s.to_space(cfg, self.space)  # [B, ...]
        ref = s.to_space(combine(s, linear_coefficients(s.weights.new_zeros(s.weights.shape))), self.space)
        dims = tuple(range(1, guided.ndim))
        ratio = ref.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp(min=1e-8)
        out = s.from_space(self.phi * guided * ratio + (1 - self.phi) * guided, self.space)
        return Output(s.where_guided(out, cfg))


@register
@dataclass(frozen=True)
class Threshold(Rule):
    """Dynamic thresholding of the guided ``x0`` (Saharia et al. 2022, "Imagen", Sec. 2.3): per example,
    ``s = max(percentile(|x0|, p), bound)``, then ``x0 <- clip(x0, -s, s) * bound / s``.

    Args:
        p: the percentile of absolute values (Imagen: 99.5).
        bound: the data's range ``[-bound, bound]`` (1 for data scaled to [-1, 1]).
    """

    name: ClassVar[str] = "threshold"
    p: float = 99.5
    bound: float = 1.0

    def __post_init__(self) -> None:
        if not 0.0 < self.p <= 100.0:
            raise UsageError(f"threshold p must be a percentile in (0, 100], got {self.p}")
        if not self.bound > 0:
            raise UsageError(f"threshold bound must be > 0, got {self.bound}")

    def acts_in(self) -> str:
        return "x0"

    def __call__(self, s: StepInput, state: Any) -> Output:
        import torch

        cfg = combine(s, linear_coefficients(s.weights))
        q = torch.quantile(cfg.x0.abs().flatten(1).float(), self.p / 100.0, dim=1)  # [B]
        top = s.per_example(q.clamp(min=self.bound))
        x0 = torch.maximum(torch.minimum(cfg.x0, top), -top) * (self.bound / top)
        return Output(s.where_guided(Estimate(x0, eps_from_x0(x0, s.x_t, s.alpha_bar)), cfg))


@register
@dataclass(frozen=True)
class CFGPlusPlus(Rule):
    """CFG++ (Chung et al. 2024, "CFG++: Manifold-constrained Classifier Free Guidance", Alg. 1): denoise with
    the guided ``x0 = x0(x) + lambda (x0(x, c) - x0(x))`` and re-noise with the unconditional ``eps(x)``.

    In this project's convention ``lambda = 1 + w``: the paper's range ``lambda`` in [0, 1] is ``w`` in
    [-1, 0]. ``w = -1`` is the unconditional model exactly; ``w = 0`` is *not* the conditional model: it denoises
    with the conditional ``x0`` but re-noises with the unconditional ``eps`` (the paper's ``lambda = 1``).
    """

    name: ClassVar[str] = "cfgpp"
    sweep: ClassVar[tuple[float, ...]] = (-1.0, -0.8, -0.6, -0.4, -0.2, 0.0)

    def needed(self, weights: torch.Tensor) -> list[bool]:
        return [True, *super().needed(weights)[1:]]  # the base always: it re-noises

    def __call__(self, s: StepInput, state: Any) -> Output:
        assert s.base is not None
        return Output(combine(s, linear_coefficients(s.weights)), renoise=s.base.eps)
