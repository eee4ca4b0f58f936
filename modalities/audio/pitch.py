"""A model-free pitch metric: pitch-class accuracy from librosa's pYIN f0 estimate (Mauch & Dixon 2014).

Each clip's pitch is the median f0 over its voiced frames, rounded to the nearest equal-tempered semitone; it is
right when that semitone's pitch class (C, C#, ..., B; octave errors forgiven) is the requested one. pYIN's
cost is bounded by a short frame, a hop of half a frame, a pitch range of about two and a half octaves, and one
batched call over all clips (librosa runs the Viterbi decoding per clip but vectorises the YIN stage).
"""

from __future__ import annotations

import math
import warnings

import librosa
import numpy as np
from torch import Tensor

PITCH_CLASSES = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]  # MIDI number mod 12


def f0_midi(audio: Tensor, sample_rate: int, *, fmin: float = 150.0, fmax: float = 1000.0) -> np.ndarray:
    """Median pYIN f0 of each clip as a (fractional) MIDI number, ``[N, 1, L] -> [N]``; NaN when unvoiced.

    Frames are the power of two at or above 50 ms (512 samples at 8 kHz), hopping by half a frame.
    """
    frame_length = 2 ** math.ceil(math.log2(0.05 * sample_rate))
    fmax = min(fmax, 0.45 * sample_rate)
    y = audio.reshape(len(audio), -1).double().numpy()  # [N, L]
    if y.shape[1] < frame_length:
        y = np.pad(y, ((0, 0), (0, frame_length - y.shape[1])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # all-unvoiced clips make nanmedian warn
        f0, voiced, _ = librosa.pyin(y, fmin=fmin, fmax=fmax, sr=sample_rate, frame_length=frame_length,
                                     hop_length=frame_length // 2, center=False)  # f0 [N, frames]
        f0 = np.where(voiced, f0, np.nan)
        hz = np.nanmedian(f0, axis=1)  # [N]
    return 69.0 + 12.0 * np.log2(hz / 440.0)


def pitch_class(midi: np.ndarray) -> list[str | None]:
    """The nearest equal-tempered pitch class of each MIDI number (``None`` for NaN), e.g. 69.2 -> ``A``."""
    return [None if np.isnan(m) else PITCH_CLASSES[int(round(m)) % 12] for m in np.asarray(midi, dtype=np.float64)]


def pitch_accuracy(audio: Tensor, requested: list[str], sample_rate: int) -> dict[str, float]:
    """``pitch_accuracy``: pYIN pitch class equals the requested name; ``pitch_voiced``: any voiced frame."""
    found = pitch_class(f0_midi(audio, sample_rate))
    return {
        "pitch_accuracy": float(np.mean([f == r for f, r in zip(found, requested, strict=True)])),
        "pitch_voiced": float(np.mean([f is not None for f in found])),
    }
