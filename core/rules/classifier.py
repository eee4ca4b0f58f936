"""Classifier guidance (Dhariwal & Nichol 2021, "Diffusion Models Beat GANs on Image Synthesis", Sec. 4, Alg. 2)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from crossguide.errors import check_choice
from crossguide.rules import register
from crossguide.rules.base import Base, Output, Rule, StepInput

if TYPE_CHECKING:
    from torch import Tensor


@register
@dataclass(frozen=True)
class Classifier(Rule):
    """``eps~ = eps(x, c) - sqrt(1 - alpha_bar) sum_i w_i grad_x log p(c_i | x_t)`` (Alg. 2, Eq. 14, in the
    paper's ``eps``-space form for DDIM), with a noise-conditional classifier ``p(c | x_t)`` (the ``classifier``
    helper, trained on noisy inputs by the same trainer as the denoiser).

    By Bayes, ``grad log p(c | x_t) = grad log p(x_t | c) - grad log p(x_t)`` and ``eps = -sqrt(1 - alpha_bar)
    grad log p(x_t)``, so with exact models this equals CFG at the same ``w``: the two are compared on one scale.

    Args:
        on: "cond" guides the conditional model on the requested condition (w = 0 is the conditional model);
            "uncond" guides the unconditional model as Dhariwal & Nichol do, with scale ``1 + w_i`` per term
            (``eps(x) - sqrt(1 - alpha_bar) sum_i (1 + w_i) grad log p(c_i | x_t)``; w = -1 is the
            unconditional model).
    """

    name: ClassVar[str] = "classifier"
    helpers: ClassVar[tuple[str, ...]] = ("classifier",)
    negative: ClassVar[bool] = False
    sweep: ClassVar[tuple[float, ...]] = (0.0, 1.0, 2.0, 5.0, 10.0)
    on: Literal["cond", "uncond"] = "cond"

    def __post_init__(self) -> None:
        check_choice("classifier guidance base (on)", self.on, ("cond", "uncond"))

    def base(self) -> Base:
        return "requested" if self.on == "cond" else "null"

    def acts_in(self) -> str:
        return "eps"

    def needed(self, weights: Tensor) -> list[bool]:
        return [True] + [False] * weights.shape[0]  # the denoiser runs once; the terms go to the classifier

    def __call__(self, s: StepInput, state: Any) -> Output:
        assert s.base is not None
        scale = s.weights if self.on == "cond" else 1.0 + s.weights  # [K, B]
        if not bool(scale.ne(0).any()):
            return Output(s.base)
        from crossguide.classifier import grad_log_prob

        grads = grad_log_prob(s.helpers["classifier"], s.x_t, s.step.t, s.conditions[1:])  # [K, B, ...]
        shift = sum(s.per_example(k) * g for k, g in zip(scale, grads, strict=True))
        eps = s.base.eps - s.per_example((1 - s.alpha_bar).sqrt()) * shift
        return Output(s.from_space(eps, "eps"))

