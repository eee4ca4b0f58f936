"""The report's figures and media, without a study: spectrogram axes that say where a frequency is, image tables
enlarged pixel for pixel, players for every attribute value, large pictures embedded small."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from crossguide.benchmarks import study as study_module
from crossguide.benchmarks.report import JPEG_ABOVE, Block, covering, data_uri, render_html, render_md
from crossguide.modalities.audio.outputs import TILE, Layout, spectrogram_grid
from crossguide.modalities.image import pictures


def test_spectrogram_grid_has_axes_whose_ticks_sit_where_the_tones_are(tmp_path: Path) -> None:
    t = torch.arange(1000) / 4000
    clips = torch.stack([torch.sin(2 * math.pi * f * t) for f in (250.0, 1000.0)] * 5)[:, None]  # [10, 1, 1000]
    spectrogram_grid(clips, [{"pitch": name} for name in ("low", "high")] * 5, tmp_path / "grid.png", "two sines",
                     4000, columns=8)
    layout = Layout(columns=8, rows=2)
    with Image.open(tmp_path / "grid.png") as im:
        assert im.size == layout.size
        pixels = np.asarray(im.convert("L"), dtype=float)
    height, width = TILE

    def brightest_row(k: int) -> int:  # within tile k (tiles are grouped by condition: low, low, ..., high, ...)
        x, y = layout.tile(k)
        return y + int(pixels[y:y + height, x:x + width].mean(1).argmax())

    x0, y0 = layout.tile(0)
    ticks = [y for y in range(y0, y0 + height) if pixels[y, x0 - 2] < 100]  # tick marks left of the first row,
    # from the top: 1k, 500, 200 Hz (50 and 100 Hz are 12 px apart no more) at 4 kHz
    assert len(ticks) >= 3
    assert abs(brightest_row(5) - ticks[0]) <= 2  # the 1 kHz tone on the 1k tick
    assert ticks[1] < brightest_row(0) < ticks[2]  # 250 Hz between the 500 and 200 Hz ticks
    below = pixels[y0 + height + 1:y0 + height + 4, layout.tile(2)[0]:layout.tile(2)[0] + width]  # time ticks of
    assert (below.min(0) < 100).sum() >= 3  # a column with no tile below it: 0, 0.1, 0.2 s
    right = layout.tile(7)[0] + width + 6  # the colour bar: loud (bright) on top, quiet (dark) at the bottom
    assert pixels[y0 + 2, right + 5] > pixels[y0 + height - 3, right + 5] + 100


def test_image_table_enlarges_each_sample_by_a_whole_factor_under_its_setting(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    samples = [Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)) for _ in range(12)]
    rows = [(f"condition {r}", [samples[4 * r + 2 * c:4 * r + 2 * c + 2] for c in range(2)]) for r in range(3)]
    pictures.table(rows, ["w = 0", "w = 4 (largest w)"], tmp_path / "t.png", "title", cell=64)
    with Image.open(tmp_path / "t.png") as im:
        canvas = np.asarray(im.convert("RGB"))
    cell, top = 64 + 2, 18 + 14
    assert canvas.shape[0] == top + 3 * cell  # a row per condition, below the title and the headers
    assert canvas.shape[1] >= 2 * 2 * cell  # two settings of two samples
    # the last sample of the last row, 4x by nearest neighbour: each source pixel a 4x4 square
    found = [x for x in range(canvas.shape[1] - 64 + 1)
             if np.array_equal(canvas[top + 2 * cell:top + 2 * cell + 64:4, x:x + 64:4], np.asarray(samples[11]))]
    assert found and np.array_equal(canvas[top + 2 * cell + 1:top + 2 * cell + 64:4, found[0]:found[0] + 64:4],
                                    np.asarray(samples[11]))


def test_covering_shows_every_value_of_every_attribute_in_few_rows() -> None:
    pitches, timbres = ["C", "D", "D#", "F", "F#", "G#", "A", "B"], ["sine", "square", "saw", "pluck"]
    present = [{"pitch": p, "timbre": t} for p in pitches for t in timbres]
    rows = covering(present)
    assert len(rows) == 8 and [r["pitch"] for r in rows] == pitches
    assert sorted({r["timbre"] for r in rows}) == sorted(timbres)
    partial = [c for c in present if c["timbre"] != "saw" or c["pitch"] == "B"]  # the diagonal misses some
    rows = covering(partial)
    assert {r["pitch"] for r in rows} == set(pitches) and {r["timbre"] for r in rows} == set(timbres)
    assert all(r in partial for r in rows) and covering([{}]) == [{}]


def test_players_table_embeds_each_clip_and_links_it_in_markdown(tmp_path: Path) -> None:
    import soundfile as sf

    for name in ("a.wav", "b.wav"):
        sf.write(tmp_path / name, np.zeros(400), 4000, subtype="PCM_16")
    block = Block("players", "clips", rows=[["condition", "w = 0", "w = 4"],
                                            ["pitch=C", str(tmp_path / "a.wav"), str(tmp_path / "b.wav")],
                                            ["pitch=D", str(tmp_path / "a.wav"), ""]])
    page = render_html([block], "t")
    assert page.count("<audio") == 3 and page.count("data:audio/wav;base64,") == 3 and "<td>-</td>" in page
    assert "| pitch=C | [listen](a.wav) | [listen](b.wav) |" in render_md([block], tmp_path)


def test_large_pictures_are_embedded_as_jpeg(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (600, 600, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    Image.fromarray(np.zeros((60, 60, 3), dtype=np.uint8)).save(tmp_path / "small.png")
    assert (tmp_path / "noise.png").stat().st_size > JPEG_ABOVE
    assert data_uri(tmp_path / "noise.png").startswith("data:image/jpeg;base64,")
    assert data_uri(tmp_path / "small.png").startswith("data:image/png;base64,")


def test_time_left_counts_training_and_names_what_is_not_timed_yet() -> None:
    T = study_module.Training
    assert study_module.time_left({"toy": 10}, {"toy": 2.0}, [T(100, 0.5, 100), T(0, 0.5, 100)]) == \
        "~70 s left, 1 model to train (~50 s)"
    assert study_module.time_left({"toy": 0, "image": 30}, {"toy": 2.0}, []) == "~60 s left"  # toy's rate
    assert study_module.time_left({"toy": 10}, {}, [T(3000, 0.2, 3000), T(100, None, 100)]) == \
        ">=10 min left, 2 models to train (1 not timed yet), 10 settings not timed yet"
    assert study_module.time_left({"toy": 26}, {}, [T(300, None, 300), T(300, None, 300)]) == \
        "time left not known yet: 2 models to train, 26 settings"


def test_estimate_learns_training_speed_and_unmatched_references() -> None:
    T = study_module.Training
    est = study_module.Estimate(settings={Path("main"): ("toy", 5), Path("ablation"): ("toy", 0)},
                                training={Path("main"): ("toy", T(0, None, 100)),
                                          Path("ablation"): ("toy", T(0, None, 100)),
                                          Path("other"): ("image", T(0, None, 50))})
    assert est.text() == "time left not known yet: 5 settings"
    # its reference did not match: it trained, and its real attribute names count 7 settings
    est.prepared("toy", Path("main"), trained=True, seconds_per_step=0.1, settings_left=7)
    assert est.training == {Path("ablation"): ("toy", T(100, 0.1, 100)), Path("other"): ("image", T(0, None, 50))}
    assert est.text() == ">=10 s left, 1 model to train (~10 s), 7 settings not timed yet"
    done = est.on_done(Path("main"), known={"reused-s0"}, then=lambda: None)
    done(type("S", (), {"id": lambda self, seed: f"new-s{seed}"})(), 0)  # one computed
    done(type("S", (), {"id": lambda self, seed: f"reused-s{seed}"})(), 0)  # one reused: not counted
    assert est.settings[Path("main")] == ("toy", 6) and est.spent["toy"][1] == 1
    assert est.text().endswith("left, 1 model to train (~10 s)") and "not timed" not in est.text()


@pytest.mark.parametrize("preset", ["quick", "smoke"])
def test_training_left_trusts_shipped_references_by_name(tmp_path: Path, preset: str) -> None:
    from crossguide.registry import get

    toy = get("toy")
    spec = toy.preset(preset)
    runs = study_module.study_models(study_module.PLANS[preset], "toy", spec, tmp_path)
    left = [study_module.training_left(toy, run, preset) for run in runs]
    if preset == "quick":  # shipped references for the main model and its ablation: nothing to train, timed
        assert [t.steps for t in left] == [0] * len(runs) and all(t.seconds_per_step for t in left)
    else:  # none for smoke: every recipe's steps, speed unknown
        assert [t.steps for t in left] == [spec.train.steps] * len(runs)
        assert all(t.seconds_per_step is None for t in left)
    assert [t.unmatched for t in left] == [spec.train.steps] * len(runs)
