"""What a person opens: one WAV file per sample, and a PNG grid of mel spectrograms per setting."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from crossguide.modalities.audio.judge import LogMel, MelConfig

TILE = (96, 144)  # (height, width) in pixels of one spectrogram in the grid
MEL = MelConfig(n_fft=256, hop=32, n_mels=64, floor_db=80.0)  # the grid's front end (torchaudio's HTK mel scale)
F_MIN = 30.0  # LogMel's lowest mel frequency, Hz
HZ_TICKS = (50, 100, 200, 500, 1000, 2000, 4000, 8000)
FONT = 12  # pixels
TIME_STEPS = (0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 5.0)  # seconds between time ticks: the first giving <= 4 ticks


def _slug(label: dict[str, str]) -> str:
    text = "_".join(f"{a}-{v}" for a, v in label.items()) or "unconditional"
    return re.sub(r"[^A-Za-z0-9_.+-]", "", text.replace("#", "sharp"))


def write_wavs(samples: Tensor, labels: list[dict[str, str]], directory: Path, sample_rate: int) -> list[str]:
    """16-bit PCM WAV files ``0007_pitch-A_timbre-saw.wav``; returns their names (relative to ``directory``)."""
    directory.mkdir(parents=True, exist_ok=True)
    audio = samples.reshape(len(samples), -1).clamp(-1, 1).numpy()  # [N, L]
    names = []
    for i, (clip, label) in enumerate(zip(audio, labels, strict=True)):
        name = f"{i:04d}_{_slug(label)}.wav"
        sf.write(directory / name, clip, sample_rate, subtype="PCM_16")
        names.append(name)
    return names


def _mel(hz: float) -> float:
    return 2595.0 * math.log10(1.0 + hz / 700.0)  # HTK (O'Shaughnessy 1987), torchaudio's default


@dataclass(frozen=True)
class Layout:
    """Where a spectrogram grid puts things, in pixels: the title on top, frequency ticks at the left of each
    row, time ticks below the last tile of each column, the colour bar at the right."""

    columns: int
    rows: int
    left: int = 58  # frequency axis: its label and tick labels
    top: int = 20  # the title
    caption: int = 15  # a tile's condition, above it
    pad: int = 4
    bottom: int = 34  # time tick labels and the axis label
    right: int = 80  # colour bar, its tick labels and label

    def tile(self, k: int) -> tuple[int, int]:
        """The top-left corner of tile ``k``'s spectrogram (below its caption)."""
        tile_h, tile_w = TILE
        return (self.left + (k % self.columns) * (tile_w + self.pad),
                self.top + (k // self.columns) * (tile_h + self.caption + self.pad) + self.caption)

    @property
    def size(self) -> tuple[int, int]:
        tile_h, tile_w = TILE
        return (self.left + self.columns * (tile_w + self.pad) + self.right,
                self.top + self.rows * (tile_h + self.caption + self.pad) + self.bottom)


def _vertical(text: str, font: ImageFont.ImageFont) -> Image.Image:
    """``text`` rotated to read bottom to top, black on white."""
    measure = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox((0, 0), text, font=font)
    strip = Image.new("L", (measure[2] + 2, measure[3] + 2), 255)
    ImageDraw.Draw(strip).text((1, 0), text, fill=0, font=font)
    return strip.rotate(90, expand=True)


def spectrogram_grid(samples: Tensor, labels: list[dict[str, str]], path: Path, title: str, sample_rate: int,
                     *, max_tiles: int = 64, columns: int = 8, db_range: float = 60.0) -> None:
    """Log-mel spectrograms of up to ``max_tiles`` samples, the same number of each requested condition, as one
    PNG mosaic with labelled axes: time in seconds below each column, frequency in Hz (on the mel scale, low at
    the bottom) at the left of each row, and a colour bar of level in dB below the loudest bin of the grid (one
    ``db_range`` colour range for every tile); each tile captioned with its condition. Drawn with PIL, not one
    matplotlib axes per tile: a study draws one grid per setting and 64 axes cost seconds each time."""
    keys = list(dict.fromkeys(tuple(sorted(lab.items())) for lab in labels))
    per = max(1, max_tiles // len(keys))
    chosen = [i for key in keys for i in [j for j, lab in enumerate(labels) if tuple(sorted(lab.items())) == key][:per]]
    chosen = chosen[:max_tiles]
    mel = LogMel(sample_rate, MEL)
    with torch.no_grad():
        spec = mel(samples[chosen].float())  # [n, mels, frames]
    hi = float(spec.amax())
    level = ((spec - (hi - db_range)) / db_range).clamp(0, 1).flip(1)  # [n, mels, frames] in [0, 1], low mels last
    rgb = (colormaps["magma"](level.numpy())[..., :3] * 255).astype(np.uint8)  # [n, mels, frames, 3]
    tile_h, tile_w = TILE
    font = ImageFont.load_default(FONT)
    layout = Layout(columns=min(columns, len(chosen)), rows=(len(chosen) + columns - 1) // columns)
    canvas = Image.new("RGB", layout.size, "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black", font=font)

    # frequency: mel bin i (of n, equally spaced in mel from F_MIN to Nyquist) fills rows [n-1-i, n-i) of n
    n_mels, lo, top_mel = MEL.n_mels, _mel(F_MIN), _mel(sample_rate / 2)
    step = (top_mel - lo) / (n_mels + 1)  # torchaudio's filters are centred on n_mels + 2 equally spaced points
    hz_ticks = [(f, (n_mels - 0.5 - (_mel(f) - lo - step) / step) * tile_h / n_mels) for f in HZ_TICKS]
    kept: list[tuple[int, float]] = []
    for f, y in sorted(hz_ticks, key=lambda t: t[1]):  # from the top down; labels apart
        if 0 <= y <= tile_h and (not kept or y - kept[-1][1] >= FONT + 2):
            kept.append((f, y))
    # time: frame j is centred on j * hop / sample_rate seconds and fills columns [j, j + 1) of the frames
    frames, seconds = spec.shape[-1], samples.shape[-1] / sample_rate
    every = next((s for s in TIME_STEPS if seconds / s <= 4), TIME_STEPS[-1])
    t_ticks = [(t, (t * sample_rate / MEL.hop + 0.5) * tile_w / frames) for t in np.arange(0, seconds + 1e-9, every)]
    t_ticks = [(t, x) for t, x in t_ticks if 0 <= x <= tile_w]

    for k, (i, tile) in enumerate(zip(chosen, rgb, strict=True)):
        x, y = layout.tile(k)
        draw.text((x, y - layout.caption), " ".join(labels[i].values()) or "uncond.", fill="black", font=font)
        canvas.paste(Image.fromarray(tile).resize((tile_w, tile_h), Image.Resampling.BILINEAR), (x, y))
        if k % layout.columns == 0:  # frequency ticks at the left of each row
            for f, dy in kept:
                draw.line((x - 4, y + dy, x - 1, y + dy), fill="black")
                text = f"{f // 1000}k" if f >= 1000 else str(f)
                draw.text((x - 6, y + dy), text, fill="black", font=font, anchor="rm")
        if k + layout.columns >= len(chosen):  # time ticks below the last tile of each column
            for t, dx in t_ticks:
                draw.line((x + dx, y + tile_h, x + dx, y + tile_h + 3), fill="black")
                draw.text((x + dx, y + tile_h + 4), f"{t:g}", fill="black", font=font, anchor="mt")
    grid_right = layout.left + layout.columns * (tile_w + layout.pad)
    axis = _vertical("frequency (Hz, mel scale)", font)
    canvas.paste(axis, (4, max(layout.top, (layout.size[1] - axis.height) // 2)))
    draw.text(((layout.left + grid_right) // 2, layout.size[1] - 3), "time (s)", fill="black", font=font,
              anchor="mb")

    # colour bar beside the first row: level in dB below the grid's loudest bin
    bx, by = grid_right + 6, layout.tile(0)[1]
    ramp = (colormaps["magma"](np.linspace(1, 0, tile_h))[:, :3] * 255).astype(np.uint8)  # [H, 3], loud on top
    canvas.paste(Image.fromarray(np.repeat(ramp[:, None], 10, axis=1)), (bx, by))
    for db in range(0, int(db_range) + 1, 20):
        dy = by + db / db_range * (tile_h - 1)
        draw.line((bx + 10, dy, bx + 13, dy), fill="black")
        draw.text((bx + 15, dy), f"-{db}" if db else "0", fill="black", font=font, anchor="lm")
    canvas.paste(_vertical("dB re loudest", font), (bx + 42, by))
    path.parent.mkdir(parents=True, exist_ok=True)
    # a 256-colour PNG, a quarter of the size (the tiles are colormap colours and their blends), with the page's
    # white and the text's black kept exact
    image = canvas.quantize(colors=256, method=Image.Quantize.FASTOCTREE)
    palette = np.asarray(image.getpalette(), dtype=np.int64).reshape(-1, 3)  # [colours, 3]
    palette[(palette >= 250).all(1)], palette[(palette <= 5).all(1)] = 255, 0
    image.putpalette(palette.astype(np.uint8).ravel().tolist())
    image.save(path, optimize=True)
