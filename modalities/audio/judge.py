"""The audio evaluator: a small CNN on torchaudio log-mel spectrograms, trained on the real clips.

Its penultimate features give a Frechet distance in the manner of the Frechet Audio Distance (Kilgour et al.
2019), computed on our own features instead of VGGish's, plus precision/recall and diversity; its heads judge
per-attribute adherence. Mel bins are the channels of 1-D convolutions over time, so the network keeps
absolute frequency, which pitch needs. Training augments with random gain and a little white noise, so that
loudness and the faint hiss a diffusion sampler may leave do not decide the judged class.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torchaudio
from torch import Tensor, nn

from crossguide.conditions import Condition
from crossguide.data import Splits
from crossguide.judge import FitConfig, Judge, JudgeEvaluator, train_judge
from crossguide.modalities.audio.pitch import pitch_accuracy

JUDGE_FIT = {  # the judge's training, per preset
    "smoke": FitConfig(steps=60, batch_size=64),
    "quick": FitConfig(steps=800),
    "full": FitConfig(steps=3000),
}


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end; the defaults suit 8-16 kHz clips of a quarter to one second."""

    n_fft: int = 512
    hop: int = 128
    n_mels: int = 64
    floor_db: float = 50.0  # dynamic range kept below each clip's loudest mel bin (like librosa's top_db)
    width: int = 128  # CNN channels
    feature_dim: int = 128  # the features FD, precision/recall and diversity use


class LogMel(nn.Module):
    """``[B, 1, L] -> [B, n_mels, frames]`` mel power in dB (torchaudio), floored ``floor_db`` below each clip's
    maximum, so that a faint noise floor and true silence look alike."""

    def __init__(self, sample_rate: int, config: MelConfig):
        super().__init__()
        self.floor_db = config.floor_db
        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate, n_fft=config.n_fft, hop_length=config.hop,
                                                        n_mels=config.n_mels, f_min=30.0, f_max=sample_rate / 2)

    def forward(self, x: Tensor) -> Tensor:
        db = 10.0 * torch.log10(self.mel(x.reshape(len(x), -1).float()) + 1e-10)  # [B, mels, frames]
        return torch.maximum(db, db.amax(dim=(1, 2), keepdim=True) - self.floor_db)


class MelCNN(nn.Module):
    """Log-mel -> three 1-D conv blocks over time (mel bins as channels) -> mean and max over time -> features."""

    def __init__(self, sample_rate: int, config: MelConfig):
        super().__init__()
        w = config.width
        self.mel = LogMel(sample_rate, config)
        self.net = nn.Sequential(
            nn.BatchNorm1d(config.n_mels),
            nn.Conv1d(config.n_mels, w, 3, padding=1), nn.BatchNorm1d(w), nn.GELU(),
            nn.Conv1d(w, w, 3, padding=1), nn.BatchNorm1d(w), nn.GELU(),
            nn.Conv1d(w, w, 3, padding=2, dilation=2), nn.BatchNorm1d(w), nn.GELU(),
        )
        self.proj = nn.Sequential(nn.Linear(2 * w, config.feature_dim), nn.GELU())

    def forward(self, x: Tensor) -> Tensor:  # [B, 1, L] -> [B, feature_dim]
        h = self.net(self.mel(x))  # [B, width, frames]
        return self.proj(torch.cat([h.mean(-1), h.amax(-1)], dim=1))


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random gain (x0.5 to x1.5, clipped to [-1, 1]) and, on half the clips, white noise up to 0.05 RMS."""
    n = len(x)
    gain = 0.5 + torch.rand(n, 1, 1, generator=g)
    level = 0.05 * torch.rand(n, 1, 1, generator=g) * (torch.rand(n, 1, 1, generator=g) < 0.5)
    noise = level * torch.randn(x.shape, generator=g)
    return (x * gain + noise).clamp(-1, 1)


def audio_evaluator(splits: Splits, cache: Path, fit: FitConfig, mel: MelConfig = MelConfig(), *,
                    pitch_names: Mapping[str, str] | None = None, progress: bool = True) -> JudgeEvaluator:
    """Train (or load from ``cache``) the log-mel judge of ``splits``; with ``pitch_names`` (value name ->
    pitch class) the evaluator adds pYIN pitch accuracy for the ``pitch`` attribute as its objective, and records
    that accuracy on the real test clips as ``real_test_pitch_accuracy``."""
    train, test = splits.train, splits.test
    sr = int(train.info["sample_rate"])

    def build() -> Judge:
        return Judge(MelCNN(sr, mel), mel.feature_dim, train.attributes)

    judge, info = train_judge(cache, f"audio-{train.name}", build, train, test, fit, augment=augment,
                              extra_key={"mel": mel.__dict__, "sample_rate": sr}, progress=progress)
    info = {**info, "features": "log-mel CNN penultimate (FD: a Frechet Audio Distance on these features)"}
    if pitch_names is None:
        return JudgeEvaluator(judge, info)
    values = train.attributes["pitch"]

    def objective(data: Tensor, requested: Condition) -> dict[str, Any]:
        asked = requested["pitch"] >= 0
        names = [pitch_names[values[int(i)]] for i in requested["pitch"][asked]]
        return pitch_accuracy(data[asked], names, sr) if names else {}

    # pYIN's own ceiling: its accuracy on the real test clips (at 4 kHz it misreads some plucked strings)
    real = objective(test.x, test.cond)
    return JudgeEvaluator(judge, {**info, "objective": "pYIN pitch-class accuracy",
                                  "real_test_pitch_accuracy": real.get("pitch_accuracy")}, objective)
