"""The guidance-cost benchmark runs and records every variant relative to the unguided model."""

from pathlib import Path

from crossguide import records
from crossguide.benchmarks.guidance_cost import main


def test_guidance_cost_records_every_variant(tmp_path: Path) -> None:
    assert main(["--modality", "toy", "--preset", "smoke", "--batch", "16", "--repeats", "2", "--out",
                 str(tmp_path)]) == 0
    rows = {r["variant"]: r for r in records.read(tmp_path / "guidance_cost.jsonl")}
    assert set(rows) == {"unguided", "cfg_batched", "cfg_separate", "compose_2", "compose_3", "apg", "auto",
                         "classifier"}
    assert all(r["seconds_per_step"] > 0 for r in rows.values())
    assert rows["unguided"]["paired_ratio"] == 1.0  # each round's unguided time divided by itself
    assert all(lo <= r["paired_ratio"] <= hi for r in rows.values() for lo, hi in [r["paired_ratio_iqr"]])
    # what each variant evaluates per step, counted from the denoiser's forwards: batching is what makes CFG
    # cost one forward of twice the rows, and compositions one forward of K + 1 branches
    shape = {name: (r["forwards"], r["rows"]) for name, r in rows.items()}
    assert shape["unguided"] == (1, 16)  # w = 0 skips the unconditional branch
    assert shape["cfg_batched"] == (1, 32) and shape["cfg_separate"] == (2, 32)
    assert shape["compose_2"] == (1, 48) and shape["compose_3"] == (1, 64)
    assert shape["apg"] == (1, 32) and shape["auto"] == (1, 16)  # autoguidance: the weak model is the other pass


def test_guidance_cost_rejects_bad_batch(tmp_path: Path) -> None:
    assert main(["--batch", "0", "--out", str(tmp_path)]) == 2
