"""PNG output: one file per sample, and one labelled grid per setting (rows = conditions, columns = samples)."""

from __future__ import annotations

import re
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont
from torch import Tensor

MAX_ROWS = 16  # conditions shown in a grid; more would not be readable
MAX_COLS = 10  # samples shown per condition
CELL = 48  # minimum cell side in pixels (small images are enlarged with nearest-neighbour)


def to_pil(images: Tensor) -> list[Image.Image]:
    """``[N, C, H, W]`` in ``[-1, 1]`` (C = 1 or 3) -> 8-bit PIL images."""
    arr = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    return [Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a) for a in arr]


def label_text(label: dict[str, str]) -> str:
    return " ".join(label.values()) or "unconditional"


def write_pngs(samples: Tensor, labels: list[dict[str, str]], directory: Path) -> list[str]:
    """``{index:05d}_{values}.png`` per sample under ``directory``; returns the file names."""
    directory.mkdir(parents=True, exist_ok=True)
    names = []
    for i, (image, label) in enumerate(zip(to_pil(samples), labels, strict=True)):
        slug = re.sub(r"[^A-Za-z0-9.+-]+", "-", "_".join(label.values()) or "uncond")[:60]
        name = f"{i:05d}_{slug}.png"
        image.save(directory / name)
        names.append(name)
    return names


def grid(samples: Tensor, labels: list[dict[str, str]], path: Path, title: str) -> None:
    """Rows = conditions in order of first appearance (at most :data:`MAX_ROWS`), columns = that condition's
    samples (at most :data:`MAX_COLS`), the condition written at the left of each row, ``title`` on top."""
    rows: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        rows.setdefault(label_text(label), []).append(i)
    shown = list(rows.items())[:MAX_ROWS]
    images = to_pil(samples)
    side = samples.shape[-1]
    cell = side * max(1, -(-CELL // side))  # an integer enlargement of at least CELL pixels
    font = ImageFont.load_default()
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    margin = 8 + int(max(measure(t, font=font) for t, _ in shown))
    cols = min(MAX_COLS, max(len(idx) for _, idx in shown))
    top, pad = 18, 2
    width = max(margin + cols * (cell + pad), 8 + int(measure(title, font=font)))
    canvas = Image.new("RGB", (width, top + len(shown) * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black", font=font)
    for r, (text, idx) in enumerate(shown):
        y = top + r * (cell + pad)
        draw.text((4, y + cell // 2 - 5), text, fill="black", font=font)
        for c, i in enumerate(idx[:cols]):
            canvas.paste(images[i].convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                         (margin + c * (cell + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
