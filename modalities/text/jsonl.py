"""``jsonl``: a user's file of labelled sentences (``--data PATH``).

One JSON object per line with a string field ``text``; every other field is an attribute whose values are
strings (e.g. ``{"text": "great food, slow service", "sentiment": "mixed", "topic": "service"}``). Every line
has the same fields. The file is UTF-8. Mistakes (another encoding, bad JSON, an empty line, a missing or
repeated field, a non-string value) raise a :class:`crossguide.errors.UsageError` that names the file and line.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from crossguide.data import ConditionalDataset, Splits, split
from crossguide.errors import UsageError
from crossguide.modalities.text import tokenizer as T
from crossguide.modalities.text.data import labelled_splits

TEXT = "text"


UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


def utf8_lines(path: Path) -> Iterator[tuple[str, str]]:
    """``("PATH:N", text)`` for each line of a UTF-8 file (a UTF-8 byte-order mark is allowed); a line in
    another encoding raises a :class:`UsageError` naming the file, line and column."""
    data = path.read_bytes()
    if data.startswith(UTF16_32_BOMS):
        raise UsageError(f"{path}: the file is UTF-16 or UTF-32 (it starts with a byte-order mark); save it as UTF-8")
    data = data.removeprefix(codecs.BOM_UTF8)
    rows = data.split(b"\n")  # not str.splitlines: JSON strings may hold U+2028 and other line separators
    if rows[-1] == b"":
        rows.pop()  # the newline ending the last line
    for n, raw in enumerate(rows, start=1):
        where = f"{path}:{n}"
        if b"\0" in raw:
            raise UsageError(f"{where}: NUL bytes (a UTF-16 file without a byte-order mark, or not text); "
                             "save it as UTF-8 JSON lines")
        try:
            yield where, raw.removesuffix(b"\r").decode("utf-8")
        except UnicodeDecodeError as e:
            raise UsageError(f"{where}: not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}); save the "
                             "file as UTF-8") from None


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``'s object hook: a field given twice is an error (JSON would keep the last silently)."""
    keys = [k for k, _ in pairs]
    twice = next((k for k in keys if keys.count(k) > 1), None)
    if twice is not None:
        raise ValueError(f"field {twice!r} given twice")
    return dict(pairs)


def read(path: Path) -> tuple[list[str], dict[str, list[str]]]:
    """The sentences and, per attribute, each line's value name."""
    if not path.is_file():
        raise UsageError(f"--data {str(path)!r} is not a file; the jsonl dataset needs a JSON-lines file")
    texts: list[str] = []
    values: dict[str, list[str]] = {}
    for where, line in utf8_lines(path):
        if not line.strip():
            raise UsageError(f"{where}: empty line; every line must be one JSON object")
        try:
            obj = json.loads(line, object_pairs_hook=_object)
        except json.JSONDecodeError as e:
            raise UsageError(f"{where}: not valid JSON ({e.msg} at column {e.colno})") from None
        except (ValueError, RecursionError) as e:  # a field twice, a 5000-digit number, nesting too deep
            raise UsageError(f"{where}: not usable JSON ({e.__class__.__name__}: {str(e)[:200]})") from None
        if not isinstance(obj, dict):
            raise UsageError(f"{where}: expected a JSON object, got {type(obj).__name__}")
        if TEXT not in obj:
            raise UsageError(f"{where}: missing field {TEXT!r}")
        for key, value in obj.items():
            if not isinstance(value, str):
                raise UsageError(f"{where}: field {key!r} is {type(value).__name__} {str(value)[:80]}; values must "
                                 "be strings")
            if not key.strip() or "," in key or "=" in key:
                raise UsageError(f"{where}: field name {key!r} cannot be given in --cond (empty, or holds ',' or "
                                 "'='); rename it")
            for text in (key, value):
                try:
                    text.encode("utf-8")
                except UnicodeEncodeError as e:  # JSON's "\ud800" escape: a lone surrogate, not Unicode text
                    raise UsageError(f"{where}: field {key!r} holds an unpaired surrogate "
                                     f"{text[e.start]!r}; not valid Unicode text") from None
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
