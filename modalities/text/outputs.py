"""Generated sentences as files a person reads: a JSONL file and a Markdown table per setting, a PNG table."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

from crossguide.modalities.text import tokenizer as T

MONOSPACE = str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSansMono.ttf")  # ships with matplotlib
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
    """A PNG table: the first ``per_condition`` sentences of the first ``conditions`` requested conditions (drawn
    with PIL, cheap enough to draw once per setting)."""
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
    font = ImageFont.truetype(MONOSPACE, 12)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    step = 15  # pixels per line
    width = 16 + int(max(measure(t, font=font) for t in [title, *lines]))
    canvas = Image.new("RGB", (width, 32 + step * len(lines)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((8, 6), title, fill="black", font=font)
    for k, line in enumerate(lines):
        draw.text((8, 26 + step * k), line, fill="black" if line.startswith("[") else "#333333", font=font)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
