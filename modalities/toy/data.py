"""The toy's data: the compass mixture and its dataset factory (fixed train and test draws)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from crossguide.data import ConditionalDataset, Splits
from crossguide.errors import UsageError
from crossguide.modalities.toy.mixture import ATTRIBUTES, compass_mixture

MIXTURE = compass_mixture()


def mixture_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Fixed train/test draws from the compass mixture (the data seed is fixed; ``seed`` drives training)."""
    if path is not None:
        raise UsageError("the toy 'mixture' dataset is procedural and takes no --data path")
    g = torch.Generator().manual_seed(int(options.get("data_seed", 1234)))
    parts = []
    for n in (options["train_per_component"], options["test_per_component"]):
        x, cond = MIXTURE.sample(n, g)
        parts.append(ConditionalDataset("mixture", x, cond, {a: list(v) for a, v in ATTRIBUTES.items()}))
    return Splits(*parts)
