"""A word-level tokenizer built from the training corpus (``tokenizers`` WordLevel wrapped as a ``transformers``
``PreTrainedTokenizerFast``), fixed-length id tensors, and the way back to readable sentences.

The tokenizer travels as its JSON string in a dataset's ``info["tokenizer"]``, which the pipeline stores in the
checkpoint's ``config.json`` (``data_info``): a checkpoint directory is enough to read its samples.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers
from torch import Tensor
from transformers import PreTrainedTokenizerFast

PAD, UNK = "[PAD]", "[UNK]"  # ids 0 and 1
PRE_TOKENIZER = pre_tokenizers.Whitespace()  # words and runs of punctuation


def build(texts: Sequence[str], max_vocab: int = 30000) -> Tokenizer:
    """A word-level vocabulary of ``texts`` (words and punctuation split on whitespace), most frequent first."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    tok.pre_tokenizer = PRE_TOKENIZER
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(vocab_size=max_vocab, special_tokens=[PAD, UNK],
                                                             show_progress=False))
    return tok


def token_count(text: str) -> int:
    """How many tokens the word-level tokenizer makes of ``text`` (one per pre-token)."""
    return len(PRE_TOKENIZER.pre_tokenize_str(text))


@functools.lru_cache(maxsize=8)
def wrap(json_str: str) -> PreTrainedTokenizerFast:
    """The ``transformers`` tokenizer of a serialised ``tokenizers`` model (cached by its JSON)."""
    return PreTrainedTokenizerFast(tokenizer_object=Tokenizer.from_str(json_str), pad_token=PAD, unk_token=UNK)


def info(tok: Tokenizer, length: int) -> dict[str, Any]:
    """The JSON-serialisable facts a text model and its evaluator need (stored in checkpoints)."""
    fast = wrap(tok.to_str())
    return {"tokenizer": tok.to_str(), "length": length, "vocab_size": len(fast), "pad_id": fast.pad_token_id}


def from_info(data_info: Mapping[str, Any]) -> PreTrainedTokenizerFast:
    return wrap(data_info["tokenizer"])


def encode(tok: PreTrainedTokenizerFast, texts: Sequence[str], length: int) -> tuple[Tensor, int]:
    """Texts -> ids ``[N, length]`` padded on the right, and how many texts were truncated."""
    full = tok(list(texts), add_special_tokens=False)["input_ids"]
    truncated = sum(len(ids) > length for ids in full)
    out = torch.full((len(full), length), tok.pad_token_id, dtype=torch.long)
    for i, ids in enumerate(full):
        ids = ids[:length]
        out[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    return out, truncated


def compact(ids: Tensor, pad_id: int) -> Tensor:
    """Move every pad to the end of its row, keeping the other tokens in order: ``[N, L] -> [N, L]``.

    A generated row may hold pads between words; read as text they are simply absent, and every evaluator
    scores the sentence a reader sees.
    """
    order = torch.sort((ids == pad_id).to(torch.int8), dim=1, stable=True).indices  # words first, in order
    return ids.gather(1, order)


def tokens(tok: PreTrainedTokenizerFast, ids: Tensor) -> list[list[str]]:
    """Ids ``[N, L]`` -> each row's tokens, pads removed."""
    pad = tok.pad_token_id
    return [tok.convert_ids_to_tokens([i for i in row if i != pad]) for row in ids.tolist()]


def decode(tok: PreTrainedTokenizerFast, ids: Tensor) -> list[str]:
    """Ids ``[N, L]`` -> sentences (pads removed, ``[UNK]`` kept visible, no space before punctuation)."""
    pad = tok.pad_token_id
    rows = [[i for i in row if i != pad] for row in ids.tolist()]
    return tok.batch_decode(rows, skip_special_tokens=False, clean_up_tokenization_spaces=True)
