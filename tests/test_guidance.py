"""Guidance invariants: batched == separate passes, special weights, composition and negative conditions."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from crossguide import conditions as C
from crossguide.denoiser import Denoiser
from crossguide.errors import UsageError
from crossguide.guidance import Guidance, Guided, Term
from crossguide.modalities.toy.mixture import ATTRIBUTES
from crossguide.parameterization import estimate
from crossguide.rules import linear_coefficients as coefficients
from crossguide.samplers import Step
from tests.helpers import SCHEDULE, random_mlp

B = 12


def _inputs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, 2, generator=g)
    t = torch.randint(0, 1000, (B,), generator=g).float()
    ab = SCHEDULE.at(t.long()).double()
    choices = [dict(zip(ATTRIBUTES, (i % 4, i % 2), strict=True)) for i in range(B)]
    return x, t, ab, C.stack(choices, ATTRIBUTES)


def _eps(model, x, t, cond):
    with torch.no_grad():
        return model(x, t, cond)


def _call(fn: Guided, x, t, ab, state=None):
    """One guided prediction at step 0 of a 10-step trajectory."""
    with torch.no_grad():
        return fn(x, Step(t, ab, 0, 10), state)[0]


@pytest.mark.parametrize("w", [-3.0, -1.0, 0.0, 0.5, 2.0])
def test_batched_cfg_equals_separate_passes(w: float) -> None:
    model = random_mlp()
    x, t, ab, cond = _inputs()
    expected = (1 + w) * _eps(model, x, t, cond) - w * _eps(model, x, t, C.null_like(cond))
    for chunk in (None, B, 5):  # one forward, one forward per branch, ragged chunks
        got = _call(Guided(model, Guidance.cfg(w, chunk=chunk), cond), x, t, ab)
        torch.testing.assert_close(got.eps, expected, rtol=1e-5, atol=1e-5)


def test_w0_is_the_conditional_model_and_w_minus_1_the_unconditional_exactly() -> None:
    model = random_mlp()
    x, t, ab, cond = _inputs()
    for w, c in ((0.0, cond), (-1.0, C.null_like(cond))):
        fn = Guided(model, Guidance.cfg(w), cond)
        assert torch.equal(_call(fn, x, t, ab).eps, _eps(model, x, t, c))
        assert fn.forwards == B  # the zero-coefficient branch is never evaluated


def test_cfg_costs_one_batched_forward_of_two_branches() -> None:
    model = random_mlp()
    calls = []
    model.register_forward_hook(lambda m, args, out: calls.append(args[0].shape[0]))
    x, t, ab, cond = _inputs()
    _call(Guided(model, Guidance.cfg(2.0), cond), x, t, ab)
    assert calls == [2 * B]


def test_composition_with_one_term_equals_cfg_and_general_composition_matches_formula() -> None:
    model = random_mlp()
    x, t, ab, cond = _inputs()
    single = _call(Guided(model, Guidance(terms=(Term(1.5, tuple(ATTRIBUTES)),)), cond), x, t, ab)
    cfg = _call(Guided(model, Guidance.cfg(1.5), cond), x, t, ab)
    torch.testing.assert_close(single.eps, cfg.eps)

    w1, w2 = 2.0, -0.5
    g = Guidance(terms=(Term(w1, ("cluster",)), Term(w2, ("side",))))
    got = _call(Guided(model, g, cond), x, t, ab).eps
    u = _eps(model, x, t, C.null_like(cond))
    e1 = _eps(model, x, t, C.select(cond, ("cluster",)))
    e2 = _eps(model, x, t, C.select(cond, ("side",)))
    torch.testing.assert_close(got, u + (1 + w1) * (e1 - u) + (1 + w2) * (e2 - u), rtol=1e-5, atol=1e-5)


def test_negative_condition_replaces_the_unconditional_base() -> None:
    model = random_mlp()
    x, t, ab, cond = _inputs()
    neg = C.stack([{"cluster": (i + 2) % 4} for i in range(B)], ATTRIBUTES)
    w = 1.5
    got = _call(Guided(model, Guidance.cfg(w), cond, negative=neg), x, t, ab).eps
    en, ec = _eps(model, x, t, neg), _eps(model, x, t, cond)
    torch.testing.assert_close(got, en + (1 + w) * (ec - en), rtol=1e-5, atol=1e-5)


def test_cfg_is_parameterization_invariant() -> None:
    """Guiding eps, x0 or v predictions gives the same estimate: the rule is affine with weights summing to 1."""
    x, t, ab, cond = _inputs()
    base = random_mlp()

    class As(torch.nn.Module):  # the same network re-expressed as an x0- or v-predictor
        def __init__(self, kind: str):
            super().__init__()
            self.net, self.prediction, self.attributes = base, kind, base.attributes

        def forward(self, x_t, t_, c):
            est = estimate("eps", self.net(x_t, t_, c), x_t, SCHEDULE.at(t_.long()).double())
            if self.prediction == "x0":
                return est.x0
            a, s = SCHEDULE.at(t_.long())[:, None].sqrt(), (1 - SCHEDULE.at(t_.long())[:, None]).sqrt()
            return a * est.eps - s * est.x0

    ref = _call(Guided(base, Guidance.cfg(3.0), cond), x, t, ab)
    for kind in ("x0", "v"):
        got = _call(Guided(As(kind), Guidance.cfg(3.0), cond), x, t, ab)
        torch.testing.assert_close(got.x0, ref.x0, rtol=1e-4, atol=1e-4)


def test_interval_is_on_the_noise_level_and_switches_guidance_off_outside() -> None:
    model = random_mlp()
    x, _, _, cond = _inputs()
    t = torch.full((B,), 900.0)
    ab = SCHEDULE.at(t.long()).double()
    sigma = float(((1 - ab[0]) / ab[0]).sqrt())  # about 37 on the linear schedule
    outside = Guided(model, Guidance.cfg(4.0, interval=(0.3, 5.0)), cond)
    assert torch.equal(_call(outside, x, t, ab).eps, _eps(model, x, t, cond))  # plain conditional
    inside = Guided(model, Guidance.cfg(4.0, interval=(0.3, 1.01 * sigma)), cond)
    full = Guided(model, Guidance.cfg(4.0), cond)
    assert torch.equal(_call(inside, x, t, ab).eps, _call(full, x, t, ab).eps)


def test_weight_schedules_rise_as_noise_falls_and_average_to_w() -> None:
    u = torch.linspace(0, 1, 2001, dtype=torch.float64)  # progress from sigma_max to sigma_min
    lo, hi = 0.01, 100.0
    sigma = torch.exp(torch.log(torch.tensor(hi)) - u * (torch.log(torch.tensor(hi)) - torch.log(torch.tensor(lo))))
    for kind, f in (("linear", 2 * u), ("cosine", 1 - torch.cos(torch.pi * u))):
        w = Guidance.cfg(3.0, schedule=kind, schedule_range=(lo, hi)).weights_at(sigma)[0].double()
        torch.testing.assert_close(w, 3.0 * f, rtol=1e-5, atol=1e-5)  # a hand computation of Wang et al.'s forms
        assert abs(float(w.mean()) - 3.0) < 0.01 and bool((w.diff() >= -1e-6).all())
    assert torch.equal(Guidance.cfg(3.0).weights_at(sigma), torch.full((1, len(sigma)), 3.0))


def test_rescale_matches_the_conditional_std_at_phi_1() -> None:
    model = random_mlp()
    x, t, ab, cond = _inputs()
    got = _call(Guided(model, Guidance.single(5.0, "rescale", {"phi": 1.0}), cond), x, t, ab).eps
    torch.testing.assert_close(got.std(dim=1), _eps(model, x, t, cond).std(dim=1), rtol=1e-4, atol=1e-5)


def test_coefficients_sum_to_one() -> None:
    w = torch.tensor([[2.0, -3.0], [0.5, 0.0]])
    assert torch.allclose(coefficients(w).sum(0), torch.ones(2))


def test_guidance_spec_round_trips_and_rejects_bad_values() -> None:
    g = Guidance(terms=(Term(2.0, ("cluster",)), Term(0.5)), rule="rescale", options=(("phi", 0.5),),
                 interval=(0.1, 0.9), schedule="cosine")
    assert Guidance.from_json(g.to_json()) == g
    assert dict(g.options) == {"phi": 0.5, "space": "model"}  # defaults filled in: records carry every option
    for bad in (dict(rule="nope"), dict(terms=()), dict(interval=(0.5, 0.1)), dict(chunk=0),
                dict(terms=(Term(float("nan")),)), dict(schedule="steep"),
                dict(rule="rescale", options=(("phi", 2.0),)), dict(rule="rescale", options=(("psi", 0.5),))):
        with pytest.raises(UsageError):
            Guidance(**bad)


class _SelfConditioned(Denoiser):
    """An x0 model that reads its earlier estimate and records every ``x0_self`` it is given."""

    prediction = "x0"
    self_conditioning = True

    def __init__(self) -> None:
        super().__init__(ATTRIBUTES, (2,))
        self.seen: list[torch.Tensor | None] = []

    def forward(self, x_t, t, cond, x0_self=None):
        self.seen.append(x0_self)
        out = 0.5 * x_t + cond["cluster"][:, None].float()  # the null index gives another shift
        return out if x0_self is None else out + 0.25 * x0_self


def test_self_conditioning_feeds_back_the_previous_guided_estimate_through_the_trajectory_state() -> None:
    model = _SelfConditioned()
    x, t, ab, cond = _inputs()
    fn = Guided(model, Guidance.cfg(2.0), cond)
    step = Step(t, ab, 0, 10)
    with torch.no_grad():
        first, state = fn(x, step, None)
        assert model.seen == [None]  # nothing to read yet: the model's zeros
        fn(x, step._replace(index=1), state)
        fed = model.seen[-1]  # [2B, 2]: the unconditional and the conditional branch
        torch.testing.assert_close(fed, torch.cat([first.x0, first.x0]).float())
        fn(x, step, None)  # a new trajectory on the same object sees nothing of the last one
    assert model.seen[-1] is None



class _SharedBranches(Denoiser):
    """A plain MLP's outputs through the shared-branches contract: ``x_t`` of B rows, conditions of A*B rows."""

    shared_branches = True

    def __init__(self) -> None:
        super().__init__(ATTRIBUTES, (2,))
        self.mlp = random_mlp()
        self.calls: list[tuple[int, int]] = []  # (rows of x_t, rows of cond) per forward

    def forward(self, x_t, t, cond):
        rows = next(iter(cond.values())).shape[0]
        self.calls.append((x_t.shape[0], rows))
        a = rows // x_t.shape[0]
        return self.mlp(x_t.repeat(a, 1), t.repeat(a), cond)


def test_a_shared_branches_model_gets_x_t_once_for_every_branch() -> None:
    model = _SharedBranches()
    x, t, ab, cond = _inputs()
    spec = Guidance(terms=(Term(2.0, ("cluster",)), Term(1.0)))  # base + 2 terms: 3 branches
    got = _call(Guided(model, spec, cond), x, t, ab)
    assert model.calls == [(B, 3 * B)]
    expected = _call(Guided(model.mlp, spec, cond), x, t, ab)  # the plain model, x_t tiled
    torch.testing.assert_close(got.eps, expected.eps, rtol=1e-5, atol=1e-5)
    model.calls.clear()
    _call(Guided(model, Guidance.cfg(2.0, chunk=5), cond), x, t, ab)  # pieces: x_t tiled as for any model
    assert model.calls == [(5, 5)] * 4 + [(4, 4)]


WEIGHTS = st.lists(st.floats(-50, 50, allow_nan=False, allow_infinity=False), min_size=1, max_size=4)


@settings(max_examples=200, deadline=None)
@given(ws=WEIGHTS, vs=WEIGHTS, a=st.floats(-3, 3, allow_nan=False))
def test_guidance_coefficients_are_affine_in_w_and_sum_to_one(ws: list[float], vs: list[float], a: float) -> None:
    """Ho & Salimans Eq. 6 / Liu et al. Eq. 10 as coefficients of (base, term_1..K): every column sums to 1, the
    map from weights to coefficients is affine, and term i's coefficient is exactly 1 + w_i."""
    k = min(len(ws), len(vs))
    w, v = torch.tensor(ws[:k], dtype=torch.float64)[:, None], torch.tensor(vs[:k], dtype=torch.float64)[:, None]
    cw, cv = coefficients(w), coefficients(v)
    assert torch.allclose(cw.sum(0), torch.ones(1, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(coefficients(a * w + (1 - a) * v), a * cw + (1 - a) * cv, atol=1e-9)
    assert torch.equal(cw[1:], 1 + w)


@settings(max_examples=100, deadline=None)
@given(k=st.integers(1, 4), i=st.integers(0, 3))
def test_w0_keeps_only_the_term_and_w_minus_1_only_the_base(k: int, i: int) -> None:
    """A single term at w = 0 is the conditional model alone, at w = -1 the base (unconditional) alone; with K
    terms, one at w = 0 and the rest at -1 selects that term."""
    i = i % k
    w = torch.full((k, 1), -1.0, dtype=torch.float64)
    assert torch.equal(coefficients(w)[:, 0], torch.eye(k + 1, dtype=torch.float64)[0])
    w[i] = 0.0
    assert torch.equal(coefficients(w)[:, 0], torch.eye(k + 1, dtype=torch.float64)[i + 1])
