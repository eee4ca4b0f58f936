"""Guidance rules: each against a hand computation, their weight-0 and special cases, state isolation, the exact
classifier-guidance / CFG equivalence on the analytic mixture, and the plug-in registry."""

from dataclasses import dataclass
from typing import Any, ClassVar

import pytest
import torch

from crossguide import conditions as C
from crossguide import rules
from crossguide.errors import UsageError
from crossguide.guidance import Guidance, Guided
from crossguide.modalities.toy.data import MIXTURE
from crossguide.modalities.toy.mixture import ATTRIBUTES, ExactClassifier
from crossguide.parameterization import Estimate, estimate
from crossguide.rules import Output, Rule, StepInput
from crossguide.samplers import Step
from crossguide.sampling import generate
from tests.helpers import SCHEDULE, exact, random_mlp

B = 10
EVERY_RULE = ["cfg", "rescale", "threshold", "apg", "cfgpp", "zerostar", "auto", "classifier"]


def _inputs(seed: int = 0, t_value: int | None = None):
    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(B, 2, generator=g)
    t = (torch.randint(100, 900, (B,), generator=g) if t_value is None else torch.full((B,), t_value)).float()
    ab = SCHEDULE.at(t.long()).double()
    cond = C.stack([dict(zip(ATTRIBUTES, (i % 4, i % 2), strict=True)) for i in range(B)], ATTRIBUTES)
    return x, Step(t, ab, 3, 10), cond


def _pred(model, x, step, cond) -> Estimate:
    with torch.no_grad():
        return estimate(model.prediction, model(x, step.t, cond).float(), x, step.alpha_bar)


def _v(est: Estimate, ab: torch.Tensor) -> torch.Tensor:
    a, s = ab.sqrt()[:, None].float(), (1 - ab).sqrt()[:, None].float()
    return a * est.eps - s * est.x0


class _Linear(torch.nn.Module):
    """A noisy 'classifier' with a known gradient: log p(c | x) = sum over stated attributes of <u_{a,c}, x>."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.u = {a: torch.randn(len(v), 2, generator=g) for a, v in ATTRIBUTES.items()}

    def log_prob(self, x, t, cond):
        out = torch.zeros(len(x))
        for a, u in self.u.items():
            c = cond[a]
            out = out + torch.where(c >= 0, (x * u[c.clamp(min=0)]).sum(1), torch.zeros(len(x)))
        return out

    def grad(self, cond):
        return sum(torch.where(cond[a][:, None] >= 0, u[cond[a].clamp(min=0)], 0.0) for a, u in self.u.items())


def _helpers():
    return {"weak": random_mlp(seed=7), "classifier": _Linear()}


def _guided(rule: str, w: float, cond, options=None, negative=None, model=None):
    return Guided(model or random_mlp(), Guidance.single(w, rule, options), cond, negative=negative, helpers=_helpers())


def _run(fn: Guided, x, step, state=None):
    with torch.no_grad():
        return fn(x, step, state)


@pytest.mark.parametrize("rule", [r for r in EVERY_RULE if r != "cfgpp"])
def test_every_rule_at_weight_0_is_the_conditional_model_exactly(rule: str) -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    est, _ = _run(_guided(rule, 0.0, cond, model=model), x, step._replace(index=0))  # index 0: zerostar's zero-init
    ref = _pred(model, x, step, cond)
    assert torch.equal(est.x0, ref.x0) and torch.equal(est.eps, ref.eps)


def test_cfgpp_denoises_with_cfg_x0_and_renoises_with_the_unconditional_eps() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    u, c = _pred(model, x, step, C.null_like(cond)), _pred(model, x, step, cond)
    for w in (-0.6, 0.0, 1.5):  # lambda = 1 + w (Chung et al. 2024)
        est, _ = _run(_guided("cfgpp", w, cond, model=model), x, step)
        torch.testing.assert_close(est.x0, u.x0 + (1 + w) * (c.x0 - u.x0), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(est.eps, u.eps)
    est, _ = _run(_guided("cfgpp", -1.0, cond, model=model), x, step)  # lambda = 0: the unconditional model
    torch.testing.assert_close(est.x0, u.x0)
    torch.testing.assert_close(est.eps, u.eps)


@pytest.mark.parametrize("sampler", ["ddim", "dpmpp2m"])
def test_samplers_renoise_with_the_eps_cfgpp_returns(sampler: str) -> None:
    """The first step by hand: x_1 = sqrt(ab_1) x0_guided + sqrt(1 - ab_1) eps(x) (both samplers are first order
    there), where plain CFG would re-noise with the guided eps."""
    from crossguide.samplers import SAMPLERS
    from crossguide.schedules import respace

    model = random_mlp()
    x, _, cond = _inputs()
    fn = _guided("cfgpp", 0.5, cond, model=model)
    seen: list[tuple[torch.Tensor, Estimate]] = []
    with torch.no_grad():
        SAMPLERS[sampler](fn, x, SCHEDULE, 3, callback=lambda i, x_, est: seen.append((x_, est)))
    grid = respace(SCHEDULE, 3)
    t0 = grid.t[0].expand(B)
    u = _pred(model, x, Step(t0, grid.alpha_bar[0].expand(B), 0, 3), C.null_like(cond))
    torch.testing.assert_close(seen[0][1].eps, u.eps)
    ab1 = float(grid.alpha_bar[1])
    torch.testing.assert_close(seen[1][0], ab1**0.5 * seen[0][1].x0 + (1 - ab1) ** 0.5 * u.eps, rtol=1e-4, atol=1e-4)


def test_rescale_by_hand_in_v_space() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    w, phi = 4.0, 0.6
    u, c = _pred(model, x, step, C.null_like(cond)), _pred(model, x, step, cond)
    vu, vc = _v(u, step.alpha_bar), _v(c, step.alpha_bar)
    cfg = vc + w * (vc - vu)
    want = phi * cfg * vc.std(dim=1, keepdim=True) / cfg.std(dim=1, keepdim=True) + (1 - phi) * cfg
    est, _ = _run(_guided("rescale", w, cond, {"phi": phi, "space": "v"}, model=model), x, step)
    torch.testing.assert_close(_v(est, step.alpha_bar), want, rtol=1e-4, atol=1e-4)


def test_threshold_by_hand() -> None:
    model = random_mlp()
    x, step, cond = _inputs(t_value=50)
    w, p = 6.0, 50.0
    u, c = _pred(model, x, step, C.null_like(cond)), _pred(model, x, step, cond)
    x0 = c.x0 + w * (c.x0 - u.x0)
    scale = torch.quantile(x0.abs(), p / 100, dim=1, keepdim=True).clamp(min=0.5)
    want = x0.clamp(-scale, scale) * 0.5 / scale
    est, _ = _run(_guided("threshold", w, cond, {"p": p, "bound": 0.5}, model=model), x, step)
    torch.testing.assert_close(est.x0, want, rtol=1e-5, atol=1e-5)
    assert bool((est.x0.abs() <= 0.5 + 1e-6).all())
    a, s = step.alpha_bar.sqrt()[:, None].float(), (1 - step.alpha_bar).sqrt()[:, None].float()
    torch.testing.assert_close(a * est.x0 + s * est.eps, x, rtol=1e-4, atol=1e-4)  # eps follows the new x0


def test_apg_by_hand_with_threshold_and_momentum_over_two_steps() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    w, eta, r, beta = 2.0, 0.3, 0.5, -0.5
    u, c = _pred(model, x, step, C.null_like(cond)), _pred(model, x, step, cond)
    fn = _guided("apg", w, cond, {"eta": eta, "r": r, "momentum": beta}, model=model)
    first, state = _run(fn, x, step)
    second, _ = _run(fn, x, step, state)  # same inputs, so the running average is d + beta d

    def by_hand(d):
        d = d * torch.clamp(r / d.norm(dim=1, keepdim=True), max=1.0)
        unit = c.x0 / c.x0.norm(dim=1, keepdim=True)
        par = (d * unit).sum(1, keepdim=True) * unit
        return c.x0 + w * ((d - par) + eta * par)

    d = c.x0 - u.x0
    torch.testing.assert_close(first.x0, by_hand(d), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(second.x0, by_hand(d + beta * d), rtol=1e-5, atol=1e-5)


def test_apg_with_eta_1_and_no_threshold_or_momentum_is_cfg() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    for w in (-1.0, 0.5, 3.0):
        apg, _ = _run(_guided("apg", w, cond, {"eta": 1.0}, model=model), x, step)
        cfg, _ = _run(_guided("cfg", w, cond, model=model), x, step)
        torch.testing.assert_close(apg.x0, cfg.x0, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(apg.eps, cfg.eps, rtol=1e-4, atol=1e-4)


def test_zerostar_by_hand_and_without_zero_init_at_unit_scale_is_cfg() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    w = 2.5
    u, c = _pred(model, x, step, C.null_like(cond)), _pred(model, x, step, cond)
    fu, fc = u.eps - u.x0, c.eps - c.x0  # flow velocities
    scale = (fc * fu).sum(1, keepdim=True) / ((fu * fu).sum(1, keepdim=True) + 1e-8)
    want = scale * fu + (1 + w) * (fc - scale * fu)
    est, _ = _run(_guided("zerostar", w, cond, {"zero_steps": 0}, model=model), x, step._replace(index=0))
    torch.testing.assert_close(est.eps - est.x0, want, rtol=1e-4, atol=1e-4)

    # zero-init: the first step predicts zero velocity, x0 = eps = x_t / (a + s)
    est, _ = _run(_guided("zerostar", w, cond, {"zero_steps": 2}, model=model), x, step._replace(index=1))
    a, s = step.alpha_bar.sqrt()[:, None].float(), (1 - step.alpha_bar).sqrt()[:, None].float()
    torch.testing.assert_close(est.x0, x / (a + s))
    torch.testing.assert_close(est.eps, x / (a + s))

    class Parallel(torch.nn.Module):  # eps(x, c) = 2 eps(x): s* = 2 in eps space, and zerostar is CFG with 2 eps(x)
        prediction, attributes = "eps", ATTRIBUTES

        def forward(self, x_, t, c):
            return x_ * (1 + (c["cluster"] >= 0).float()[:, None])

    est, _ = _run(_guided("zerostar", w, cond, {"zero_steps": 0, "space": "eps"}, model=Parallel()), x, step)
    torch.testing.assert_close(est.eps, 2 * x, rtol=1e-5, atol=1e-5)  # s* u + (1 + w)(c - s* u) = c


def test_autoguidance_by_hand_against_the_weak_model_on_the_same_condition() -> None:
    model, weak = random_mlp(), _helpers()["weak"]
    x, step, cond = _inputs()
    w = 1.5
    good, bad = _pred(model, x, step, cond), _pred(weak, x, step, cond)
    fn = Guided(model, Guidance.single(w, "auto"), cond, helpers={"weak": weak})
    est, _ = _run(fn, x, step)
    torch.testing.assert_close(est.eps, bad.eps + (1 + w) * (good.eps - bad.eps), rtol=1e-5, atol=1e-5)
    assert fn.forwards == 2 * B  # one forward of each network


def test_classifier_guidance_by_hand_with_a_linear_classifier() -> None:
    model = random_mlp()
    x, step, cond = _inputs()
    w = 3.0
    s = (1 - step.alpha_bar).sqrt()[:, None].float()
    grad = _Linear().grad(cond)
    c, u = _pred(model, x, step, cond), _pred(model, x, step, C.null_like(cond))
    est, _ = _run(_guided("classifier", w, cond, model=model), x, step)
    torch.testing.assert_close(est.eps, c.eps - s * w * grad, rtol=1e-5, atol=1e-5)
    est, _ = _run(_guided("classifier", w, cond, {"on": "uncond"}, model=model), x, step)
    torch.testing.assert_close(est.eps, u.eps - s * (1 + w) * grad, rtol=1e-5, atol=1e-5)


def _exact_pair(w: float, x, step, cond):
    model = exact()
    clf = Guided(model, Guidance.single(w, "classifier"), cond, helpers={"classifier": ExactClassifier(MIXTURE,
                                                                                                       SCHEDULE)})
    cfg = Guided(model, Guidance.cfg(w), cond)
    return _run(clf, x, step)[0], _run(cfg, x, step)[0]


@pytest.mark.parametrize("w", [-2.0, 1.0, 4.0])
def test_exact_classifier_guidance_equals_cfg_per_step(w: float) -> None:
    """Bayes: grad log p(c | x_t) = grad log p(x_t | c) - grad log p(x_t), so with the mixture's exact denoiser and
    exact posterior, classifier guidance at scale w is CFG at w (Dhariwal & Nichol 2021; Ho & Salimans 2021)."""
    for t_value in (20, 300, 800):
        x, step, cond = _inputs(t_value=t_value)
        cond = C.stack([{"cluster": i % 4} if i % 3 else {"cluster": i % 4, "side": i % 2} for i in range(B)],
                       ATTRIBUTES)  # partial conditions too
        got, want = _exact_pair(w, x, step, cond)
        torch.testing.assert_close(got.eps, want.eps, rtol=0, atol=1e-5)


def test_exact_classifier_guidance_equals_cfg_over_whole_trajectories() -> None:
    choices = [c for c in C.all_choices(ATTRIBUTES) for _ in range(16)]
    cond = C.stack(choices, ATTRIBUTES)
    helpers = {"classifier": ExactClassifier(MIXTURE, SCHEDULE)}
    for sampler, w in (("ddim", 4.0), ("dpmpp2m", -2.0), ("ddpm", 1.0)):
        a = generate(exact(), SCHEDULE, cond, Guidance.single(w, "classifier"), sampler=sampler, steps=25, seed=3,
                     helpers=helpers).samples
        b = generate(exact(), SCHEDULE, cond, Guidance.cfg(w), sampler=sampler, steps=25, seed=3).samples
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)


def test_rule_state_lives_in_the_trajectory() -> None:
    """APG's running average: two trajectories on one Guided object, and a repeated call with the same state,
    give identical results; a stateful call differs from a fresh one."""
    model = random_mlp()
    x, step, cond = _inputs()
    fn = _guided("apg", 2.0, cond, {"momentum": -0.5}, model=model)
    first, state = _run(fn, x, step)
    again, state2 = _run(fn, x, step)  # a second trajectory: fresh state
    assert torch.equal(first.x0, again.x0) and torch.equal(state.rule, state2.rule)
    later, _ = _run(fn, x, step, state)
    repeat, _ = _run(fn, x, step, state)  # a corrector re-evaluation with the same state
    assert torch.equal(later.x0, repeat.x0) and not torch.equal(later.x0, first.x0)
    cond2 = C.stack([{"cluster": (i + 1) % 4, "side": i % 2} for i in range(B)], ATTRIBUTES)
    for sampler in ("ddim", "dpmpp2m"):
        runs = [generate(model, SCHEDULE, c, Guidance.single(2.0, "apg", {"momentum": -0.5}), sampler=sampler,
                         steps=8, seed=1).samples for c in (cond, cond2, cond)]
        assert torch.equal(runs[0], runs[2])  # the trajectory in between left nothing behind


def test_rules_that_take_no_negative_condition_or_lack_a_helper_say_so() -> None:
    x, step, cond = _inputs()
    for rule in ("auto", "classifier"):
        with pytest.raises(UsageError, match="negative"):
            _guided(rule, 1.0, cond, negative=C.null_like(cond))
        with pytest.raises(UsageError, match="needs a"):
            Guided(random_mlp(), Guidance.single(1.0, rule), cond)


def test_unknown_rules_and_options_get_one_line_errors_that_list_the_valid_ones() -> None:
    with pytest.raises(UsageError, match="valid: apg, auto, cfg"):
        rules.make("cgf")
    with pytest.raises(UsageError, match="valid: eta, r, momentum, space"):
        rules.make("apg", {"beta": "0.5"})
    with pytest.raises(UsageError, match="must be float"):
        rules.make("apg", {"eta": "high"})
    for bad in ({"momentum": "1.5"}, {"r": "-1"}, {"space": "pixels"}):
        with pytest.raises(UsageError):
            rules.make("apg", bad)


@dataclass(frozen=True)
class HalfCFG(Rule):
    """A plug-in written in a test: CFG at half the weight."""

    name: ClassVar[str] = "test-half"

    def __call__(self, s: StepInput, state: Any) -> Output:
        return Output(rules.combine(s, rules.linear_coefficients(s.weights / 2)))


def test_a_rule_registered_from_a_test_file_runs_like_a_shipped_one() -> None:
    rules.register(HalfCFG)
    model = random_mlp()
    x, step, cond = _inputs()
    got, _ = _run(_guided("test-half", 4.0, cond, model=model), x, step)
    want, _ = _run(_guided("cfg", 2.0, cond, model=model), x, step)
    torch.testing.assert_close(got.eps, want.eps)
    with pytest.raises(TypeError):
        rules.register(int)  # type: ignore[arg-type]


def test_a_broken_plug_in_is_reported_by_name_and_the_others_still_load(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from crossguide import plugins

    class Entry:
        def __init__(self, name: str, obj: Any):
            self.name, self.obj = name, obj

        def load(self) -> Any:
            if isinstance(self.obj, Exception):
                raise self.obj
            return self.obj

    entries = [Entry("bad", ImportError("no module named nowhere")), Entry("test-half", HalfCFG)]
    monkeypatch.setattr(metadata, "entry_points", lambda group: entries)
    found: dict[str, Any] = {}
    broken: dict[str, str] = {}
    plugins.load_group(rules.GROUP, lambda name, obj: found.__setitem__(name, obj), broken)
    assert found == {"test-half": HalfCFG} and broken == {"bad": "ImportError: no module named nowhere"}
    with pytest.raises(UsageError, match="'bad' is installed but failed to load"):
        plugins.lookup("guidance rule", "bad", found, broken)


def test_setting_ids_name_rule_options_and_wrappers_and_keep_plain_cfg_ids() -> None:
    from crossguide.pipeline import Setting

    plain = Setting(Guidance.cfg(1.0), "ddim", 50).id(0)
    assert plain == "all_w1-ddim50-s0"  # unchanged, so earlier records are still found
    variants = [Guidance.single(1.0, "apg"), Guidance.single(1.0, "apg", {"eta": 1.0}),
                Guidance.cfg(1.0, interval=(0.3, 5.0)), Guidance.cfg(1.0, schedule="linear")]
    ids = {Setting(g, "ddim", 50).id(0) for g in variants}
    assert len(ids) == len(variants) and plain not in ids
    assert "apg_eta1" in Setting(variants[1], "ddim", 50).id(0)
