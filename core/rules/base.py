"""The guidance-rule contract: what a rule sees at one sampling step and what it returns.

A rule is a frozen dataclass whose fields are its options (all with defaults, JSON scalars). Per step the engine
(:class:`crossguide.guidance.Guided`) evaluates the branches the rule asks for in one batched forward, hands them to the
rule as a :class:`StepInput` together with the rule's own per-trajectory state, and the rule returns an
:class:`Output`: the estimate to denoise with, optionally a separate ``eps`` to re-noise with (CFG++), and its new
state. The state belongs to the trajectory (the sampler threads it from step to step), so a second trajectory, a
repeated call at the same step or a corrector evaluation never sees another's.

Branches: index 0 is the *base* (the null condition, a negative condition, or whatever :attr:`Rule.base` says),
then one branch per guidance term. Weights ``[K, B]`` arrive with the interval and weight-schedule wrappers
already applied, so every rule composes with them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Literal, NamedTuple

from crossguide.errors import UsageError
from crossguide.parameterization import PREDICTIONS, Estimate, Prediction, append_dims, estimate, target

if TYPE_CHECKING:
    from torch import Tensor

    from crossguide.conditions import Condition
    from crossguide.samplers import Step

Space = Literal["model", "eps", "x0", "v", "flow"]  # "model": whatever the denoiser itself predicts
SPACES: tuple[Space, ...] = ("model", *PREDICTIONS)
Base = Literal["null", "requested"]  # what the base branch is conditioned on


@dataclass(frozen=True)
class StepInput:
    """Everything a rule sees at one step. Shapes: ``B`` examples, ``K`` terms, ``[...]`` one example."""

    x_t: Tensor  # [B, ...]
    base: Estimate | None  # the base branch; None where the rule said it is not needed
    terms: tuple[Estimate | None, ...]  # K term branches, None where not needed
    weights: Tensor  # [K, B] float32 on the CPU: the terms' weights at this step
    step: Step  # model time t [B], alpha_bar [B] (float64), index and count in the trajectory
    prediction: Prediction  # what the denoiser predicts ("model" space)
    conditions: tuple[Condition, ...]  # 1 + K conditions, base first, as the branches were conditioned
    helpers: Mapping[str, Any]  # extra models the rule asked for (Rule.helpers): a classifier, a weaker model

    @property
    def alpha_bar(self) -> Tensor:
        return self.step.alpha_bar

    @property
    def sigma(self) -> Tensor:
        """Noise level ``sqrt((1 - alpha_bar) / alpha_bar)`` ([B], float64), the same in every modality."""
        return ((1 - self.alpha_bar) / self.alpha_bar).sqrt()

    @property
    def log_snr(self) -> Tensor:
        """``log(alpha_bar / (1 - alpha_bar))`` ([B], float64)."""
        return -2 * self.sigma.log()

    def branches(self) -> list[Estimate | None]:
        """Base, then terms."""
        return [self.base, *self.terms]

    def kind(self, space: Space) -> Prediction:
        return self.prediction if space == "model" else space

    def to_space(self, est: Estimate, space: Space) -> Tensor:
        """A branch's prediction expressed in ``space`` ([B, ...])."""
        return target(self.kind(space), est.x0, est.eps, self.alpha_bar)

    def from_space(self, pred: Tensor, space: Space) -> Estimate:
        """The estimate at ``x_t`` that predicts ``pred`` in ``space``."""
        return estimate(self.kind(space), pred, self.x_t, self.alpha_bar)

    def per_example(self, v: Tensor) -> Tensor:
        """``[B]`` -> ``[B, 1, ..., 1]`` on ``x_t``'s device."""
        import torch

        return append_dims(v.to(self.x_t.device, torch.float32), self.x_t.ndim)

    def guided(self) -> Tensor:
        """``[B]`` bool: examples with any non-zero weight at this step (a correction is off where this is not)."""
        return self.weights.ne(0).any(0)

    def where_guided(self, guided: Estimate, plain: Estimate) -> Estimate:
        """``guided`` on the examples being guided at this step, ``plain`` elsewhere: how a rule's correction
        switches off with guidance (w = 0, outside an interval)."""
        import torch

        on = self.per_example(self.guided().float()).bool()
        return Estimate(torch.where(on, guided.x0, plain.x0), torch.where(on, guided.eps, plain.eps))


class Output(NamedTuple):
    estimate: Estimate  # the sampler denoises with estimate.x0
    renoise: Tensor | None = None  # eps to re-noise with, when not estimate.eps (CFG++)
    state: Any = None  # the rule's state for the next step of this trajectory


@dataclass(frozen=True)
class Rule:
    """Base class of guidance rules. Subclasses set ``name`` and implement :meth:`__call__`."""

    name: ClassVar[str]
    base_model: ClassVar[str] = "model"  # "model", or the helper that evaluates the base branch
    helpers: ClassVar[tuple[str, ...]] = ()  # extra models it needs: "classifier", "weak"
    negative: ClassVar[bool] = True  # whether a negative condition may replace the base
    sweep: ClassVar[tuple[float, ...] | None] = None  # default weight grid for bench (None: the paper's)

    def needed(self, weights: Tensor) -> list[bool]:
        """Which of the 1 + K branches to evaluate for these weights ``[K, B]``; default: those with a
        non-zero coefficient in the linear combination (so w = 0 and w = -1 cost one forward)."""
        return linear_coefficients(weights).ne(0).any(1).tolist()

    def __call__(self, s: StepInput, state: Any) -> Output:  # pragma: no cover - abstract
        raise NotImplementedError

    def base(self) -> Base:
        """What the base branch is conditioned on: "null" (a negative condition replaces it) or "requested"
        (the requested condition on every term's attributes)."""
        return "null"

    def acts_in(self) -> str:
        """The space the rule acts in (a :data:`Space`), or "invariant" for rules that give the same estimate
        whatever the denoiser predicts (linear combinations whose coefficients sum to 1)."""
        return "invariant"

    def options(self) -> dict[str, Any]:
        """The rule's options, defaults filled in: what records store."""
        return {f.name: getattr(self, f.name) for f in fields(self)}



class SpaceRule(Rule):
    """A rule that acts in the prediction space its ``space`` option names (a dataclass field of the subclass)."""

    def __post_init__(self) -> None:
        check_space(self.space)  # type: ignore[attr-defined]

    def acts_in(self) -> str:
        return self.space  # type: ignore[attr-defined]


def linear_coefficients(weights: Tensor) -> Tensor:
    """Coefficients ``[K, B] -> [K+1, B]`` of (base, term_1 .. term_K) in
    ``base + sum_i (1 + w_i) (term_i - base)`` (Ho & Salimans 2021, Eq. 6; Liu et al. 2022, Eq. 10); each
    column sums to 1, so the combination commutes with every eps/x0/v conversion."""
    import torch

    terms = 1.0 + weights  # [K, B]
    return torch.cat([1.0 - terms.sum(0, keepdim=True), terms])


def combine(s: StepInput, coef: Tensor) -> Estimate:
    """``sum_j coef[j] branch_j`` over the evaluated branches, for x0 and eps alike (``coef`` ``[K+1, B]``)."""
    x0 = eps = None
    for c, est in zip(coef, s.branches(), strict=True):
        if est is None:
            if bool(c.ne(0).any()):
                raise RuntimeError("a branch with a non-zero coefficient was not evaluated")
            continue
        k = s.per_example(c)
        x0 = k * est.x0 if x0 is None else x0 + k * est.x0
        eps = k * est.eps if eps is None else eps + k * est.eps
    if x0 is None or eps is None:
        raise RuntimeError("no branch was evaluated")
    return Estimate(x0, eps)


def check_space(space: str) -> None:
    if space not in SPACES:
        raise UsageError(f"unknown space {space!r}; valid: {', '.join(SPACES)}")


def flat_dot(a: Tensor, b: Tensor) -> Tensor:
    """Per-example inner product over all non-batch dims: ``[B, ...] x [B, ...] -> [B]``."""
    return (a * b).flatten(1).sum(1)
