"""Result records: one JSON line per (model, guidance setting, sampler, steps, seed). Plots and reports read
only these. The schema is ``core/record.schema.json``.

The files survive a kill at any instant: a line is appended by one ``write`` and fsynced, a rewrite goes
through a temporary file renamed into place. What a kill can still leave, a truncated last line, is dropped
(with a message) and the file repaired by the next :func:`read`.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import jsonschema

from crossguide.checkpoint import write_atomic
from crossguide.errors import UsageError, check_choice


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("record.schema.json")).read_text(encoding="utf-8"))


def _clean(value: Any) -> Any:
    """JSON has no NaN/inf: store them as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


def rule_label(record: dict[str, Any]) -> str:
    """A record's guidance rule with its non-default options and wrappers (older records: the rule's name)."""
    return record.get("rule_label", record["rule"])


def validate(record: dict[str, Any]) -> None:
    jsonschema.validate(record, schema())


def _lines(rows: Iterable[dict[str, Any]]) -> bytes:
    """One JSON line per row, NaN stored as null."""
    return "".join(json.dumps(_clean(row), sort_keys=True) + "\n" for row in rows).encode()


def _check_file(path: Path) -> None:
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a directory, not a JSON-lines file; move it away or pick another --out")


def _append(path: Path, data: bytes) -> None:
    """Append whole lines with one ``O_APPEND`` write, then fsync: a kill leaves at worst a truncated last line,
    never lines interleaved or half of one in the middle. A truncated last line left earlier is first repaired
    by :func:`read`, or the new line would be glued to it."""
    _check_file(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file() and path.stat().st_size:
        with open(path, "rb") as f:
            f.seek(-1, os.SEEK_END)
            if f.read(1) != b"\n":
                read(path)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)
    try:
        view = memoryview(data)
        while view:  # a regular file takes it all in one write; loop for the exotic rest
            view = view[os.write(fd, view):]
        os.fsync(fd)
    finally:
        os.close(fd)


def append(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Validate and append one record (NaN stored as null); returns what was written."""
    record = _clean(record)
    validate(record)
    _append(Path(path), _lines([record]))
    return record


def read(path: Path) -> list[dict[str, Any]]:
    """Every row of a JSON-lines file (``[]`` when there is none).

    A last line that is not a JSON object is what a kill during an append leaves: it is dropped, said in one line
    on stderr, and the file rewritten without it. A bad line before the last is damage of another kind, and an
    error naming the file and line.
    """
    path = Path(path)
    if not path.exists():
        return []
    _check_file(path)
    data = path.read_bytes()
    lines = data.split(b"\n")
    rows, kept = [], []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:  # JSONDecodeError, UnicodeDecodeError
            row = None
        if isinstance(row, dict):
            rows.append(row)
            kept.append(line)
        elif any(rest.strip() for rest in lines[number:]):
            raise UsageError(f"{str(path)!r}, line {number}: not a JSON object; the file is damaged, fix or "
                             "delete that line")
        else:
            print(f"{str(path)!r}: dropped line {number}, truncated by an interrupted write; repairing the file",
                  file=sys.stderr)
    if len(kept) < sum(1 for line in lines if line.strip()) or (data and not data.endswith(b"\n")):
        try:  # also ends the file with a newline, so the next append starts a line of its own
            write_atomic(path, b"".join(line + b"\n" for line in kept))
        except OSError as e:  # a read-only copy: the rows are still good to read
            print(f"{str(path)!r}: could not repair ({e.strerror or e})", file=sys.stderr)
    return rows


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], mode: Literal["a", "w"] = "a") -> None:
    """Append ``rows`` (``mode="a"``, one synced write) or replace the file by them (``"w"``, atomically)."""
    check_choice("write mode", mode, ("a", "w"))
    path = Path(path)
    _check_file(path)
    if mode == "w":
        write_atomic(path, _lines(rows))
    else:
        _append(path, _lines(rows))
