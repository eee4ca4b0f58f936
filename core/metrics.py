"""Sample-quality metrics on feature vectors, modality-free.

* Frechet distance (Heusel et al. 2017, Eq. 6) between Gaussians fitted to real and generated features.
* Precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et al. 2020, Eqs. 1-4) from
  k-nearest-neighbour balls around real (and generated) features.
* Within-condition diversity: mean pairwise feature distance among samples that share a requested condition.
* Adherence: how often an attribute judge agrees with the requested attribute, per attribute and jointly.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from core.conditions import NULL, Condition


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))``, float64; features ``[N, D]``."""
    a, b = real.double().cpu().numpy(), fake.double().cpu().numpy()
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    # tr((S_a S_b)^(1/2)) = sum of square roots of the (real, non-negative) eigenvalues of S_a S_b
    eig = np.linalg.eigvals(cov_a @ cov_b)
    tr_sqrt = np.sqrt(np.clip(eig.real, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a) + np.trace(cov_b) - 2 * tr_sqrt)


def _kth_radius(x: Tensor, k: int) -> Tensor:
    """Distance from each row to its k-th nearest other row, ``[N]``."""
    d = torch.cdist(x, x)
    return d.kthvalue(min(k + 1, len(x)), dim=1).values  # +1: the zero self-distance comes first


def prdc(real: Tensor, fake: Tensor, k: int = 5) -> dict[str, float]:
    """Precision, recall, density and coverage with k-NN manifolds (Naeem et al. 2020)."""
    real, fake = real.double().cpu(), fake.double().cpu()
    r_real, r_fake = _kth_radius(real, k), _kth_radius(fake, k)  # [N], [M]
    d = torch.cdist(real, fake)  # [N, M]
    inside_real = d <= r_real[:, None]  # fake j inside real ball i
    return {
        "precision": inside_real.any(0).double().mean().item(),
        "recall": (d <= r_fake[None, :]).any(1).double().mean().item(),
        "density": inside_real.sum(0).double().mean().item() / k,
        "coverage": (d.min(1).values <= r_real).double().mean().item(),
    }


def diversity(features: Tensor, groups: Sequence[object]) -> float:
    """Mean pairwise L2 distance between features of the same group, averaged over groups with >= 2 members."""
    keys = list(dict.fromkeys(groups))
    values = []
    for key in keys:
        idx = torch.tensor([i for i, g in enumerate(groups) if g == key])
        if len(idx) < 2:
            continue
        f = features[idx].double()
        d = torch.cdist(f, f)
        values.append((d.sum() / (len(idx) * (len(idx) - 1))).item())
    return float(np.mean(values)) if values else float("nan")


def adherence(requested: Condition, predicted: Mapping[str, Tensor]) -> dict[str, float]:
    """``adherence``: fraction with every requested attribute judged right; ``adherence/<attr>`` per attribute."""
    out: dict[str, float] = {}
    joint = None
    for a, req in requested.items():
        asked = req != NULL
        right = (predicted[a].cpu() == req.cpu()) | ~asked
        if bool(asked.any()):
            out[f"adherence/{a}"] = right[asked].double().mean().item()
        joint = right if joint is None else joint & right
    any_asked = torch.stack([r != NULL for r in requested.values()]).any(0)
    out["adherence"] = joint[any_asked].double().mean().item() if bool(any_asked.any()) else float("nan")
    return out


def confusion(requested: Tensor, predicted: Tensor, n: int) -> list[list[int]]:
    """``[n x (n + 1)]`` counts: row = requested value, column = judged value, the last column "none" (a judge
    that found no value, e.g. a sentence that never names the attribute). Requested NULL rows are skipped."""
    m = torch.zeros(n, n + 1, dtype=torch.long)
    keep = requested != NULL
    judged = predicted[keep].cpu()
    judged = torch.where((judged >= 0) & (judged < n), judged, n)
    m.index_put_((requested[keep].cpu(), judged), torch.ones(int(keep.sum()), dtype=torch.long), accumulate=True)
    return m.tolist()


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> tuple[float, float]:
    """Mean and the half-width of its Student-t confidence interval (0 for a single value)."""
    x = np.asarray([v for v in values if v == v], dtype=np.float64)  # drop NaN
    if len(x) == 0:
        return float("nan"), float("nan")
    if len(x) == 1:
        return float(x[0]), 0.0
    half = stats.t.ppf(0.5 + confidence / 2, len(x) - 1) * x.std(ddof=1) / np.sqrt(len(x))
    return float(x.mean()), float(half)


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman rank correlation (NaN when either side is constant)."""
    if len(set(x)) < 2 or len(set(y)) < 2:
        return float("nan")
    return float(stats.spearmanr(x, y).statistic)
