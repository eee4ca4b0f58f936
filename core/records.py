"""Result records: one JSON line per (model, guidance setting, sampler, steps, seed). Plots and reports read
only these. The schema is ``core/record.schema.json``."""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema


@functools.cache
def schema() -> dict[str, Any]:
    return json.loads((Path(__file__).with_name("record.schema.json")).read_text())


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


def append(path: Path, record: dict[str, Any]) -> dict[str, Any]:
    """Validate and append one record (NaN stored as null); returns what was written."""
    record = _clean(record)
    validate(record)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(json.dumps(record, sort_keys=True) + "\n")
    return record


def read(path: Path) -> list[dict[str, Any]]:
    if not Path(path).exists():
        return []
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]], mode: str = "a") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, mode) as f:
        for row in rows:
            f.write(json.dumps(_clean(row), sort_keys=True) + "\n")
