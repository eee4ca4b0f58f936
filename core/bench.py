"""``crossguide bench MODALITY``: train (or reuse) a model, sweep a guidance rule over its weight, evaluate, plot.

A sweep is a list of guidance specs: one rule with its options and wrappers, at each weight. The default grid for
CFG is the paper's (Ho & Salimans 2021, Table 1: w in {0, 0.1, 0.2, 0.3, 0.5, 1, 2, 3, 4}) plus ``w = -1``, the
unconditional model, and any extra weights the modality asks for (e.g. negative ones); a rule may declare its
own grid (classifier guidance sweeps its scale to 10, CFG++ its ``lambda = 1 + w`` over [0, 1]). Benches of
several rules into one ``--out`` share the model and are plotted together, one curve per rule.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from crossguide import plots, records
from crossguide.checkpoint import read_config
from crossguide.guidance import Guidance, Term
from crossguide.metrics import spearman
from crossguide.pipeline import Context, Setting, prepare, run_settings, write_json
from crossguide.registry import Preset
from crossguide.registry import get as get_modality

PAPER_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 3.0, 4.0)


def default_ws(modality: str, guidance: Guidance | None = None) -> tuple[float, ...]:
    """The rule's own grid if it declares one, else the paper's grid, -1 and the modality's extra weights."""
    own = None if guidance is None else guidance.make_rule().sweep
    return tuple(own) if own is not None else tuple(sorted({-1.0, *PAPER_GRID, *get_modality(modality).extra_ws}))


def sweep_settings(spec: Preset, ws: Sequence[float], sampler: str | None, steps: int | None,
                   guidance: Guidance | None = None) -> list[Setting]:
    """``guidance`` (default plain CFG) at each weight ``w``, with the preset's sampler and steps unless given."""
    template = guidance or Guidance()
    return [Setting(replace(template, terms=(Term(float(w)),)), sampler or spec.sampler,
                    spec.steps if steps is None else steps) for w in ws]


def bench(
    modality: str,
    *,
    out: Path,
    dataset: str | None = None,
    data: Path | None = None,
    preset: str = "quick",
    ws: Sequence[float] | None = None,
    seed: int = 0,
    checkpoint: Path | None = None,
    sampler: str | None = None,
    steps: int | None = None,
    guidance: Guidance | None = None,
    force: bool = False,
    denoiser: str | None = None,
    model_args: Mapping[str, Any] | None = None,
    progress: bool = True,
) -> list[dict[str, Any]]:
    """Run the sweep of ``guidance`` (its rule, options and wrappers; default plain CFG) over ``ws`` and write
    ``records.jsonl``, samples with their manifest, plots and ``summary.json`` to ``out``; the model is
    ``checkpoint``'s, or ``denoiser`` (default the modality's own) with ``model_args`` trained into ``out/model``."""
    ws = default_ws(modality, guidance) if ws is None else ws
    if checkpoint is not None:
        preset = read_config(checkpoint).get("preset", preset)
    settings = sweep_settings(get_modality(modality).preset(preset), ws, sampler, steps, guidance)  # validate first
    ctx = prepare(modality, dataset=dataset, preset=preset, data=data, seed=seed, model_dir=out / "model",
                  checkpoint=checkpoint, denoiser=denoiser, model_args=model_args, progress=progress)
    recs = run_settings(ctx, settings, [seed], out, force=force, progress=progress)
    plots.bench_plots(records.read(out / "records.jsonl"), out / "plots")  # every rule benched into `out`
    summary = summarize(recs, ctx)
    path = out / "summary.json"
    earlier = json.loads(path.read_text(encoding="utf-8")).get("by_rule", {}) if path.exists() else {}
    summary["by_rule"] = {**earlier, summary["rule_label"]: {k: v for k, v in summary.items()
                                                             if k not in ("evaluator", "train", "by_rule")}}
    write_json(path, summary)
    return recs


def summarize(recs: Sequence[dict[str, Any]], ctx: Context) -> dict[str, Any]:
    """The quality-bar numbers of a sweep: adherence at w = 0 and at its best (over w >= -1), the trend over w in
    [0, 4], FDs."""
    by_w = {r["w"]: r["metrics"] for r in recs}
    grid = sorted(w for w in by_w if 0 <= w <= 4)
    adh = [by_w[w]["adherence"] for w in grid]
    fds = {w: m["fd"] for w, m in by_w.items() if m["fd"] is not None}
    best = max((w for w in by_w if w >= -1), key=lambda w: by_w[w]["adherence"])
    return {
        "modality": ctx.modality.name, "dataset": ctx.dataset, "preset": ctx.preset_name, "model": ctx.model_id,
        "evaluator": ctx.evaluator.info, "train": ctx.train_stats,
        "rule": recs[0]["rule"], "rule_label": records.rule_label(recs[0]),
        "rule_options": recs[0].get("rule_options", {}),
        "adherence_w0": by_w.get(0.0, {}).get("adherence"),
        "adherence_best": by_w[best]["adherence"], "best_adherence_w": best,
        "adherence_spearman_0_4": spearman(grid, adh),
        "diversity_spearman_0_4": spearman(grid, [by_w[w]["diversity"] for w in grid]),
        "best_fd": min(fds.values()) if fds else math.nan,
        "best_fd_w": min(fds, key=fds.get) if fds else None,
    }


def table(recs: Sequence[dict[str, Any]]) -> str:
    """A plain-text table of the standard metrics per setting."""
    extra = sorted({k for r in recs for k in r["metrics"] if k.startswith("adherence/")})
    cols = ["w", "adherence", *extra, "fd", "kid", "diversity", "precision", "recall", "samples/s"]
    labels = {records.rule_label(r) for r in recs}
    rows = [f"rule: {', '.join(sorted(labels))}", " ".join(f"{c:>12}" for c in cols)]
    for r in sorted(recs, key=lambda r: (r["w"] is None, r["w"])):
        m = r["metrics"]
        vals = [r["w"], m["adherence"], *[m.get(k) for k in extra], m["fd"], m.get("kid"), m["diversity"],
                m.get("precision"), m.get("recall"), r["samples_per_s"]]
        rows.append(" ".join(f"{'-' if v is None else f'{v:.4g}':>12}" for v in vals))
    return "\n".join(rows)
