"""The notebook API: a checkpoint directory loaded once and sampled with any guidance, in three lines::

    pipe = crossguide.load("runs/image")
    out = pipe.sample({"shape": "ring"}, w=3, n=16, seed=0)
    out.save("grid.png")

``crossguide sample`` is this API behind a command line. ``w`` is the paper's (Ho & Salimans 2021, Eq. 6:
``eps~ = (1 + w) eps(x, c) - w eps(x)``); ``compose`` weights each attribute on its own (Liu et al. 2022, Eq. 9),
``negative`` replaces the unconditional base by a condition to move away from.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import Tensor

from crossguide import conditions as C
from crossguide.config import MAX_W
from crossguide.errors import UsageError, check_range
from crossguide.guidance import Guidance, Term
from crossguide.pipeline import helper_models, load_model
from crossguide.registry import Modality
from crossguide.registry import get as get_modality
from crossguide.sampling import generate

Named = Mapping[str, str] | str | None  # {"shape": "ring"}, "shape=ring,color=red", or None (unconditional)


@dataclass
class Samples:
    """Generated samples (``samples``: decoded, ``[N, ...]`` on the CPU) with the condition each was asked for."""

    samples: Tensor
    labels: list[dict[str, str]]
    title: str
    nfe: float  # network evaluations per sample
    modality: Modality = field(repr=False)
    info: Mapping[str, Any] = field(repr=False, default_factory=dict)

    def __len__(self) -> int:
        return len(self.samples)

    def __repr__(self) -> str:
        return f"Samples({len(self)} x {list(self.samples.shape[1:])}, {self.title!r}, {self.nfe:g} NFE each)"

    def save(self, path: str | Path) -> list[Path]:
        """``*.png``: one picture of all samples (a grid, spectrograms, a table); a folder: every sample as a
        file a person can open (PNG, WAV, text) plus ``grid.png``. Returns the files written."""
        path = Path(path)
        if path.suffix.lower() == ".png":
            path.parent.mkdir(parents=True, exist_ok=True)
            self.modality.draw(self.samples, self.labels, path, self.title, self.info)
            return [path]
        written = self.modality.write_samples(self.samples, self.labels, path, self.info)
        self.modality.draw(self.samples, self.labels, path / "grid.png", self.title, self.info)
        files = dict.fromkeys(path / p.partition("#")[0] for p in written)  # "points.csv#3": row 3 of one file
        return [*files, path / "grid.png"]

    def _repr_png_(self) -> bytes:
        """Jupyter shows the picture of :meth:`save` inline."""
        with tempfile.TemporaryDirectory() as tmp:
            picture = Path(tmp) / "samples.png"
            self.save(picture)
            return picture.read_bytes()


class Pipe:
    """A trained denoiser (its EMA weights), its noise schedule and its modality, ready to sample."""

    def __init__(self, checkpoint: str | Path, data: str | Path | None = None):
        """``data``: the dataset path, only for rules that train on the data (classifier guidance) of a model
        trained on a path dataset."""
        self.checkpoint = Path(checkpoint)
        self.model, self.schedule, self.config = load_model(self.checkpoint)
        self.modality = get_modality(self.config["modality"])
        self.data = None if data is None else Path(data)

    @property
    def attributes(self) -> dict[str, list[str]]:
        """Attribute -> the value names a condition may ask for."""
        return self.model.attributes

    def __repr__(self) -> str:
        name = self.config.get("denoiser", self.modality.default_denoiser)
        return (f"Pipe({str(self.checkpoint)!r}: {self.modality.name}.{name}, dataset "
                f"{self.config.get('dataset', '?')!r}, attributes {self.attributes})")

    def sample(self, cond: Named = None, *, w: float = 0.0, n: int = 16, seed: int = 0, rule: str = "cfg",
               rule_args: Mapping[str, Any] | None = None, compose: Mapping[str, float] | None = None,
               negative: Named = None, sampler: str = "ddim", steps: int = 50,
               interval: tuple[float, float] | None = None, schedule: str = "constant", snap: bool = True,
               progress: bool = False) -> Samples:
        """``n`` samples of condition ``cond`` guided by ``rule`` at weight ``w`` (or per attribute by
        ``compose``, each attribute set in ``cond``), away from ``negative`` if given; the same ``seed`` gives
        the same samples. ``interval`` guides only where the noise level sigma lies in it; ``schedule`` makes the
        weight rise as the noise falls (``linear``, ``cosine``)."""
        choice = self.condition(cond, "cond")
        guidance = Guidance(rule=rule, options=tuple((rule_args or {}).items()), interval=interval,
                            schedule=schedule, terms=self.terms(w, compose, choice))
        return self.generate(choice, guidance, n=n, seed=seed, negative=negative, sampler=sampler, steps=steps,
                             snap=snap, progress=progress, what=cond)

    def condition(self, named: Named, what: str) -> C.Choice:
        """A condition given as ``{"attribute": "value"}`` or ``"attribute=value,..."``, as value indices."""
        if named is None or isinstance(named, str):
            return C.parse(named or "", self.attributes, what)
        return C.resolve(named, self.attributes)

    def terms(self, w: float, compose: Mapping[str, float] | None, choice: C.Choice) -> tuple[Term, ...]:
        """One term at ``w`` on the whole condition, or ``compose``'s term per attribute (each in ``choice``: a
        term on an unset attribute would guide towards the unconditional model, silently)."""
        check_range("w", w, -MAX_W, MAX_W)
        if not compose:
            return (Term(float(w)),)
        if w != 0.0:
            raise UsageError(f"compose gives each attribute its own weight; drop w={w:g} (or drop compose)")
        terms = []
        for name, weight in compose.items():
            C.check_attribute(name, self.attributes)
            if name not in choice:
                raise UsageError(f"compose weights attribute {name!r}, which the condition does not set; it sets: "
                                 f"{', '.join(choice) or 'nothing'}")
            check_range(f"compose weight for {name!r}", weight, -MAX_W, MAX_W)
            terms.append(Term(float(weight), (name,)))
        return tuple(terms)

    def generate(self, choice: C.Choice, guidance: Guidance, *, n: int, seed: int, negative: Named = None,
                 sampler: str = "ddim", steps: int = 50, snap: bool = True, progress: bool = False,
                 what: Named = None) -> Samples:
        """``n`` samples of ``choice`` under the whole ``guidance`` spec (what :meth:`sample` and ``crossguide
        sample`` build)."""
        cond = C.stack([choice] * n, self.attributes)
        away = None
        if negative:
            avoid = self.condition(negative, "negative")
            if avoid == choice:  # eps~ = eps(x, c) + (1 + w)(eps(x, c) - eps(x, c)): w would do nothing
                raise UsageError(f"negative {negative!r} is the condition itself; guidance would push away from what "
                                 "it asks for and ignore w")
            away = C.stack([avoid] * n, self.attributes)
        helpers = self.helpers(guidance, progress)
        gen = generate(self.model, self.schedule, cond, guidance, sampler=sampler, steps=steps, seed=seed,
                       negative=away, snap=snap, helpers=helpers, progress=progress)
        asked = what if isinstance(what, str) else ",".join(f"{k}={v}" for k, v in (what or {}).items())
        title = f"{asked or 'unconditional'}: {guidance.terms_label()} ({guidance.label()})"
        return Samples(gen.samples, [C.names(choice, self.attributes)] * n, title, gen.nfe, self.modality,
                       self.config.get("data_info", {}))

    def helpers(self, guidance: Guidance, progress: bool) -> dict[str, Any]:
        """The extra models ``guidance``'s rule needs (the early EMA weights, a noise classifier trained on first
        use beside the checkpoint)."""
        modality, config = self.modality, self.config
        preset = config.get("preset", "quick")
        built = helper_models(guidance.make_rule().helpers, modality=modality, dataset=config.get("dataset", ""),
                              preset_name=preset, model=self.model, schedule=self.schedule,
                              model_dir=self.checkpoint, progress=progress,
                              splits=lambda: modality.load_dataset(config.get("dataset"), preset, self.data, 0))
        return {k: m for k, (m, _) in built.items()}


def load(checkpoint: str | Path, data: str | Path | None = None) -> Pipe:
    """The :class:`Pipe` of a checkpoint directory (``crossguide train``, or a bench's ``model/``)."""
    return Pipe(checkpoint, data)

