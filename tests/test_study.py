"""The cross-modality study: end to end on the smoke preset, a valid report, and exact resumption."""

import re
from html.parser import HTMLParser
from pathlib import Path

import pytest

from crossguide import pipeline, records
from crossguide.benchmarks import study as study_module
from crossguide.cli import main

VOID = {"meta", "img", "br", "hr", "input", "link", "source"}


class _Checker(HTMLParser):
    """Fails on unbalanced or mis-nested tags."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag not in VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes {self.stack[-1:]}"
        self.stack.pop()


def check_report(out: Path, modalities: list[str]) -> str:
    text = (out / "report.html").read_text()
    checker = _Checker()
    checker.feed(text)
    assert checker.stack == [] and text.startswith("<!DOCTYPE html>")
    for heading in ("Summary", "1. Guidance sweep", "2. Sampling steps", "3. Negative guidance",
                    "4. Mixing several conditions", "5. Unconditional-dropout rate", "Findings"):
        assert heading in text
    assert "data:image/png;base64," in text  # self-contained
    for m in modalities:
        assert f"<h3>{m}" in text
        for r in records.read(out / m / "records.jsonl"):
            records.validate(r)
    assert (out / "report.md").read_text().startswith("# crossguide")
    return text


class _Bar:
    """A progress bar that keeps what the study's estimate says."""

    def __init__(self, **kw) -> None:
        self.postfix: list[str] = []

    def set_postfix_str(self, text: str, refresh: bool = True) -> None:
        self.postfix.append(text)

    def set_description(self, *a, **kw) -> None:
        pass

    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def test_toy_smoke_study_and_resume_without_redoing_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Also: the time-left estimate counts the training still to do (two smoke models, no shipped references),
    timed once the first has trained; after a resume only the model not yet trained is left."""
    bars: list[_Bar] = []
    monkeypatch.setattr(study_module, "bar", lambda **kw: bars.append(_Bar(**kw)) or bars[-1])
    calls: list[str] = []
    real = pipeline.run_setting

    def counting(ctx, setting, seed, out, **kw):
        calls.append(setting.id(seed))
        if len(calls) == 5:
            raise KeyboardInterrupt  # as if the user pressed Ctrl-C during the sixth setting
        return real(ctx, setting, seed, out, **kw)

    monkeypatch.setattr(pipeline, "run_setting", counting)
    assert main(["study", "--preset", "smoke", "--modalities", "toy", "--seeds", "2", "--out", str(tmp_path)]) == 130
    done = [r["setting"] for r in records.read(tmp_path / "toy" / "records.jsonl")]
    assert done == calls[:4]
    first = bars[0].postfix
    assert first[0].startswith("time left not known yet: 2 models to train")  # the main model and its p_uncond
    # = 0.5 copy
    assert "1 model to train (~" in first[-1]  # the main model trained: the other's time follows from its speed

    spy: list[str] = []

    def spying(ctx, setting, seed, out, **kw):
        if out == tmp_path / "toy":  # the main model's run directory
            spy.append(setting.id(seed))
        return real(ctx, setting, seed, out, **kw)

    monkeypatch.setattr(pipeline, "run_setting", spying)
    report = study_module.run_study(tmp_path, preset="smoke", modalities=["toy"], seeds=2, progress=False)
    assert "1 model to train" in bars[1].postfix[0] and "0 s left" in bars[1].postfix[-1]
    assert spy and not set(spy) & set(done)  # finished settings of the main model were reused, not recomputed
    recs = records.read(tmp_path / "toy" / "records.jsonl")
    assert len({r["setting"] for r in recs}) == len(recs)  # and nothing was recorded twice
    check_report(report.parent, ["toy"])
    assert (tmp_path / "toy" / "p_uncond_0.5" / "records.jsonl").exists()


def test_study_rejects_unknown_modality_and_bad_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "--modalities", "toy,smell", "--out", str(tmp_path)]) == 2
    assert "unknown modality 'smell'" in capsys.readouterr().err
    assert main(["study", "--seeds", "0", "--modalities", "toy", "--out", str(tmp_path)]) == 2
    assert not (tmp_path / "study.json").exists()


def test_smoke_study_over_every_modality(tmp_path: Path) -> None:
    """The README's main job at its smallest: every modality, every section, one report (about a minute); it
    says that smoke numbers mean nothing, and no NaN reaches the page."""
    assert main(["study", "--preset", "smoke", "--seeds", "1", "--out", str(tmp_path)]) == 0
    text = check_report(tmp_path, ["toy", "image", "audio", "text"])
    assert "<audio" in text and "<table" in text  # audio players and sentence tables are embedded
    assert "SMOKE RUN" in text  # untrained models say so
    prose = re.sub(r"data:[a-z]+/[a-z]+;base64,[A-Za-z0-9+/=]+", "", text)
    assert not re.search(r"\bx?nan%?\b", prose, re.IGNORECASE)  # no NaN reaches a sentence or a cell
    check_samples(tmp_path, text)


def check_samples(out: Path, text: str) -> None:
    """Players for every pitch at the sweep's key settings, an image grid of every condition with its samples
    enlarged, spectrograms with axes."""
    from PIL import Image

    from crossguide.modalities.audio.notes import PITCHES, TIMBRES
    from crossguide.modalities.audio.outputs import Layout
    from crossguide.registry import get

    players = re.search(r"<table class='players'><caption>audio: samples at the sweep&#x27;s key settings.*?</table>",
                        text)
    assert players
    head, *rows = re.findall(r"<tr>(.*?)</tr>", players.group(0))
    settings = re.findall(r"<th>(.*?)</th>", head)[1:]
    assert settings[0] == "w = -1 (unconditional)" and settings[1].startswith("w = 0 (conditional")
    assert settings[-1].endswith("largest w)") and any("best adherence" in s for s in settings)
    assert len(rows) == len(PITCHES)  # a row per pitch, the timbres in turn
    for pitch, row in zip(PITCHES, rows, strict=True):
        assert f"<td>pitch={pitch}, timbre=" in row and row.count("<audio controls") == len(settings)
    assert {re.search(r"timbre=(\w+)", r).group(1) for r in rows} == set(TIMBRES)

    image = get("image")
    per = study_module.PLANS["smoke"].per_condition(image.preset("smoke"))
    conditions = 4 * 4  # colour x shape
    with Image.open(out / "plots" / "samples_sweep_image.png") as grid:
        title, header, cell = 13 + 8, 13 + 4, 64 + 2
        assert grid.height == title + header + conditions * cell  # a row per condition, 64 px samples
        assert grid.width > 3 * per * cell  # w = -1, 0 and 2, each with every sample of a condition
    audio = records.read(out / "audio" / "records.jsonl")[0]
    with Image.open(out / "audio" / audio["picture"]) as spectrograms:
        assert spectrograms.size == Layout(columns=8, rows=len(PITCHES) * len(TIMBRES) // 8).size


def test_step_counts_follow_each_presets_own_steps_and_stay_within_its_schedule() -> None:
    from crossguide.registry import get

    plan = study_module.PLANS["quick"]

    def counts(spec) -> list[int]:
        steps = study_module.section_settings(plan, spec, ["a", "b"])["steps"]
        return sorted({s.steps for s in steps})

    assert counts(get("audio").preset("quick")) == [3, 6]  # around DiffWave's 6-step fast schedule
    assert counts(get("image").preset("quick")) == [10, 20]
    assert counts(get("text").preset("quick")) == [25, 50]  # its 200 DDPM steps capped at the plan's 50
    assert plan.steps(get("text").preset("quick")) == 50 and plan.steps(get("image").preset("quick")) == 20
    full = get("audio").preset("full")  # 5 x 200 steps would overrun its T = 200 schedule
    full_steps = study_module.section_settings(study_module.PLANS["full"], full, ["a", "b"])["steps"]
    assert max(s.steps for s in full_steps) == full.T


def test_training_seeds_and_every_significance_claim_is_a_paired_interval(tmp_path: Path) -> None:
    """``--training-seeds 2`` trains a second toy model and reports the between-model spread; every record keeps
    its per-sample evaluation at equal generated and real counts; and each "significant" / "not significant" in
    the report follows its own interval (significant exactly when the interval excludes 0)."""
    from safetensors.torch import load_file

    assert main(["study", "--preset", "smoke", "--modalities", "toy", "--seeds", "2", "--training-seeds", "2",
                 "--out", str(tmp_path)]) == 0
    second = tmp_path / "toy" / "train_seed_1"
    assert records.read(second / "records.jsonl")
    main_w, other_w = (load_file(str(d / "model" / "ema.safetensors")) if (d / "model").exists() else None
                       for d in (tmp_path / "toy", second))
    if main_w is not None:  # the main model may be a shipped reference artifact, outside the run folder
        assert any(not main_w[k].equal(other_w[k]) for k in main_w)
    for r in records.read(tmp_path / "toy" / "records.jsonl"):
        assert r["n_real"] == r["n"] and r["feature_dim"] >= 1
        ev = load_file(str(tmp_path / "toy" / "samples" / f"{r['setting']}.eval.safetensors"))
        assert ev["features"].shape == (r["n"], r["feature_dim"]) and ev["real"].shape == ev["features"].shape
        assert ev["correct"].nanmean().item() == pytest.approx(r["metrics"]["adherence"], abs=1e-6)
    text = (tmp_path / "report.md").read_text()
    assert "## 7. Training seeds" in text and "between-model sd" in text
    number = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:e[+-]?\d+)?"
    claims = re.findall(rf"\[({number}), ({number})\] \((significant|not significant)\)", text)
    assert len(claims) >= 5
    for lo, hi, verdict in claims:
        assert (float(lo) > 0 or float(hi) < 0) == (verdict == "significant"), (lo, hi, verdict)
    assert text.count("significant") == len(claims) + text.count("'significant'")  # no claim without an interval
