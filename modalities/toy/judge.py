"""The toy's judge: the mixture's exact posterior, with the points themselves as features."""

from __future__ import annotations

from torch import Tensor

from crossguide.conditions import Condition
from crossguide.modalities.toy.mixture import Mixture


class MixtureJudge:
    """Evaluator for the toy: features are the points themselves; the judge is the mixture's exact posterior."""

    def __init__(self, mixture: Mixture):
        self.mixture = mixture
        # nothing is trained: the judge is the mixture itself, the same everywhere
        self.info = {"features": "raw 2-D coordinates", "judge": "exact mixture posterior",
                     "id": "exact-mixture-posterior", "source": "exact"}

    def features(self, data: Tensor) -> Tensor:
        return data.float()

    def classify(self, data: Tensor) -> dict[str, Tensor]:
        return {a: p.argmax(-1) for a, p in self.mixture.posterior(data).items()}

    def objective(self, data: Tensor, requested: Condition) -> dict[str, float]:
        """Mean ``log p(x | c)`` under the true mixture: model-free fidelity to the requested condition."""
        return {"log_prob": self.mixture.log_prob(data, requested).mean().item()}
