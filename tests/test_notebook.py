"""The notebook API (crossguide.load / Pipe.sample / Samples.save) and its documentation page."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

import crossguide
from crossguide import conditions as C
from crossguide.cli import main
from crossguide.errors import UsageError
from crossguide.guidance import Guidance, Term
from crossguide.sampling import generate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def toy_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("notebook") / "toy"
    assert main(["train", "toy", "--preset", "smoke", "--out", str(out)]) == 0
    return out


def test_import_crossguide_loads_no_torch() -> None:
    code = "import sys, crossguide; print('torch' in sys.modules, crossguide.__version__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[0] == "False" and out[1] == crossguide.__version__


def test_sample_is_generate_with_the_same_guidance(toy_checkpoint: Path) -> None:
    """Pipe.sample is generate() on the checkpoint's EMA model: the same seed and spec give the same numbers,
    and w = 0 is the conditional model."""
    pipe = crossguide.load(toy_checkpoint)
    out = pipe.sample({"cluster": "north"}, w=2.0, n=8, seed=3, steps=10)
    choice = C.resolve({"cluster": "north"}, pipe.attributes)
    direct = generate(pipe.model, pipe.schedule, C.stack([choice] * 8, pipe.attributes), Guidance(terms=(Term(2.0),)),
                      sampler="ddim", steps=10, seed=3)
    assert torch.equal(out.samples, direct.samples) and out.nfe == direct.nfe == 20
    assert out.labels == [{"cluster": "north"}] * 8
    assert torch.equal(pipe.sample("cluster=north", w=2.0, n=8, seed=3, steps=10).samples, out.samples)
    unguided = pipe.sample({"cluster": "north"}, w=0.0, n=8, seed=3, steps=10)
    assert unguided.nfe == 10 and not torch.equal(unguided.samples, out.samples)


def test_compose_negative_rules_and_mistakes(toy_checkpoint: Path) -> None:
    pipe = crossguide.load(toy_checkpoint)
    both = pipe.sample({"cluster": "east", "side": "outer"}, compose={"cluster": 2, "side": 0.5}, n=4, steps=5)
    assert both.nfe == 15  # base + one branch per attribute, 5 steps
    away = pipe.sample({"cluster": "east"}, w=1, negative={"cluster": "west"}, n=4, steps=5)
    assert away.samples.shape == (4, 2)
    apg = pipe.sample({"cluster": "east"}, w=1, rule="apg", rule_args={"eta": 0.0}, n=4, steps=5)
    assert not torch.equal(apg.samples, pipe.sample({"cluster": "east"}, w=1, n=4, steps=5).samples)
    with pytest.raises(UsageError, match="unknown value 'up' for attribute 'cluster'"):
        pipe.sample({"cluster": "up"})
    with pytest.raises(UsageError, match="compose weights attribute 'side', which the condition does not set"):
        pipe.sample({"cluster": "east"}, compose={"side": 1})
    with pytest.raises(UsageError, match="w must be a finite number"):
        pipe.sample({"cluster": "east"}, w=float("nan"))


def test_save_writes_a_picture_or_a_folder_of_samples(toy_checkpoint: Path, tmp_path: Path) -> None:
    out = crossguide.load(toy_checkpoint).sample({"side": "inner"}, w=1, n=6, steps=5)
    [picture] = out.save(tmp_path / "grid.png")
    assert Image.open(picture).size[0] > 100
    files = out.save(tmp_path / "samples")
    assert [f.name for f in files] == ["points.csv", "grid.png"] and all(f.is_file() for f in files)
    assert len((tmp_path / "samples" / "points.csv").read_text().splitlines()) == 7  # a header and 6 points
    assert out._repr_png_().startswith(b"\x89PNG")
    assert "6 x [2]" in repr(out)


def test_the_api_page_runs_as_written(tmp_path: Path) -> None:
    """docs/API.md's bash block then its python block, in a fresh folder and interpreter."""
    text = (ROOT / "docs" / "API.md").read_text(encoding="utf-8")
    [shell] = re.findall(r"```bash\n(.*?)```", text, re.S)
    python = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(["bash", "-c", f'PATH="{Path(sys.executable).parent}:$PATH"; {shell}'], cwd=tmp_path, env=env,
                   check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-c", python], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "'cluster': ['north', 'east', 'south', 'west']" in proc.stdout
    assert Image.open(tmp_path / "grid.png").size[0] > 100
