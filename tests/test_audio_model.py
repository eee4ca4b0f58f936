"""DiffWave, its fast convolution and DiffWave's schedules."""

import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import Tensor

from crossguide import conditions as C
from crossguide.conditions import Condition
from crossguide.errors import UsageError
from crossguide.guidance import Guidance
from crossguide.modalities.audio import diffwave
from crossguide.modalities.audio.conv import Conv1d
from crossguide.modalities.audio.diffwave import DiffWave
from crossguide.modalities.audio.schedules import FAST_BETAS
from crossguide.pipeline import load_model
from crossguide.sampling import generate
from crossguide.schedules import make, respace

REFERENCE = Path(diffwave.__file__).parent / "reference" / "denoiser-audio-notes-quick"

ATTRS = {"pitch": ["C", "D", "E"], "timbre": ["sine", "saw"]}


def _cond(b: int) -> dict[str, torch.Tensor]:
    return {"pitch": torch.arange(b) % 3, "timbre": torch.arange(b) % 2}


def _live(model: DiffWave) -> DiffWave:
    """The zero-initialised output layer hides everything; give it weights for structural tests."""
    torch.nn.init.normal_(model.out.weight)
    return model


def _plain_forward(model: DiffWave, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
    """DiffWave's forward written plainly from the paper (Kong et al. 2020, Fig. 2) with torch's own convolutions,
    as the model computed it before its condition-independent work was shared (issue 15)."""
    x = torch.relu(F.conv1d(x_t, model.inp.weight, model.inp.bias))  # [B, C, L]
    step, c = model.time(t), model.cond(cond)
    skips = torch.zeros_like(x)
    for layer in model.res:
        d = layer.dilated.dilation[0]
        y = F.conv1d(x + layer.step(step)[..., None], layer.dilated.weight, layer.dilated.bias, padding=d,
                     dilation=d) + layer.cond(c)[..., None]  # [B, 2C, L]
        gate, filt = y.chunk(2, dim=1)
        residual, skip = F.conv1d(torch.sigmoid(gate) * torch.tanh(filt), layer.out.weight,
                                  layer.out.bias).chunk(2, dim=1)
        x, skips = (x + residual) / math.sqrt(2.0), skips + skip
    h = torch.relu(F.conv1d(skips / math.sqrt(model.layers), model.skip.weight, model.skip.bias))
    return F.conv1d(h, model.out.weight, model.out.bias)  # [B, 1, L]


class _Plain(DiffWave):
    shared_branches = False  # the plain forward takes x_t tiled, one row per condition row

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:
        return _plain_forward(self, x_t, t, cond)


def _random_cond(b: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    return {"pitch": torch.randint(-1, 3, (b,), generator=g), "timbre": torch.randint(-1, 2, (b,), generator=g)}


@pytest.mark.parametrize(("length", "layers", "cycle"), [(1, 3, 3), (37, 6, 3), (300, 8, 8)])
def test_forward_and_gradients_match_the_plain_implementation(length: int, layers: int, cycle: int) -> None:
    torch.manual_seed(0)
    model = _live(DiffWave(ATTRS, length, layers=layers, channels=8, cycle=cycle, step_dim=16, cond_dim=8))
    g = torch.Generator().manual_seed(1)
    x, t, cond = torch.randn(5, 1, length, generator=g), torch.rand(5, generator=g) * 49, _random_cond(5, g)
    out, ref = model(x, t, cond), _plain_forward(model, x, t, cond)
    assert torch.allclose(out, ref, atol=1e-5, rtol=0)
    upstream = torch.randn(out.shape, generator=g)
    params = list(model.parameters())
    for ours, theirs in zip(torch.autograd.grad(out, params, upstream), torch.autograd.grad(ref, params, upstream),
                            strict=True):
        assert torch.allclose(ours, theirs, atol=1e-5 * float(theirs.abs().max()) + 1e-7, rtol=0)
    with torch.no_grad():  # the inference path (pieces on a CPU) too
        assert torch.allclose(model(x, t, cond), ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("piece", [1, 3 * 8 * 40, 10**9])  # elements of a piece: one row, 3 rows, everything
def test_shared_branches_equal_separate_forwards(piece: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(diffwave, "CPU_PIECE", piece)
    torch.manual_seed(0)
    model = _live(DiffWave(ATTRS, 40, layers=4, channels=8, cycle=2, step_dim=16, cond_dim=8)).eval()
    g = torch.Generator().manual_seed(2)
    x, t = torch.randn(7, 1, 40, generator=g), torch.rand(7, generator=g) * 49
    branches = [_random_cond(7, g), C.null_like(_random_cond(7, g)), _random_cond(7, g)]
    with torch.no_grad():
        shared = model(x, t, C.concat(branches))  # [3*7, 1, 40]: x_t and t given once
        separate = torch.cat([model(x, t, c) for c in branches])
        plain = _plain_forward(model, x.repeat(3, 1, 1), t.repeat(3), C.concat(branches))
    assert model.shared_branches
    assert torch.allclose(shared, separate, atol=1e-5, rtol=0)
    assert torch.allclose(shared, plain, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="multiple"):
        model(x[:4], t[:4], branches[0])


def test_reference_checkpoint_loads_and_samples_as_before() -> None:
    model, schedule, config = load_model(REFERENCE)
    plain = _Plain(config["attributes"], **config["model"])
    assert list(plain.state_dict()) == list(model.state_dict())  # the checkpoint's keys: load_model is strict
    plain.load_state_dict(model.state_dict())
    g = torch.Generator().manual_seed(3)
    x, t = torch.randn(40, 1, model.length, generator=g), torch.rand(40, generator=g) * (schedule.T - 1)
    cond = C.stack([{"pitch": i % 8, "timbre": i % 4} for i in range(40)], model.attributes)
    both = C.concat([cond, C.null_like(cond)])
    with torch.no_grad():  # 80 rows: pieces of 16 rows of x_t and their two branches
        assert torch.allclose(model(x, t, both), _plain_forward(model, x.repeat(2, 1, 1), t.repeat(2), both),
                              atol=1e-5, rtol=0)
    few = C.index(cond, slice(0, 6))
    ours, theirs = (generate(m, schedule, few, Guidance.cfg(2.0), steps=6, seed=0).samples for m in (model, plain))
    assert torch.allclose(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("length", [1, 37, 256])
def test_shapes_and_zero_init(length: int) -> None:
    torch.manual_seed(0)
    model = DiffWave(ATTRS, length, layers=4, channels=8, cycle=2, step_dim=16, cond_dim=8)
    x = torch.randn(3, 1, length)
    out = model(x, torch.tensor([0.0, 4.5, 49.0]), _cond(3))
    assert model.sample_shape == (1, length)
    assert out.shape == x.shape
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output projection
    assert model.config() == {"length": length, "layers": 4, "channels": 8, "cycle": 2, "step_dim": 16, "cond_dim": 8}


@pytest.mark.parametrize(("layers", "cycle"), [(3, 3), (6, 3), (10, 10)])
def test_receptive_field_matches_gradient_support(layers: int, cycle: int) -> None:
    torch.manual_seed(0)
    model = _live(DiffWave(ATTRS, 4096, layers=layers, channels=16, cycle=cycle, step_dim=8, cond_dim=4))
    assert model.receptive_field == 1 + 2 * sum(2 ** (i % cycle) for i in range(layers))
    x = torch.randn(1, 1, 4096, requires_grad=True)
    model(x, torch.tensor([10.0]), _cond(1))[0, 0, 2048].backward()
    support = x.grad[0, 0].ne(0).nonzero().flatten()
    assert int(support.max() - support.min()) + 1 == model.receptive_field
    assert int(support.min()) == 2048 - model.receptive_field // 2  # centred: non-causal convolutions


def test_condition_and_null_rows_change_the_output() -> None:
    torch.manual_seed(0)
    model = _live(DiffWave(ATTRS, 64, layers=3, channels=8, cycle=3, step_dim=8, cond_dim=8))
    x, t = torch.randn(2, 1, 64), torch.tensor([5.0, 5.0])
    a = model(x, t, {"pitch": torch.tensor([0, 0]), "timbre": torch.tensor([1, 1])})
    b = model(x, t, {"pitch": torch.tensor([2, 0]), "timbre": torch.tensor([1, -1])})
    alone = model(x[1:], t[1:], {"pitch": torch.tensor([0]), "timbre": torch.tensor([1])})
    assert torch.allclose(a[1:], alone, atol=1e-6)  # a row's output does not depend on the rest of its batch
    assert not torch.allclose(a[0], b[0]) and not torch.allclose(a[1], b[1])  # pitch changed, timbre dropped


def test_snap_clamps_to_unit_range() -> None:
    model = DiffWave(ATTRS, 8, layers=1, channels=2, cycle=1, step_dim=4, cond_dim=4)
    assert torch.equal(model.snap(torch.tensor([-3.0, -0.5, 0.25, 7.0])), torch.tensor([-1.0, -0.5, 0.25, 1.0]))


def test_bad_sizes_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="layers"):
        DiffWave(ATTRS, 100, layers=0)


@pytest.mark.parametrize(("k", "d"), [(3, 1), (3, 8), (1, 1), (5, 2)])
def test_fast_conv_matches_torch_gradients(k: int, d: int) -> None:
    torch.manual_seed(0)
    conv = Conv1d(3, 4, k, d).double()
    x = torch.randn(2, 3, 19, dtype=torch.float64, requires_grad=True)
    y = conv(x)
    ref = torch.nn.functional.conv1d(x, conv.weight, conv.bias, padding=conv.padding[0], dilation=d)
    assert y.shape == x.shape[:1] + (4, 19) and torch.allclose(y, ref)
    upstream = torch.randn_like(y)
    ours = torch.autograd.grad(y, (x, conv.weight, conv.bias), upstream)
    theirs = torch.autograd.grad(ref, (x, conv.weight, conv.bias), upstream)
    for a, b in zip(ours, theirs, strict=True):
        assert torch.allclose(a, b, atol=1e-12)
    with pytest.raises(ValueError, match="odd"):
        Conv1d(2, 2, 2)


def test_diffwave_schedule_and_fast_grid() -> None:
    s = make("diffwave", 50)
    betas = torch.linspace(1e-4, 0.05, 50, dtype=torch.float64)
    assert torch.allclose(s.alpha_bar, torch.cumprod(1 - betas, 0))
    grid = respace(s, 6)
    gamma = torch.cumprod(1 - torch.tensor(FAST_BETAS, dtype=torch.float64), 0).flip(0)
    assert torch.allclose(grid.alpha_bar, gamma)
    # each fractional step interpolates sqrt(alpha_bar) linearly between the training steps around it
    root = s.alpha_bar.sqrt()
    for t, g in zip(grid.t.double().tolist(), gamma.tolist(), strict=True):
        lo = min(int(math.floor(t)), 48)
        assert float(root[lo] + (t - lo) * (root[lo + 1] - root[lo])) == pytest.approx(math.sqrt(g), abs=1e-6)
    assert grid.t[-1] == 0 and bool((grid.t[:-1] > grid.t[1:]).all())
    assert respace(s, 10).t.tolist()[0] == 49  # other step counts respace the 50 training steps
    assert float(make("diffwave200", 200).alpha_bar[-1]) == pytest.approx(
        float(torch.prod(1 - torch.linspace(1e-4, 0.02, 200, dtype=torch.float64))))
