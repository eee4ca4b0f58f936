"""Reference artifacts: the shipped ones load and match their index; a build exports what the code trains; a
fingerprint that differs trains instead; a corrupt file is an error; the study runs with and without them."""

import json
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from crossguide import checkpoint as ckpt
from crossguide import records, reference
from crossguide.benchmarks import references
from crossguide.benchmarks.study import run_study
from crossguide.cli import main
from crossguide.pipeline import load_model, prepare
from crossguide.registry import get as get_modality

MODALITIES = ("toy", "image", "audio", "text")
BUDGET_MIB = 40


def test_shipped_artifacts_cover_every_quick_model_and_judge_within_the_budget() -> None:
    shipped = {a.name: a for a in reference.artifacts()}
    for m in MODALITIES:
        dataset = get_modality(m).default_dataset
        assert f"denoiser-{m}-{dataset}-quick" in shipped
        assert f"classifier-{m}-{dataset}-quick" in shipped
    for name in ("judge-image-shapes", "judge-audio-notes", "judge-text-restaurants", "lm-text-restaurants"):
        assert name in shipped
    assert {a.entry["kind"] for a in shipped.values()} == {"denoiser", "noise classifier", "judge", "language model"}
    assert sum(a.entry["bytes"] for a in shipped.values()) <= BUDGET_MIB * 2**20
    for a in shipped.values():
        a.verify()  # every file against the manifest, the manifest against the index, the card's fingerprint
        card = (a.path / reference.CARD).read_text()
        assert a.entry["command"] == f"crossguide reference build {a.name}"
        assert a.entry["command"] in card and a.entry["fingerprint"] in card
        if a.entry["kind"] == "denoiser":
            model, _, config = load_model(a.path)
            assert config["preset"] == "quick" and sum(p.numel() for p in model.parameters()) > 0
            assert "CFG sweep" in card  # its quality-bar table


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The toy's smoke artifacts, built by the project's own code into a temporary store."""
    path = tmp_path_factory.mktemp("store")
    made = references.build("toy", preset="smoke", store=path, quality=False, progress=False)
    assert made == ["denoiser-toy-mixture-smoke", "classifier-toy-mixture-smoke",
                    "denoiser-toy-mixture-smoke-p_uncond0.5"]
    for name, entry in reference.read_index(path).items():  # the command that rebuilds it, on its card
        assert entry["command"] == f"crossguide reference build {name}"
    return path


@pytest.fixture
def use(store: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("CROSSGUIDE_REFERENCES", str(store))
    monkeypatch.setenv("CROSSGUIDE_CACHE", str(tmp_path / "cache"))
    return store


def test_a_matching_fingerprint_uses_the_artifact_and_another_config_trains(
        use: Path, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = prepare("toy", preset="smoke", model_dir=tmp_path / "a", progress=False)
    assert ctx.model_source == "reference" and not (tmp_path / "a").exists()
    saved = ckpt.load(use / "denoiser-toy-mixture-smoke", stems=("ema",)).tensors["ema"]
    assert all(torch.equal(v, saved[k]) for k, v in ctx.model.state_dict().items())
    # the same recipe trained from scratch gives the same weights on this machine
    with reference.disabled():
        scratch = prepare("toy", preset="smoke", model_dir=tmp_path / "b", progress=False)
    assert scratch.model_source == "trained"
    assert all(torch.equal(v, saved[k]) for k, v in scratch.model.state_dict().items())
    # another training config: the artifact does not apply, and a line says so
    other = prepare("toy", preset="smoke", model_dir=tmp_path / "c", progress=False, train_overrides={"lr": 1e-3})
    assert other.model_source == "trained" and ckpt.exists(tmp_path / "c")
    # the same name, a changed preset: trained, and a line says why
    toy = get_modality("toy")
    smoke = toy.presets["smoke"]
    monkeypatch.setitem(toy.presets, "smoke", replace(smoke, train=replace(smoke.train, steps=20)))
    capsys.readouterr()
    reference._said.clear()
    changed = prepare("toy", preset="smoke", model_dir=tmp_path / "d", progress=False)
    assert changed.model_source == "trained"
    assert "made from another config or data" in capsys.readouterr().out


def test_a_corrupt_or_missing_file_is_an_error_never_a_silent_retrain(use: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad"
    shutil.copytree(use, bad)
    monkeypatch.setenv("CROSSGUIDE_REFERENCES", str(bad))
    weights = bad / "denoiser-toy-mixture-smoke" / "ema.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    with pytest.raises(ckpt.CheckpointError, match="corrupt|checksum|sha256"):
        prepare("toy", preset="smoke", model_dir=tmp_path / "m", progress=False)
    weights.unlink()
    with pytest.raises(ckpt.CheckpointError, match="missing"):
        prepare("toy", preset="smoke", model_dir=tmp_path / "m", progress=False)
    assert not (tmp_path / "m").exists()
    # a card (config) whose fingerprint disagrees with the index
    shutil.rmtree(bad)
    shutil.copytree(use, bad)
    index = json.loads((bad / reference.INDEX).read_text())
    index["denoiser-toy-mixture-smoke"]["fingerprint"] = "0" * 16
    (bad / reference.INDEX).write_text(json.dumps(index))
    art = reference.get("denoiser-toy-mixture-smoke")
    with pytest.raises(ckpt.CheckpointError, match="fingerprint"):
        art.verify()


def test_the_smoke_study_runs_with_and_without_references(use: Path, tmp_path: Path) -> None:
    kwargs = {"preset": "smoke", "modalities": ["toy"], "seeds": 1, "rule_names": ["cfg", "classifier"],
              "progress": False}
    run_study(tmp_path / "ref", **kwargs)
    recs = records.read(tmp_path / "ref" / "toy" / "records.jsonl")
    assert recs and all(r["sources"]["model"] == "reference" for r in recs)
    assert all(r["judge"] == "exact-mixture-posterior" for r in recs)
    assert {r["sources"].get("classifier") for r in recs if r["rule"] == "classifier"} == {"reference"}
    assert not (tmp_path / "ref" / "toy" / "model").exists()  # nothing trained
    with reference.disabled():
        run_study(tmp_path / "scratch", **kwargs)
    scratch = records.read(tmp_path / "scratch" / "toy" / "records.jsonl")
    assert scratch and all(r["sources"]["model"] == "trained" for r in scratch)
    # the same recipe, the same numbers: the reference is what the code trains
    by_id = {r["setting"]: r["metrics"]["adherence"] for r in recs}
    assert {r["setting"]: r["metrics"]["adherence"] for r in scratch} == by_id
    assert "exact-mixture-posterior" in (tmp_path / "ref" / "report.md").read_text()


def test_trained_judges_carry_an_id_from_their_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSGUIDE_CACHE", str(tmp_path / "cache"))
    m = get_modality("image")
    splits = m.load_dataset(None, "smoke", None, 0)
    with reference.disabled():
        first = m.evaluator(splits, "smoke", tmp_path / "cache")
        shutil.rmtree(tmp_path / "cache")
        again = m.evaluator(splits, "smoke", tmp_path / "cache")  # retrained: the same weights, the same id
    assert first.info["source"] == "trained" and first.info["id"].startswith("judge-image-shapes@")
    assert again.info["id"] == first.info["id"]


def test_reference_cli_lists_verifies_and_rejects_unknown_names(use: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["reference", "list"]) == 0
    out = capsys.readouterr().out
    assert "denoiser-toy-mixture-smoke" in out and "MiB in all" in out
    assert main(["reference", "verify"]) == 0
    assert "FAILED" not in capsys.readouterr().out
    assert main(["reference", "build", "denoiser-nosuch-x"]) == 2
    assert "not KIND-MODALITY" in capsys.readouterr().err


def test_rescore_measures_a_denoisers_card_again_and_rejects_other_names(use: Path,
                                                                        capsys: pytest.CaptureFixture) -> None:
    name = "denoiser-toy-mixture-smoke"
    assert "quality" not in reference.read_index(use)[name]  # built without its table
    assert main(["reference", "rescore", name]) == 0
    first = reference.read_index(use)[name]["quality"][references.QUALITY]
    assert [r["w"] for r in first] == sorted(r["w"] for r in first) and len(first) >= 5
    assert references.QUALITY in (use / name / reference.CARD).read_text(encoding="utf-8")
    assert main(["reference", "rescore", name]) == 0  # same weights, same (exact) judge, same seed: same table
    assert reference.read_index(use)[name]["quality"][references.QUALITY] == first
    capsys.readouterr()
    assert main(["reference", "rescore", "classifier-toy-mixture-smoke"]) == 2
    assert "is not a denoiser artifact; valid: denoiser-" in capsys.readouterr().err
