"""Bootstrap intervals for metrics of generated samples, one setting alone or two settings paired.

Settings of one study share their initial noise and requested conditions seed by seed (:mod:`crossguide.sampling`), so
sample ``i`` of seed ``s`` in setting A and sample ``i`` of seed ``s`` in setting B differ only by what the
comparison changes. The right question about ``metric(B) - metric(A)`` is then a paired one: each bootstrap
replicate redraws the seeds with replacement, and within each drawn seed the sample rows, the *same* rows for
both settings (a two-stage bootstrap; Davison & Hinkley 1997, Sec. 3.8 for the hierarchical resampling, Efron &
Tibshirani 1993, Ch. 13 for the percentile interval). A difference is significant when its interval excludes 0.

A metric enters as a :data:`Statistic`: given a setting's per-sample data and ``counts`` ``[B, n]`` (how often
each row is drawn in each replicate), it returns the metric of every replicate ``[B]``. Counts rather than
indices let set-level metrics (Frechet distance, KID) use weighted sums instead of gathering ``B`` copies.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

# (per-sample data [n, ...], counts [B, n]) -> the metric of each of the B resamples [B]
Statistic = Callable[[Tensor, Tensor], Tensor]

REPS = 1000  # bootstrap replicates (percentile intervals at 95% need several hundred; Efron & Tibshirani, Sec. 13.3)


@dataclass(frozen=True)
class Interval:
    """A metric (or a difference of two) with its bootstrap percentile interval."""

    estimate: float  # on the full samples, averaged over seeds
    lo: float
    hi: float
    reps: int
    seeds: int
    n: int  # samples per seed

    @property
    def half(self) -> float:
        """Half the interval's width (for a "± h" display; the interval itself may be asymmetric)."""
        return (self.hi - self.lo) / 2

    def excludes(self, value: float = 0.0) -> bool:
        """Whether ``value`` lies outside the interval: for a difference, "significant" at its confidence."""
        return bool(self.lo > value or self.hi < value)

    def text(self, digits: int = 3) -> str:
        return f"{self.estimate:+.{digits}g} [{self.lo:+.{digits}g}, {self.hi:+.{digits}g}]"


def bootstrap(
    groups: Sequence[Tensor], statistic: Statistic, *, against: Sequence[Tensor] | None = None,
    baseline: Statistic | None = None, reps: int = REPS, confidence: float = 0.95, seed: int = 0,
    chunk: int = 100,
) -> Interval:
    """Percentile interval of ``statistic(groups)`` or, with ``against``, of the paired difference
    ``statistic(groups) - baseline(against)`` (``baseline`` defaults to ``statistic``; it differs when the two
    sides have their own real reference, say).

    ``groups[s]`` holds seed ``s``'s per-sample data ``[n_s, ...]``; ``against[s]`` must have the same rows (the
    same noise and condition per row). Replicates are drawn from ``seed``: the interval is reproducible.
    """
    if against is not None and [len(g) for g in groups] != [len(g) for g in against]:
        raise ValueError(f"paired groups need equal sizes per seed, got {[len(g) for g in groups]} and "
                         f"{[len(g) for g in against]}")
    if not groups or min(len(g) for g in groups) < 1:
        raise ValueError("bootstrap needs at least one seed with at least one sample")
    baseline = baseline or statistic
    gen = torch.Generator().manual_seed(seed)

    def value(s: int, counts: Tensor) -> Tensor:
        v = statistic(groups[s], counts)
        return v if against is None else v - baseline(against[s], counts)

    full = [value(s, torch.ones(1, len(g), dtype=torch.float64))[0] for s, g in enumerate(groups)]
    per_seed = []  # [S, B]: each seed's metric on its own row resamples
    for s, g in enumerate(groups):
        parts = []
        for start in range(0, reps, chunk):
            b = min(chunk, reps - start)
            rows = torch.randint(len(g), (b, len(g)), generator=gen)
            counts = torch.zeros(b, len(g), dtype=torch.float64).scatter_add_(
                1, rows, torch.ones(b, len(g), dtype=torch.float64))
            parts.append(value(s, counts))
        per_seed.append(torch.cat(parts))
    table = torch.stack(per_seed).double()  # [S, B]
    if len(groups) > 1:  # redraw the seeds too: replicate b averages the drawn seeds' b-th values
        drawn = torch.randint(len(groups), (reps, len(groups)), generator=gen)  # [B, S]
        replicates = table[drawn, torch.arange(reps)[:, None]].mean(1)
    else:
        replicates = table[0]
    replicates = replicates[~replicates.isnan()]
    tail = (1 - confidence) / 2
    if len(replicates) == 0:
        lo = hi = float("nan")
    else:
        lo, hi = torch.quantile(replicates, torch.tensor([tail, 1 - tail], dtype=torch.float64)).tolist()
    return Interval(float(torch.stack(full).double().nanmean()), lo, hi, reps, len(groups),
                    min(len(g) for g in groups))


def mean_statistic(data: Tensor, counts: Tensor) -> Tensor:
    """The mean of per-sample values ``[n]`` on each resample, NaN rows (no value) left out: ``[B]``."""
    data = data.double()
    valid = ~data.isnan()
    return (counts @ torch.where(valid, data, 0.0)) / (counts @ valid.double())
