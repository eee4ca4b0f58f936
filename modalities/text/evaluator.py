"""The text evaluator: control accuracy, fluency and diversity of generated sentences (ids ``[N, L]``).

* Control: on ``restaurants`` the exact keyword lexicon (:func:`crossguide.modalities.text.restaurants.extract`); on
  other datasets a sentence classifier trained on the real sentences (held-out accuracy in ``info``).
* Features for Frechet distance, precision/recall and feature diversity: the penultimate layer of that sentence
  classifier (a :class:`crossguide.judge.Judge`, trained on every dataset).
* Fluency: perplexity under a small GPT-2 trained on the training sentences (:mod:`crossguide.modalities.text.lm`) and,
  on ``restaurants``, the fraction of sentences its grammar accepts.
* Diversity: distinct-1/2 and self-BLEU within each requested condition (:mod:`crossguide.modalities.text.diversity`).

Every score is taken on the sentence a reader sees: pads inside a generated row are dropped first.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from transformers import PreTrainedTokenizerFast

from crossguide import metrics as M
from crossguide.conditions import Condition
from crossguide.data import Splits
from crossguide.judge import FitConfig, Judge, JudgeEvaluator, train_judge
from crossguide.modalities.text import diversity as D
from crossguide.modalities.text import lm as LM
from crossguide.modalities.text import restaurants as R
from crossguide.modalities.text import tokenizer as T
from crossguide.modalities.text.grammar import Grammar

Extract = Callable[[Sequence[str]], dict[str, int]]


@dataclass(frozen=True)
class Lexicon:
    """An exact control judge and grammar for a procedural dataset."""

    extract: Extract
    grammar: Grammar


LEXICONS = {"restaurants": Lexicon(R.extract, R.GRAMMAR)}


class SentenceEncoder(nn.Module):
    """Ids ``[B, L]`` -> features ``[B, F]``: embeddings, a width-3 convolution (Kim 2014), max and mean over
    the words (pads masked), a ReLU projection."""

    def __init__(self, vocab_size: int, pad_id: int, dim: int = 64, features: int = 64):
        super().__init__()
        self.pad_id = pad_id
        self.embed = nn.Embedding(vocab_size, dim)
        self.conv = nn.Conv1d(dim, dim, 3, padding=1)
        self.proj = nn.Sequential(nn.Linear(2 * dim, features), nn.ReLU())

    def forward(self, ids: Tensor) -> Tensor:
        mask = (ids != self.pad_id).unsqueeze(-1)  # [B, L, 1]
        h = torch.relu(self.conv(self.embed(ids).transpose(1, 2))).transpose(1, 2) * mask  # [B, L, dim], >= 0
        mean = h.sum(1) / mask.sum(1).clamp(min=1)
        return self.proj(torch.cat([h.max(1).values, mean], -1))  # [B, F]


@dataclass(frozen=True)
class EvalConfig:
    judge: FitConfig
    lm: LM.LMConfig


EVAL = {
    "smoke": EvalConfig(FitConfig(steps=40, batch_size=64, lr=3e-3), LM.LMConfig(dim=32, layers=1, steps=30)),
    "quick": EvalConfig(FitConfig(steps=400, batch_size=128, lr=3e-3), LM.LMConfig(steps=500)),
    "full": EvalConfig(FitConfig(steps=3000, batch_size=256, lr=2e-3),
                       LM.LMConfig(dim=128, layers=4, heads=4, steps=5000, batch_size=128, lr=1e-3)),
}


class TextEvaluator(JudgeEvaluator):
    """:class:`crossguide.evaluation.Evaluator` for token ids; see the module docstring."""

    def __init__(self, judge: Judge, info: dict[str, Any], tok: PreTrainedTokenizerFast, lm: nn.Module,
                 lexicon: Lexicon | None):
        super().__init__(judge, info)
        self.tok, self.lm, self.lexicon = tok, lm, lexicon
        self.pad_id = tok.pad_token_id

    def features(self, data: Tensor) -> Tensor:
        return super().features(T.compact(data, self.pad_id))

    def classify(self, data: Tensor) -> dict[str, Tensor]:
        if self.lexicon is None:
            return super().classify(T.compact(data, self.pad_id))
        found = [self.lexicon.extract(s) for s in T.tokens(self.tok, data)]
        return {a: torch.tensor([f[a] for f in found], dtype=torch.long) for a in self.judge.heads}

    def objective(self, data: Tensor, requested: Condition) -> dict[str, float]:
        """Perplexity, distinct-1/2, self-BLEU, mean length in tokens and (with a grammar) the well-formed
        fraction."""
        ids = T.compact(data, self.pad_id)
        sentences = T.tokens(self.tok, ids)
        groups = list(zip(*(requested[a].tolist() for a in sorted(requested)), strict=True))
        out = {
            "perplexity": LM.perplexity(self.lm, ids, self.pad_id),
            "distinct1": D.grouped(lambda s: D.distinct(s, 1), sentences, groups),
            "distinct2": D.grouped(lambda s: D.distinct(s, 2), sentences, groups),
            "self_bleu": D.grouped(D.self_bleu, sentences, groups),
            "length": sum(map(len, sentences)) / len(sentences),
        }
        if self.lexicon is not None:
            out["well_formed"] = sum(map(self.lexicon.grammar.accepts, sentences)) / len(sentences)
        return out


def build_evaluator(splits: Splits, preset: str, cache: Path, *, progress: bool = True) -> TextEvaluator:
    """Train (or load from ``cache``) the sentence judge and the language model of ``splits.train``."""
    train, test = splits
    info = train.info
    tok = T.from_info(info)
    vocab, pad = info["vocab_size"], info["pad_id"]
    config = EVAL[preset]
    name = f"text-{train.name}"
    judge, judge_info = train_judge(
        cache, name, lambda: Judge(SentenceEncoder(vocab, pad), 64, train.attributes), train, test, config.judge,
        progress=progress)
    lm, lm_info = LM.train_lm(cache, name, train.x, test.x, vocab, pad, config.lm, progress=progress)
    lexicon = LEXICONS.get(train.name)
    evaluator = TextEvaluator(judge, {}, tok, lm, lexicon)
    control = "judge classifier (sentence CNN)" if lexicon is None else "exact keyword lexicon"
    real = M.adherence(test.cond, evaluator.classify(test.x))  # what the control judge gives real sentences
    evaluator.info = {"features": "sentence CNN judge, penultimate layer (64-d)", "control": control,
                      "judge": judge_info, "language_model": lm_info, "real_test_control": real,
                      "id": f"{judge_info['id']}+{lm_info['id']}",
                      "source": "reference" if judge_info["source"] == lm_info["source"] == "reference" else "trained"}
    if lexicon is not None:
        sentences = T.tokens(tok, test.x)
        evaluator.info["real_test_well_formed"] = sum(map(lexicon.grammar.accepts, sentences)) / len(sentences)
    return evaluator
