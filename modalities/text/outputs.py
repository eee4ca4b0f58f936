"""Generated sentences as files a person reads: a JSONL file and a Markdown table per setting, a PNG table."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from modalities.text import tokenizer as T  # noqa: E402

SAMPLES = "samples.jsonl"
TABLE = "samples.md"


def sentences(samples: Tensor, info: Mapping[str, Any]) -> list[str]:
    """Ids ``[N, L]`` -> the sentences a reader sees."""
    return T.decode(T.from_info(info), samples)


def write(samples: Tensor, labels: list[dict[str, str]], directory: Path, info: Mapping[str, Any]) -> list[str]:
    """``samples.jsonl`` (one ``{"condition", "text"}`` per line) and ``samples.md``; paths ``samples.jsonl#i``."""
    directory.mkdir(parents=True, exist_ok=True)
    texts = sentences(samples, info)
    with open(directory / SAMPLES, "w", encoding="utf-8") as f:
        for lab, text in zip(labels, texts, strict=True):
            f.write(json.dumps({"condition": lab, "text": text}) + "\n")
    attrs = list(dict.fromkeys(a for lab in labels for a in lab))
    rows = ["| # | " + " | ".join(attrs) + " | sentence |", "|---|" + "---|" * len(attrs) + "---|"]
    for i, (lab, text) in enumerate(zip(labels, texts, strict=True)):
        cells = [lab.get(a, "-") for a in attrs] + [text.replace("|", "\\|")]
        rows.append(f"| {i} | " + " | ".join(cells) + " |")
    (directory / TABLE).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return [f"{SAMPLES}#{i}" for i in range(len(texts))]


def draw(samples: Tensor, labels: list[dict[str, str]], path: Path, title: str, info: Mapping[str, Any],
         *, conditions: int = 12, per_condition: int = 2, width: int = 110) -> None:
    """A PNG table: the first ``per_condition`` sentences of the first ``conditions`` requested conditions."""
    texts = sentences(samples, info)
    shown: dict[str, list[str]] = {}
    for lab, text in zip(labels, texts, strict=True):
        key = ", ".join(lab.values()) or "unconditional"
        if key in shown or len(shown) < conditions:
            group = shown.setdefault(key, [])
            if len(group) < per_condition:
                group.append(text)
    lines = []
    for key, group in shown.items():
        lines.append(f"[{key}]")
        lines += ["  " + w for text in group for w in textwrap.wrap(text, width, subsequent_indent="    ")]
    fig = plt.figure(figsize=(11, 0.6 + 0.19 * len(lines)))
    fig.text(0.01, 1 - 0.25 / fig.get_figheight(), title, fontsize=10, weight="bold", va="top")
    fig.text(0.01, 1 - 0.55 / fig.get_figheight(), "\n".join(lines), fontsize=8, family="monospace", va="top")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
