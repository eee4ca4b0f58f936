"""Fluency: perplexity under a small autoregressive language model (a ``transformers`` GPT-2 configuration,
Radford et al. 2019, randomly initialised and trained here on the same training sentences; nothing downloaded).

Each sentence is read as ``[PAD] w_1 .. w_n [PAD]``: the first pad is the start symbol, the last one ends the
sentence, so the end is scored too. Trained models are cached under the evaluator cache, keyed by a fingerprint
of their data and configuration.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import GPT2Config, GPT2LMHeadModel

from crossguide import reference
from crossguide.judge import cached, final_loss
from crossguide.modalities.text.tokenizer import compact
from crossguide.progress import bar

IGNORE = -100


@dataclass(frozen=True)
class LMConfig:
    dim: int = 64
    layers: int = 2
    heads: int = 2
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    seed: int = 0


def build(vocab_size: int, length: int, config: LMConfig, pad_id: int = 0) -> GPT2LMHeadModel:
    """A small GPT-2 over the dataset's vocabulary, ``length + 1`` positions (start symbol + sentence); the pad
    is both the start and the end symbol."""
    gpt = GPT2Config(vocab_size=vocab_size, n_positions=length + 1, n_embd=config.dim, n_layer=config.layers,
                     bos_token_id=pad_id, eos_token_id=pad_id,
                     n_head=config.heads, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                     tie_word_embeddings=False)  # safetensors checkpoints hold no shared tensors
    return GPT2LMHeadModel(gpt)


def sequences(ids: Tensor, pad_id: int) -> tuple[Tensor, Tensor]:
    """Inputs ``[N, L+1]`` (start pad + words) and next-token labels ``[N, L+1]`` (words + end pad, then ignored)."""
    ids = compact(ids, pad_id)
    pad = torch.full((len(ids), 1), pad_id, dtype=ids.dtype)
    inputs, labels = torch.cat([pad, ids], 1), torch.cat([ids, pad], 1)
    after_end = (labels == pad_id).long().cumsum(1) > 1  # keep the first pad (the end), ignore the rest
    return inputs, labels.masked_fill(after_end, IGNORE)


def _nll(model: GPT2LMHeadModel, inputs: Tensor, labels: Tensor, reduction: str) -> Tensor:
    logits = model(input_ids=inputs).logits  # [B, L+1, V]
    return nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE,
                                       reduction=reduction)


def fit(model: GPT2LMHeadModel, ids: Tensor, pad_id: int, config: LMConfig, *, progress: bool = True) -> float:
    """Next-token cross-entropy with AdamW and a one-cycle learning rate; returns the final training loss."""
    inputs, labels = sequences(ids, pad_id)
    g = torch.Generator().manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=config.steps)
    model.train()
    losses: list[float] = []
    for _ in bar(range(config.steps), desc="fit language model", enabled=progress):
        idx = torch.randint(len(inputs), (config.batch_size,), generator=g)
        loss = _nll(model, inputs[idx], labels[idx], "mean")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
    model.eval()
    return final_loss(losses)


@torch.no_grad()
def perplexity(model: GPT2LMHeadModel, ids: Tensor, pad_id: int, batch_size: int = 256) -> float:
    """``exp`` of the mean next-token negative log-likelihood over every scored token of ``ids [N, L]``."""
    inputs, labels = sequences(ids, pad_id)
    total, count = 0.0, 0
    for i in range(0, len(inputs), batch_size):
        total += _nll(model, inputs[i : i + batch_size], labels[i : i + batch_size], "sum").item()
        count += int((labels[i : i + batch_size] != IGNORE).sum())
    return math.exp(total / max(count, 1))


def train_lm(cache: Path, name: str, train: Tensor, test: Tensor, vocab_size: int, pad_id: int, config: LMConfig,
             *, progress: bool = True) -> tuple[GPT2LMHeadModel, dict[str, Any]]:
    """Train (or load from ``cache``) the language model of ``train`` ids; its info records test perplexity."""
    length = train.shape[1]
    key = reference.fingerprint(train, test, config=asdict(config), name=name, vocab_size=vocab_size)

    def run(model: nn.Module) -> dict[str, Any]:
        start = time.perf_counter()
        loss = fit(model, train, pad_id, config, progress=progress)
        ppl = perplexity(model, test, pad_id)
        return {"name": name, "fit": asdict(config), "test_perplexity": ppl, "n_train": len(train),
                "train_s": time.perf_counter() - start, "final_loss": loss,
                "quality": {"held-out perplexity": {"test_perplexity": ppl}}}

    model, info = cached(Path(cache) / "language_models", f"lm-{name}", key,
                         lambda: build(vocab_size, length, config, pad_id), run, kind="language model")
    return model, info  # type: ignore[return-value]
