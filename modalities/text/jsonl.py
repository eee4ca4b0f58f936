"""``jsonl``: a user's file of labelled sentences (``--data PATH``).

One JSON object per line with a string field ``text``; every other field is an attribute whose values are
strings (e.g. ``{"text": "great food, slow service", "sentiment": "mixed", "topic": "service"}``). Every line
has the same fields. Mistakes (bad JSON, an empty line, a missing field, a non-string value) raise a
:class:`core.errors.UsageError` that names the line.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from core.data import ConditionalDataset, Splits, split
from core.errors import UsageError
from modalities.text import tokenizer as T
from modalities.text.data import labelled_splits

TEXT = "text"


def read(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The sentences and, per attribute, each line's value name."""
    if not path.is_file():
        raise UsageError(f"--data {str(path)!r} is not a file; the jsonl dataset needs a JSON-lines file")
    texts: list[str] = []
    values: dict[str, list[str]] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        where = f"{path}:{n}"
        if not line.strip():
            raise UsageError(f"{where}: empty line; every line must be one JSON object")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not valid JSON ({e.msg})") from e
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if TEXT not in obj:
            raise UsageError(f"{where}: missing field {TEXT!r}")
        for key, value in obj.items():
            if not isinstance(value, str):
                raise UsageError(f"{where}: field {key!r} is {type(value).__name__} {value!r}; values must be strings")
        if not obj[TEXT].strip():
            raise UsageError(f"{where}: field {TEXT!r} is empty")
        fields = sorted(k for k in obj if k != TEXT)
        if not texts:
            if not fields:
                raise UsageError(f"{where}: no attribute field besides {TEXT!r}; add e.g. \"label\": \"...\"")
            values = {k: [] for k in fields}
        elif fields != sorted(values):
            missing, extra = sorted(set(values) - set(fields)), sorted(set(fields) - set(values))
            what = f"missing field {missing[0]!r}" if missing else f"unexpected field {extra[0]!r}"
            raise UsageError(f"{where}: {what}; every line needs the fields {', '.join([TEXT, *sorted(values)])}")
        texts.append(obj[TEXT])
        for k in fields:
            values[k].append(obj[k])
    if len(texts) < 2:
        raise UsageError(f"{path}: {len(texts)} line(s); the jsonl dataset needs at least 2 (train and test)")
    return texts, values


def jsonl(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """A seeded train/test split of the file (``test_fraction``), ids cut to at most ``length`` tokens."""
    if path is None:
        raise UsageError("the text 'jsonl' dataset needs --data PATH (a JSON-lines file with a 'text' field)")
    texts, named = read(path)
    attributes = {a: sorted(set(v)) for a, v in named.items()}
    cond = {a: torch.tensor([attributes[a].index(x) for x in v]) for a, v in named.items()}
    # split line indices with the core's seeded split, then tokenize with the training lines' vocabulary
    lines = split(ConditionalDataset("jsonl", torch.arange(len(texts)), cond, attributes),
                  float(options.get("test_fraction", 0.1)), int(options.get("data_seed", 1234)))
    parts = [([texts[i] for i in part.x.tolist()], part.cond) for part in lines]
    length = min(int(options["length"]), max(T.token_count(t) for t in parts[0][0]))
    return labelled_splits("jsonl", attributes, parts[0], parts[1], length)
