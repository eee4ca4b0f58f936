"""Audio datasets (notes, folder, spoken digits) and the pYIN pitch metric."""

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from crossguide.errors import UsageError
from crossguide.modalities.audio import speech
from crossguide.modalities.audio.clips import PEAK
from crossguide.modalities.audio.folder import folder_dataset
from crossguide.modalities.audio.notes import MIDI, PITCHES, TIMBRES, additive, midi_to_hz, notes_dataset, synthesize
from crossguide.modalities.audio.pitch import f0_midi, pitch_accuracy, pitch_class

SMALL = {"sample_rate": 8000, "duration": 0.1, "per_condition": 3}


def _tone(hz: float, seconds: float = 0.3, rate: int = 8000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate), dtype=torch.float64) / rate
    return (0.5 * torch.sin(2 * torch.pi * hz * t)).float()[None, None]  # [1, 1, L]


def test_notes_are_deterministic_balanced_and_in_range() -> None:
    a, b = notes_dataset(SMALL, None, 0), notes_dataset(SMALL, None, 7)  # the run seed never changes the data
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.test.x, b.test.x)
    assert torch.equal(a.train.cond["pitch"], b.train.cond["pitch"])
    n = len(PITCHES) * len(TIMBRES) * 3
    assert len(a.train) + len(a.test) == n and a.train.x.shape[1:] == (1, 800)
    assert float(a.train.x.abs().max()) <= 0.9 + 1e-6 and bool(torch.isfinite(a.train.x).all())
    c = notes_dataset({**SMALL, "data_seed": 99}, None, 0)
    assert not torch.equal(a.train.x, c.train.x)
    assert a.train.info == {"sample_rate": 8000, "length": 800, "pitch_classes": {p: p for p in PITCHES}}
    with pytest.raises(UsageError, match="no --data"):
        notes_dataset(SMALL, Path("."), 0)


def test_pyin_reads_a4_as_a_and_c5_as_c() -> None:
    clips = torch.cat([_tone(440.0), _tone(523.25)])
    midi = f0_midi(clips, 8000)
    assert midi == pytest.approx([69.0, 72.0], abs=0.1)
    assert pitch_class(midi) == ["A", "C"]
    assert pitch_accuracy(clips, ["A", "C"], 8000) == {"pitch_accuracy": 1.0, "pitch_voiced": 1.0}
    assert pitch_accuracy(clips, ["A", "A"], 8000)["pitch_accuracy"] == 0.5
    silent = pitch_accuracy(torch.zeros(1, 1, 2000), ["A"], 8000)
    assert silent == {"pitch_accuracy": 0.0, "pitch_voiced": 0.0}


def test_every_synthesized_timbre_has_its_pitch() -> None:
    rng = np.random.default_rng(0)
    pitch = np.repeat(np.arange(len(MIDI)), len(TIMBRES))
    timbre = np.tile(np.arange(len(TIMBRES)), len(MIDI))
    clips = torch.from_numpy(synthesize(pitch, timbre, 2000, 8000, rng)).float()[:, None]
    cents = 100 * (f0_midi(clips, 8000) - np.asarray(MIDI)[pitch])
    assert np.abs(cents).max() < 30  # Karplus-Strong's fractional delay keeps plucks in tune too
    assert midi_to_hz(69) == 440.0


def _partial_ratio(kind: str, harmonic: int, n: int = 16) -> np.ndarray:
    """Amplitude of one harmonic over the fundamental's, per clip, from the energy within 40 Hz of each."""
    sr, f0 = 8000, 220.0
    clips = additive(np.full(n, f0), kind, sr, sr, np.random.default_rng(0))  # [n, L], one second each
    power = np.abs(np.fft.rfft(clips * np.hanning(sr), axis=1)) ** 2  # 1 Hz bins
    band = lambda hz: power[:, int(hz) - 40 : int(hz) + 41].sum(1)  # noqa: E731 (vibrato spreads each partial)
    return np.sqrt(band(harmonic * f0) / band(f0))


def test_squares_keep_their_odd_partials_and_saws_vary_in_brightness() -> None:
    squares = _partial_ratio("square", 3)
    assert np.all(np.abs(squares - 1 / 3) < 0.03)  # the Fourier series' 1/3: no roll-off on squares
    assert np.all(_partial_ratio("square", 2) < 0.01)  # and no even partials
    saws = _partial_ratio("saw", 3)
    assert saws.max() < 0.36 and saws.max() - saws.min() > 0.05  # a random roll-off darkens saws


def _write(path: Path, data: np.ndarray, rate: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, data, rate)


def test_folder_loads_mono_resampled_fixed_length_clips(tmp_path: Path) -> None:
    t = np.arange(8000) / 8000
    for i in range(3):
        _write(tmp_path / "low" / f"{i}.wav", 0.3 * np.sin(2 * np.pi * (200 + 10 * i) * t), 8000)
    stereo = np.stack([0.5 * np.sin(2 * np.pi * 600 * t), 0.1 * np.sin(2 * np.pi * 600 * t)], 1)
    _write(tmp_path / "high" / "stereo.flac", stereo, 8000)
    t16 = np.arange(16000) / 16000  # another sample rate: resampled to the dataset's
    _write(tmp_path / "high" / "sixteen.wav", 0.2 * np.sin(2 * np.pi * 700 * t16), 16000)
    _write(tmp_path / "high" / "short.ogg", 0.4 * np.sin(2 * np.pi * 650 * t[:2000]), 8000)
    (tmp_path / "high" / ".DS_Store").write_text("hidden files are skipped")
    splits = folder_dataset({"sample_rate": 8000, "duration": 0.5, "test_fraction": 0.3}, tmp_path, 0)
    data = torch.cat([splits.train.x, splits.test.x])
    labels = torch.cat([splits.train.cond["label"], splits.test.cond["label"]])
    assert splits.train.attributes == {"label": ["high", "low"]}
    assert data.shape == (6, 1, 4000) and sorted(labels.tolist()) == [0, 0, 0, 1, 1, 1]
    assert data.abs().amax(dim=(1, 2)) == pytest.approx([PEAK] * 6, abs=1e-4)
    hz = sorted((440 * 2 ** ((f0_midi(data, 8000) - 69) / 12)).tolist())  # every file kept its pitch
    assert hz == pytest.approx([200, 210, 220, 600, 650, 700], rel=0.02)
    short = data[(data[:, 0, 2000:].abs().amax(-1) == 0).flatten()]
    assert len(short) == 1  # the 0.25 s file is zero-padded to 0.5 s
    again = folder_dataset({"sample_rate": 8000, "duration": 0.5, "test_fraction": 0.3}, tmp_path, 5)
    assert torch.equal(again.train.x, splits.train.x)  # a fixed split


@pytest.mark.parametrize("bad", ["notes.txt", "broken.wav", "silent.wav"])
def test_folder_names_the_bad_file(tmp_path: Path, bad: str) -> None:
    _write(tmp_path / "a" / "ok.wav", 0.3 * np.sin(np.arange(4000) / 3), 8000)
    target = tmp_path / "a" / bad
    if bad == "silent.wav":
        _write(target, np.zeros(4000), 8000)
    else:
        target.write_bytes(b"this is not audio")
    with pytest.raises(UsageError, match=bad.replace(".", r"\.")):
        folder_dataset({}, tmp_path, 0)


def test_folder_rejects_missing_or_empty_paths(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="needs --data"):
        folder_dataset({}, None, 0)
    with pytest.raises(UsageError, match="not a directory"):
        folder_dataset({}, tmp_path / "nowhere", 0)
    with pytest.raises(UsageError, match="no class subfolders"):
        folder_dataset({}, tmp_path, 0)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError, match="holds no audio"):
        folder_dataset({}, tmp_path, 0)


def test_spoken_digits_without_espeak_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(speech.shutil, "which", lambda name: None)
    with pytest.raises(UsageError, match="apt-get install espeak-ng"):
        speech.spoken_digits_dataset({"per_digit": 1}, None, 0)


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_spoken_digits_are_built_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CROSSGUIDE_CACHE", str(tmp_path))
    options = {"sample_rate": 8000, "duration": 0.5, "per_digit": 2}
    first = speech.spoken_digits_dataset(options, None, 0)
    assert len(first.train) + len(first.test) == 20 and first.train.x.shape[1:] == (1, 4000)
    assert first.train.attributes == {"digit": speech.DIGITS}
    monkeypatch.setattr(speech, "render", lambda o: pytest.fail("rendered again instead of using the cache"))
    second = speech.spoken_digits_dataset(options, None, 0)
    assert torch.equal(first.train.x, second.train.x)
