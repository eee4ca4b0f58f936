"""The evaluator contract and the metric computation every modality shares.

An evaluator is trained on a dataset's real training data (its held-out accuracy recorded in ``info``); it maps
raw samples to feature vectors (for Frechet distance, precision/recall, diversity) and to per-attribute
predictions (for adherence). Modality-specific, model-free metrics come from :meth:`Evaluator.objective`.
"""

from __future__ import annotations

from typing import Any, Protocol

import torch
from torch import Tensor

from core import conditions as C
from core import metrics as M
from core.conditions import Condition


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


def evaluate(
    evaluator: Evaluator, samples: Tensor, requested: Condition, reference: Tensor, *, k: int = 5
) -> tuple[dict[str, float], dict[str, Tensor]]:
    """Metrics of ``samples`` generated for ``requested`` against ``reference`` real features.

    Returns the metrics dict and the judged attribute values (for confusion matrices).
    """
    feats = evaluator.features(samples).float()
    judged = evaluator.classify(samples)
    groups = [tuple(sorted(c.items())) for c in C.unstack(requested)]
    metrics = {
        "fd": M.frechet_distance(reference, feats),
        "diversity": M.diversity(feats, groups),
        **M.adherence(requested, judged),
        **M.prdc(reference, feats, k=k),
        **evaluator.objective(samples, requested),
    }
    return metrics, judged


def reference_diversity(evaluator: Evaluator, data: Tensor, cond: Condition) -> float:
    """Within-condition diversity of real data: the scale against which sample diversity is read."""
    groups = [tuple(sorted(c.items())) for c in C.unstack(cond)]
    with torch.no_grad():
        return M.diversity(evaluator.features(data).float(), groups)
