"""The image modality through the shared pipeline: smoke train + sample + evaluate, and the evaluator's accuracy."""

import json
import time
from pathlib import Path

import pytest
from PIL import Image

from crossguide import records
from crossguide.bench import bench
from crossguide.modalities.image import MODALITY
from crossguide.pipeline import cache_dir
from crossguide.registry import get


def test_image_is_registered_through_its_entry_point():
    assert get("image") is MODALITY
    assert set(MODALITY.datasets) >= {"shapes", "digits", "folder"} and MODALITY.default_dataset == "shapes"


def test_smoke_bench_trains_samples_and_evaluates_end_to_end(tmp_path: Path):
    recs = bench("image", out=tmp_path, preset="smoke", ws=[-1.0, 0.0, 2.0], progress=False)
    preset = MODALITY.preset("smoke")
    n = 16 * preset.per_condition
    assert [r["w"] for r in recs] == [-1.0, 0.0, 2.0]
    for r in recs:
        assert r["modality"] == "image" and r["dataset"] == "shapes" and r["n"] == n
        m = r["metrics"]
        assert {"adherence", "adherence/shape", "adherence/color", "fd", "diversity", "saturated"} <= set(m)
        assert 0 <= m["adherence"] <= 1 and m["fd"] > 0 and m["diversity"] > 0
        # recorded with the evaluator: even the smoke judge (40 steps) is well above chance (1/16) on held-out data
        assert 1 / 16 < r["extra"]["evaluator"]["held_out_accuracy"]["joint"] <= 1
        with Image.open(tmp_path / r["picture"]) as im:
            assert im.size[0] > 100 and im.size[1] > 16 * 8  # a labelled grid, a row per condition
    # unguided settings need one branch per step, guided ones two (unconditional + conditional)
    assert [r["nfe"] for r in recs] == [preset.steps, preset.steps, 2 * preset.steps]
    manifest = records.read(tmp_path / "samples" / "manifest.jsonl")
    assert len(manifest) == 3 * n
    for row in manifest[:: n // 2]:
        with Image.open(tmp_path / "samples" / row["path"]) as im:
            assert im.size == (8, 8)
        assert set(row["condition"]) == {"shape", "color"}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset"] == "shapes" and summary["train"]["examples_per_s"] > 0
    assert (tmp_path / "plots" / "fd_vs_adherence.png").exists()
    assert (tmp_path / "model" / "ema.safetensors").exists()

    # the same sweep from the trained checkpoint gives the same samples (seeded) without training again
    again = bench("image", out=tmp_path / "again", checkpoint=tmp_path / "model", ws=[2.0], progress=False)
    assert again[0]["metrics"] == recs[2]["metrics"]


@pytest.mark.parametrize("dataset", ["shapes", "digits"])
def test_quick_evaluator_is_accurate_on_held_out_real_data(dataset: str):
    splits = MODALITY.load_dataset(dataset, "quick", None, 0)
    evaluator = MODALITY.evaluator(splits, "quick", cache_dir())
    accuracy = evaluator.info["held_out_accuracy"]
    assert accuracy["joint"] >= 0.95, accuracy
    assert evaluator.features(splits.test.x[:5]).shape == (5, 64)
    # cached: a second evaluator loads the same judge instead of training again
    start = time.perf_counter()
    again = MODALITY.evaluator(splits, "quick", cache_dir())
    assert time.perf_counter() - start < 5 and again.info == evaluator.info
