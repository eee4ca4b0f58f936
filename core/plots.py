"""Plots drawn from result records only: metrics against w (mean and 95% CI over seeds) and trade-off curves."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from crossguide import records  # noqa: E402
from crossguide.metrics import mean_ci  # noqa: E402

Record = dict[str, Any]
LABELS = {
    "adherence": "joint adherence (all attributes right)",
    "fd": "Frechet distance (lower is better)",
    "diversity": "within-condition diversity",
    "diversity_rel": "diversity / real data's diversity",
}


def metric(record: Record, name: str) -> float:
    value = record["metrics"].get(name)
    return float("nan") if value is None else float(value)


def curve(recs: Iterable[Record], x: Callable[[Record], float], y: str) -> tuple[list[float], list[float], list[float]]:
    """Group records by ``x`` and return sorted xs, means of ``y`` and 95% CI half-widths over seeds."""
    groups: dict[float, list[float]] = defaultdict(list)
    for r in recs:
        groups[x(r)].append(metric(r, y))
    xs = sorted(groups)
    stats = [mean_ci(groups[v]) for v in xs]
    return xs, [m for m, _ in stats], [h for _, h in stats]


def numeric_metrics(recs: Sequence[Record]) -> list[str]:
    """Metric names that every record has as a number, the standard ones first."""
    first = ["adherence", "fd", "diversity", "diversity_rel"]
    names = [k for k, v in recs[0]["metrics"].items() if isinstance(v, int | float) and not isinstance(v, bool)]
    return [m for m in first if m in names] + sorted(m for m in names if m not in first)


def series(record: Record) -> str:
    """The curve a record belongs to: its modality, dataset and guidance rule (with non-default options)."""
    return f"{record['modality']}/{record['dataset']}, {records.rule_label(record)}"


def against_w(recs: Sequence[Record], name: str, path: Path, *, title: str = "") -> Path:
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, group in _by(recs, series).items():
        xs, ys, hs = curve(group, lambda r: r["w"], name)
        ax.errorbar(xs, ys, yerr=hs, marker="o", capsize=3, label=label)
    ax.axvline(0, color="grey", lw=0.6, ls=":")
    ax.set_xlabel("guidance weight w (w = 0: conditional, w = -1: unconditional)")
    ax.set_ylabel(LABELS.get(name, name))
    ax.set_title(title or f"{name} against w", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def tradeoff(recs: Sequence[Record], path: Path, *, x: str = "adherence", y: str = "fd", title: str = "") -> Path:
    """The fidelity-versus-adherence curve (the paper's FID-vs-IS trade-off, Ho & Salimans 2021, Fig. 4)."""
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for label, group in _by(recs, series).items():
        ws, xs, _ = curve(group, lambda r: r["w"], x)
        _, ys, _ = curve(group, lambda r: r["w"], y)
        ax.plot(xs, ys, marker="o", label=label)
        for w, a, b in zip(ws, xs, ys, strict=True):
            ax.annotate(f"{w:g}", (a, b), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel(LABELS.get(x, x))
    ax.set_ylabel(LABELS.get(y, y))
    ax.set_title(title or f"{y} against {x} (labels: w)", fontsize=9)
    ax.legend(fontsize=7)
    return _save(fig, path)


def bench_plots(recs: Sequence[Record], directory: Path) -> list[Path]:
    """Every numeric metric against w, plus the FD-versus-adherence trade-off; one curve per rule."""
    recs = [r for r in recs if r["w"] is not None]
    paths = [against_w(recs, m, directory / f"{m.replace('/', '_')}_vs_w.png") for m in numeric_metrics(recs)]
    paths.append(tradeoff(recs, directory / "fd_vs_adherence.png"))
    return paths


def _by(recs: Iterable[Record], key: Callable[[Record], str]) -> dict[str, list[Record]]:
    out: dict[str, list[Record]] = defaultdict(list)
    for r in recs:
        out[key(r)].append(r)
    return dict(out)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
