"""From labelled sentences to the (train, test) ``ConditionalDataset`` pair every text dataset returns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from crossguide.conditions import Condition
from crossguide.data import ConditionalDataset, Splits
from crossguide.modalities.text import tokenizer as T


def labelled_splits(
    name: str,
    attributes: Mapping[str, Sequence[str]],
    train: tuple[Sequence[str], Condition],
    test: tuple[Sequence[str], Condition],
    length: int,
    max_vocab: int = 30000,
) -> Splits:
    """Tokenize with a word-level vocabulary built from the training sentences only; ids ``[N, length]``.

    ``info`` (stored with checkpoints) holds the tokenizer JSON, ``length``, ``vocab_size``, ``pad_id`` and how
    many sentences were cut to ``length``.
    """
    tok = T.build(train[0], max_vocab)
    info = T.info(tok, length)
    fast = T.from_info(info)
    attrs = {a: list(v) for a, v in attributes.items()}
    out = []
    truncated = 0
    for texts, cond in (train, test):
        ids, cut = T.encode(fast, texts, length)
        truncated += cut
        out.append((ids, {a: torch.as_tensor(v, dtype=torch.long) for a, v in cond.items()}))
    info["truncated"] = truncated
    return Splits(*(ConditionalDataset(name, ids, cond, attrs, info) for ids, cond in out))
