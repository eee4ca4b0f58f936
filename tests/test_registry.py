"""Denoisers by name: registry calls, the crossguide.denoisers entry points of another installed package, the
checkpoint round trip through `sample`, and one-line errors for missing packages and bad names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crossguide import registry
from crossguide.errors import UsageError
from crossguide.modalities.toy.mlp import MLPDenoiser
from crossguide.pipeline import load_model
from crossguide.registry import DenoiserEntry, register_denoiser

# another distribution, as pip would install it: a package and its dist-info with entry points
FAKE_PACKAGE = '''
from crossguide.plugins import Deferred
from crossguide.registry import DenoiserEntry

SIZES = {"smoke": {"hidden": 12}, "quick": {"hidden": 64}, "full": {"hidden": 256}}
ENTRY = DenoiserEntry(Deferred("fakeden.model:build"), SIZES, options=("depth",), about="a narrow MLP")
'''
FAKE_MODEL = '''
from crossguide.modalities.toy.mlp import MLPDenoiser

class Narrow(MLPDenoiser):
    pass

def build(config, attributes, info):
    return Narrow(attributes, hidden=config["hidden"], depth=config.get("depth", 1), prediction="eps")
'''
ENTRY_POINTS = "[crossguide.denoisers]\ntoy.narrow = fakeden:ENTRY\ntoy.broken = fakeden:MISSING\n"


def _build_mlp(config, attributes, info) -> MLPDenoiser:
    return MLPDenoiser(attributes, hidden=config["hidden"], depth=1)


@pytest.fixture
def clean_toy(monkeypatch: pytest.MonkeyPatch) -> registry.Modality:
    """The toy modality with a private copy of its denoisers, so registrations end with the test."""
    toy = registry.get("toy")
    monkeypatch.setitem(toy.__dict__, "_denoisers", dict(toy.denoisers))
    return toy


def test_register_denoiser_resolves_by_bare_and_qualified_name(clean_toy: registry.Modality) -> None:
    register_denoiser("toy", "wide", DenoiserEntry(_build_mlp, {"smoke": {"hidden": 48}}))
    name, entry = clean_toy.denoiser("toy.wide")
    assert (name, clean_toy.denoiser("wide")[1]) == ("wide", entry)
    assert entry.package == "tests"  # the distribution (here: the top-level package) that holds its builder
    assert clean_toy.model_config("wide", "smoke", {"hidden": 8}) == {"hidden": 8}
    model = clean_toy.build("wide", {"hidden": 8}, {"a": ["x", "y"]}, {})
    assert model.config()["hidden"] == 8
    assert registry.denoiser_record(clean_toy, "wide") == {"denoiser": "wide", "denoiser_package": "tests"}
    with pytest.raises(UsageError, match="denoiser toy.wide has no config for preset|unknown preset for denoiser"):
        clean_toy.model_config("wide", "quick")
    with pytest.raises(UsageError, match="has no option 'depth'; valid: hidden"):
        clean_toy.model_config("wide", "smoke", {"depth": 2})
    with pytest.raises(UsageError, match="a denoiser name is one word without dots"):
        register_denoiser("toy", "a.b", DenoiserEntry(_build_mlp, {}))
    with pytest.raises(UsageError, match="unknown toy denoiser 'narrow2'; valid: mlp, "):
        clean_toy.denoiser("narrow2")


def test_a_missing_optional_package_is_one_line(clean_toy: registry.Modality) -> None:
    register_denoiser("toy", "needy", DenoiserEntry(_build_mlp, {"smoke": {"hidden": 8}},
                                                    requires=("no_such_module_xyz",), install="pip install xyz"))
    with pytest.raises(UsageError, match="^denoiser toy.needy needs the 'no_such_module_xyz' package, which is not "
                                         "installed; install it with: pip install xyz$"):
        clean_toy.build("needy", {"hidden": 8}, {"a": ["x"]}, {})


def _fake_distribution(root: Path) -> Path:
    (root / "fakeden").mkdir(parents=True)
    (root / "fakeden" / "__init__.py").write_text(FAKE_PACKAGE)
    (root / "fakeden" / "model.py").write_text(FAKE_MODEL)
    info = root / "fakeden-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fakeden\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    return root


def _crossguide(args: list[str], cwd: Path, site: Path | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return subprocess.run([sys.executable, "-m", "crossguide.cli", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=600)


def test_an_installed_packages_denoiser_trains_samples_and_is_named_when_missing(tmp_path: Path) -> None:
    """A denoiser from another distribution's entry point: `train --model` makes a checkpoint that records it,
    `sample --checkpoint` rebuilds it by name, and without that package `sample` says which one to install."""
    site = _fake_distribution(tmp_path / "site")
    listed = _crossguide(["list"], tmp_path, site)
    assert "denoisers (--model) mlp, narrow (default mlp)" in listed.stdout, listed.stdout
    proc = _crossguide(["train", "toy", "--preset", "smoke", "--model", "narrow", "--model-args", "depth=2",
                        "--out", "ck"], tmp_path, site)
    assert proc.returncode == 0, proc.stderr
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert (config["denoiser"], config["denoiser_package"]) == ("narrow", "fakeden")
    assert (config["model"]["hidden"], config["model"]["depth"]) == (12, 2)  # the smoke size, --model-args
    proc = _crossguide(["sample", "--checkpoint", "ck", "--cond", "cluster=north", "--w", "2", "--n", "4",
                        "--steps", "5", "--out", "s"], tmp_path, site)
    assert proc.returncode == 0 and "wrote 4 samples" in proc.stdout, proc.stderr
    assert (tmp_path / "s" / "grid.png").exists()
    broken = _crossguide(["train", "toy", "--model", "broken", "--out", "x"], tmp_path, site)
    assert broken.returncode == 2 and broken.stderr.startswith("error: toy denoiser 'broken' is installed but failed "
                                                               "to load (AttributeError"), broken.stderr
    missing = _crossguide(["sample", "--checkpoint", "ck", "--out", "s2"], tmp_path, None)
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1, missing.stderr
    assert ("holds denoiser toy.narrow from package 'fakeden', which is not installed here" in missing.stderr
            and "installed: mlp" in missing.stderr), missing.stderr
    assert not (tmp_path / "s2").exists()


def test_checkpoints_without_a_denoiser_name_load_as_the_default(tmp_path: Path) -> None:
    """Checkpoints made before denoisers had names (the shipped references among them) rebuild the default."""
    toy = registry.get("toy")
    model, _, config = load_model(toy.references / "denoiser-toy-mixture-quick")
    assert "denoiser" not in config and type(model).__name__ == "MLPDenoiser"
    assert torch.isfinite(next(model.parameters())).all()


def test_naming_the_default_denoiser_keeps_the_shipped_references_in_use(tmp_path: Path) -> None:
    """The default denoiser's name and package stay out of the reference fingerprint: prepare (bench and study)
    still finds the shipped model instead of training one, named or not."""
    from crossguide.pipeline import prepare

    for denoiser in (None, "mlp"):
        ctx = prepare("toy", preset="quick", model_dir=tmp_path / f"model-{denoiser}", denoiser=denoiser,
                      progress=False)
        assert ctx.model_source == "reference" and ctx.model_id.startswith("denoiser-toy-mixture-quick@"), ctx.model_id
