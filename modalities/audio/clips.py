"""Turning recorded audio into training clips: mono, one sample rate, one length, one peak level."""

from __future__ import annotations

import torch
import torchaudio
from torch import Tensor

from crossguide.errors import UsageError

PEAK = 0.9  # clips are scaled to this peak amplitude
SILENCE = 1e-4  # a file whose peak is below this holds no sound


def to_clip(audio: Tensor, sample_rate: int, target_rate: int, length: int, *, name: str) -> Tensor:
    """``[channels, samples]`` float audio -> one ``[1, length]`` clip at ``target_rate``.

    Channels are averaged, the audio is resampled with torchaudio (band-limited sinc interpolation), cropped to
    ``length`` samples from its onset (the first sample within 40 dB of the peak) or zero-padded, and scaled
    to a peak of :data:`PEAK`. ``name`` (the file) is named in the error raised for silent audio.
    """
    mono = audio.float().mean(0)  # [samples]
    if sample_rate != target_rate:
        mono = torchaudio.functional.resample(mono, sample_rate, target_rate)
    peak = float(mono.abs().max()) if mono.numel() else 0.0
    if peak < SILENCE:
        raise UsageError(f"audio file {name!r} is silent (peak amplitude {peak:.2g}); remove it")
    onset = int((mono.abs() >= peak * 0.01).nonzero()[0])
    clip = mono[onset : onset + length]
    clip = torch.nn.functional.pad(clip, (0, length - len(clip)))
    return (clip * (PEAK / float(clip.abs().max()))).clamp(-1, 1)[None]
