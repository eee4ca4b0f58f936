"""The evaluator contract and the metric computation every modality shares.

An evaluator is trained on a dataset's real training data (its held-out accuracy recorded in ``info``); it maps
raw samples to feature vectors (for Frechet distance, precision/recall, diversity) and to per-attribute
predictions (for adherence). Modality-specific, model-free metrics come from :meth:`Evaluator.objective`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import torch
from torch import Tensor

from crossguide import conditions as C
from crossguide import metrics as M
from crossguide.conditions import Condition


class Evaluator(Protocol):
    # e.g. {"accuracy": {"shape": 0.99, ...}, "features": "cnn-penultimate", "id": "judge-image-shapes@3f2a...",
    # "source": "reference"}: ``id`` names the judge (its weights' sha256 prefix); records and the report cite it,
    # because numbers from different judges are different metrics
    info: dict[str, Any]

    def features(self, data: Tensor) -> Tensor:
        """``[N, ...]`` raw samples -> ``[N, D]`` float features."""
        ...

    def classify(self, data: Tensor) -> dict[str, Tensor]:
        """``[N, ...]`` raw samples -> predicted value index ``[N]`` per attribute."""
        ...

    def objective(self, data: Tensor, requested: Condition) -> dict[str, float]:
        """Modality-specific metrics (pitch accuracy, grammar, perplexity, ...); may be empty."""
        ...


@dataclass(frozen=True)
class Evaluation:
    """The metrics of one generated set, with the per-sample data that paired bootstrap intervals
    (:mod:`crossguide.stats`) resample."""

    metrics: dict[str, float]
    judged: dict[str, Tensor]  # judged value index per attribute [N] (for confusion matrices)
    features: Tensor  # judge features of the samples [N, D]
    correct: Tensor  # joint adherence per sample [N]: 1, 0, or NaN where nothing was requested
    real: Tensor  # the real features they were compared with [min(N, N_real), D]


def evaluate(
    evaluator: Evaluator, samples: Tensor, requested: Condition, reference: Tensor, *, k: int = 5
) -> Evaluation:
    """Metrics of ``samples`` generated for ``requested`` against real features ``reference`` ``[N_real, D]``, rows
    in random order: every distance compares equal counts, the ``N`` samples with the first ``N`` real rows (FD's
    bias and the k-NN radii of precision/recall depend on each side's count; Binkowski et al. 2018, Sec. 4)."""
    feats = evaluator.features(samples).float()
    judged = evaluator.classify(samples)
    real = reference[: len(feats)]
    groups = [tuple(sorted(c.items())) for c in C.unstack(requested)]
    kid, kid_se = M.kid(real, feats) if min(len(real), len(feats)) >= 3 else (float("nan"), float("nan"))
    metrics = {
        "fd": M.frechet_distance(real, feats),
        "kid": kid,
        "kid_se": kid_se,
        "diversity": M.diversity(feats, groups),
        **M.adherence(requested, judged),
        **M.prdc(real, feats, k=k),
        **evaluator.objective(samples, requested),
    }
    return Evaluation(metrics, judged, feats, M.joint_correct(requested, judged), real)


def reference_diversity(evaluator: Evaluator, data: Tensor, cond: Condition) -> float:
    """Within-condition diversity of real data: the scale against which sample diversity is read."""
    groups = [tuple(sorted(c.items())) for c in C.unstack(cond)]
    with torch.no_grad():
        return M.diversity(evaluator.features(data).float(), groups)
