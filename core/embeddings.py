"""Network building blocks every denoiser needs: time embeddings and attribute embeddings with a null index."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from crossguide.conditions import NULL, Attributes, Condition


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, ``[B] -> [B, dim]`` (Vaswani et al. 2017, Sec. 3.5;
    used for diffusion steps by Ho et al. 2020, App. B)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]  # [B, half]
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return nn.functional.pad(emb, (0, dim % 2))


class TimeEmbedding(nn.Module):
    """Sinusoidal features through a two-layer MLP (Ho et al. 2020; DiffWave Sec. 3.1)."""

    def __init__(self, dim: int, hidden: int | None = None):
        super().__init__()
        hidden = hidden or 4 * dim
        self.dim = dim
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
        self.out_dim = hidden

    def forward(self, t: Tensor) -> Tensor:  # [B] -> [B, hidden]
        return self.mlp(timestep_embedding(t, self.dim))


class ConditionEmbedding(nn.Module):
    """One embedding table per attribute with a learned null row (index ``n_values``), summed: ``[B, dim]``.

    A dropped attribute (``-1``) looks up its table's null row, so the unconditional model of classifier-free
    guidance is the same network with every attribute at its null row (Ho & Salimans 2021, Sec. 3.2).
    """

    def __init__(self, attributes: Attributes, dim: int):
        super().__init__()
        self.sizes = {a: len(v) for a, v in attributes.items()}
        self.tables = nn.ModuleDict({a: nn.Embedding(n + 1, dim) for a, n in self.sizes.items()})
        for table in self.tables.values():
            nn.init.normal_(table.weight, std=0.02)

    def forward(self, cond: Condition) -> Tensor:
        out = None
        for a, n in self.sizes.items():
            idx = cond[a]
            idx = torch.where(idx == NULL, torch.full_like(idx, n), idx)  # null row
            emb = self.tables[a](idx)  # [B, dim]
            out = emb if out is None else out + emb
        return out
