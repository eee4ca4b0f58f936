"""Do the study's distances move with the sample count? FD and KID at n and k * n generated samples.

``python -m crossguide.benchmarks.distances [--modalities toy,image,audio,text] [--ws 0,4] [--factor 2] [--out DIR]``

For each modality, the quick study's main model (the reference artifact) is sampled at each ``w`` with the
study's per-condition count ``n`` and with ``factor`` times it (seed 0), each compared with as many real samples
(:func:`crossguide.evaluation.evaluate`).
FD's estimate is biased by a term that shrinks like ``1/n`` and depends on the sample covariance, which guidance
narrows; KID is unbiased at any ``n`` (Binkowski et al. 2018, Sec. 4). The table gives each and whether KID's change
lies within its standard error; ``distances.json`` holds the rows.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from crossguide.benchmarks.study import PLANS
from crossguide.guidance import Guidance
from crossguide.pipeline import Setting, prepare, run_settings


def measure(modality: str, ws: Sequence[float], factor: int, out: Path, progress: bool = True) -> list[dict[str, Any]]:
    """Rows ``{modality, w, n, n_real, feature_dim, fd, kid, kid_se}`` at the study's count and ``factor`` times it."""
    plan = PLANS["quick"]
    ctx = prepare(modality, preset="quick", model_dir=out / modality / "model", progress=progress)
    per = plan.per_condition(ctx.preset)
    settings = [Setting(Guidance.cfg(w), ctx.preset.sampler, plan.steps(ctx.preset), per_condition=k * per)
                for w in ws for k in (1, factor)]
    recs = run_settings(ctx, settings, [0], out / modality, progress=progress)
    return [{"modality": modality, "w": r["w"], "n": r["n"], "n_real": r["n_real"], "feature_dim": r["feature_dim"],
             **{k: r["metrics"][k] for k in ("fd", "kid", "kid_se")}} for r in recs]


def table(rows: Sequence[dict[str, Any]]) -> str:
    """Markdown: one line per (modality, w) with both counts, FD's relative change and KID's change in SEs."""
    lines = ["| modality | w | n -> n' (real = generated; feature dim) | FD at n | FD at n' | FD change | "
             "KID at n (± SE) | KID at n' (± SE) | KID change / combined SE |", "|---|---|---|---|---|---|---|---|---|"]
    for small, large in zip(rows[::2], rows[1::2], strict=True):
        se = math.hypot(small["kid_se"], large["kid_se"])
        lines.append(
            f"| {small['modality']} | {small['w']:g} | {small['n']} -> {large['n']} ({small['feature_dim']}) | "
            f"{small['fd']:.4g} | {large['fd']:.4g} | {100 * (large['fd'] / small['fd'] - 1):+.0f}% | "
            f"{small['kid']:.3g} ± {small['kid_se']:.2g} | {large['kid']:.3g} ± {large['kid_se']:.2g} | "
            f"{(large['kid'] - small['kid']) / se:+.2f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crossguide.benchmarks.distances", description=__doc__.split("\n")[0])
    p.add_argument("--modalities", default="toy,image,audio,text", help="comma-separated (default: %(default)s)")
    p.add_argument("--ws", default="0,4", help="comma-separated guidance weights (default: %(default)s)")
    p.add_argument("--factor", type=int, default=2, help="the larger count as a multiple of n (default: 2)")
    p.add_argument("--out", type=Path, default=Path("results/distances"), help="(default: %(default)s)")
    args = p.parse_args(argv)
    if args.factor < 2:
        p.error(f"--factor must be >= 2, got {args.factor}")
    try:
        ws = [float(w) for w in args.ws.split(",")]
    except ValueError:
        p.error(f"--ws must be comma-separated numbers, got {args.ws!r}")
    rows = [row for m in args.modalities.split(",") for row in measure(m, ws, args.factor, args.out)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "distances.json").write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
