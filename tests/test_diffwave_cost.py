"""DiffWave's CFG step with x_t given once for both branches (issue 15): the engine passes a ``shared_branches``
model x_t once, with the same step as for x_t tiled, and the cost benchmark times that path."""

from pathlib import Path

import torch

from crossguide import conditions as C
from crossguide import records
from crossguide.benchmarks.guidance_cost import main
from crossguide.guidance import Guidance, Guided
from crossguide.modalities.audio.diffwave import DiffWave
from crossguide.samplers import Step
from crossguide.schedules import make

ATTRS = {"pitch": ["C", "D", "E"], "timbre": ["sine", "saw"]}


class _Tiled(torch.nn.Module):
    """The same DiffWave seen as a plain denoiser: the engine tiles x_t for it."""

    def __init__(self, model: DiffWave):
        super().__init__()
        self.model, self.prediction = model, model.prediction

    def forward(self, x_t, t, cond):
        return self.model(x_t, t, cond)


def test_diffwave_cfg_step_with_shared_branches_equals_the_tiled_step() -> None:
    torch.manual_seed(0)
    model = DiffWave(ATTRS, 64, layers=4, channels=8, cycle=2, step_dim=16, cond_dim=8).eval()
    torch.nn.init.normal_(model.out.weight)
    schedule = make("linear", 50)
    t = torch.full((6,), 20.0)
    step = Step(t, schedule.at(t.long()).double(), 0, 1)
    x = torch.randn(6, 1, 64)
    cond = C.stack([{"pitch": i % 3, "timbre": i % 2} for i in range(6)], model.attributes)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda _m, args: seen.append(args[0].shape[0]))
    with torch.no_grad():
        ours, _ = Guided(model, Guidance.cfg(3.0), cond)(x, step, None)
        theirs, _ = Guided(_Tiled(model), Guidance.cfg(3.0), cond)(x, step, None)
    assert seen == [6, 12]  # x_t once for both branches, then tiled
    assert torch.allclose(ours.eps, theirs.eps, atol=1e-5, rtol=0)
    assert torch.allclose(ours.x0, theirs.x0, atol=1e-5, rtol=0)


def test_guidance_cost_counts_one_forward_of_both_branches_for_diffwave(tmp_path: Path) -> None:
    assert main(["--modality", "audio", "--preset", "smoke", "--batch", "4", "--repeats", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    rows = {r["variant"]: r for r in records.read(tmp_path / "guidance_cost.jsonl")}
    assert (rows["cfg_batched"]["forwards"], rows["cfg_batched"]["rows"]) == (1, 8)  # one forward, both branches
    assert (rows["cfg_separate"]["forwards"], rows["cfg_separate"]["rows"]) == (2, 8)
    assert rows["cfg_batched"]["threads"] == 1
