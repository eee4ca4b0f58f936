"""CFG-Zero* (Fan et al. 2025, "CFG-Zero*: Improved Classifier-Free Guidance for Flow Matching Models")."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from crossguide.errors import UsageError
from crossguide.rules import register
from crossguide.rules.apg import full_when_guided
from crossguide.rules.base import Output, Space, SpaceRule, StepInput, flat_dot

if TYPE_CHECKING:
    from torch import Tensor


@register
@dataclass(frozen=True)
class ZeroStar(SpaceRule):
    """CFG with an optimised scale on the unconditional prediction and zero-initialised first steps.

    Optimised scale (Eq. 9): ``s* = <P(x, c), P(x)> / |P(x)|^2`` per example, then
    ``P~ = s* P(x) + (1 + w) (P(x, c) - s* P(x))``: CFG whose unconditional prediction is first projected onto
    the conditional one. With ``s* = 1`` it is CFG; compositions use the unguided combination
    ``sum_i P(x, c_i) - (K - 1) P(x)`` in place of ``P(x, c)`` to fit ``s*``.

    Zero-init (Sec. 4.2): the first ``zero_steps`` steps of a trajectory predict a zero flow velocity
    ``v = eps - x0 = 0``, i.e. ``x0 = eps = x_t / (sqrt(alpha_bar) + sqrt(1 - alpha_bar))``: the sample stays where
    it is on the straight path between data and noise, as a flow-matching sampler with ``v = 0`` does.
    ``zero_steps = 0`` turns it off. Both apply only where guidance is on, so ``w = 0`` is the conditional model.

    Args:
        zero_steps: how many first steps to zero.
        space: where ``s*`` is fitted; the paper's models predict the flow velocity (``flow``).
    """

    name: ClassVar[str] = "zerostar"
    zero_steps: int = 1
    space: Space = "flow"

    def __post_init__(self) -> None:
        if self.zero_steps < 0:
            raise UsageError(f"zerostar zero_steps must be >= 0, got {self.zero_steps}")
        super().__post_init__()

    def needed(self, weights: Tensor) -> list[bool]:
        return full_when_guided(weights)

    def __call__(self, s: StepInput, state: Any) -> Output:
        if s.base is None:  # one term, not guiding: the conditional model
            return Output(s.terms[0])  # type: ignore[arg-type]
        base = s.to_space(s.base, self.space)
        terms = [s.to_space(t, self.space) for t in s.terms if t is not None]
        ref = sum(terms) - (len(terms) - 1) * base  # the unguided combination [B, ...]
        scale = s.per_example(flat_dot(ref, base) / (flat_dot(base, base) + 1e-8))  # s* [B, 1, ...]
        out = scale * base
        for p, w in zip(terms, s.weights, strict=True):
            out = out + s.per_example(1 + w) * (p - scale * base)
        est = s.from_space(out, self.space)
        if s.step.index < self.zero_steps:  # zero flow velocity: x0 = eps = x_t / (a + s)
            est = s.where_guided(s.from_space(s.x_t.new_zeros(s.x_t.shape), "flow"), est)
        return Output(est)
