"""The guidance-cost benchmark runs and records every variant relative to the unguided model."""

from pathlib import Path

from benchmarks.guidance_cost import main
from core import records


def test_guidance_cost_records_every_variant(tmp_path: Path) -> None:
    assert main(["--modality", "toy", "--preset", "smoke", "--batch", "16", "--repeats", "2", "--out",
                 str(tmp_path)]) == 0
    rows = {r["variant"]: r for r in records.read(tmp_path / "guidance_cost.jsonl")}
    assert set(rows) == {"unguided", "cfg_batched", "cfg_separate", "compose_2", "compose_3", "apg", "auto",
                         "classifier"}
    assert rows["unguided"]["ratio_to_unguided"] == 1.0
    assert all(r["seconds_per_step"] > 0 for r in rows.values())


def test_guidance_cost_rejects_bad_batch(tmp_path: Path) -> None:
    assert main(["--batch", "0", "--out", str(tmp_path)]) == 2
