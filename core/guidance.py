"""Classifier-free guidance: combine K+1 conditional predictions, evaluated in one batched forward.

Convention (the paper's ``w``, stated once, used everywhere; Ho & Salimans 2021, Eq. 6):

* one condition: ``eps~ = (1 + w) eps(x, c) - w eps(x)``. ``w = 0`` is the conditional model, ``w = -1`` the
  unconditional one, ``w < -1`` pushes away from ``c``. diffusers' ``guidance_scale`` is ``1 + w``.
* several conditions (composition, Liu et al. 2022, Eq. 10 in this convention):
  ``eps~ = eps(x) + sum_i (1 + w_i) (eps(x, c_i) - eps(x))``.
* a negative condition in place of the unconditional one:
  ``eps~ = eps(x, c_neg) + (1 + w) (eps(x, c) - eps(x, c_neg))``.

All three are one linear rule over a *base* prediction (null or negative condition) and K *terms*, each term
keeping a subset of the requested attributes. A linear combination whose coefficients sum to 1 commutes with
the affine eps/x0/v conversions, so the ``cfg`` rule is parameterization-invariant. ``rescale`` (Lin et al. 2024,
Sec. 3.4, Eqs. 15-16) is not: it acts in the model's own prediction space, as in the paper.
Branches whose coefficient is zero for every example are not evaluated, so ``w = 0`` and ``w = -1`` cost one
forward and reproduce the conditional and unconditional models exactly.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from core import conditions as C
from core.conditions import Condition
from core.denoiser import Denoiser, self_conditioned
from core.errors import UsageError, check_choice
from core.parameterization import Estimate, append_dims, eps_from_x0, estimate

Rule = Literal["cfg", "rescale"]
RULES: tuple[Rule, ...] = ("cfg", "rescale")


@dataclass(frozen=True)
class Term:
    """One guidance term: the requested condition restricted to ``attributes`` (``None``: all), weight ``w``."""

    w: float
    attributes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Guidance:
    """What to do at each step; JSON round-trippable via :meth:`to_json` / :meth:`from_json`."""

    terms: tuple[Term, ...] = field(default_factory=lambda: (Term(0.0),))
    rule: Rule = "cfg"
    phi: float = 0.7  # rescale only: blend of rescaled and plain guided prediction (Lin et al. 2024, Eq. 16)
    interval: tuple[float, float] = (0.0, 1.0)  # guide only where t/T lies inside (Kynkaanniemi et al. 2024)
    chunk: int | None = None  # at most this many examples per forward (memory); None: all branches at once

    def __post_init__(self) -> None:
        check_choice("guidance rule", self.rule, RULES)
        if not self.terms:
            raise UsageError("guidance needs at least one term")
        for term in self.terms:
            if not math.isfinite(term.w):
                raise UsageError(f"guidance weight must be finite, got {term.w}")
        lo, hi = self.interval
        if not 0.0 <= lo <= hi <= 1.0:
            raise UsageError(f"guidance interval must satisfy 0 <= lo <= hi <= 1, got {self.interval}")
        if self.chunk is not None and self.chunk < 1:
            raise UsageError(f"chunk must be >= 1, got {self.chunk}")

    @classmethod
    def cfg(cls, w: float, **options: Any) -> Guidance:
        """Plain classifier-free guidance on the full requested condition."""
        return cls(terms=(Term(float(w)),), **options)

    @property
    def w(self) -> float | None:
        """The weight of a single-term guidance; ``None`` for compositions."""
        return self.terms[0].w if len(self.terms) == 1 else None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Guidance:
        terms = tuple(
            Term(float(t["w"]), None if t.get("attributes") is None else tuple(t["attributes"]))
            for t in data["terms"]
        )
        rest = {k: v for k, v in data.items() if k != "terms"}
        if "interval" in rest:
            rest["interval"] = tuple(rest["interval"])
        return cls(terms=terms, **rest)


def coefficients(weights: Tensor) -> Tensor:
    """Linear-rule coefficients ``[K, B] -> [K+1, B]`` for (base, term_1 .. term_K); each column sums to 1."""
    terms = 1.0 + weights  # [K, B]
    return torch.cat([1.0 - terms.sum(0, keepdim=True), terms])


def evaluate(
    model: Denoiser,
    x_t: Tensor,
    t: Tensor,
    branches: Sequence[Condition],
    chunk: int | None = None,
    x0_self: Tensor | None = None,
) -> Tensor:
    """All branches' predictions from one batched forward (or ``chunk``-sized pieces): ``[A, B, ...]``.

    ``x0_self`` ([B, ...]), for self-conditioning models, is shared by every branch.
    """
    a, b = len(branches), x_t.shape[0]

    def tile(v: Tensor) -> Tensor:
        return v.unsqueeze(0).expand(a, *v.shape).reshape(a * b, *v.shape[1:])  # [A*B, ...]

    x, tt, cond = tile(x_t), t.repeat(a), C.concat(branches)
    xs = None if x0_self is None else tile(x0_self)
    step = a * b if chunk is None else chunk
    takes_x0 = self_conditioned(model)  # only models that say so get the keyword
    outs = []
    for i in range(0, a * b, step):
        part = slice(i, i + step)
        extra = {"x0_self": None if xs is None else xs[part]} if takes_x0 else {}
        outs.append(model(x[part], tt[part], C.index(cond, part), **extra))
    return torch.cat(outs).float().view(a, *x_t.shape)


def rescale(guided: Tensor, reference: Tensor, phi: float) -> Tensor:
    """Match the guided prediction's per-example std to the unguided one's (Lin et al. 2024, Eqs. 15-16)."""
    dims = tuple(range(1, guided.ndim))
    ratio = reference.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True).clamp(min=1e-8)
    return phi * guided * ratio + (1 - phi) * guided


class Guided:
    """A sampler's ``denoise_fn``: the guided :class:`Estimate` for a batch of requested conditions.

    Args:
        model: the denoiser.
        guidance: the rule and its terms.
        cond: the requested condition, ``[B]`` per attribute.
        negative: condition used as the base instead of the null condition (``None``: unconditional base).
        num_steps: the schedule's ``T``, to place ``t`` inside ``guidance.interval``.
        snap: apply the model's :meth:`Denoiser.snap` to the guided ``x0`` (Diffusion-LM clamping).
    """

    def __init__(
        self,
        model: Denoiser,
        guidance: Guidance,
        cond: Condition,
        *,
        negative: Condition | None = None,
        num_steps: int,
        snap: bool = False,
    ):
        self.model, self.guidance, self.num_steps, self.snap = model, guidance, num_steps, snap
        base = C.null_like(cond) if negative is None else negative
        self.branches = [base] + [C.select(cond, term.attributes) for term in guidance.terms]
        self.weights = torch.tensor([term.w for term in guidance.terms], dtype=torch.float32)  # [K]
        self.forwards = 0  # examples passed through the network: NFE accounting, read by the caller
        self.x0_prev: Tensor | None = None  # the last guided x0 estimate, fed back to self-conditioning models

    def __call__(self, x_t: Tensor, t: Tensor, alpha_bar: Tensor) -> Estimate:
        g = self.guidance
        frac = t.float().cpu() / self.num_steps  # [B]
        inside = (frac >= g.interval[0]) & (frac <= g.interval[1])  # [B]
        coef = coefficients(self.weights[:, None] * inside[None].float())  # [K+1, B]
        ref = coefficients(torch.zeros_like(coef[1:]))  # unguided (w = 0) combination
        needed = coef.ne(0).any(1) | (ref.ne(0).any(1) if g.rule == "rescale" else False)  # [K+1]
        active = needed.nonzero().flatten().tolist()
        dev = x_t.device
        branches = [C.to(self.branches[j], dev) for j in active]
        preds = evaluate(self.model, x_t, t, branches, g.chunk, self.x0_prev)  # [A, B, ...]
        self.forwards += len(active) * x_t.shape[0]
        out = (append_dims(coef[active].to(dev), preds.ndim) * preds).sum(0)  # [B, ...]
        if g.rule == "rescale":
            out = rescale(out, (append_dims(ref[active].to(dev), preds.ndim) * preds).sum(0), g.phi)
        est = estimate(self.model.prediction, out, x_t, alpha_bar)
        if self_conditioned(self.model):
            self.x0_prev = est.x0  # before snapping: what the model saw in training
        if self.snap:
            x0 = self.model.snap(est.x0)
            est = Estimate(x0, eps_from_x0(x0, x_t, alpha_bar))
        return est
