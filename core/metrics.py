"""Sample-quality metrics on feature vectors, modality-free.

* Frechet distance (Heusel et al. 2017, Eq. 6) between Gaussians fitted to real and generated features.
* Precision / recall (Kynkaanniemi et al. 2019) and density / coverage (Naeem et al. 2020, Eqs. 1-4) from
  k-nearest-neighbour balls around real (and generated) features.
* Within-condition diversity: mean pairwise feature distance among samples that share a requested condition.
* Adherence: how often an attribute judge agrees with the requested attribute, per attribute and jointly.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
from scipy import stats
from torch import Tensor

from crossguide.conditions import NULL, Condition


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """``|mu_r - mu_f|^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2))`` (Heusel et al. 2017, Eq. 6), float64; features
    ``[N, D]`` and ``[M, D]``."""
    return frechet_statistic(real)(fake, torch.ones(1, len(fake), dtype=torch.float64)).item()


def frechet_statistic(real: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """FD against fixed ``real`` features of fake features ``[M, D]`` drawn ``counts`` ``[B, M]`` times: ``[B]``
    (a :data:`crossguide.stats.Statistic`). ``tr (S_r S_f)^(1/2)`` is the trace of the square root of the symmetric
    ``S_r^(1/2) S_f S_r^(1/2)``, which has the same eigenvalues, so a batched ``eigvalsh`` serves."""
    r = real.double().cpu()
    mu_r = r.mean(0)
    cov_r = torch.atleast_2d(torch.cov(r.T))
    lam, vec = torch.linalg.eigh(cov_r)
    root_r = vec @ torch.diag(lam.clamp(min=0).sqrt()) @ vec.T

    def fd(fake: Tensor, counts: Tensor) -> Tensor:
        x = fake.double().cpu()  # [M, D]
        n = counts.sum(1)  # [B]
        mu = counts @ x / n[:, None]  # [B, D]
        second = torch.einsum("bi,id,ie->bde", counts, x, x)  # [B, D, D]: sum of count * x x^T
        cov = (second - n[:, None, None] * mu[:, :, None] * mu[:, None, :]) / (n - 1)[:, None, None]
        eig = torch.linalg.eigvalsh(root_r @ cov @ root_r)  # [B, D]
        tr_sqrt = eig.clamp(min=0).sqrt().sum(1)
        return ((mu - mu_r) ** 2).sum(1) + cov_r.trace() + cov.diagonal(dim1=1, dim2=2).sum(1) - 2 * tr_sqrt

    return fd


def _poly_kernel(a: Tensor, b: Tensor) -> Tensor:
    """KID's kernel ``k(x, y) = (x . y / d + 1)^3`` (Binkowski et al. 2018, Sec. 4): ``[N, M]``."""
    return (a @ b.T / a.shape[1] + 1) ** 3


def _mmd_counts(k_aa: Tensor, cross_rows: Tensor, k_bb_mean: float, m: int, counts: Tensor) -> Tensor:
    """Unbiased MMD^2 (Gretton et al. 2012, Eq. 3) of side ``a`` drawn ``counts`` ``[B, N]`` times against a fixed
    side ``b`` of ``m`` rows: ``k_aa`` ``[N, N]``, ``cross_rows`` the row sums of ``k(a, b)`` ``[N]`` and ``k_bb_mean``
    the mean of ``k(b, b)`` off its diagonal. Pairs of *positions* i != j enter the within-a term, as in the
    estimator on a sample with repeated rows. ``[B]``."""
    n = counts.sum(1)
    within = ((counts @ k_aa) * counts).sum(1) - counts @ k_aa.diagonal()
    return within / (n * (n - 1)) + k_bb_mean - 2 * (counts @ cross_rows) / (n * m)


def _offdiag_mean(k: Tensor) -> float:
    return float((k.sum() - k.diagonal().sum()) / (len(k) * (len(k) - 1)))


def kid_statistic(real: Tensor) -> Callable[[Tensor, Tensor], Tensor]:
    """KID against fixed ``real`` features of fake features drawn ``counts`` times: ``[B]`` (a
    :data:`crossguide.stats.Statistic`)."""
    r = real.double().cpu()
    k_rr_mean = _offdiag_mean(_poly_kernel(r, r))

    def kid_of(fake: Tensor, counts: Tensor) -> Tensor:
        f = fake.double().cpu()
        return _mmd_counts(_poly_kernel(f, f), _poly_kernel(f, r).sum(1), k_rr_mean, len(r), counts)

    return kid_of


def kid(real: Tensor, fake: Tensor) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018, "Demystifying MMD GANs", Sec. 4): the unbiased MMD^2
    with the cubic polynomial kernel, on judge features ``[N, D]`` and ``[M, D]``, and its standard error by the
    two-sample delete-one jackknife (each side's jackknife variance, summed; Arvesen 1969). Unlike FD it has no
    bias that depends on ``M``, so it can be compared across sample counts. Needs at least 3 rows a side."""
    r, f = real.double().cpu(), fake.double().cpu()
    if len(r) < 3 or len(f) < 3:
        raise ValueError(f"KID needs at least 3 real and 3 generated rows, got {len(r)} and {len(f)}")
    k_rr, k_ff, k_fr = _poly_kernel(r, r), _poly_kernel(f, f), _poly_kernel(f, r)
    value = _mmd_counts(k_ff, k_fr.sum(1), _offdiag_mean(k_rr), len(r), torch.ones(1, len(f), dtype=torch.float64))
    var = 0.0
    for k_aa, cross, k_bb in ((k_ff, k_fr.sum(1), k_rr), (k_rr, k_fr.sum(0), k_ff)):  # leave out a fake, a real row
        n = len(k_aa)
        leave_one_out = _mmd_counts(k_aa, cross, _offdiag_mean(k_bb), len(k_bb),
                                    1 - torch.eye(n, dtype=torch.float64))  # [n]
        var += float((n - 1) / n * ((leave_one_out - leave_one_out.mean()) ** 2).sum())
    return value.item(), var ** 0.5


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


def joint_correct(requested: Condition, predicted: Mapping[str, Tensor]) -> Tensor:
    """Per sample ``[N]`` float64: 1 where every requested attribute is judged right, 0 where one is not, NaN where
    nothing was requested (every attribute null)."""
    right = torch.stack([(predicted[a].cpu() == req.cpu()) | (req.cpu() == NULL) for a, req in requested.items()])
    asked = torch.stack([req.cpu() != NULL for req in requested.values()]).any(0)
    return torch.where(asked, right.all(0).double(), torch.nan)


def adherence(requested: Condition, predicted: Mapping[str, Tensor]) -> dict[str, float]:
    """``adherence``: fraction with every requested attribute judged right; ``adherence/<attr>`` per attribute."""
    out: dict[str, float] = {}
    for a, req in requested.items():
        asked = req != NULL
        if bool(asked.any()):
            out[f"adherence/{a}"] = (predicted[a].cpu() == req.cpu())[asked.cpu()].double().mean().item()
    joint = joint_correct(requested, predicted)
    out["adherence"] = joint.nanmean().item() if bool((~joint.isnan()).any()) else float("nan")
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
