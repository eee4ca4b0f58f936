"""The generic trainer: it learns, resumes exactly, runs under torchrun, and refuses bad input."""

import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from crossguide import checkpoint as ckpt
from crossguide import conditions as C
from crossguide.data import ConditionalDataset
from crossguide.errors import UsageError
from crossguide.guidance import Guidance
from crossguide.metrics import adherence
from crossguide.modalities.toy.data import MIXTURE
from crossguide.modalities.toy.judge import MixtureJudge
from crossguide.modalities.toy.mixture import ATTRIBUTES
from crossguide.modalities.toy.mlp import MLPDenoiser
from crossguide.modalities.toy.modality import MODALITY
from crossguide.sampling import generate
from crossguide.trainer import TrainConfig, train
from tests.helpers import SCHEDULE, exact, toy_data

ROOT = Path(__file__).resolve().parents[1]


def _mlp(seed: int = 0) -> MLPDenoiser:
    torch.manual_seed(seed)
    return MLPDenoiser(ATTRIBUTES, hidden=32, depth=2)


def _small(steps: int) -> TrainConfig:
    return TrainConfig(steps=steps, batch_size=64, lr=1e-3, warmup=5, device="cpu")


def _w0(model, per: int = 128) -> tuple[float, torch.Tensor]:
    choices = [c for c in C.all_choices(ATTRIBUTES) for _ in range(per)]
    cond = C.stack(choices, ATTRIBUTES)
    x = generate(model, SCHEDULE, cond, Guidance.cfg(0.0), steps=50, seed=0, batch_size=len(choices)).samples
    return adherence(cond, MixtureJudge(MIXTURE).classify(x))["adherence"], x.view(MIXTURE.K, per, 2)


def test_mlp_learns_the_mixture() -> None:
    spec = MODALITY.preset("quick")
    data = MODALITY.load_dataset(None, "quick", None, 0).train
    model = MODALITY.build_model(spec.model, data.attributes, data.info)
    result = train(model, SCHEDULE, data, replace(spec.train, steps=1200), progress=False)
    learned, x = _w0(result.ema)
    reference, _ = _w0(exact())
    assert abs(learned - reference) < 0.05, (learned, reference)
    assert (x.mean(1).double() - MIXTURE.means).norm(dim=1).max() < 0.1
    assert sum(result.losses[-50:]) / 50 < 0.6 * sum(result.losses[:50]) / 50


def _state(path: Path) -> dict[str, torch.Tensor]:
    saved = ckpt.load(path)
    return {f"{stem}.{k}": v for stem, d in saved.tensors.items() for k, v in d.items()}


def test_interrupted_and_resumed_run_equals_a_straight_run(tmp_path: Path) -> None:
    data = toy_data()
    train(_mlp(), SCHEDULE, data, _small(40), out=tmp_path / "straight", progress=False)
    train(_mlp(), SCHEDULE, data, _small(40), out=tmp_path / "resumed", stop_at=20, progress=False)
    assert ckpt.load(tmp_path / "resumed").json["training"]["step"] == 20
    result = train(_mlp(seed=1), SCHEDULE, data, _small(40), out=tmp_path / "resumed", progress=False)
    assert result.step == 40
    a, b = _state(tmp_path / "straight"), _state(tmp_path / "resumed")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k  # weights, EMA, optimizer moments and RNG state


def test_resume_refuses_a_different_config(tmp_path: Path) -> None:
    data = toy_data()
    train(_mlp(), SCHEDULE, data, _small(5), out=tmp_path / "c", progress=False)
    with pytest.raises(ckpt.CheckpointError, match=r"other \['lr'\]"):
        train(_mlp(), SCHEDULE, data, replace(_small(10), lr=0.5), out=tmp_path / "c", progress=False)


def test_torchrun_two_process_gloo_training_keeps_ranks_identical(tmp_path: Path) -> None:
    steps = 15
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(ROOT / "tests" / "ddp_worker.py"), str(tmp_path), str(steps)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0, r1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    for k in r0:
        assert torch.equal(r0[k], r1[k]), k
    # each rank took half of the same global batch: one process with the full batch learns the same weights
    single = train(_mlp(), SCHEDULE, toy_data(), _small(steps), progress=False).model.state_dict()
    for k in r0:
        torch.testing.assert_close(r0[k], single[k], rtol=1e-4, atol=1e-5)
    assert ckpt.load(tmp_path / "ckpt").json["training"]["step"] == steps


@pytest.mark.parametrize(
    ("change", "message"),
    [(dict(steps=0), "steps must be >= 1"), (dict(p_uncond=-0.1), "p_uncond must be in"),
     (dict(p_attr=1.5), "p_attr must be in"), (dict(lr=0.0), "lr must be > 0")],
)
def test_bad_training_config_is_refused(change: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        replace(_small(10), **change)


def test_nan_in_data_is_refused() -> None:
    data = toy_data()
    x = data.x.clone()
    x[3, 1] = math.nan
    with pytest.raises(UsageError, match="NaN"):
        ConditionalDataset("bad", x, data.cond, data.attributes)
    with pytest.raises(UsageError, match="NaN"):
        generate(_mlp(), SCHEDULE, C.stack([{}] * 2, ATTRIBUTES), x_T=torch.full((2, 2), math.nan))


def test_truncated_or_corrupt_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    train(_mlp(), SCHEDULE, toy_data(), _small(3), out=tmp_path / "c", progress=False)
    weights = tmp_path / "c" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ckpt.CheckpointError, match=r"model.safetensors' is truncated"):
        ckpt.load(tmp_path / "c")
    weights.write_bytes(data[:-4] + b"XXXX")
    with pytest.raises(ckpt.CheckpointError, match="corrupt"):
        ckpt.load(tmp_path / "c")
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load(tmp_path / "missing")


def test_failed_save_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c"
    ckpt.save(path, {"model": {"w": torch.ones(3)}}, {"config": {"v": 1}})

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt, "save_file", broken)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save(path, {"model": {"w": torch.zeros(3)}}, {"config": {"v": 2}})
    saved = ckpt.load(path)
    assert torch.equal(saved.tensors["model"]["w"], torch.ones(3)) and saved.json["config"] == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no temporary directories left behind


class _SelfConditionedMLP(MLPDenoiser):
    """The toy MLP made self-conditioning: it adds a learned map of its earlier estimate and logs each call."""

    self_conditioning = True

    def __init__(self) -> None:
        torch.manual_seed(0)
        super().__init__(ATTRIBUTES, hidden=32, depth=2, prediction="x0")
        self.feedback = torch.nn.Linear(2, 2)
        self.calls: list[tuple[bool, torch.Tensor, torch.Tensor | None, torch.Tensor]] = []

    def forward(self, x_t, t, cond, x0_self=None):
        out = super().forward(x_t, t, cond)
        if x0_self is not None:
            out = out + self.feedback(x0_self)
        self.calls.append((torch.is_grad_enabled(), x_t.detach(), x0_self, out.detach()))
        return out


def test_self_conditioning_trains_on_its_own_detached_estimate_in_half_the_batches() -> None:
    model = _SelfConditionedMLP()
    train(model, SCHEDULE, toy_data(), _small(40), progress=False)
    fed = [i for i, (grad, _, x0_self, _) in enumerate(model.calls) if x0_self is not None]
    assert 10 <= len(fed) <= 30  # a fair coin per batch over 40 batches
    for i in fed:  # the estimate comes from a gradient-free pass on the same x_t, just before
        grad_before, x_before, self_before, out_before = model.calls[i - 1]
        assert not grad_before and self_before is None and model.calls[i][0]
        assert torch.equal(x_before, model.calls[i][1]) and torch.equal(model.calls[i][2], out_before)
    assert len(model.calls) == 40 + len(fed)


@pytest.mark.parametrize("name", ["toy", "image", "audio", "text"])
def test_fresh_models_draw_their_weights_from_the_seed_only(name: str) -> None:
    from crossguide.registry import get

    modality = get(name)
    spec = modality.preset("smoke")
    data = modality.load_dataset(None, "smoke", None, 0).train
    state = torch.random.get_rng_state()
    first = modality.init_model(spec, data, 0).state_dict()
    torch.rand(3)  # the global RNG moves on between the two builds; the weights must not depend on it
    again = modality.init_model(spec, data, 0).state_dict()
    other = modality.init_model(spec, data, 1).state_dict()
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())
    torch.random.set_rng_state(state)


def test_two_trainings_with_one_config_give_the_same_checkpoint(tmp_path: Path) -> None:
    from crossguide.cli import main as cli

    for run in ("a", "b"):
        torch.rand(7)  # whatever the process did before must not matter
        assert cli(["train", "toy", "--preset", "smoke", "--steps", "20", "--out", str(tmp_path / run)]) == 0
    a, b = (load_file(tmp_path / run / "ema.safetensors") for run in ("a", "b"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_weak_copy_is_the_ema_at_weak_at_and_survives_a_resume_across_it(tmp_path: Path) -> None:
    data = toy_data()
    config = replace(_small(40), weak_at=0.25)  # step 10
    straight = train(_mlp(), SCHEDULE, data, config, out=tmp_path / "straight", progress=False)
    assert straight.step == 40
    train(_mlp(), SCHEDULE, data, config, out=tmp_path / "at10", stop_at=10, progress=False)
    weak = ckpt.load(tmp_path / "straight").tensors["weak"]
    ema10 = ckpt.load(tmp_path / "at10").tensors["ema"]
    assert weak.keys() == ema10.keys() and all(torch.equal(weak[k], ema10[k]) for k in weak)
    assert not all(torch.equal(weak[k], straight.ema.state_dict()[k]) for k in weak)  # not the final EMA
    train(_mlp(), SCHEDULE, data, config, out=tmp_path / "early", stop_at=5, progress=False)
    assert "weak" not in ckpt.load(tmp_path / "early").tensors  # not reached yet
    train(_mlp(), SCHEDULE, data, config, out=tmp_path / "early", progress=False)
    resumed = ckpt.load(tmp_path / "early").tensors["weak"]
    assert all(torch.equal(weak[k], resumed[k]) for k in weak)
    train(_mlp(), SCHEDULE, data, replace(config, weak_at=0.0), out=tmp_path / "none", progress=False)
    assert "weak" not in ckpt.load(tmp_path / "none").tensors


def test_a_checkpoint_carries_its_schedule_table_so_a_plugin_schedule_loads_without_its_code(tmp_path: Path) -> None:
    """A modality may override ``schedule()`` with one no registry knows by name: the checkpoint keeps the
    alpha_bar table and the fast grids, and loading uses them instead of rebuilding the schedule by name."""
    from crossguide.pipeline import load_model
    from crossguide.schedules import Schedule, respace

    ab = torch.linspace(0.999, 0.01, 300, dtype=torch.float64)  # no registered schedule has this table
    fast = (torch.tensor([299.0, 150.0, 0.0]), ab[[299, 150, 0]])
    custom = Schedule("my-plugin-schedule", ab, {3: fast})
    train(_mlp(), custom, toy_data(), _small(3), out=tmp_path / "c", progress=False,
          meta={"modality": "toy", "dataset": "mixture", "preset": "smoke"})
    _, schedule, config = load_model(tmp_path / "c")
    assert config["schedule"] == {"name": "my-plugin-schedule", "T": 300}
    assert torch.equal(schedule.alpha_bar, ab)
    assert torch.equal(respace(schedule, 3).alpha_bar, fast[1]) and torch.equal(respace(schedule, 3).t, fast[0])
