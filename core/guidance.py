"""Guidance: what to do at each sampling step (:class:`Guidance`) and the engine that does it (:class:`Guided`).

Convention (the paper's ``w``, stated once, used everywhere; Ho & Salimans 2021, Eq. 6):

* one condition: ``eps~ = (1 + w) eps(x, c) - w eps(x)``. ``w = 0`` is the conditional model, ``w = -1`` the
  unconditional one, ``w < -1`` pushes away from ``c``. diffusers' ``guidance_scale`` is ``1 + w``.
* several conditions (composition, Liu et al. 2022, Eq. 10 in this convention):
  ``eps~ = eps(x) + sum_i (1 + w_i) (eps(x, c_i) - eps(x))``.
* a negative condition in place of the unconditional one:
  ``eps~ = eps(x, c_neg) + (1 + w) (eps(x, c) - eps(x, c_neg))``.

How the predictions are combined is a *rule* (:mod:`crossguide.rules`: ``cfg`` above, and rescale, thresholding, APG,
CFG++, CFG-Zero*, autoguidance, classifier guidance, or a plug-in). The engine builds the 1 + K branches (a base
and one per term), evaluates those the rule needs in one batched forward per network, and hands them to the rule.
Two wrappers act on the weights before any rule, both on the noise level ``sigma = sqrt((1 - alpha_bar) /
alpha_bar)`` (never ``t/T``, which means different noise in modalities with different ``T``):

* an interval (Kynkaanniemi et al. 2024, "Applying Guidance in a Limited Interval Improves Sample and
  Distribution Quality"): every weight is 0 outside ``sigma`` in ``[lo, hi]``;
* a weight schedule (Wang et al. 2024, "Analysis of Classifier-Free Guidance Weight Schedulers", Sec. 4):
  ``w(sigma) = w f(u)`` with ``u`` in [0, 1] the progress from ``sigma_max`` down to ``sigma_min`` on a log scale,
  ``f = 2u`` (linear) or ``1 - cos(pi u)`` (cosine): both rise as the noise falls and average ``w`` over ``u``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from crossguide import conditions as C
from crossguide import rules
from crossguide.conditions import Condition
from crossguide.denoiser import Denoiser, self_conditioned, shares_branches
from crossguide.errors import UsageError, check_choice
from crossguide.parameterization import Estimate, eps_from_x0, estimate
from crossguide.rules.base import StepInput
from crossguide.samplers import Step

SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class Term:
    """One guidance term: the requested condition restricted to ``attributes`` (``None``: all), weight ``w``."""

    w: float
    attributes: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Guidance:
    """What to do at each step; JSON round-trippable via :meth:`to_json` / :meth:`from_json`.

    ``options`` are the rule's, completed with its defaults on construction, so two specs that mean the same
    compare equal and records always carry every option.
    """

    terms: tuple[Term, ...] = field(default_factory=lambda: (Term(0.0),))
    rule: str = "cfg"
    options: tuple[tuple[str, Any], ...] = ()  # (name, value) pairs of the rule's options
    interval: tuple[float, float] | None = None  # guide only where sigma lies in [lo, hi]
    schedule: str = "constant"  # weight schedule over the noise level: constant, linear, cosine
    schedule_range: tuple[float, float] = (0.01, 100.0)  # (sigma_min, sigma_max) over which a schedule rises
    chunk: int | None = None  # at most this many examples per forward (memory); None: all branches at once

    def __post_init__(self) -> None:
        if not self.terms:
            raise UsageError("guidance needs at least one term")
        for term in self.terms:
            if not math.isfinite(term.w):
                raise UsageError(f"guidance weight must be finite, got {term.w}")
        if self.interval is not None:
            lo, hi = self.interval
            if not 0.0 <= lo < hi:
                raise UsageError(f"guidance interval must be noise levels 0 <= lo < hi, got {self.interval}")
        check_choice("weight schedule", self.schedule, SCHEDULES)
        lo, hi = self.schedule_range
        if not 0.0 < lo < hi < math.inf:
            raise UsageError(f"schedule_range must satisfy 0 < sigma_min < sigma_max, got {self.schedule_range}")
        if self.chunk is not None and self.chunk < 1:
            raise UsageError(f"chunk must be >= 1, got {self.chunk}")
        rule = rules.make(self.rule, dict(self.options))
        object.__setattr__(self, "options", tuple(sorted(rule.options().items())))

    @classmethod
    def cfg(cls, w: float, **options: Any) -> Guidance:
        """Plain classifier-free guidance on the full requested condition."""
        return cls(terms=(Term(float(w)),), **options)

    @classmethod
    def single(cls, w: float, rule: str = "cfg", options: Mapping[str, Any] | None = None, **kw: Any) -> Guidance:
        """One term on the full requested condition, guided by ``rule`` with ``options``."""
        return cls(terms=(Term(float(w)),), rule=rule, options=tuple(dict(options or {}).items()), **kw)

    def make_rule(self) -> rules.Rule:
        return rules.make(self.rule, dict(self.options))

    @property
    def w(self) -> float | None:
        """The weight of a single-term guidance; ``None`` for compositions."""
        return self.terms[0].w if len(self.terms) == 1 else None

    def weights_at(self, sigma: Tensor) -> Tensor:
        """The terms' weights at noise levels ``sigma`` ([B]) after the interval and schedule: ``[K, B]``."""
        sigma = sigma.double().cpu()
        factor = torch.ones_like(sigma)
        if self.interval is not None:
            factor = factor * ((sigma >= self.interval[0]) & (sigma <= self.interval[1])).double()
        if self.schedule != "constant":
            lo, hi = (math.log(v) for v in self.schedule_range)
            u = ((hi - sigma.clamp(min=1e-30).log()) / (hi - lo)).clamp(0.0, 1.0)  # 0 at sigma_max, 1 at sigma_min
            factor = factor * (2 * u if self.schedule == "linear" else 1 - torch.cos(math.pi * u))
        w = torch.tensor([t.w for t in self.terms], dtype=torch.float64)  # [K]
        return (w[:, None] * factor[None]).float()

    def changed_options(self) -> list[tuple[str, str]]:
        """The rule's options that differ from its defaults, values formatted (``0.5``, ``x0``)."""
        defaults = rules.make(self.rule).options()
        return [(k, f"{v:g}" if isinstance(v, float) else str(v)) for k, v in self.options if defaults[k] != v]

    def terms_label(self) -> str:
        """The terms' weights and attributes, e.g. ``w=2 on shape, w=0.5 on color``."""
        return ", ".join(f"w={t.w:g}" + ("" if t.attributes is None else f" on {'+'.join(t.attributes)}")
                         for t in self.terms)

    def label(self) -> str:
        """A short human-readable name of the rule and its non-default options and wrappers."""
        changed = [f"{k}={v}" for k, v in self.changed_options()]
        text = self.rule + (f"({', '.join(changed)})" if changed else "")
        if self.interval is not None:
            text += f" in sigma [{self.interval[0]:g}, {self.interval[1]:g}]"
        if self.schedule != "constant":
            text += f", {self.schedule} schedule"
        return text

    def to_json(self) -> dict[str, Any]:
        return {
            "terms": [{"w": t.w, "attributes": None if t.attributes is None else list(t.attributes)}
                      for t in self.terms],
            "rule": self.rule, "options": dict(self.options),
            "interval": None if self.interval is None else list(self.interval),
            "schedule": self.schedule, "schedule_range": list(self.schedule_range), "chunk": self.chunk,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Guidance:
        terms = tuple(
            Term(float(t["w"]), None if t.get("attributes") is None else tuple(t["attributes"]))
            for t in data["terms"]
        )
        interval = data.get("interval")
        return cls(terms=terms, rule=data.get("rule", "cfg"), options=tuple(dict(data.get("options", {})).items()),
                   interval=None if interval is None else (float(interval[0]), float(interval[1])),
                   schedule=data.get("schedule", "constant"),
                   schedule_range=tuple(data.get("schedule_range", (0.01, 100.0))),  # type: ignore[arg-type]
                   chunk=data.get("chunk"))


def evaluate(
    model: nn.Module,
    x_t: Tensor,
    t: Tensor,
    branches: Sequence[Condition],
    chunk: int | None = None,
    x0_self: Tensor | None = None,
) -> Tensor:
    """All branches' predictions from one batched forward (or ``chunk``-sized pieces): ``[A, B, ...]``.

    ``x0_self`` ([B, ...]), for self-conditioning models, is shared by every branch. A model with
    ``shared_branches`` gets ``x_t`` and ``t`` once with the ``A*B`` condition rows (unless ``chunk`` asks for
    pieces); any other gets them tiled to ``A*B`` rows.
    """
    a, b = len(branches), x_t.shape[0]
    cond = C.concat(branches)
    takes_x0 = self_conditioned(model)  # only models that say so get the keyword
    if chunk is None and shares_branches(model):
        extra = {"x0_self": x0_self} if takes_x0 else {}
        return model(x_t, t, cond, **extra).float().view(a, *x_t.shape)

    def tile(v: Tensor) -> Tensor:
        return v.unsqueeze(0).expand(a, *v.shape).reshape(a * b, *v.shape[1:])  # [A*B, ...]

    x, tt = tile(x_t), t.repeat(a)
    xs = None if x0_self is None else tile(x0_self)
    step = a * b if chunk is None else chunk
    outs = []
    for i in range(0, a * b, step):
        part = slice(i, i + step)
        extra = {"x0_self": None if xs is None else xs[part]} if takes_x0 else {}
        outs.append(model(x[part], tt[part], C.index(cond, part), **extra))
    return torch.cat(outs).float().view(a, *x_t.shape)


class Trajectory(NamedTuple):
    """The engine's per-trajectory state, threaded by the sampler from step to step."""

    rule: Any = None  # the rule's own state (APG's running average, ...)
    x0_self: Tensor | None = None  # the last guided x0 estimate, fed back to self-conditioning models


class Guided:
    """A sampler's ``denoise_fn``: ``(x_t, step, state) -> (Estimate, state)`` for a batch of requested conditions.

    Args:
        model: the denoiser.
        guidance: the rule, its options, the terms and the wrappers.
        cond: the requested condition, ``[B]`` per attribute.
        negative: condition used as the base instead of the null condition (``None``: unconditional base).
        snap: apply the model's :meth:`Denoiser.snap` to the guided ``x0`` (Diffusion-LM clamping).
        helpers: extra models a rule needs, by name ("classifier", "weak").

    It holds no trajectory state; :attr:`forwards` counts examples passed through networks (NFE accounting).
    """

    def __init__(
        self,
        model: Denoiser,
        guidance: Guidance,
        cond: Condition,
        *,
        negative: Condition | None = None,
        snap: bool = False,
        helpers: Mapping[str, Any] | None = None,
    ):
        self.model, self.guidance, self.snap = model, guidance, snap
        self.rule = guidance.make_rule()
        self.helpers = dict(helpers or {})
        missing = [h for h in self.rule.helpers if h not in self.helpers]
        if missing:
            raise UsageError(f"guidance rule {self.rule.name!r} needs a {' and a '.join(missing)} model, "
                             "which was not provided")
        if negative is not None and not self.rule.negative:
            raise UsageError(f"guidance rule {self.rule.name!r} takes no negative condition")
        attrs = [t.attributes for t in guidance.terms]
        requested = None if any(a is None for a in attrs) else tuple(sorted({x for a in attrs for x in a}))
        base = {"null": C.null_like(cond) if negative is None else negative,
                "requested": C.select(cond, requested)}[self.rule.base()]
        self.conditions = (base, *(C.select(cond, a) for a in attrs))
        base_net = model if self.rule.base_model == "model" else self.helpers[self.rule.base_model]
        self.networks = (base_net, *[model] * len(attrs))
        self.forwards = 0

    def __call__(self, x_t: Tensor, step: Step, state: Trajectory | None) -> tuple[Estimate, Trajectory]:
        state = state or Trajectory()
        ab = step.alpha_bar
        weights = self.guidance.weights_at(((1 - ab) / ab).sqrt())  # [K, B]
        needed = self.rule.needed(weights)
        preds: list[Estimate | None] = [None] * len(needed)
        dev = x_t.device
        for net in dict.fromkeys(self.networks[j] for j in range(len(needed)) if needed[j]):  # one forward each
            idx = [j for j, use in enumerate(needed) if use and self.networks[j] is net]
            out = evaluate(net, x_t, step.t, [C.to(self.conditions[j], dev) for j in idx], self.guidance.chunk,
                           state.x0_self)  # [A, B, ...]
            self.forwards += len(idx) * x_t.shape[0]
            for j, pred in zip(idx, out, strict=True):
                preds[j] = estimate(getattr(net, "prediction", "eps"), pred, x_t, ab)
        s = StepInput(x_t, preds[0], tuple(preds[1:]), weights, step, self.model.prediction,
                      self.conditions, self.helpers)
        result = self.rule(s, state.rule)
        est = result.estimate
        x0_self = est.x0 if self_conditioned(self.model) else None  # before snapping: what the model saw in training
        if self.snap:
            x0 = self.model.snap(est.x0)
            est = Estimate(x0, eps_from_x0(x0, x_t, ab))
        eps = est.eps if result.renoise is None else result.renoise
        return Estimate(est.x0, eps), Trajectory(result.state, x0_self)
