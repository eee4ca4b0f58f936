"""Small shared builders for the core tests."""

from __future__ import annotations

import torch

from crossguide.data import ConditionalDataset
from crossguide.modalities.toy.data import MIXTURE
from crossguide.modalities.toy.mixture import ATTRIBUTES, ExactDenoiser
from crossguide.modalities.toy.mlp import MLPDenoiser
from crossguide.modalities.toy.modality import MODALITY
from crossguide.schedules import linear

SCHEDULE = linear(1000)


def exact() -> ExactDenoiser:
    return ExactDenoiser(MIXTURE, SCHEDULE)


def random_mlp(seed: int = 0, prediction: str = "eps") -> MLPDenoiser:
    """An untrained MLP with a non-zero output layer, so different conditions give different outputs."""
    torch.manual_seed(seed)
    model = MLPDenoiser(ATTRIBUTES, hidden=32, depth=2, prediction=prediction)
    torch.nn.init.normal_(model.out[1].weight, std=0.5)
    for table in model.cond.tables.values():
        torch.nn.init.normal_(table.weight, std=1.0)
    return model.eval()


def toy_data(preset: str = "smoke") -> ConditionalDataset:
    return MODALITY.load_dataset(None, preset, None, 0).train
