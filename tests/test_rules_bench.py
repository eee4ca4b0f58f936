"""Every registered guidance rule (a plug-in from a test file included) through ``bench --preset smoke`` in every
modality, and through the study's rules section."""

import json
import re
from pathlib import Path

import pytest

from crossguide import records, rules
from crossguide.bench import bench
from crossguide.benchmarks.study import run_study
from crossguide.guidance import Guidance
from tests.test_rules import HalfCFG

MODALITIES = ["toy", "image", "audio", "text"]


@pytest.mark.parametrize("modality", MODALITIES)
def test_every_rule_runs_through_bench_smoke(modality: str, tmp_path: Path) -> None:
    rules.register(HalfCFG)
    names = rules.names()
    assert {"cfg", "rescale", "threshold", "apg", "cfgpp", "zerostar", "auto", "classifier", "test-half"} <= set(names)
    for name in names:
        w = -0.5 if name == "cfgpp" else 1.5
        recs = bench(modality, preset="smoke", ws=[w], out=tmp_path, guidance=Guidance.single(0.0, name),
                     progress=False)
        (r,) = recs
        assert r["rule"] == name and r["rule_options"] == rules.make(name).options() and r["w"] == w
        assert r["metrics"]["fd"] is not None and 0.0 <= r["metrics"]["adherence"] <= 1.0
        branches = 1 if name == "classifier" else 2  # the classifier's passes are not denoiser evaluations
        assert r["nfe"] == branches * r["steps"], name
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["by_rule"]) == set(names)
    assert (tmp_path / "model.classifier" / "config.json").is_file()  # classifier guidance trained its classifier
    assert (tmp_path / "model" / "weak.safetensors").is_file()  # the early weights autoguidance uses
    every = records.read(tmp_path / "records.jsonl")
    assert len({r["setting"] for r in every}) == len(names)


def test_the_study_runs_every_registered_rule_including_a_plug_in(tmp_path: Path) -> None:
    rules.register(HalfCFG)
    report = run_study(tmp_path, preset="smoke", modalities=["toy"], seeds=1, progress=False)
    study = json.loads((tmp_path / "study.json").read_text())
    ran = {r["rule"] for r in records.read(tmp_path / "toy" / "records.jsonl") if r.get("section") == "rules"}
    assert ran == set(rules.names())  # cfg itself runs there with an interval and with a weight schedule
    assert study["modalities"]["toy"]["sections"]["rules"]
    text = report.with_suffix(".md").read_text()
    assert "## 6. Guidance rules" in text and "test-half" in text and (tmp_path / "plots" / "rules_toy.png").is_file()
    rules_part = text[text.index("## 6. Guidance rules"):]
    # one seed still compares, over its samples: every verdict is a paired FD difference with its interval and
    # follows it (lower exactly when the interval lies below 0, higher when above)
    verdicts = re.findall(r"(lower|higher|no clear difference), FD x[\d.]+, difference \S+ \[(\S+), (\S+)\]",
                          rules_part)
    assert verdicts or "does not reach it" in rules_part
    for word, lo, hi in verdicts:
        assert (word == "lower") == (float(hi) < 0) and (word == "higher") == (float(lo) > 0), (word, lo, hi)
