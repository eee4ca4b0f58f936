"""``notes``: procedural musical notes with two attributes, pitch class and timbre.

Each clip is one note of an octatonic scale in octave 4 (eight pitch classes with one or two semitones between
neighbours, so the classes are close enough to leave room for guidance) played by one of four instruments:
``sine``, band-limited ``square`` and ``saw`` (additive synthesis, harmonics below 0.45 of the sample rate), and
``pluck``, a plucked string by the Karplus-Strong algorithm (Karplus & Strong 1983) with a fractional delay line.
Loudness, attack/decay/release, start phase, a saw's brightness and a light vibrato are random; a fixed data
seed makes the clips and the train/test split the same on every run.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossguide.data import ConditionalDataset, Splits, split
from crossguide.errors import UsageError

# the octatonic (half-whole diminished) scale on C: C D D# F F# G# A B, MIDI 60 .. 71
PITCHES = ["C", "D", "D#", "F", "F#", "G#", "A", "B"]
MIDI = [60, 62, 63, 65, 66, 68, 69, 71]
TIMBRES = ["sine", "square", "saw", "pluck"]
ATTRIBUTES = {"pitch": PITCHES, "timbre": TIMBRES}

DEFAULTS = {"sample_rate": 8000, "duration": 0.25, "per_condition": 80, "test_fraction": 0.2, "data_seed": 1234}


def midi_to_hz(midi: float | np.ndarray) -> float | np.ndarray:
    """Equal temperament, A4 = MIDI 69 = 440 Hz."""
    return 440.0 * 2.0 ** ((np.asarray(midi, dtype=np.float64) - 69.0) / 12.0)


def _envelope(n: int, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Attack-decay-sustain-release envelopes ``[n, length]`` with random times and sustain levels."""
    t = np.arange(length) / sr  # [L]
    attack = rng.uniform(0.004, 0.04, (n, 1))
    decay = rng.uniform(0.03, 0.2, (n, 1))
    sustain = rng.uniform(0.4, 1.0, (n, 1))
    release = rng.uniform(0.02, 0.06, (n, 1))
    end = length / sr
    rise = np.clip(t / attack, 0, 1)
    fall = sustain + (1 - sustain) * np.exp(-np.clip(t - attack, 0, None) / decay)
    tail = np.clip((end - t) / release, 0, 1)
    return rise * fall * tail


def _phase(f0: np.ndarray, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Instantaneous phase ``[n, L]`` of ``f0`` with a light vibrato (4-7 Hz, up to 15 cents) and random start."""
    n = len(f0)
    t = np.arange(length) / sr
    rate = rng.uniform(4.0, 7.0, (n, 1))
    depth = rng.uniform(0.0, 15.0, (n, 1)) / 1200.0  # octaves
    freq = f0[:, None] * 2.0 ** (depth * np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi, (n, 1))))
    return rng.uniform(0, 2 * np.pi, (n, 1)) + 2 * np.pi * np.cumsum(freq, axis=1) / sr


def additive(f0: np.ndarray, kind: str, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Band-limited sine / square / sawtooth waves ``[n, L]`` (Fourier series; random roll-off on saws)."""
    phase = _phase(f0, length, sr, rng)
    if kind == "sine":
        return np.sin(phase)
    top = int(0.45 * sr / f0.min())
    k = np.arange(1, top + 1)  # harmonic numbers
    amp = (1.0 / k) * (k % 2 == 1) if kind == "square" else (-1.0) ** (k + 1) / k  # [K]
    # extra slope (up to -3 dB/octave): brightness, for saws only; squares keep their full odd partials, since
    # at 4 kHz a dull square (a fundamental and one faint third) is hardly told from a sine. It is drawn for
    # every kind, so the random stream, and with it every other clip, is what it was before squares lost it.
    rolloff = rng.uniform(0.0, 0.5, (len(f0), 1)) * (kind == "saw")
    amp = amp[None] * k[None] ** -rolloff * (k[None] * f0[:, None] < 0.45 * sr)  # [n, K]
    out = np.einsum("nk,nkl->nl", amp, np.sin(k[None, :, None] * phase[:, None]))
    return out / np.abs(out).max(axis=1, keepdims=True)


def karplus_strong(f0: np.ndarray, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Plucked strings ``[n, L]``: a noise burst through a delay line with a two-point averaging loss filter.

    ``y[i] = x[i] + rho (y[i-D] + y[i-D-1]) / 2`` (Karplus & Strong 1983); the filter adds half a sample of
    delay, so ``D = sr/f0 - 1/2``, realised by linear interpolation between the neighbouring whole delays.
    """
    n = len(f0)
    period = sr / f0  # [n] samples
    delay = period - 0.5
    whole = np.floor(delay).astype(int)
    frac = delay - whole
    rho = rng.uniform(0.985, 0.998, n)  # loss per period: decay time
    span = int(np.ceil(period.max()))
    burst = rng.uniform(-1, 1, (n, span)) * (np.arange(span)[None] < period[:, None])  # one period of noise
    bright = rng.uniform(0.3, 1.0, n)  # one-pole low-pass on the burst: pluck hardness
    for i in range(1, span):
        burst[:, i] = bright * burst[:, i] + (1 - bright) * burst[:, i - 1]
    pad = int(whole.max()) + 2  # leading zeros: y before the pluck
    y = np.zeros((n, pad + length))
    rows = np.arange(n)
    for i in range(length):
        j = pad + i
        a, b, c = y[rows, j - whole], y[rows, j - whole - 1], y[rows, j - whole - 2]  # y[i-w], y[i-w-1], y[i-w-2]
        delayed = (1 - frac) * (a + b) / 2 + frac * (b + c) / 2  # (y[i-D] + y[i-D-1]) / 2 for fractional D
        y[:, j] = rho * delayed + (burst[:, i] if i < span else 0.0)
    y = y[:, pad:]
    return y / np.abs(y).max(axis=1, keepdims=True)


def synthesize(pitch: np.ndarray, timbre: np.ndarray, length: int, sr: int, rng: np.random.Generator) -> np.ndarray:
    """Clips ``[n, L]`` in [-1, 1] for pitch and timbre indices ``[n]``."""
    f0 = midi_to_hz(np.asarray(MIDI)[pitch])
    out = np.zeros((len(pitch), length))
    for k, name in enumerate(TIMBRES):
        idx = np.flatnonzero(timbre == k)
        if len(idx) == 0:
            continue
        if name == "pluck":
            wave = karplus_strong(f0[idx], length, sr, rng)
            wave = wave * np.clip((length / sr - np.arange(length) / sr) / 0.03, 0, 1)  # 30 ms release
        else:
            wave = additive(f0[idx], name, length, sr, rng) * _envelope(len(idx), length, sr, rng)
        out[idx] = wave
    loudness = rng.uniform(0.25, 0.9, (len(pitch), 1))  # peak amplitude
    return out / np.abs(out).max(axis=1, keepdims=True) * loudness


def notes_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """The ``notes`` dataset: ``per_condition`` clips of every (pitch, timbre), split by a fixed data seed.

    Options: ``sample_rate`` (Hz), ``duration`` (s), ``per_condition``, ``test_fraction``, ``data_seed``. The run
    ``seed`` drives training only; the data never changes with it.
    """
    if path is not None:
        raise UsageError("the audio 'notes' dataset is procedural and takes no --data path")
    o = {**DEFAULTS, **options}
    sr, length = int(o["sample_rate"]), int(round(o["duration"] * o["sample_rate"]))
    if sr < 4000 or length < sr // 50:
        raise UsageError(f"notes need sample_rate >= 4000 and duration >= 20 ms, got {sr} Hz and {o['duration']} s")
    rng = np.random.default_rng(int(o["data_seed"]))
    pitch, timbre = np.meshgrid(np.arange(len(PITCHES)), np.arange(len(TIMBRES)), indexing="ij")
    pitch = np.repeat(pitch.ravel(), int(o["per_condition"]))
    timbre = np.repeat(timbre.ravel(), int(o["per_condition"]))
    x = torch.from_numpy(synthesize(pitch, timbre, length, sr, rng)).float()[:, None]  # [N, 1, L]
    cond = {"pitch": torch.from_numpy(pitch), "timbre": torch.from_numpy(timbre)}
    info = {"sample_rate": sr, "length": length, "pitch_classes": {p: p for p in PITCHES}}
    data = ConditionalDataset("notes", x, cond, {a: list(v) for a, v in ATTRIBUTES.items()}, info)
    return split(data, float(o["test_fraction"]), int(o["data_seed"]))


__all__ = ["ATTRIBUTES", "MIDI", "PITCHES", "TIMBRES", "karplus_strong", "midi_to_hz", "notes_dataset", "synthesize"]
