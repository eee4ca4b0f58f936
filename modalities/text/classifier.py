"""The text modality's noise classifier for classifier guidance: a BERT encoder over the noisy word embeddings
``x_t`` with the time embedding added to every position, mean-pooled (Diffusion-LM's plug-and-play classifiers
read ``x_t`` the same way; Li et al. 2022, Sec. 5.2)."""

from __future__ import annotations

from torch import Tensor, nn

from crossguide.embeddings import TimeEmbedding
from crossguide.modalities.text.model import encoder


class TextClassifier(nn.Module):
    """``(x_t [B, L, d], t [B]) -> [B, hidden]``."""

    def __init__(self, embed_dim: int, length: int, hidden: int = 64, layers: int = 2, heads: int = 4):
        super().__init__()
        self.up = nn.Sequential(nn.Linear(embed_dim, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.time = TimeEmbedding(hidden // 2, hidden)
        self.bert = encoder("bert", hidden, layers, heads, length)
        self.dim = hidden

    def forward(self, x_t: Tensor, t: Tensor) -> Tensor:
        h = self.up(x_t) + self.time(t)[:, None]  # [B, L, H]
        return self.bert(inputs_embeds=h).last_hidden_state.mean(1)  # [B, H]
