"""The audio modality's noise classifier for classifier guidance: the judge's log-mel front end on the noisy
waveform ``x_t``, then 1-D convolutions over time (mel bins as channels, so absolute frequency is kept) whose
every layer adds a projection of the diffusion-step embedding (as DiffWave adds it, Kong et al. 2020, Sec. 3.1),
pooled by mean and max over time (the global pooling of ADM's noisy classifier, Dhariwal & Nichol 2021, Sec. 4.1).

Why mels and not DiffWave's own stack: telling notes a semitone apart needs a frequency resolution of a few hertz,
which a waveform convolution only gets with a receptive field as long as the denoiser's; the STFT has it at once,
and gradients flow through it to the waveform. GroupNorm, not the judge's batch norm: a batch mixes noise levels.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from crossguide.embeddings import TimeEmbedding
from crossguide.modalities.audio.judge import LogMel, MelConfig


class TimedConv(nn.Module):
    """``GELU(GroupNorm(conv(x) + proj(step)))`` over ``[B, C, frames]``."""

    def __init__(self, c_in: int, c_out: int, step_dim: int, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, 3, padding=dilation, dilation=dilation)
        self.step = nn.Linear(step_dim, c_out)
        self.norm = nn.GroupNorm(8, c_out)

    def forward(self, x: Tensor, step: Tensor) -> Tensor:
        return nn.functional.gelu(self.norm(self.conv(x) + self.step(step)[..., None]))


class MelClassifier(nn.Module):
    """``(x_t [B, 1, L], t [B]) -> [B, 2 * width]``.

    Args:
        sample_rate: of the clips.
        n_fft, hop, n_mels, floor_db: the log-mel front end (:class:`crossguide.modalities.audio.judge.MelConfig`).
        width: convolution channels.
        step_dim: sinusoidal features of the diffusion step.
    """

    def __init__(self, sample_rate: int, *, n_fft: int = 512, hop: int = 128, n_mels: int = 64,
                 floor_db: float = 50.0, width: int = 64, step_dim: int = 32):
        super().__init__()
        self.mel = LogMel(sample_rate, MelConfig(n_fft=n_fft, hop=hop, n_mels=n_mels, floor_db=floor_db))
        self.floor_db = floor_db
        self.time = TimeEmbedding(step_dim)
        e = self.time.out_dim
        self.layers = nn.ModuleList([TimedConv(n_mels, width, e), TimedConv(width, width, e),
                                     TimedConv(width, width, e, dilation=2)])
        self.dim = 2 * width

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        db = self.mel(x_t)  # [B, mels, frames], within floor_db of each clip's loudest bin
        h = (db - db.amax(dim=(1, 2), keepdim=True)) / self.floor_db + 1.0  # [0, 1], 1 at the loudest bin
        step = self.time(t)
        for layer in self.layers:
            h = layer(h, step)
        return torch.cat([h.mean(-1), h.amax(-1)], dim=1)  # [B, 2 * width]
