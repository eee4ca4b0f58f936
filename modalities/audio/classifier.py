"""The audio modality's noise classifier for classifier guidance: DiffWave's residual stack on ``x_t`` with the
diffusion-step embedding and no condition (Kong et al. 2020, Sec. 3.1), its skip features averaged over time
(the global pooling of ADM's classifier, Dhariwal & Nichol 2021, Sec. 4.1)."""

from __future__ import annotations

from torch import Tensor, nn

from modalities.audio.diffwave import DiffWave


class WaveClassifier(nn.Module):
    """``(x_t [B, 1, L], t [B]) -> [B, channels]``; arguments as :class:`DiffWave`'s."""

    def __init__(self, length: int, layers: int = 6, channels: int = 32, cycle: int = 6, step_dim: int = 32):
        super().__init__()
        self.trunk = DiffWave({}, length, layers=layers, channels=channels, cycle=cycle, step_dim=step_dim,
                              cond_dim=0)
        self.dim = channels

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        return self.trunk.features(x_t, t, {}).mean(-1)  # [B, C, L] -> [B, C]
