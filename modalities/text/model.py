"""Diffusion-LM (Li et al. 2022) with classifier-free guidance in place of its plug-and-play classifiers.

Tokens are mapped to learned embeddings ``EMB(w)`` (dimension ``d``, learned end to end) and a randomly
initialised ``transformers`` BERT encoder (nothing downloaded) denoises whole sequences of them:

    x_t [B, L, d] -> up-projection [B, L, H] + time embedding + attribute embeddings (one table per attribute,
    learned null row) -> BertModel (adds learned positions) -> down-projection -> x0 estimate [B, L, d]

It predicts ``x0`` (Sec. 4.2: the clamping trick needs it). The LM head is tied to the embedding table:
``logits(x) = 2 x EMB^T - |EMB|^2 = -|x - EMB(w)|^2 + |x|^2``, the Bayes rounding of
``q(x_0 | w) = N(EMB(w), I / 2)`` under a uniform prior, so its argmax is the nearest embedding and decoding
agrees with the clamping step exactly. Training loss (Eq. 2, the end-to-end objective):
``|x0_hat - EMB(w)|^2`` (the core trainer) ``- log p(w | x_0)`` (rounding) ``+ |sqrt(alpha_bar_T) x_0|^2``
(the prior term at ``t = T``).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn
from transformers import AutoConfig, AutoModel, PreTrainedModel

from crossguide.conditions import Attributes, Condition
from crossguide.denoiser import Denoiser
from crossguide.embeddings import ConditionEmbedding, TimeEmbedding
from crossguide.errors import UsageError, check_choice

Rounding = Literal["x0", "both"]  # rounding loss on the clean embeddings (Eq. 2), or also on the model's estimate
Head = Literal["linear", "mixture"]  # x0 = down-projection (Diffusion-LM), or the tied head's expected embedding


def encoder(kind: str, hidden: int, layers: int, heads: int, length: int, dropout: float = 0.0) -> PreTrainedModel:
    """A randomly initialised ``transformers`` encoder of model type ``kind`` (``bert``, ``roberta``,
    ``distilbert``, ``deberta-v2``, ``electra``, ...; built from a local config, nothing downloaded) read through
    ``inputs_embeds``; its learned positions are the model's."""
    # RoBERTa-style encoders number positions from pad + 1: two more rows than the sequence needs
    positions = length if kind == "bert" else length + 2
    try:
        config = AutoConfig.for_model(
            kind, vocab_size=1, hidden_size=hidden, embedding_size=hidden, num_hidden_layers=layers,
            num_attention_heads=heads, intermediate_size=4 * hidden, hidden_dim=4 * hidden,  # (DistilBERT names it so)
            max_position_embeddings=positions, bos_token_id=None, eos_token_id=None,
            type_vocab_size=1, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout, pad_token_id=0)
    except ValueError:
        raise UsageError(f"unknown text backbone {kind!r}; valid: a transformers encoder model type, e.g. "
                         "bert, roberta, distilbert, deberta-v2, electra") from None
    try:
        return AutoModel.from_config(config, add_pooling_layer=False)  # no pooler: every position is read
    except TypeError:  # encoders without a pooler take no such argument
        return AutoModel.from_config(config)


class EmbeddingDiffusionLM(Denoiser):
    """Continuous diffusion over learned word embeddings with a BERT denoiser (Li et al. 2022, Sec. 4).

    Args:
        attributes: attribute -> value names.
        vocab_size, length, pad_id: from the dataset's tokenizer (``info``).
        embed_dim: ``d``, the diffusion space per token (Diffusion-LM uses 16 for E2E).
        hidden, layers, heads: the encoder's width, depth and attention heads.
        dropout: the encoder's hidden and attention dropout.
        prior_alpha_bar: ``alpha_bar_T`` of the schedule, weighting the prior term (about 0 for ``sqrt``).
        rounding: where the rounding cross-entropy is taken (``x0``: Eq. 2; ``both``: also on the estimate).
        rounding_weight: its weight against the regression loss.
        head: ``linear``: the x0 estimate is the down-projection ``y`` (Diffusion-LM); ``mixture``: it is the
            expected embedding under the tied head, ``softmax(logits(y)) EMB`` (score interpolation, Dieleman et al.
            2022, Sec. 3), so the estimate is a mixture of words and the rounding loss on it is a word-level
            cross-entropy.
        backbone: the encoder's ``transformers`` model type (BERT in Diffusion-LM; any encoder, e.g. roberta).
        self_condition: also read the model's own earlier x0 estimate, concatenated to ``x_t`` per token
            (self-conditioning, Chen et al. 2022, Sec. 3.3; Strudel et al. 2022 find it key for embedding
            diffusion).
    """

    prediction = "x0"

    def __init__(self, attributes: Attributes, *, vocab_size: int, length: int, pad_id: int = 0,
                 embed_dim: int = 16, hidden: int = 128, layers: int = 3, heads: int = 4, dropout: float = 0.0,
                 prior_alpha_bar: float = 0.0, rounding: Rounding = "x0", rounding_weight: float = 1.0,
                 head: Head = "linear", self_condition: bool = False, backbone: str = "bert"):
        super().__init__(attributes, (length, embed_dim))
        check_choice("rounding", rounding, ("x0", "both"))
        check_choice("x0 head", head, ("linear", "mixture"))
        self.args = {"vocab_size": vocab_size, "length": length, "pad_id": pad_id, "embed_dim": embed_dim,
                     "hidden": hidden, "layers": layers, "heads": heads, "dropout": dropout,
                     "prior_alpha_bar": prior_alpha_bar, "rounding": rounding, "rounding_weight": rounding_weight,
                     "head": head, "self_condition": self_condition}
        if backbone != "bert":  # only then: BERT checkpoints (and the references' fingerprints) predate the option
            self.args["backbone"] = backbone
        self.self_conditioning = self_condition
        self.embed = nn.Embedding(vocab_size, embed_dim)  # N(0, 1) init, as Diffusion-LM
        inputs = embed_dim * (2 if self_condition else 1)  # x_t, and the earlier estimate when self-conditioning
        self.up = nn.Sequential(nn.Linear(inputs, hidden), nn.Tanh(), nn.Linear(hidden, hidden))
        self.time = TimeEmbedding(hidden // 2, hidden)
        self.cond = ConditionEmbedding(attributes, hidden)
        self.bert = encoder(backbone, hidden, layers, heads, length, dropout)  # "bert": the checkpoints' key
        self.down = nn.Sequential(nn.Linear(hidden, hidden), nn.Tanh(), nn.Linear(hidden, embed_dim))

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition, x0_self: Tensor | None = None) -> Tensor:
        if self.self_conditioning:  # [B, L, 2d]: the noisy input beside the earlier estimate (zeros: none yet)
            x_t = torch.cat([x_t, torch.zeros_like(x_t) if x0_self is None else x0_self.to(x_t.dtype)], -1)
        h = self.up(x_t) + (self.time(t) + self.cond(cond))[:, None]  # [B, L, H]
        h = self.bert(inputs_embeds=h).last_hidden_state  # [B, L, H]
        y = self.down(h)  # [B, L, d]
        if self.args["head"] == "mixture":
            self._logits = self.logits(y)  # [B, L, V], kept for the rounding loss of this forward
            return self._logits.softmax(-1) @ self.embed.weight.to(y.dtype)
        return y

    def logits(self, x: Tensor) -> Tensor:
        """The tied LM head: ``[B, L, d] -> [B, L, V]``, ``-|x - EMB(w)|^2`` up to a per-position constant."""
        emb = self.embed.weight.to(x.dtype)  # [V, d], the current table
        return 2 * x @ emb.T - emb.pow(2).sum(-1)

    def encode(self, batch: Tensor) -> Tensor:
        return self.embed(batch)  # ids [B, L] -> [B, L, d]

    def decode(self, x0: Tensor) -> Tensor:
        return self.logits(x0).argmax(-1)  # [B, L, d] -> ids [B, L]

    def snap(self, x0: Tensor) -> Tensor:
        """The clamping trick (Sec. 4.2): each vector replaced by its nearest word embedding."""
        return self.embed.weight[self.decode(x0)].to(x0.dtype)

    def extra_loss(self, batch: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, out: Tensor) -> Tensor:
        """Rounding ``-log p(w | x_0)`` plus the prior term ``|sqrt(alpha_bar_T) x_0|^2`` (Eq. 2)."""
        ce = nn.functional.cross_entropy
        loss = ce(self.logits(x0).flatten(0, 1).float(), batch.flatten())
        if self.args["rounding"] == "both":
            logits = self._logits if self.args["head"] == "mixture" else self.logits(out)
            loss = loss + ce(logits.flatten(0, 1).float(), batch.flatten())
        prior = self.args["prior_alpha_bar"] * x0.pow(2).mean()  # mean_flat, as Diffusion-LM
        return self.args["rounding_weight"] * loss + prior

    def config(self) -> dict[str, Any]:
        return dict(self.args)


@torch.no_grad()
def nearest_distance(model: EmbeddingDiffusionLM, x0: Tensor) -> Tensor:
    """Distance from each vector ``[B, L, d]`` to its nearest embedding ``[B, L]`` (how far from words)."""
    return (x0 - model.snap(x0)).norm(dim=-1)
