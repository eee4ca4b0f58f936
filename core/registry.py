"""Modality plug-ins. A modality registers a denoiser factory, its datasets, its evaluator, its sample writer
and its presets; core code reaches modalities only through this registry.

Installed packages add modalities through the entry-point group ``crossguide.modalities`` (value: a
:class:`Modality` instance) and datasets through ``crossguide.datasets`` (name ``<modality>.<dataset>``, value: a
:data:`DatasetFactory`). The built-in modalities are found the same way.
"""

from __future__ import annotations

import abc
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.errors import UsageError, check_choice
from crossguide.plugins import load_group, lookup

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import ConditionalDataset, Splits
    from crossguide.denoiser import Denoiser
    from crossguide.evaluation import Evaluator
    from crossguide.schedules import Schedule

MODALITY_GROUP = "crossguide.modalities"
DATASET_GROUP = "crossguide.datasets"
PRESETS = ("smoke", "quick", "full")

DatasetFactory = Callable[[Mapping[str, Any], "Path | None", int], "Splits"]  # (preset data options, --data, seed)


@dataclass(frozen=True)
class Preset:
    """Everything a preset fixes for one modality; ``smoke`` runs in seconds, ``quick`` in minutes on 2 CPU
    cores, ``full`` at GPU scale."""

    model: dict[str, Any]  # the denoiser's constructor arguments
    train: TrainConfig
    schedule: str = "cosine"
    T: int = 1000  # noqa: N815
    sampler: str = "ddim"
    steps: int = 50
    per_condition: int = 16  # samples per full condition in each sweep setting
    batch: int = 256  # sampling batch (examples, before the K+1 branches)
    data: dict[str, Any] = field(default_factory=dict)  # dataset options (size, length, count, ...)
    # the noise classifier of classifier guidance: its backbone's config (Modality.classifier_backbone) and its
    # training (labels are clean: no condition dropout, no weak copy)
    classifier: dict[str, Any] = field(default_factory=dict)
    classifier_train: TrainConfig = field(
        default_factory=lambda: training(TrainConfig(steps=1000, batch_size=64, lr=1e-3, warmup=50, ema_decay=0.995)))


class Modality(abc.ABC):
    """A data type: its datasets, denoiser, evaluator, presets and how to write samples."""

    name: str
    default_dataset: str
    datasets: dict[str, DatasetFactory]
    presets: dict[str, Preset]
    extra_ws: tuple[float, ...] = ()  # weights the benchmark sweeps besides the paper's grid (e.g. negative ones)

    def preset(self, name: str) -> Preset:
        check_choice(f"preset for {self.name}", name, self.presets)
        return self.presets[name]

    def load_dataset(self, name: str | None, preset: str, path: Path | None, seed: int) -> Splits:
        name = name or self.default_dataset
        check_choice(f"{self.name} dataset", name, self.datasets)
        return self.datasets[name](self.preset(preset).data, path, seed)

    def schedule(self, preset: Preset) -> Schedule:
        from crossguide.schedules import make

        return make(preset.schedule, preset.T)

    def init_model(self, preset: Preset, data: ConditionalDataset, seed: int) -> Denoiser:
        """A fresh denoiser for ``preset`` and ``data``, its weights drawn from ``seed`` (same seed, same
        weights); the global RNG is left as it was."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.build_model(preset.model, data.attributes, data.info)

    @abc.abstractmethod
    def build_model(self, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
                    info: Mapping[str, Any]) -> Denoiser:
        """A fresh denoiser from its JSON config (the preset's ``model`` dict or a checkpoint's) and the
        dataset's ``info`` (e.g. image size, vocabulary)."""

    @abc.abstractmethod
    def evaluator(self, splits: Splits, preset: str, cache: Path) -> Evaluator:
        """The evaluator for ``splits`` (trained on ``splits.train`` or loaded from ``cache``)."""

    @abc.abstractmethod
    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        """Write samples as files a person can open; return each sample's path relative to ``directory``."""

    @abc.abstractmethod
    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
        """One PNG picture of a setting's samples (a grid, spectrograms, a scatter plot, a table)."""

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        """The backbone of this modality's noise classifier, ``(x_t [B, ...], t [B]) -> [B, D]``, and ``D``:
        what classifier guidance differentiates. ``config`` is the preset's ``classifier`` dict (or a saved one)."""
        raise UsageError(f"modality {self.name!r} provides no noise classifier, so classifier guidance is unavailable")

    def describe(self, samples: Tensor, info: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Extra per-sample manifest fields (e.g. the generated sentence); none by default."""
        return [{} for _ in range(len(samples))]

    @property
    def references(self) -> Path | None:
        """The folder of reference artifacts (:mod:`crossguide.reference`) shipped in the package that defines this
        modality: ``reference/`` beside its module (it may not exist)."""
        file = getattr(sys.modules.get(type(self).__module__), "__file__", None)
        return None if file is None else Path(file).parent / "reference"


_MODALITIES: dict[str, Modality] = {}
_BROKEN: dict[str, str] = {}  # entry points that failed to import: name -> reason
_loaded = False


def register(modality: Modality) -> None:
    _MODALITIES[modality.name] = modality


def register_dataset(modality: str, name: str, factory: DatasetFactory) -> None:
    get(modality).datasets[name] = factory


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    load_group(MODALITY_GROUP, lambda _, obj: register(obj() if not isinstance(obj, Modality) and callable(obj)
                                                         else obj), _BROKEN)

    def add_dataset(entry: str, factory: DatasetFactory) -> None:
        modality, _, name = entry.partition(".")
        if modality in _MODALITIES and name:
            _MODALITIES[modality].datasets[name] = factory

    load_group(DATASET_GROUP, add_dataset, {})


def names() -> list[str]:
    _load_entry_points()
    return sorted(_MODALITIES)


def get(name: str) -> Modality:
    _load_entry_points()
    return lookup("modality", name, _MODALITIES, _BROKEN)
