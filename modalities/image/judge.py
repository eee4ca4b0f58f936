"""The image evaluator: a small CNN trained on a dataset's real training images (Ho & Salimans 2021 use
Inception features for FID and its classifier for IS; this judge plays both roles at toy scale).

Its global-average-pooled penultimate features feed Frechet distance, precision/recall and diversity; one linear
head per attribute (:class:`crossguide.judge.Judge`) judges adherence. It is cached per dataset by
:func:`crossguide.judge.train_judge`, with its held-out accuracy in ``info``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from crossguide.conditions import Condition
from crossguide.data import Splits
from crossguide.judge import FitConfig, Judge, JudgeEvaluator, train_judge

JUDGE_FIT = {  # the evaluator CNN's training, per preset
    "smoke": FitConfig(steps=40, batch_size=64, lr=3e-3),
    "quick": FitConfig(steps=400, batch_size=64, lr=3e-3),
    "full": FitConfig(steps=4000, batch_size=256, lr=2e-3),
}


def backbone(in_channels: int = 3, widths: Sequence[int] = (16, 32, 64)) -> nn.Sequential:
    """A VGG-style CNN (Simonyan & Zisserman 2015) with batch norm (Ioffe & Szegedy 2015): two 3x3 conv layers
    per stage, 2x max pooling between stages, global average pooling at the end: ``[B, C, H, W] -> [B, widths[-1]]``.

    Batch norm matters here: with GroupNorm the same net needs three times the steps to tell shapes apart.
    """
    layers: list[nn.Module] = []
    c = in_channels
    for i, w in enumerate(widths):
        if i:
            layers.append(nn.MaxPool2d(2))
        for _ in range(2):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.SiLU()]
            c = w
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
    return nn.Sequential(*layers)


def augment(x: Tensor, g: torch.Generator) -> Tensor:
    """Random shifts of up to 2 pixels and Gaussian noise (std up to 0.1): a judge that is not thrown by the
    small artefacts of generated images. ``[B, C, H, W]``."""
    dy, dx = (int(v) for v in torch.randint(-2, 3, (2,), generator=g))
    x = torch.roll(x, shifts=(dy, dx), dims=(2, 3))
    std = 0.1 * torch.rand(len(x), 1, 1, 1, generator=g)
    return x + std * torch.randn(x.shape, generator=g)


def saturation(data: Tensor, requested: Condition) -> dict[str, float]:
    """Model-free: the fraction of pixel values clipped at the ends of ``[-1, 1]``; strong guidance pushes
    colours to saturation (Ho & Salimans 2021, Fig. 1; Saharia et al. 2022, Sec. 2.3)."""
    return {"saturated": (data.abs() > 0.98).float().mean().item()}


def image_evaluator(splits: Splits, fit: FitConfig, cache: Path, *, progress: bool = True) -> JudgeEvaluator:
    """Train (or load from ``cache``) the CNN judge of ``splits`` and wrap it as an evaluator."""
    train, test = splits.train, splits.test
    widths = (16, 32, 64)
    judge, info = train_judge(
        cache, f"image-{train.name}", lambda: Judge(backbone(train.x.shape[1], widths), widths[-1], train.attributes),
        train, test, fit, augment=augment, extra_key={"arch": "vgg-bn", "widths": widths}, progress=progress,
    )
    info = {**info, "features": f"CNN penultimate ({widths[-1]}-d, global average pooled)"}
    return JudgeEvaluator(judge, info, objective=saturation)
