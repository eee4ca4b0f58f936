"""What a person opens: one WAV file per sample, and a PNG grid of mel spectrograms per setting."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import soundfile as sf  # noqa: E402
import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from modalities.audio.judge import LogMel, MelConfig  # noqa: E402


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
                     *, max_tiles: int = 64, columns: int = 8) -> None:
    """Log-mel spectrograms of up to ``max_tiles`` samples, the same number of each requested condition."""
    keys = list(dict.fromkeys(tuple(sorted(lab.items())) for lab in labels))
    per = max(1, max_tiles // len(keys))
    chosen = [i for key in keys for i in [j for j, lab in enumerate(labels) if tuple(sorted(lab.items())) == key][:per]]
    chosen = chosen[:max_tiles]
    mel = LogMel(sample_rate, MelConfig(n_fft=256, hop=32, n_mels=64, floor_db=80.0))
    with torch.no_grad():
        spec = mel(samples[chosen].float())  # [n, mels, frames]
    rows = (len(chosen) + columns - 1) // columns
    fig, axes = plt.subplots(rows, columns, figsize=(1.6 * columns, 1.45 * rows + 0.5), squeeze=False)
    lo, hi = float(spec.amax()) - 60.0, float(spec.amax())  # one 60 dB colour range for every tile
    for ax in axes.flat:
        ax.axis("off")
    for ax, i, s in zip(axes.flat, chosen, spec, strict=False):
        ax.imshow(s.numpy(), origin="lower", aspect="auto", vmin=lo, vmax=hi, cmap="magma")
        ax.set_title(" ".join(labels[i].values()) or "uncond.", fontsize=6)
    fig.suptitle(title, fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
