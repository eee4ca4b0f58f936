"""The audio modality end to end: the ``smoke`` preset through core's bench, and its files."""

import json
from pathlib import Path

import soundfile as sf

from crossguide import registry
from crossguide.bench import bench, default_ws
from crossguide.errors import UsageError


def test_smoke_bench_end_to_end(tmp_path: Path) -> None:
    recs = bench("audio", out=tmp_path, preset="smoke", progress=False)  # about 20 s on an idle 2-core CPU
    ws = default_ws("audio")
    assert sorted(r["w"] for r in recs) == sorted(ws) and len(ws) == 10
    for r in recs:
        m = r["metrics"]
        assert r["dataset"] == "notes" and r["sampler"] == "ddpm" and r["steps"] == 6
        assert 0 <= m["adherence"] <= 1 and 0 <= m["pitch_accuracy"] <= 1 and m["fd"] >= 0
        assert r["nfe"] == (6 if r["w"] in (0.0, -1.0) else 12)  # one branch at w = 0 and -1, two otherwise
        assert (tmp_path / r["picture"]).stat().st_size > 0
    assert recs[0]["extra"]["evaluator"]["objective"] == "pYIN pitch-class accuracy"
    assert recs[0]["extra"]["evaluator"]["real_test_pitch_accuracy"] >= 0.9  # real notes are in tune
    manifest = [json.loads(line) for line in (tmp_path / "samples" / "manifest.jsonl").read_text().splitlines()]
    assert len(manifest) == 10 * 32  # 8 pitches x 4 timbres, one sample each, per setting
    audio, rate = sf.read(tmp_path / "samples" / manifest[0]["path"])
    assert rate == 8000 and audio.shape == (800,) and abs(audio).max() <= 1.0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["modality"] == "audio" and summary["dataset"] == "notes"
    assert (tmp_path / "plots" / "pitch_accuracy_vs_w.png").exists()


def test_usage_errors_name_the_choices() -> None:
    audio = registry.get("audio")
    try:
        audio.load_dataset("birdsong", "smoke", None, 0)
    except UsageError as e:
        assert "notes" in str(e) and "spoken-digits" in str(e) and "folder" in str(e)
    else:
        raise AssertionError("an unknown dataset must be a UsageError")


def test_spectrogram_grid_is_one_png_with_a_tile_per_sample_low_frequencies_at_the_bottom(tmp_path: Path) -> None:
    import math

    import numpy as np
    import torch
    from PIL import Image

    from crossguide.modalities.audio.outputs import TILE, Layout, spectrogram_grid

    t = torch.arange(1000) / 4000
    clips = torch.stack([torch.sin(2 * math.pi * f * t) for f in (250.0, 1000.0)] * 5)[:, None]  # [10, 1, 1000]
    labels = [{"pitch": name} for name in ("low", "high")] * 5
    spectrogram_grid(clips, labels, tmp_path / "grid.png", "two sines", 4000, columns=8)
    with Image.open(tmp_path / "grid.png") as im:
        pixels = np.asarray(im.convert("L"), dtype=float)
    height, width = TILE
    layout = Layout(columns=8, rows=2)  # title, 2 rows of captioned tiles, axes and colour bar
    assert pixels.shape == layout.size[::-1]

    def brightest_row(k: int) -> int:  # within tile k (tiles are grouped by condition: low, low, ..., high, ...)
        x, y = layout.tile(k)
        return int(pixels[y:y + height, x:x + width].mean(1).argmax())

    assert brightest_row(0) > brightest_row(5) + 10  # the 250 Hz tile's line sits lower than the 1 kHz tile's
