"""Modality plug-ins. A modality registers a denoiser factory, its datasets, its evaluator, its sample writer
and its presets; core code reaches modalities only through this registry.

Installed packages add modalities through the entry-point group ``crossguide.modalities`` (value: a
:class:`Modality` instance), datasets through ``crossguide.datasets`` (name ``<modality>.<dataset>``, value: a
:data:`DatasetFactory`) and denoisers through ``crossguide.denoisers`` (name ``<modality>.<denoiser>``, value: a
:class:`DenoiserEntry`), or at run time with :func:`register`, :func:`register_dataset` and
:func:`register_denoiser`. The built-in modalities are found the same way.
"""

from __future__ import annotations

import abc
import importlib.util
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.errors import UsageError, check_choice
from crossguide.plugins import load_group, lookup, provider

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import ConditionalDataset, Splits
    from crossguide.denoiser import Denoiser
    from crossguide.evaluation import Evaluator
    from crossguide.schedules import Schedule

MODALITY_GROUP = "crossguide.modalities"
DATASET_GROUP = "crossguide.datasets"
DENOISER_GROUP = "crossguide.denoisers"
PRESETS = ("smoke", "quick", "full")

DatasetFactory = Callable[[Mapping[str, Any], "Path | None", int], "Splits"]  # (preset data options, --data, seed)
# (the model's JSON config, attribute -> value names, the dataset's info) -> a fresh denoiser
DenoiserFactory = Callable[[Mapping[str, Any], Mapping[str, list[str]], Mapping[str, Any]], "Denoiser"]


@dataclass(frozen=True)
class DenoiserEntry:
    """A denoiser a modality trains and samples by name (``--model NAME``, ``--model-args k=v,...``).

    ``build`` makes it from its config (a :class:`~crossguide.plugins.Deferred` keeps torch and optional packages
    unimported until then); ``configs`` gives its config per preset, which ``--model-args`` overrides key by key
    (``options`` lists further keys it accepts); ``train`` overrides the preset's training per preset (e.g. another
    learning rate). ``requires`` names the modules it imports beyond crossguide's dependencies and ``install`` how
    to get them; ``package`` is the distribution that provides it, named when a checkpoint needs it and it is
    missing (filled in from the entry point or the module when left empty)."""

    build: DenoiserFactory
    configs: Mapping[str, Mapping[str, Any]]
    options: tuple[str, ...] = ()
    train: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    install: str = ""
    package: str = ""
    about: str = ""  # one line for `crossguide list`

    def check_installed(self, name: str) -> None:
        """A one-line :class:`UsageError` naming the missing module and how to install it, if one is missing."""
        for module in self.requires:
            if importlib.util.find_spec(module) is None:
                how = f"; install it with: {self.install}" if self.install else ""
                raise UsageError(f"denoiser {name} needs the {module!r} package, which is not installed{how}")


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
    default_denoiser: str = "default"  # the name of :meth:`build_model`'s denoiser, trained unless --model says
    model_options: tuple[str, ...] = ()  # its config keys (--model-args) besides those every preset sets
    shipped_denoisers: Mapping[str, DenoiserEntry] = {}  # alternatives the modality's package provides

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

    @property
    def denoisers(self) -> dict[str, DenoiserEntry]:
        """Every denoiser this modality trains by name: its default (:meth:`build_model` with the presets' ``model``
        configs), the ones its package ships, and those added by :func:`register_denoiser` or entry point."""
        if "_denoisers" not in self.__dict__:
            own = DenoiserEntry(self.build_model, {name: p.model for name, p in self.presets.items()},
                                self.model_options, package="crossguide", about="the modality's own denoiser")
            self.__dict__["_denoisers"] = {self.default_denoiser: own, **self.shipped_denoisers}
        _load_entry_points()
        return self.__dict__["_denoisers"]

    def denoiser(self, name: str | None = None) -> tuple[str, DenoiserEntry]:
        """The registered name and entry of denoiser ``name`` (bare or ``<modality>.<name>``; ``None``: the
        default), or a one-line :class:`UsageError` naming the valid ones."""
        name = name or self.default_denoiser
        prefix = f"{self.name}."
        if name.startswith(prefix):
            name = name[len(prefix):]
        elif "." in name:
            raise UsageError(f"denoiser {name!r} belongs to another modality; valid for {self.name}: "
                             f"{', '.join(self.denoisers)}")
        return name, lookup(f"{self.name} denoiser", name, self.denoisers, _BROKEN_DENOISERS.get(self.name, {}))

    def model_config(self, denoiser: str | None, preset: str, model_args: Mapping[str, Any] | None = None,
                     ) -> dict[str, Any]:
        """Denoiser ``denoiser``'s config for ``preset`` with ``model_args`` (``--model-args``) overriding its keys;
        an unknown key is a one-line error naming the valid ones."""
        name, entry = self.denoiser(denoiser)
        check_choice(f"preset for denoiser {self.name}.{name}", preset, entry.configs)
        base = dict(entry.configs[preset])
        valid = [*base, *(o for o in entry.options if o not in base)]
        for key in model_args or {}:
            if key not in valid:
                raise UsageError(f"--model-args: denoiser {self.name}.{name} has no option {key!r}; valid: "
                                 f"{', '.join(valid)}")
        return {**base, **(model_args or {})}

    def train_config(self, denoiser: str | None, preset: str) -> TrainConfig:
        """The preset's training with denoiser ``denoiser``'s overrides for it."""
        _, entry = self.denoiser(denoiser)
        return replace(self.preset(preset).train, **entry.train.get(preset, {}))

    def build(self, denoiser: str | None, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
              info: Mapping[str, Any]) -> Denoiser:
        """A fresh denoiser ``denoiser`` (``None``: the default) from its config; a missing optional package is a
        one-line error naming it."""
        name, entry = self.denoiser(denoiser)
        entry.check_installed(f"{self.name}.{name}")
        return entry.build(config, attributes, info)

    def init_model(self, preset: Preset, data: ConditionalDataset, seed: int, *, denoiser: str | None = None,
                   config: Mapping[str, Any] | None = None) -> Denoiser:
        """A fresh denoiser for ``data`` (``denoiser`` with ``config``; default: the modality's own with the
        preset's config), its weights drawn from ``seed`` (same seed, same weights); the global RNG is left as
        it was."""
        import torch

        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return self.build(denoiser, preset.model if config is None else config, data.attributes, data.info)

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
_BROKEN_DENOISERS: dict[str, dict[str, str]] = {}  # modality -> denoiser name -> reason
_loaded = False


def register(modality: Modality) -> None:
    _MODALITIES[modality.name] = modality


def register_dataset(modality: str, name: str, factory: DatasetFactory) -> None:
    get(modality).datasets[name] = factory


def register_denoiser(modality: str, name: str, entry: DenoiserEntry) -> None:
    """Add denoiser ``name`` to ``modality`` (``--model name``); ``entry.package`` defaults to the distribution
    that holds ``entry.build``'s module."""
    if not name or "." in name:
        raise UsageError(f"a denoiser name is one word without dots (it is written <modality>.<name>), got {name!r}")
    if not entry.package:
        entry = replace(entry, package=provider(getattr(entry.build, "target", None) or entry.build.__module__))
    get(modality).denoisers[name] = entry


def denoiser_record(modality: Modality, name: str | None) -> dict[str, str]:
    """What a checkpoint's ``config.json`` keeps of its denoiser: its registered name and providing package."""
    name, entry = modality.denoiser(name)
    return {"denoiser": name, "denoiser_package": entry.package}


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

    def add_denoiser(entry: str, value: DenoiserEntry, package: str) -> None:
        modality, _, name = entry.partition(".")
        if modality in _MODALITIES and name:
            register_denoiser(modality, name, replace(value, package=value.package or package))

    for entry, reason in load_group(DENOISER_GROUP, add_denoiser, {}, with_package=True).items():
        modality, _, name = entry.partition(".")
        _BROKEN_DENOISERS.setdefault(modality, {})[name] = reason


def names() -> list[str]:
    _load_entry_points()
    return sorted(_MODALITIES)


def get(name: str) -> Modality:
    _load_entry_points()
    return lookup("modality", name, _MODALITIES, _BROKEN)
