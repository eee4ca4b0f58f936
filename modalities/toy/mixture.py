"""A 2-D Gaussian mixture with two attributes, and its exact (closed-form) denoiser.

Components are indexed by (cluster, side): four clusters on the compass points, each split into an inner and
an outer Gaussian. Neighbouring components overlap, so even the exact conditional model yields samples that
an ideal judge assigns to another condition, which leaves room for guidance to act.

For ``x_0 ~ sum_k pi_k N(mu_k, S_k)`` and ``x_t = a x_0 + s eps`` (``a^2 = alpha_bar``, ``s^2 = 1 - alpha_bar``),
``x_t ~ sum_k pi_k N(a mu_k, a^2 S_k + s^2 I)`` and ``E[x_0 | x_t, k] = mu_k + a S_k (a^2 S_k + s^2 I)^-1
(x_t - a mu_k)``; the posterior mean mixes these by the responsibilities of the components compatible with the
(partial) condition. That is the exact optimum every learned denoiser approximates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from crossguide.conditions import NULL, Condition
from crossguide.denoiser import Denoiser
from crossguide.schedules import Schedule

CLUSTERS = ["north", "east", "south", "west"]
SIDES = ["inner", "outer"]
ATTRIBUTES = {"cluster": CLUSTERS, "side": SIDES}


@dataclass(frozen=True)
class Mixture:
    """Equal-weight components; ``means [K, 2]``, ``covs [K, 2, 2]``, ``labels[attr] [K]`` (float64)."""

    means: Tensor
    covs: Tensor
    labels: dict[str, Tensor]

    @property
    def K(self) -> int:  # noqa: N802
        return len(self.means)

    def sample(self, n_per_component: int, generator: torch.Generator) -> tuple[Tensor, Condition]:
        """``n_per_component`` points of each component, in component order: ``[K*n, 2]`` and labels."""
        chol = torch.linalg.cholesky(self.covs)  # [K, 2, 2]
        z = torch.randn(self.K, n_per_component, 2, generator=generator, dtype=torch.float64)
        x = self.means[:, None] + torch.einsum("kij,knj->kni", chol, z)  # [K, n, 2]
        cond = {a: v.repeat_interleave(n_per_component) for a, v in self.labels.items()}
        return x.reshape(-1, 2).float(), cond

    def compatible(self, cond: Condition) -> Tensor:
        """``[B, K]``: component k agrees with every non-null attribute of example b."""
        ok = None
        for a, v in cond.items():
            m = (v[:, None] == NULL) | (v[:, None] == self.labels[a][None].to(v.device))
            ok = m if ok is None else ok & m
        return ok

    def log_components(self, x: Tensor, alpha_bar: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-component log density of ``x_t`` ``[B, K]``, plus the marginal covariances' inverses
        ``[B, K, 2, 2]`` and the scaled means ``[B, K, 2]``."""
        ab = alpha_bar.double()[:, None, None, None]  # [B, 1, 1, 1]
        eye = torch.eye(2, dtype=torch.float64, device=x.device)
        cov = ab * self.covs[None].to(x.device) + (1 - ab) * eye  # [B, K, 2, 2]
        mean = ab[..., 0].sqrt() * self.means[None].to(x.device)  # [B, K, 2]
        inv = torch.linalg.inv(cov)
        d = x.double()[:, None] - mean  # [B, K, 2]
        maha = torch.einsum("bki,bkij,bkj->bk", d, inv, d)
        logdet = torch.logdet(cov)
        return -0.5 * (maha + logdet + 2 * math.log(2 * math.pi)), inv, mean

    def posterior(self, x0: Tensor) -> dict[str, Tensor]:
        """The exact posterior over each attribute's values for clean points ``[B, 2]``: ``[B, n_values]``."""
        logp, _, _ = self.log_components(x0, torch.ones(len(x0), dtype=torch.float64, device=x0.device))
        r = logp.softmax(-1)  # [B, K], equal weights
        out = {}
        for a, lab in self.labels.items():
            n = int(lab.max()) + 1
            out[a] = torch.zeros(len(x0), n, dtype=torch.float64).index_add_(1, lab, r)
        return out

    def log_prob(self, x0: Tensor, cond: Condition) -> Tensor:
        """``log p(x_0 | c)`` under the mixture restricted to the components compatible with ``c``: ``[B]``."""
        logp, _, _ = self.log_components(x0, torch.ones(len(x0), dtype=torch.float64, device=x0.device))
        ok = self.compatible(cond)
        logp = logp.masked_fill(~ok, -math.inf)
        return torch.logsumexp(logp, -1) - ok.double().sum(-1).log()


def compass_mixture(
    inner: float = 0.8, outer: float = 1.25, radial_std: float = 0.22, tangent_std: float = 0.4
) -> Mixture:
    """The default toy: 4 clusters x 2 sides, elongated along the circle so neighbours overlap.

    Its exact conditional samples are judged right on both attributes about 80% of the time.
    """
    means, covs, cluster, side = [], [], [], []
    for c in range(len(CLUSTERS)):
        angle = math.pi / 2 - c * math.pi / 2  # north, east, south, west
        u = torch.tensor([math.cos(angle), math.sin(angle)], dtype=torch.float64)  # radial direction
        v = torch.tensor([-u[1], u[0]], dtype=torch.float64)  # tangent
        for s, radius in enumerate((inner, outer)):
            means.append(radius * u)
            covs.append(radial_std**2 * torch.outer(u, u) + tangent_std**2 * torch.outer(v, v))
            cluster.append(c)
            side.append(s)
    return Mixture(torch.stack(means), torch.stack(covs),
                   {"cluster": torch.tensor(cluster), "side": torch.tensor(side)})


def interpolate(log_alpha_bar: Tensor, t: Tensor) -> Tensor:
    """``alpha_bar`` at model time ``t`` ([B], fractional allowed: log-linear interpolation of the table)."""
    t = t.double().clamp(0, len(log_alpha_bar) - 1)
    lo = t.floor().long()
    hi = (lo + 1).clamp(max=len(log_alpha_bar) - 1)
    frac = t - lo
    return torch.exp((1 - frac) * log_alpha_bar[lo] + frac * log_alpha_bar[hi])


class ExactDenoiser(Denoiser):
    """The Bayes-optimal eps-predictor of a :class:`Mixture` under a schedule, for any partial condition."""

    prediction = "eps"

    def __init__(self, mixture: Mixture, schedule: Schedule):
        super().__init__(ATTRIBUTES, (2,))
        self.mixture = mixture
        self.register_buffer("log_alpha_bar", schedule.alpha_bar.log())  # [T] for fractional-t interpolation

    def alpha_bar(self, t: Tensor) -> Tensor:
        return interpolate(self.log_alpha_bar, t)

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        ab = self.alpha_bar(t)  # [B]
        logp, inv, mean = self.mixture.log_components(x_t, ab)
        logp = logp.masked_fill(~self.mixture.compatible(cond), -math.inf)
        r = logp.softmax(-1)  # [B, K] responsibilities among compatible components
        a = ab.sqrt()[:, None, None]  # [B, 1, 1]
        covs = self.mixture.covs[None].to(x_t.device)  # [1, K, 2, 2]
        gain = a[..., None] * covs @ inv  # a S_k (a^2 S_k + s^2 I)^-1, [B, K, 2, 2]
        x0_k = self.mixture.means[None].to(x_t.device) + torch.einsum(
            "bkij,bkj->bki", gain, x_t.double()[:, None] - mean)  # [B, K, 2]
        x0 = (r[..., None] * x0_k).sum(1)  # [B, 2]
        eps = (x_t.double() - ab.sqrt()[:, None] * x0) / (1 - ab).sqrt()[:, None]
        return eps.to(x_t.dtype)

    def config(self) -> dict:
        return {"kind": "exact"}


class ExactClassifier(torch.nn.Module):
    """The mixture's exact noisy-label posterior: ``log p(c | x_t)`` for any partial condition ``c``.

    ``p(c | x_t) = sum_{k compatible with c} N(x_t; a mu_k, a^2 S_k + s^2 I) / sum_k N(...)`` (equal weights):
    the classifier whose gradient makes classifier guidance equal CFG with the exact denoiser (Bayes).
    """

    def __init__(self, mixture: Mixture, schedule: Schedule):
        super().__init__()
        self.mixture = mixture
        self.register_buffer("log_alpha_bar", schedule.alpha_bar.log())

    def log_prob(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        logp, _, _ = self.mixture.log_components(x_t, interpolate(self.log_alpha_bar, t))  # [B, K]
        ok = self.mixture.compatible(cond)
        return torch.logsumexp(logp.masked_fill(~ok, -math.inf), -1) - torch.logsumexp(logp, -1)
