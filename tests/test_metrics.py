"""Metrics against analytic values and an independent reference (scipy's matrix square root)."""

import numpy as np
import pytest
import torch
from scipy import linalg
from torch import nn

from crossguide import metrics as M
from crossguide.conditions import NULL
from crossguide.data import ConditionalDataset
from crossguide.judge import FitConfig, Judge, fit, predict


def test_frechet_distance_matches_scipy_sqrtm_reference() -> None:
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 4, generator=g) @ torch.randn(4, 4, generator=g)
    b = torch.randn(600, 4, generator=g) @ torch.randn(4, 4, generator=g) + 0.5
    A, B = a.double().numpy(), b.double().numpy()  # noqa: N806
    ca, cb = np.cov(A, rowvar=False), np.cov(B, rowvar=False)
    ref = ((A.mean(0) - B.mean(0)) ** 2).sum() + np.trace(ca + cb - 2 * linalg.sqrtm(ca @ cb).real)
    assert M.frechet_distance(a, b) == pytest.approx(ref, rel=1e-6)


def test_frechet_distance_of_shifted_gaussians() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(20000, 2, generator=g)
    assert M.frechet_distance(x, x) == pytest.approx(0.0, abs=1e-8)
    assert M.frechet_distance(x, x + torch.tensor([3.0, 4.0])) == pytest.approx(25.0, rel=1e-6)


def test_prdc_identical_and_disjoint() -> None:
    g = torch.Generator().manual_seed(2)
    x = torch.randn(300, 3, generator=g)
    same = M.prdc(x, x.clone())
    assert same["precision"] == 1.0 and same["recall"] == 1.0 and same["coverage"] == 1.0
    far = M.prdc(x, x + 100)
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    # samples collapsed onto one real point: precise but with no recall/coverage to speak of
    collapsed = M.prdc(x, x[:1].repeat(300, 1))
    assert collapsed["precision"] == 1.0 and collapsed["coverage"] < 0.05


def test_diversity_is_within_group_mean_pairwise_distance() -> None:
    f = torch.tensor([[0.0, 0.0], [3.0, 4.0], [10.0, 10.0], [10.0, 10.0]])
    assert M.diversity(f, ["a", "a", "b", "b"]) == pytest.approx((5.0 + 0.0) / 2)


def test_adherence_joint_and_per_attribute_with_unrequested_attributes() -> None:
    req = {"a": torch.tensor([0, 1, 1, -1]), "b": torch.tensor([2, 2, -1, 0])}
    pred = {"a": torch.tensor([0, 0, 1, 1]), "b": torch.tensor([2, 2, 0, 1])}
    out = M.adherence(req, pred)
    assert out["adherence/a"] == pytest.approx(2 / 3)
    assert out["adherence/b"] == pytest.approx(2 / 3)
    assert out["adherence"] == pytest.approx(2 / 4)  # rows 0 and 2 have every requested attribute right
    assert M.confusion(req["a"], pred["a"], 2) == [[1, 0, 0], [1, 1, 0]]
    # a judge that finds no value (-1, e.g. an attribute never named) lands in the last, "none" column
    assert M.confusion(torch.tensor([0, 1, 1]), torch.tensor([-1, 1, -1]), 2) == [[0, 0, 1], [0, 1, 1]]


def test_mean_ci_and_spearman() -> None:
    mean, half = M.mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.302653 * 1.0 / np.sqrt(3), rel=1e-5)
    assert M.mean_ci([5.0]) == (5.0, 0.0)
    assert M.spearman([0, 1, 2, 3], [0.1, 0.5, 0.4, 0.9]) == pytest.approx(0.8)


def test_judge_learns_from_and_skips_unlabelled_examples() -> None:
    """A NULL label (the example does not state the attribute) is left out of the judge's loss and accuracy."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(600, 4, generator=g)
    sign = (x[:, 0] > 0).long()
    label = torch.where(torch.rand(600, generator=g) < 0.3, torch.full_like(sign, NULL), sign)
    attrs = {"sign": ["neg", "pos"]}
    train = ConditionalDataset("toy", x[:400], {"sign": label[:400]}, attrs)
    test = ConditionalDataset("toy", x[400:], {"sign": label[400:]}, attrs)
    judge = Judge(nn.Linear(4, 8), 8, attrs)
    acc, _ = fit(judge, train, test, FitConfig(steps=200, batch_size=64, lr=1e-2), progress=False)
    assert acc["sign"] > 0.95 and acc["joint"] == acc["sign"]  # finite: NULL rows neither crash nor count
    _, pred = predict(judge, test.x)
    keep = test.cond["sign"] != NULL
    assert acc["sign"] == (pred["sign"][keep] == test.cond["sign"][keep]).double().mean().item()
