"""Autoguidance (Karras et al. 2024, "Guiding a Diffusion Model with a Bad Version of Itself", Eq. 1)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from crossguide.rules import register
from crossguide.rules.base import Base, Output, Rule, StepInput, combine, linear_coefficients


@register
@dataclass(frozen=True)
class Auto(Rule):
    """``D~ = D_weak(x, c) + (1 + w) (D(x, c) - D_weak(x, c))``: guide away from a weaker model of the same
    modality on the *same* condition, instead of from the unconditional model (the paper's ``w`` is our ``1 + w``).

    The weaker model is the ``weak`` helper: the EMA weights the trainer kept early in training
    (``TrainConfig.weak_at``), a less-trained version of the main model, which the paper finds to work when a
    smaller model is not at hand. Linear, so parameterization-invariant; it takes no negative condition.
    """

    name: ClassVar[str] = "auto"
    base_model: ClassVar[str] = "weak"
    helpers: ClassVar[tuple[str, ...]] = ("weak",)
    negative: ClassVar[bool] = False

    def base(self) -> Base:
        return "requested"

    def __call__(self, s: StepInput, state: Any) -> Output:
        return Output(combine(s, linear_coefficients(s.weights)))
