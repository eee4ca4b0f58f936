"""KID against hand computation and torchmetrics, FD on resamples, and the paired bootstrap of crossguide.stats."""

import itertools

import pytest
import torch

from crossguide import metrics as M
from crossguide import stats


def _kid_by_hand(real: torch.Tensor, fake: torch.Tensor) -> float:
    """The unbiased MMD^2 with k(x, y) = (x.y/d + 1)^3, written as the three sums of Binkowski et al. (2018)."""
    d = real.shape[1]

    def k(x: torch.Tensor, y: torch.Tensor) -> float:
        return float((x @ y / d + 1) ** 3)

    m, n = len(real), len(fake)
    rr = sum(k(real[i], real[j]) for i, j in itertools.permutations(range(m), 2)) / (m * (m - 1))
    ff = sum(k(fake[i], fake[j]) for i, j in itertools.permutations(range(n), 2)) / (n * (n - 1))
    rf = sum(k(real[i], fake[j]) for i in range(m) for j in range(n)) / (m * n)
    return rr + ff - 2 * rf


def test_kid_matches_hand_computation_and_its_jackknife() -> None:
    g = torch.Generator().manual_seed(0)
    real, fake = torch.randn(9, 3, generator=g).double(), torch.randn(7, 3, generator=g).double() + 0.5
    value, se = M.kid(real, fake)
    assert value == pytest.approx(_kid_by_hand(real, fake), rel=1e-10)
    # the delete-one jackknife, recomputed by leaving each row out explicitly
    var = 0.0
    for side in ("real", "fake"):
        rows = real if side == "real" else fake
        loo = torch.tensor([M.kid(torch.cat([rows[:i], rows[i + 1:]]), fake)[0] if side == "real"
                            else M.kid(real, torch.cat([rows[:i], rows[i + 1:]]))[0] for i in range(len(rows))],
                           dtype=torch.float64)
        var += float((len(rows) - 1) / len(rows) * ((loo - loo.mean()) ** 2).sum())
    assert se == pytest.approx(var ** 0.5, rel=1e-8)


@pytest.mark.filterwarnings("ignore:Metric `Kernel Inception Distance` will save")
def test_kid_matches_torchmetrics() -> None:
    kid_module = pytest.importorskip("torchmetrics.image.kid", reason="torchmetrics (dev extra) not installed")
    g = torch.Generator().manual_seed(1)
    real, fake = torch.randn(40, 8, generator=g).double(), torch.randn(40, 8, generator=g).double() + 0.3
    ref = kid_module.KernelInceptionDistance(feature=torch.nn.Identity(), subsets=1, subset_size=40).double()
    ref.update(real, real=True)
    ref.update(fake, real=False)
    assert M.kid(real, fake)[0] == pytest.approx(float(ref.compute()[0]), rel=1e-9)


def test_kid_is_unbiased_where_fd_is_not() -> None:
    """Two samples of one distribution: KID averages to 0 at any n (within its standard errors); FD is positive
    and shrinks as n grows (its bias ~ 1/n), which is why FD curves move with the sample count."""
    g = torch.Generator().manual_seed(2)
    kids, fds = {}, {}
    for n in (20, 80):
        draws = [(torch.randn(n, 6, generator=g), torch.randn(n, 6, generator=g)) for _ in range(60)]
        kids[n] = [M.kid(a, b) for a, b in draws]
        fds[n] = sum(M.frechet_distance(a, b) for a, b in draws) / len(draws)
    for n, values in kids.items():
        mean = sum(v for v, _ in values) / len(values)
        typical_se = sum(se for _, se in values) / len(values) / len(values) ** 0.5
        assert abs(mean) < 3 * typical_se, (n, mean, typical_se)
    assert fds[20] > 1.5 * fds[80] > 0


def test_resampled_fd_and_kid_equal_the_metrics_on_repeated_rows() -> None:
    g = torch.Generator().manual_seed(3)
    real, fake = torch.randn(30, 4, generator=g), torch.randn(25, 4, generator=g) * 1.3
    rows = torch.randint(25, (25,), generator=g)
    counts = torch.bincount(rows, minlength=25).double()[None]
    assert M.frechet_statistic(real)(fake, counts).item() == pytest.approx(
        M.frechet_distance(real, fake[rows]), rel=1e-8)
    # KID on a resample: pairs of distinct positions, which a copied row makes equal rows; by hand on the copy
    assert M.kid_statistic(real)(fake, counts).item() == pytest.approx(_kid_by_hand(real.double(),
                                                                                    fake[rows].double()), rel=1e-8)


def test_paired_interval_sees_a_shift_that_separate_intervals_do_not() -> None:
    """Setting B is setting A plus 0.1 on every shared-noise sample; sample-to-sample spread (sd 1) hides the
    shift from two separate intervals, but the paired difference's interval excludes 0 and covers 0.1."""
    g = torch.Generator().manual_seed(4)
    a = [torch.randn(200, generator=g) for _ in range(2)]
    b = [x + 0.1 + 0.01 * torch.randn(200, generator=g) for x in a]
    ia, ib = stats.bootstrap(a, stats.mean_statistic), stats.bootstrap(b, stats.mean_statistic)
    assert ia.hi > ib.lo  # the separate intervals overlap
    diff = stats.bootstrap(b, stats.mean_statistic, against=a)
    assert diff.excludes(0.0) and diff.lo < 0.1 < diff.hi
    assert diff.estimate == pytest.approx(float(torch.cat(b).double().mean() - torch.cat(a).double().mean()), rel=1e-9)
    assert stats.bootstrap(a, stats.mean_statistic, against=a).hi == 0.0  # a setting against itself: exactly 0


def test_bootstrap_interval_coverage_and_seed_level_spread() -> None:
    """About 95% of intervals for a true difference of 0 contain 0; a seed whose mean differs widens the
    interval (the seeds are resampled, not only the rows)."""
    g = torch.Generator().manual_seed(5)
    covered = 0
    for trial in range(100):
        a = [torch.randn(60, generator=g)]
        b = [torch.randn(60, generator=g)]  # independent rows: no pairing benefit, a true difference of 0
        covered += not stats.bootstrap(b, stats.mean_statistic, against=a, reps=400, seed=trial).excludes(0.0)
    assert 88 <= covered <= 100
    same = [torch.randn(100, generator=g) for _ in range(3)]
    apart = [x + shift for x, shift in zip(same, (0.0, 1.0, 2.0), strict=True)]
    assert stats.bootstrap(apart, stats.mean_statistic).half > 2 * stats.bootstrap(same, stats.mean_statistic).half


def test_mean_statistic_leaves_nan_rows_out_and_bootstrap_rejects_unpaired_groups() -> None:
    data = torch.tensor([1.0, float("nan"), 0.0, 1.0])
    assert stats.mean_statistic(data, torch.ones(1, 4, dtype=torch.float64)).item() == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="equal sizes"):
        stats.bootstrap([torch.ones(3)], stats.mean_statistic, against=[torch.ones(4)])
