"""DiffWave's CFG step with x_t given once for both branches (issue 15): the benchmark's stand-in for the proposed
core hook computes the same step as the engine."""

from pathlib import Path

import torch

from crossguide import conditions as C
from crossguide import records
from crossguide.benchmarks.guidance_cost import SharedCFG, main
from crossguide.guidance import Guidance, Guided
from crossguide.modalities.audio.diffwave import DiffWave
from crossguide.samplers import Step
from crossguide.schedules import make

ATTRS = {"pitch": ["C", "D", "E"], "timbre": ["sine", "saw"]}


def test_shared_cfg_step_equals_the_engines() -> None:
    torch.manual_seed(0)
    model = DiffWave(ATTRS, 64, layers=4, channels=8, cycle=2, step_dim=16, cond_dim=8).eval()
    torch.nn.init.normal_(model.out.weight)
    schedule = make("linear", 50)
    t = torch.full((6,), 20.0)
    step = Step(t, schedule.at(t.long()).double(), 0, 1)
    x = torch.randn(6, 1, 64)
    cond = C.stack([{"pitch": i % 3, "timbre": i % 2} for i in range(6)], model.attributes)
    with torch.no_grad():
        ours, _ = SharedCFG(model, 3.0, cond)(x, step, None)
        theirs, _ = Guided(model, Guidance.cfg(3.0), cond)(x, step, None)
    assert torch.allclose(ours.eps, theirs.eps, atol=1e-5, rtol=0)
    assert torch.allclose(ours.x0, theirs.x0, atol=1e-5, rtol=0)


def test_guidance_cost_times_shared_cfg_for_diffwave(tmp_path: Path) -> None:
    assert main(["--modality", "audio", "--preset", "smoke", "--batch", "4", "--repeats", "1", "--threads", "1",
                 "--out", str(tmp_path)]) == 0
    rows = {r["variant"]: r for r in records.read(tmp_path / "guidance_cost.jsonl")}
    assert (rows["cfg_shared"]["forwards"], rows["cfg_shared"]["rows"]) == (1, 8)  # one forward, both branches
    assert rows["cfg_shared"]["threads"] == 1
