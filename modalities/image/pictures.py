"""PNG output: one file per sample, and one labelled grid per setting (rows = conditions, columns = samples)."""

from __future__ import annotations

import re
from collections.abc import Sequence
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
    images = to_pil(samples)
    table([(text, [[images[i] for i in idx]]) for text, idx in rows.items()], [], path, title)


def table(rows: Sequence[tuple[str, Sequence[Sequence[Image.Image]]]], headers: Sequence[str], path: Path,
          title: str, *, cell: int = CELL, font_size: int = 10) -> None:
    """A labelled grid of images: one row per ``(label, groups)`` (at most :data:`MAX_ROWS`), each group a run of
    that row's images (at most :data:`MAX_COLS`) under its column header (``headers``, one a group, none for a
    single unnamed group, as :func:`grid` draws). Images are enlarged by a whole factor (nearest neighbour) to at
    least ``cell`` pixels a side, so that every pixel of a small sample stays a sharp square; text in
    ``font_size`` pixels."""
    shown = list(rows)[:MAX_ROWS]
    side = max(max(im.size) for _, groups in shown for group in groups for im in group)
    cell = side * max(1, -(-cell // side))  # an integer enlargement of at least `cell` pixels
    font = ImageFont.load_default(font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength
    margin = 8 + int(max(measure(t, font=font) for t, _ in shown))
    top, pad, gap = font_size + 8 + (font_size + 4) * bool(headers), 2, 10 * bool(headers)
    counts = [min(MAX_COLS, max((len(groups[j]) for _, groups in shown if j < len(groups)), default=0))
              for j in range(max(len(groups) for _, groups in shown))]
    names = [*headers, *[""] * (len(counts) - len(headers))]
    widths = [max(n * (cell + pad), int(measure(h, font=font)) + 6 * bool(h))
              for n, h in zip(counts, names, strict=True)]
    lefts = [margin + sum(widths[:j]) + gap * j for j in range(len(widths))]
    width = max(lefts[-1] + widths[-1], 8 + int(measure(title, font=font)))
    canvas = Image.new("RGB", (width, top + len(shown) * (cell + pad)), "white")
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 3), title, fill="black", font=font)
    for x, w, header in zip(lefts, widths, headers, strict=False):
        draw.text((x + w // 2, top - 3), header, fill="black", font=font, anchor="mb")
    for r, (text, groups) in enumerate(shown):
        y = top + r * (cell + pad)
        draw.text((4, y + cell // 2), text, fill="black", font=font, anchor="lm")
        for x, n, group in zip(lefts, counts, groups, strict=False):
            for c, image in enumerate(group[:n]):
                canvas.paste(image.convert("RGB").resize((cell, cell), Image.Resampling.NEAREST),
                             (x + c * (cell + pad), y))
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
