"""``crossguide reference``: list, verify and (re)build the reference artifacts of :mod:`crossguide.reference`.

A build runs the project's own training code, from scratch, exactly as the study would: for one modality and
preset it prepares the main model (its evaluator's judges and language model with it), the classifier-guidance
classifier, and the p_uncond ablation models the study's plan asks for, all seeded (seed 0), and exports each
into the modality's ``reference/`` folder with its model card. Each denoiser's card then gets the quality-bar
table of the bench's CFG sweep (seed 0) sampled from the exported weights and judged by the exported judges.

``crossguide reference build NAME`` rebuilds one artifact; the others it depends on (the text classifier reads
the reference denoiser's embeddings) are used as shipped.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from crossguide import reference
from crossguide.checkpoint import read_config
from crossguide.errors import UsageError
from crossguide.guidance import Guidance
from crossguide.pipeline import denoiser_name, prepare
from crossguide.registry import get as get_modality

COMMAND = "crossguide reference build"
QUALITY = "CFG sweep, seed 0 (the bench's grid)"  # the card table's title


@contextlib.contextmanager
def _private_cache(path: Path) -> Iterator[None]:
    """Judges and datasets cached in ``path``, so a build trains them rather than finding an earlier copy."""
    before = os.environ.get("CROSSGUIDE_CACHE")
    os.environ["CROSSGUIDE_CACHE"] = str(path)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("CROSSGUIDE_CACHE", None)
        else:
            os.environ["CROSSGUIDE_CACHE"] = before


def build(modality: str, *, preset: str = "quick", names: Sequence[str] | None = None, store: Path | None = None,
          quality: bool = True, progress: bool = True) -> list[str]:
    """Train and export ``modality``'s reference artifacts for ``preset`` (only ``names``, default all) into
    ``store`` (default the modality's ``reference/`` folder); returns the names built."""
    from crossguide.benchmarks.study import PLANS, study_models

    m = get_modality(modality)
    spec, store = m.preset(preset), Path(store or m.references)
    store.mkdir(parents=True, exist_ok=True)
    wanted = None if names is None else set(names)
    with tempfile.TemporaryDirectory(prefix="crossguide-build-") as tmp, _private_cache(Path(tmp) / "cache"), \
            reference.building(store, COMMAND, wanted) as made:
        for run in study_models(PLANS[preset], m.name, spec, Path(tmp)):
            overrides = dict(run.overrides) or None
            if run.kind != "main" and wanted is not None and \
                    denoiser_name(m.name, m.default_dataset, preset, overrides) not in wanted:
                continue  # an ablation model nobody asked for
            ctx = prepare(m.name, preset=preset, model_dir=Path(tmp) / f"model-{run.label}", seed=0,
                          train_overrides=overrides, progress=progress)
            if run.kind == "main":
                with contextlib.suppress(UsageError):  # a modality without a noise classifier
                    ctx.helpers(Guidance(rule="classifier"), progress=progress)
        built = list(made.made)
    if quality:
        rescore([n for n in built if reference.read_index(store)[n]["kind"] == "denoiser"], store)
    return built


def rescore(names: Sequence[str], store: Path | None = None) -> list[str]:
    """Measure the card table of each denoiser artifact in ``names`` again, judged by the reference judges as they
    are now: a rebuilt judge is a new metric, so the cards must be rescored with it. ``store``: a store to look in
    besides the installed ones (a build's)."""
    known = {a.name: (Path(a.store), a.entry) for a in reference.artifacts()}
    if store is not None:
        known.update({n: (Path(store), e) for n, e in reference.read_index(store).items()})
    denoisers = sorted(n for n, (_, entry) in known.items() if entry["kind"] == "denoiser")
    for name in names:
        if name not in denoisers:
            raise UsageError(f"{name!r} is not a denoiser artifact; valid: {', '.join(denoisers)}")
        folder = known[name][0]
        reference.update_card(folder, name, quality={QUALITY: bench_table(folder / name)})
    return list(names)


def bench_table(checkpoint: Path) -> list[dict[str, Any]]:
    """The bench's CFG sweep of ``checkpoint`` at seed 0: adherence, FD and diversity per ``w``."""
    from crossguide.bench import bench

    config = read_config(checkpoint)
    with tempfile.TemporaryDirectory(prefix="crossguide-card-") as tmp:
        recs = bench(config["modality"], out=Path(tmp), checkpoint=checkpoint, progress=False)
    return [{"w": r["w"], "adherence": r["metrics"]["adherence"], "fd": r["metrics"]["fd"],
             "diversity": r["metrics"]["diversity"]} for r in sorted(recs, key=lambda r: r["w"])]


def list_table() -> str:
    """Every shipped artifact: name, kind, size, id, training time; and the total size."""
    rows = [f"{'name':<44} {'kind':<16} {'MiB':>6} {'train s':>8}  id"]
    total = 0
    for a in reference.artifacts():
        total += a.entry["bytes"]
        train_s = a.entry.get("train_s")
        rows.append(f"{a.name:<44} {a.entry['kind']:<16} {a.entry['bytes'] / 2**20:>6.2f} "
                    f"{'' if train_s is None else f'{train_s:.0f}':>8}  {a.id}")
    rows.append(f"{len(rows) - 1} artifacts, {total / 2**20:.2f} MiB in all")
    return "\n".join(rows)


def verify_all() -> list[str]:
    """Verify every shipped artifact; returns one line per artifact ("ok" or the error)."""
    lines = []
    for a in reference.artifacts():
        try:
            a.verify()
            lines.append(f"ok     {a.name}")
        except UsageError as e:
            lines.append(f"FAILED {a.name}: {e}")
    return lines
