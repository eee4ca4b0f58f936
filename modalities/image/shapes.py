"""The procedural ``shapes`` dataset: coloured shapes on textured backgrounds, two attributes (shape, color).

Each image is rendered from signed distance functions with one pixel of anti-aliasing: a shape at a random
position, size and rotation, filled with its colour (jittered per image), over a background of smooth colour
noise plus grain. Everything is drawn from one seeded generator, so the data (and its train/test split) is the
same on every run and machine; rendering is vectorised and takes well under a second, so nothing is cached.
Small shapes at 16x16 pixels on busy backgrounds leave a half-trained model room to confuse shapes, which is
where guidance has something to do.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from crossguide.data import ConditionalDataset, Splits
from crossguide.modalities.image.datasets import image_info, no_path

SHAPES = ["circle", "bar", "ring", "plus"]
COLORS = {  # RGB in [0, 1]
    "red": (0.85, 0.15, 0.15),
    "green": (0.15, 0.7, 0.2),
    "blue": (0.15, 0.3, 0.9),
    "yellow": (0.9, 0.8, 0.1),
}
ATTRIBUTES = {"shape": SHAPES, "color": list(COLORS)}


def _box(p: Tensor, half_w: Tensor, half_h: Tensor) -> Tensor:
    """Signed distance (up to the corners) to an axis-aligned box: ``max(|x| - w, |y| - h)``; ``[N, H, W]``."""
    return torch.maximum(p[..., 0].abs() - half_w[:, None, None], p[..., 1].abs() - half_h[:, None, None])


def shape_sdf(shape: Tensor, p: Tensor, radius: Tensor, angle: Tensor) -> Tensor:
    """Signed distance ``[N, H, W]`` from pixel offsets ``p [N, H, W, 2]`` to each example's shape (index into
    :data:`SHAPES`), all of similar visual extent ``radius`` and rotated by ``angle``."""
    c, s = angle.cos()[:, None, None], angle.sin()[:, None, None]
    q = torch.stack([c * p[..., 0] + s * p[..., 1], -s * p[..., 0] + c * p[..., 1]], -1)  # rotated frame
    arm = radius / 3
    r = radius[:, None, None]
    candidates = torch.stack([
        p.norm(dim=-1) - 0.85 * r,  # circle
        _box(q, radius, 0.45 * radius),  # bar
        (p.norm(dim=-1) - 0.7 * r).abs() - 0.25 * r,  # ring
        torch.minimum(_box(q, radius, arm), _box(q, arm, radius)),  # plus
    ])  # [S, N, H, W]
    return candidates.gather(0, shape[None, :, None, None].expand(1, *candidates.shape[1:]))[0]


def render(shape: Tensor, color: Tensor, size: int, generator: torch.Generator,
           radius_px: tuple[float, float] = (3.0, 5.5), tilt_deg: float = 20.0) -> Tensor:
    """Images ``[N, 3, size, size]`` in ``[-1, 1]`` of the given shape and colour indices ``[N]``.

    Each shape is turned by a uniform angle in ``[-tilt_deg, tilt_deg]``: bars stay bars and pluses stay pluses
    at a glance (a bar at 45 degrees on 16 pixels is a staircase a small model learns slowly).
    """
    n = len(shape)
    u = lambda *s: torch.rand(s, generator=generator)  # noqa: E731
    radius = radius_px[0] + (radius_px[1] - radius_px[0]) * u(n)  # [N] pixels
    margin = radius + 0.5
    center = margin[:, None] + (size - 2 * margin[:, None]) * u(n, 2)  # [N, 2] pixels, shape fully inside
    angle = math.radians(tilt_deg) * (2 * u(n) - 1)
    ys, xs = torch.meshgrid(torch.arange(size) + 0.5, torch.arange(size) + 0.5, indexing="ij")
    p = torch.stack([xs, ys], -1)[None] - center[:, None, None]  # [N, H, W, 2] offsets in pixels
    cover = (0.5 - shape_sdf(shape, p, radius, angle)).clamp(0, 1)[:, None]  # [N, 1, H, W] 1-pixel anti-aliasing

    # background: a grey level plus smooth colour noise (4x4 values, bilinearly interpolated)
    grey = 0.3 + 0.3 * u(n, 1, 1, 1)
    smooth = torch.nn.functional.interpolate(u(n, 3, 4, 4) - 0.5, size=(size, size), mode="bilinear",
                                             align_corners=False)
    background = grey + 0.25 * smooth

    palette = torch.tensor(list(COLORS.values()))  # [C, 3]
    fill = palette[color][:, :, None, None] + 0.08 * (u(n, 3, 1, 1) - 0.5)  # [N, 3, 1, 1] jittered colour
    image = background * (1 - cover) + fill * cover
    return (2 * image - 1).clamp(-1, 1)


def make(options: Mapping[str, Any], seed: int) -> tuple[Tensor, dict[str, Tensor]]:
    """``per_condition`` images of every (shape, colour) pair, shuffled: ``x [N, 3, S, S]`` and labels."""
    g = torch.Generator().manual_seed(seed)
    per = int(options["per_condition"])
    shape = torch.arange(len(SHAPES)).repeat_interleave(len(COLORS) * per)
    color = torch.arange(len(COLORS)).repeat_interleave(per).repeat(len(SHAPES))
    perm = torch.randperm(len(shape), generator=g)
    shape, color = shape[perm], color[perm]
    radius = tuple(options.get("radius_px", (3.0, 5.5)))
    tilt = float(options.get("tilt_deg", 20.0))
    return render(shape, color, int(options["size"]), g, radius, tilt), {"shape": shape, "color": color}


def shapes_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Fixed train and test sets, drawn from separate seeds derived from ``data_seed`` (not the run's ``seed``).

    Options: ``size``, ``train_per_condition``, ``test_per_condition``, ``data_seed``, ``radius_px``, ``tilt_deg``.
    """
    no_path("shapes", path)
    data_seed = int(options.get("data_seed", 1234))
    parts = []
    for i, split in enumerate(("train", "test")):
        x, cond = make({**options, "per_condition": options[f"{split}_per_condition"]}, data_seed + i)
        parts.append(ConditionalDataset("shapes", x, cond, {a: list(v) for a, v in ATTRIBUTES.items()},
                                        image_info(x)))
    return Splits(*parts)
