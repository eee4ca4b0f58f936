"""Conditions, dropout, schedules, respacing and parameterization conversions."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossguide import conditions as C
from crossguide import schedules as S
from crossguide.errors import UsageError
from crossguide.parameterization import estimate, noise, target

ATTRS = {"shape": ["circle", "square", "star"], "color": ["red", "blue"]}


def test_parse_resolves_names_and_rejects_unknown_ones_with_the_valid_choices() -> None:
    assert C.parse("shape=star, color=red", ATTRS) == {"shape": 2, "color": 0}
    assert C.parse("", ATTRS) == {}
    with pytest.raises(UsageError, match=r"unknown attribute 'size'; valid: shape, color"):
        C.parse("size=big", ATTRS)
    with pytest.raises(UsageError, match=r"unknown value 'green' for attribute 'color'; valid: red, blue"):
        C.parse("color=green", ATTRS)
    with pytest.raises(UsageError, match="not of the form"):
        C.parse("shape", ATTRS)


def test_stack_select_and_validate() -> None:
    cond = C.stack([{"shape": 1}, {"shape": 2, "color": 1}], ATTRS)
    assert cond["color"].tolist() == [-1, 1]
    assert C.select(cond, ("color",))["shape"].tolist() == [-1, -1]
    assert C.unstack(cond) == [{"shape": 1}, {"shape": 2, "color": 1}]
    with pytest.raises(UsageError, match="attribute 'shape' has value 3"):
        C.validate({"shape": torch.tensor([3]), "color": torch.tensor([0])}, ATTRS)


def test_two_level_dropout_rates() -> None:
    n = 20000
    cond = C.stack([{"shape": 0, "color": 1}] * n, ATTRS)
    g = torch.Generator().manual_seed(0)
    dropped = C.drop(cond, p_uncond=0.2, p_attr=0.1, generator=g)
    both = ((dropped["shape"] == -1) & (dropped["color"] == -1)).double().mean().item()
    one = (dropped["shape"] == -1).double().mean().item()
    assert abs(both - (0.2 + 0.8 * 0.01)) < 0.015  # all dropped, or each dropped independently
    assert abs(one - (0.2 + 0.8 * 0.1)) < 0.015
    assert torch.equal(C.drop(cond, 0.0, 0.0, g)["shape"], cond["shape"])
    assert bool((C.drop(cond, 1.0, 0.0, g)["color"] == -1).all())
    with pytest.raises(UsageError, match="p_uncond must be in"):
        C.drop(cond, -0.1, 0.0, g)


@pytest.mark.parametrize("name", ["linear", "cosine", "sqrt"])
def test_schedules_are_decreasing_in_the_unit_interval(name: str) -> None:
    ab = S.make(name, 1000).alpha_bar
    assert ab.shape == (1000,)
    assert bool((ab > 0).all()) and bool((ab < 1).all())
    assert bool((ab[1:] < ab[:-1]).all())


def test_schedule_formulas() -> None:
    T = 1000  # noqa: N806
    cos = S.cosine(T).alpha_bar
    f = lambda t: math.cos((t / T + 0.008) / 1.008 * math.pi / 2) ** 2  # Nichol & Dhariwal Eq. 17
    assert cos[499].item() == pytest.approx(f(500) / f(0), rel=1e-9)
    assert S.sqrt(2000).alpha_bar[999].item() == pytest.approx(1 - math.sqrt(1000 / 2000 + 1e-4))
    lin = S.linear(T)
    assert lin.alpha_bar[0].item() == pytest.approx(1 - 1e-4)


def test_respace_and_errors() -> None:
    s = S.linear(1000)
    grid = S.respace(s, 10)
    assert grid.t[0].item() == 999 and grid.t[-1].item() == 0 and len(grid.t) == 10
    assert torch.equal(grid.alpha_bar, s.alpha_bar[grid.t.long()])
    with pytest.raises(UsageError, match="steps must be an integer >= 1"):
        S.respace(s, 0)
    with pytest.raises(UsageError, match="exceeds"):
        S.respace(s, 1001)
    fast = S.from_betas("x", torch.linspace(1e-4, 0.05, 50), grids={3: (torch.tensor([40.5, 20.0, 1.0]),
                                                                         torch.tensor([0.1, 0.5, 0.9]))})
    assert S.respace(fast, 3).t.tolist() == [40.5, 20.0, 1.0]
    with pytest.raises(UsageError, match="unknown schedule 'nope'"):
        S.make("nope", 10)


@settings(max_examples=50, deadline=None)
@given(ab=st.floats(0.001, 0.999), kind=st.sampled_from(["eps", "x0", "v"]))
def test_parameterizations_round_trip(ab: float, kind: str) -> None:
    g = torch.Generator().manual_seed(0)
    x0, eps = torch.randn(4, 3, 5, generator=g), torch.randn(4, 3, 5, generator=g)
    alpha_bar = torch.full((4,), ab, dtype=torch.float64)
    x_t = noise(x0, eps, alpha_bar)
    est = estimate(kind, target(kind, x0, eps, alpha_bar), x_t, alpha_bar)
    torch.testing.assert_close(est.x0, x0, rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(est.eps, eps, rtol=1e-3, atol=1e-3)
