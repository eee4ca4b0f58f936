"""Conditional datasets: raw examples with one integer per attribute, held in memory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch
from torch import Tensor

from crossguide import conditions as C
from crossguide.conditions import Condition
from crossguide.errors import UsageError


@dataclass
class ConditionalDataset:
    """``x``: ``[N, ...]`` raw examples (what the denoiser's ``encode`` takes); ``cond``: ``[N]`` per attribute."""

    name: str
    x: Tensor
    cond: Condition
    attributes: dict[str, list[str]]
    info: dict[str, Any] = field(default_factory=dict)  # JSON-serialisable facts (sample rate, vocabulary, ...)

    def __post_init__(self) -> None:
        if len(self.x) == 0:
            raise UsageError(f"dataset {self.name!r} is empty")
        C.validate(self.cond, self.attributes)
        if C.batch_size(self.cond) != len(self.x):
            raise ValueError(f"dataset {self.name!r}: {len(self.x)} examples but {C.batch_size(self.cond)} labels")
        if self.x.is_floating_point() and not bool(torch.isfinite(self.x).all()):
            raise UsageError(f"dataset {self.name!r} contains NaN or infinite values")

    def __len__(self) -> int:
        return len(self.x)

    def subset(self, idx: Tensor) -> ConditionalDataset:
        return ConditionalDataset(self.name, self.x[idx], C.index(self.cond, idx), self.attributes, self.info)


class Splits(NamedTuple):
    train: ConditionalDataset
    test: ConditionalDataset


def split(data: ConditionalDataset, test_fraction: float, seed: int) -> Splits:
    """A fixed, seeded train/test split."""
    n_test = max(1, int(round(len(data) * test_fraction)))
    perm = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    return Splits(data.subset(perm[n_test:]), data.subset(perm[:n_test]))
