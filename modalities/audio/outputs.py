"""What a person opens: one WAV file per sample, and a PNG grid of mel spectrograms per setting."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from matplotlib import colormaps
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from crossguide.modalities.audio.judge import LogMel, MelConfig

TILE = (96, 144)  # (height, width) in pixels of one spectrogram in the grid


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


def spectrogram_grid(samples: Tensor, labels: list[dict[str, str]], path: Path, title: str, sample_rate: int,
                     *, max_tiles: int = 64, columns: int = 8, db_range: float = 60.0) -> None:
    """Log-mel spectrograms of up to ``max_tiles`` samples, the same number of each requested condition, as one
    PNG mosaic (low frequencies at the bottom of each tile, one ``db_range`` colour range for every tile), each
    tile captioned with its condition. Drawn with PIL, not one matplotlib axes per tile: a study draws one grid
    per setting and 64 axes cost seconds each time."""
    keys = list(dict.fromkeys(tuple(sorted(lab.items())) for lab in labels))
    per = max(1, max_tiles // len(keys))
    chosen = [i for key in keys for i in [j for j, lab in enumerate(labels) if tuple(sorted(lab.items())) == key][:per]]
    chosen = chosen[:max_tiles]
    mel = LogMel(sample_rate, MelConfig(n_fft=256, hop=32, n_mels=64, floor_db=80.0))
    with torch.no_grad():
        spec = mel(samples[chosen].float())  # [n, mels, frames]
    hi = float(spec.amax())
    level = ((spec - (hi - db_range)) / db_range).clamp(0, 1).flip(1)  # [n, mels, frames] in [0, 1], low mels last
    rgb = (colormaps["magma"](level.numpy())[..., :3] * 255).astype(np.uint8)  # [n, mels, frames, 3]
    tile_h, tile_w = TILE
    font = ImageFont.load_default()
    caption, pad, top = 12, 4, 18
    rows = (len(chosen) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * (tile_w + pad) + pad, top + rows * (tile_h + caption + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black", font=font)
    for k, (i, tile) in enumerate(zip(chosen, rgb, strict=True)):
        x, y = pad + (k % columns) * (tile_w + pad), top + (k // columns) * (tile_h + caption + pad)
        draw.text((x, y), " ".join(labels[i].values()) or "uncond.", fill="black", font=font)
        canvas.paste(Image.fromarray(tile).resize((tile_w, tile_h), Image.Resampling.BILINEAR), (x, y + caption))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
