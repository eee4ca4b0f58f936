"""The study report: ``report.html`` (self-contained) and ``report.md``, built only from the study's records.

Every number is a mean over sampling seeds with a 95% Student-t confidence interval; every paragraph is
generated from those numbers. The document is a list of blocks rendered twice: HTML embeds pictures and audio
as data URIs, Markdown links to the files.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from torch import Tensor  # noqa: E402

from crossguide import metrics as M  # noqa: E402
from crossguide import records, stats  # noqa: E402
from crossguide.benchmarks.study import setting_seconds  # noqa: E402
from crossguide.metrics import mean_ci  # noqa: E402
from crossguide.pipeline import read_evaluation  # noqa: E402

Record = dict[str, Any]
CORE_METRICS = {"adherence", "fd", "diversity", "diversity_rel", "precision", "recall", "density", "coverage"}


# ----------------------------------------------------------------------------------------------- document model
@dataclass
class Block:
    kind: str  # h1 h2 h3 p table players img audio pre
    text: str = ""
    rows: list[list[str]] | None = None  # table, players: first row is the header; players: cells after the first
    # are WAV paths ("" for none)
    path: Path | None = None  # img / audio file
    css: str = ""  # table: its class ("text": cells of prose, aligned left)


JPEG_ABOVE = 300_000  # bytes: a larger PNG (a spectrogram mosaic, ~1 MB) is embedded as a JPEG, a quarter its size


def data_uri(path: Path) -> str:
    """``path`` as a data URI: WAV and PNG as they are, a PNG over :data:`JPEG_ABOVE` bytes as a quality-90 JPEG."""
    data = path.read_bytes()
    if path.suffix == ".wav":
        return f"data:audio/wav;base64,{base64.b64encode(data).decode()}"
    if len(data) > JPEG_ABOVE:
        buffer = io.BytesIO()
        with Image.open(path) as image:
            image.convert("RGB").save(buffer, "JPEG", quality=90)
        return f"data:image/jpeg;base64,{base64.b64encode(buffer.getvalue()).decode()}"
    return f"data:image/png;base64,{base64.b64encode(data).decode()}"


def _player(cell: str) -> str:
    return f"<audio controls preload='none' src='{data_uri(Path(cell))}'></audio>" if cell else "-"


def render_html(blocks: Sequence[Block], title: str) -> str:
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;"
             "line-height:1.45}table{border-collapse:collapse;margin:.6em 0;font-size:.85em}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f3f3f3}"
             "td:first-child,th:first-child{text-align:left}img{max-width:100%;margin:.4em 0}"
             "figure{display:inline-block;margin:.3em;vertical-align:top}figcaption{font-size:.8em;color:#555}"
             "pre{background:#f6f6f6;padding:.5em;overflow:auto;font-size:.8em}"
             ".players td+td,.players th+th{text-align:center}.players audio{width:210px;height:32px}"
             ".text td,.text th{text-align:left;vertical-align:top}"
             "</style></head><body>"]
    for b in blocks:
        if b.kind in ("h1", "h2", "h3", "p"):
            parts.append(f"<{b.kind}>{html.escape(b.text)}</{b.kind}>")
        elif b.kind == "pre":
            parts.append(f"<pre>{html.escape(b.text)}</pre>")
        elif b.kind == "table" and b.rows:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.rows[0])
            body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in b.rows[1:])
            parts.append(f"<table{f' class={b.css!r}' if b.css else ''}><tr>{head}</tr>{body}</table>")
        elif b.kind == "players" and b.rows:
            head = "".join(f"<th>{html.escape(c)}</th>" for c in b.rows[0])
            body = "".join(f"<tr><td>{html.escape(r[0])}</td>" + "".join(f"<td>{_player(c)}</td>" for c in r[1:])
                           + "</tr>" for r in b.rows[1:])
            parts.append(f"<table class='players'><caption>{html.escape(b.text)}</caption><tr>{head}</tr>{body}"
                         "</table>")
        elif b.kind == "img" and b.path is not None and b.path.exists():
            parts.append(f"<figure><img src='{data_uri(b.path)}' alt='{html.escape(b.text)}'>"
                         f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
        elif b.kind == "audio" and b.path is not None and b.path.exists():
            parts.append(f"<figure><audio controls src='{data_uri(b.path)}'></audio>"
                         f"<figcaption>{html.escape(b.text)}</figcaption></figure>")
    parts.append("</body></html>")
    return "\n".join(parts)


def render_md(blocks: Sequence[Block], root: Path) -> str:
    lines = []
    for b in blocks:
        if b.kind in ("h1", "h2", "h3"):
            lines += ["#" * int(b.kind[1]) + " " + b.text, ""]
        elif b.kind == "p":
            lines += [b.text, ""]
        elif b.kind == "pre":
            lines += ["```", b.text, "```", ""]
        elif b.kind in ("table", "players") and b.rows:
            rows = b.rows if b.kind == "table" else [b.rows[0], *[
                [r[0], *[f"[listen]({Path(c).relative_to(root).as_posix()})" if c else "-" for c in r[1:]]]
                for r in b.rows[1:]]]
            lines += [b.text, ""] if b.kind == "players" else []
            lines.append("| " + " | ".join(rows[0]) + " |")
            lines.append("|" + "---|" * len(rows[0]))
            lines += ["| " + " | ".join(r) + " |" for r in rows[1:]]
            lines.append("")
        elif b.kind in ("img", "audio") and b.path is not None:
            rel = b.path.relative_to(root).as_posix()
            lines += [f"![{b.text}]({rel})" if b.kind == "img" else f"[{b.text}]({rel})", ""]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------- data access
def fmt(mean: float, half: float | None = None, digits: int = 3) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "-"
    text = f"{mean:.{digits}g}"
    return text if half is None or half == 0 or math.isnan(half) else f"{text} ± {half:.2g}"


def value(r: Record, metric: str) -> float:
    v = r["metrics"].get(metric)
    return float("nan") if v is None else float(v)


# metrics with per-sample data behind them (saved by crossguide.pipeline.write_evaluation): these get bootstrap
# intervals over samples and seeds, and differences of them paired intervals (crossguide.stats); other metrics are
# seed means
BOOTSTRAPPED = ("adherence", "fd", "kid")
# replicates per interval: set-level distances cost an eigendecomposition (FD) or a kernel sum (KID) each
REPS = {"adherence": stats.REPS, "fd": 200, "kid": 200}
# per report (cleared by write_report): intervals by (metric, settings), saved evaluations by path
_intervals: dict[tuple[Any, ...], stats.Interval | None] = {}
_evaluations: dict[Path, dict[str, Tensor]] = {}


def _per_sample(group: Sequence[Record]) -> list[dict[str, Tensor]] | None:
    """Each seed's saved evaluation, in seed order; None when a record has none (a run from before they were
    saved)."""
    paths = [r["_dir"] / "samples" / f"{r['setting']}.eval.safetensors" for r in sorted(group, key=lambda r: r["seed"])]
    if not all(p.exists() for p in paths):
        return None
    return [_evaluations[p] if p in _evaluations else _evaluations.setdefault(p, read_evaluation(p)) for p in paths]


def _statistic(metric: str, data: Sequence[dict[str, Tensor]]) -> tuple[list[Tensor], stats.Statistic]:
    if metric == "adherence":
        return [d["correct"] for d in data], stats.mean_statistic
    make = M.frechet_statistic if metric == "fd" else M.kid_statistic
    return [d["features"] for d in data], make(data[0]["real"])  # one real set per sample count


def interval(group: Sequence[Record], metric: str, against: Sequence[Record] | None = None) -> stats.Interval | None:
    """The bootstrap interval of ``metric`` for a seed group, or (``against``) of the paired difference
    ``metric(group) - metric(against)``; None without per-sample data or when the groups do not pair (other seeds
    or sample counts)."""
    key = (metric, *[(str(r["_dir"]), r["setting"]) for r in group], "-",
           *[(str(r["_dir"]), r["setting"]) for r in against or ()])
    if key not in _intervals:
        _intervals[key] = _compute_interval(group, metric, against)
    return _intervals[key]


def _compute_interval(group: Sequence[Record], metric: str,
                      against: Sequence[Record] | None) -> stats.Interval | None:
    data = _per_sample(group) if metric in BOOTSTRAPPED and group else None
    if data is None:
        return None
    values, statistic = _statistic(metric, data)
    if against is None:
        return stats.bootstrap(values, statistic, reps=REPS[metric])
    base = _per_sample(against) if sorted(r["seed"] for r in group) == sorted(r["seed"] for r in against) else None
    if base is None or [len(v) for v in values] != [len(d["correct"]) for d in base]:
        return None
    base_values, baseline = _statistic(metric, base)
    return stats.bootstrap(values, statistic, against=base_values, baseline=baseline, reps=REPS[metric])


def stat(group: Sequence[Record], metric: str) -> tuple[float, float | None]:
    """A seed group's ``metric``: the estimate and half its 95% bootstrap interval's width for the bootstrapped
    metrics, else the mean over seeds and None (no interval)."""
    iv = interval(group, metric)
    if iv is not None:
        return iv.estimate, iv.half
    vals = [value(r, metric) for r in group if not math.isnan(value(r, metric))]
    return (float(np.mean(vals)) if vals else float("nan")), None


# the Findings' questions, in the order the report answers them
QUESTIONS = {
    "adherence": "Does guidance raise adherence? (section 1: the highest-adherence w against w = 0)",
    "cost": "What does strong guidance cost in fidelity? (section 1: KID at the largest w against the lowest-FD w)",
    "steps": "Does guidance need more sampling steps? (section 2: FD at the fewest against the most steps)",
    "negative": "Does negative guidance push samples away from the condition? (section 3: against w = -1)",
    "mixing": "Do composed conditions beat conditioning on both at once? (section 4)",
    "p_uncond": "Does the unconditional-dropout rate matter? (section 5: adherence at the largest w)",
}


def error_bars(groups: Sequence[Sequence[Record]], metric: str) -> list[list[float]]:
    """Matplotlib's asymmetric ``yerr`` ``[below, above]`` from each group's bootstrap interval (0 without one;
    clipped at 0 where a resampled FD's upward bias puts the whole interval above the estimate)."""
    below, above = [], []
    for g in groups:
        iv = interval(g, metric)
        ok = iv is not None and math.isfinite(iv.lo)
        below.append(max(0.0, iv.estimate - iv.lo) if ok else 0.0)
        above.append(max(0.0, iv.hi - iv.estimate) if ok else 0.0)
    return [below, above]


def compared(group: Sequence[Record], against: Sequence[Record], metric: str, what: str) -> str:
    """A sentence part: a paired difference ``metric(group) - metric(against)`` with its 95% interval and whether
    it is significant (the interval excludes 0)."""
    iv = interval(group, metric, against)
    if iv is None or math.isnan(iv.lo):
        return f"{what}: no paired interval (no per-sample data)"
    return f"{what} {iv.text()} ({'significant' if iv.excludes(0.0) else 'not significant'})"


def covering(present: Sequence[dict[str, str]]) -> list[dict[str, str]]:
    """Few of the ``present`` conditions that together show every value of every attribute: row i asks for the
    i-th value (cyclically) of each attribute, the diagonal of their product (eight pitches by four timbres: eight
    rows, each timbre twice), then the first condition that adds a value no row has shown yet."""
    values = {a: list(dict.fromkeys(c[a] for c in present if a in c)) for a in dict.fromkeys(a for c in present
                                                                                             for a in c)}
    diagonal = [{a: v[i % len(v)] for a, v in values.items()} for i in range(max(map(len, values.values()),
                                                                                   default=0))]
    rows = [c for c in diagonal if c in present] or list(present[:1])
    for c in present:
        if set(c.items()) - {pair for r in rows for pair in r.items()}:
            rows.append(c)
    return rows


def condition_text(condition: dict[str, str]) -> str:
    return ", ".join(f"{a}={v}" for a, v in condition.items()) or "unconditional"


class Runs:
    """The records of one run directory, grouped by setting id (without seed); each record knows its directory
    (``_dir``), where its per-sample evaluation lies."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.by_setting: dict[str, list[Record]] = defaultdict(list)
        for r in records.read(directory / "records.jsonl"):
            r["_dir"] = directory
            self.by_setting[r["setting"].rsplit("-s", 1)[0]].append(r)
        self.samples: dict[str, list[Record]] = defaultdict(list)  # setting id (with seed) -> its manifest lines
        for e in records.read(directory / "samples" / "manifest.jsonl"):
            self.samples[e["setting"]].append(e)

    def get(self, ids: Sequence[str]) -> list[list[Record]]:
        """Seed groups for the ids that have records, in order."""
        return [self.by_setting[i] for i in ids if self.by_setting.get(i)]

    def stat(self, group: Sequence[Record], metric: str) -> tuple[float, float | None]:
        return stat(group, metric)

    def provenance(self) -> tuple[list[str], list[str]]:
        """The judge ids and the model/judge sources (``model: reference``, ...) its records name."""
        recs = [r for group in self.by_setting.values() for r in group]
        judges = sorted({r.get("judge", "not recorded") for r in recs})
        sources = sorted({f"{k}: {v}" for r in recs for k, v in r.get("sources", {}).items()})
        return judges, sources


def matched_fd(points: Sequence[tuple[float, float]], target: float) -> float:
    """FD where a curve of (adherence, FD) points, in weight order, first reaches ``target`` adherence, linear
    between neighbours (the lowest such FD if it crosses more than once); NaN if it never does."""
    found = [f1 + (target - a1) / (a2 - a1) * (f2 - f1)
             for (a1, f1), (a2, f2) in zip(points, points[1:], strict=False)
             if a1 != a2 and min(a1, a2) <= target <= max(a1, a2)]
    found += [f for a, f in points if a == target]
    return min(found) if found else float("nan")


@dataclass(frozen=True)
class Point:
    """One setting on a rule's curve: its weight, (estimate, half-width) of adherence and FD, its seed group."""

    w: float
    adherence: tuple[float, float | None]
    fd: tuple[float, float | None]
    group: Sequence[Record]


def cfg_w(group: Sequence[Record]) -> float | None:
    """The w of a plain single-term CFG setting on the full requested condition, else None."""
    terms = group[0]["terms"]
    return float(terms[0]["w"]) if len(terms) == 1 and terms[0]["attributes"] is None else None


# ----------------------------------------------------------------------------------------------- figures
def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


# axis labels for metric keys, the modalities' own included (an unknown key labels its axis as it is)
LABELS = {"adherence": "joint adherence", "fd": "Frechet distance (judge features)",
          "kid": "KID (judge features)", "diversity": "within-condition diversity",
          "diversity_rel": "diversity / real data's", "precision": "precision", "recall": "recall",
          "density": "density", "coverage": "coverage",
          "log_prob": "log p(x | condition), exact", "saturated": "saturated pixels (|x| > 0.98)",
          "pitch_accuracy": "pitch accuracy (pYIN)", "pitch_voiced": "voiced clips (pYIN)",
          "perplexity": "perplexity (judge LM)", "distinct1": "distinct-1 within condition",
          "distinct2": "distinct-2 within condition", "self_bleu": "self-BLEU within condition",
          "length": "length (tokens)", "well_formed": "well-formed (grammar)"}


def metric_panels(series: dict[str, list[tuple[float, list[Record]]]], metrics: Sequence[str], xlabel: str,
                  path: Path, title: str, hline: dict[str, float] | None = None) -> Path:
    """One panel per metric; one line per series of (x, seed group); error bars are 95% bootstrap intervals over
    samples and seeds where the metric has them (:func:`stat`). A panel without data says so."""
    cols = min(4, len(metrics))  # four panels a row at most: wider ones shrink below readable on the page
    rows = -(-len(metrics) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics, strict=False):
        drawn = False
        for label, points in series.items():
            pts = sorted(points, key=lambda p: p[0])
            values = [stat(g, metric)[0] for _, g in pts]
            if all(math.isnan(v) for v in values):
                continue
            ax.errorbar([x for x, _ in pts], values, yerr=error_bars([g for _, g in pts], metric), marker="o",
                        capsize=3, ms=3, label=label)
            drawn = True
        if hline and metric in hline and not math.isnan(hline[metric]):
            ax.axhline(hline[metric], color="grey", ls="--", lw=0.8, label="unconditional (w=-1)")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(LABELS.get(metric, metric))
        if all(x == round(x) for points in series.values() for x, _ in points):  # step counts: no 3.5 steps
            ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
        if drawn:
            ax.legend(fontsize=7)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
    fig.suptitle(title, fontsize=9)
    return _save(fig, path)


def heatmap(matrix: np.ndarray, rows: Sequence[str], cols: Sequence[str], path: Path, title: str,
            xlabel: str, ylabel: str, value: str, fmt_cell: Callable[[float], str] = lambda v: f"{v:.2f}") -> Path:
    """``matrix`` [rows, cols] as coloured cells, each with its number, and a colour bar labelled ``value``."""
    fig, ax = plt.subplots(figsize=(max(4.0, 0.62 * len(cols) + 2.8), max(3.0, 0.5 * len(rows) + 1.7)))
    image = ax.imshow(matrix, cmap="viridis", aspect="auto")
    slanted = max(map(len, cols)) > 3  # long labels would overlap side by side
    ax.set_xticks(range(len(cols)), cols, rotation=45 if slanted else 0, ha="right" if slanted else "center",
                  fontsize=9)
    ax.set_yticks(range(len(rows)), rows, fontsize=9)
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = matrix[i, j]
            r, g, b, _ = image.cmap(image.norm(v)) if np.isfinite(v) else (1.0, 1.0, 1.0, 1.0)
            # text in the colour that contrasts with the cell's own (its luminance, ITU-R BT.601 weights)
            ax.text(j, i, fmt_cell(v) if np.isfinite(v) else "-", ha="center", va="center", fontsize=8,
                    color="black" if 0.299 * r + 0.587 * g + 0.114 * b > 0.5 else "white")
    fig.colorbar(image, ax=ax, fraction=0.05, pad=0.03).set_label(value, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=9)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.set_title(title, fontsize=9)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------- sections
def _judge_accuracy(info: dict[str, Any]) -> str:
    """The judge's held-out accuracy per attribute from an evaluator's info (at its top level or under
    ``judge``), or the judge's description when it has none (an exact judge)."""
    judge = info.get("judge", "-")
    acc = info.get("held_out_accuracy", judge.get("held_out_accuracy") if isinstance(judge, dict) else None)
    if isinstance(acc, dict):
        return ", ".join(f"{k} {v:.3f}" for k, v in acc.items() if isinstance(v, float))
    return str(judge if acc is None else acc)


class Report:
    def __init__(self, out: Path):
        self.out = out
        self.study = json.loads((out / "study.json").read_text(encoding="utf-8"))
        self.mods: dict[str, dict[str, Any]] = self.study["modalities"]
        self.runs = {m: Runs(out / m) for m in self.mods}
        self.plots = out / "plots"
        self.blocks: list[Block] = []
        # question -> (modality, the comparison with its interval, "higher" / "lower" / "not established")
        self.findings: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
        self.pictured: set[Path] = set()

    def claim(self, question: str, m: str, group: Sequence[Record], against: Sequence[Record], metric: str,
              what: str) -> str:
        """:func:`compared` for a section's sentence, also kept as a line of the Findings under ``question``."""
        text = compared(group, against, metric, what)
        iv = interval(group, metric, against)
        if iv is not None and not math.isnan(iv.lo):
            verdict = (("higher" if iv.lo > 0 else "lower") if iv.excludes(0.0) else "not established")
            self.findings[question].append((m, f"{what.strip().removesuffix(':').removesuffix(' is')} {iv.text()}",
                                            verdict))
        return text

    # helpers -----------------------------------------------------------------------------------------------
    def add(self, kind: str, text: str = "", **kw: Any) -> None:
        self.blocks.append(Block(kind, text, **kw))

    def section(self, m: str, name: str) -> list[list[Record]]:
        return self.runs[m].get(self.mods[m]["sections"].get(name, []))

    def sweep(self, m: str) -> dict[float, list[Record]]:
        return {cfg_w(g): g for g in self.section(m, "sweep") if cfg_w(g) is not None}

    def picture(self, m: str, group: Sequence[Record], caption: str) -> None:
        """The modality's picture of a setting's first sampling seed, once per report (sections share settings)."""
        first = sorted(group, key=lambda r: r["seed"])[0]
        path = first["_dir"] / first["picture"]
        if path not in self.pictured:
            self.pictured.add(path)
            self.add("img", f"{m}: {caption} (seed {first['seed']})", path=path)

    def key_settings(self, m: str) -> list[tuple[str, list[Record]]]:
        """The sweep's settings whose samples the report shows, each once, named by its roles: the unconditional
        model (w = -1), the conditional one (w = 0), the w of highest joint adherence, the largest w."""
        sw = self.sweep(m)
        adherence = {w: stat(g, "adherence")[0] for w, g in sw.items() if w >= 0}
        best = max((w for w in adherence if math.isfinite(adherence[w])), key=adherence.get, default=None)
        roles: dict[float, list[str]] = defaultdict(list)
        for w, role in ((-1.0, "unconditional"), (0.0, "conditional"), (best, "best adherence"),
                        (max(sw, default=None), "largest w")):
            if w in sw:
                roles[w].append(role)
        return [(f"w = {w:g} ({', '.join(r)})", sw[w]) for w, r in sorted(roles.items())]

    def samples(self, m: str, columns: Sequence[tuple[str, Sequence[Record]]], title: str, name: str) -> None:
        """The samples of each condition (rows) at each of the main model's settings (columns), from each setting's
        first sampling seed, as the modality saved them: a grid of images (every condition, two samples a cell), a
        table of audio players or one of sentences (one sample a cell, on the :func:`covering` conditions); then
        the modality's own pictures of those settings where the table does not show the same samples
        (spectrograms beside the players, the toy's scatter plots)."""
        run = self.runs[m]
        firsts = [min(group, key=lambda r: r["seed"]) for _, group in columns]
        cells: list[dict[str, list[Record]]] = []  # per column: condition (as JSON) -> its manifest lines
        for r in firsts:
            cells.append(defaultdict(list))
            for e in run.samples.get(r["setting"], []):
                cells[-1][json.dumps(e["condition"], sort_keys=True)].append(e)
        first = next((lines[0] for lines in cells[0].values()), {"path": ""}) if cells else {"path": ""}
        kind = ("images" if first["path"].endswith(".png") else "players" if first["path"].endswith(".wav")
                else "sentences" if "text" in first else None)
        present = [json.loads(k) for k in cells[0]] if kind else []
        rows = present if kind == "images" else covering(present)
        heads = [label for label, _ in columns]
        caption = (f"{m}: {title} (rows: requested conditions; columns: settings; sampling seed "
                   f"{firsts[0]['seed'] if firsts else 0})")

        def found(c: dict[str, str]) -> list[list[Record]]:
            """Each column's samples of condition ``c``."""
            return [col.get(json.dumps(c, sort_keys=True), []) for col in cells]

        if kind == "images":
            from crossguide.modalities.image import pictures

            grid = [(condition_text(c), [[Image.open(run.directory / "samples" / e["path"]).convert("RGB")
                                          for e in col[:2]] for col in found(c)]) for c in rows]
            path = self.plots / f"samples_{name}.png"
            pictures.table(grid, heads, path, caption, cell=64, font_size=13)
            self.add("img", caption, path=path)
        elif kind == "players":
            wav = run.directory / "samples"
            self.add("players", caption, rows=[["condition", *heads], *[
                [condition_text(c), *[str(wav / col[0]["path"]) if col else "" for col in found(c)]] for c in rows]])
        elif kind == "sentences":
            self.add("p", caption + ":")
            self.add("table", css="text", rows=[["condition", *heads], *[
                [condition_text(c), *[col[0]["text"] if col else "-" for col in found(c)]] for c in rows]])
        if kind in (None, "players"):
            for label, group in columns:
                self.picture(m, group, label)

    # sections ----------------------------------------------------------------------------------------------
    def header(self) -> None:
        s = self.study
        total = sum(r["seconds"] for r in s["runs"])
        last = s["runs"][-1] if s["runs"] else {"seconds": 0, "settings_computed": 0}
        self.add("h1", "crossguide: classifier-free guidance across data types")
        if s["preset"] == "smoke":
            self.add("p", "SMOKE RUN. The smoke preset trains every model for a few dozen steps to check that the "
                          "code runs end to end: its models are untrained, its samples noise or empty text, and its "
                          "numbers mean nothing. Run the quick preset (the default) for results.")
        self.add("p", f"Preset {s['preset']}, {s['seeds']} sampling seed(s) per setting, modalities: "
                      f"{', '.join(self.mods)}. Time: {last['seconds'] / 60:.1f} min for the latest run "
                      f"({last['settings_computed']} settings computed), {total / 60:.1f} min over "
                      f"{len(s['runs'])} run(s). w is the paper's weight: w = 0 is the conditional model, w = -1 the "
                      "unconditional one.")
        self.add("p", "Statistics. Joint adherence, FD and KID are given as 'estimate ± h', h half the width of a 95% "
                      "bootstrap interval that redraws the sampling seeds and, within each, the samples (Davison & "
                      "Hinkley 1997); other columns are means over seeds without an interval. Every comparison the "
                      "text makes is a paired difference: settings share their initial noise and conditions seed by "
                      "seed, so each bootstrap replicate draws the same rows for both sides; 'significant' means its "
                      "95% interval excludes 0. These intervals cover sampling noise on one trained model; spread "
                      "over training seeds is the subject of its own section when the study ran with "
                      "--training-seeds. Every distance compares n generated with n real samples (records give n and "
                      "the feature dimension); FD's estimate falls as n grows, KID's does not (Binkowski et al. "
                      "2018). FD and KID are computed on each modality's own judge features, not Inception "
                      "features: they are not comparable with published FID or KID numbers.")
        self.add("table", rows=[["package", "version"], *[[k, str(v)] for k, v in s["versions"].items()]])
        rows = [["modality", "dataset", "model", "attributes", "judge", "judge held-out accuracy",
                 "models and judges", "sampler", "train time"]]
        mixed = []
        for m, e in self.mods.items():
            acc = _judge_accuracy(e.get("evaluator", {}))
            judges, sources = self.runs[m].provenance()
            if len(judges) > 1:
                mixed.append(f"{m} ({', '.join(judges)})")
            rows.append([m, e.get("dataset", "-"), e.get("model", "-"),
                         "; ".join(f"{a} ({len(v)})" for a, v in e.get("attributes", {}).items()),
                         ", ".join(judges), acc, "; ".join(sources), f"{e.get('sampler')} {e.get('steps')} steps",
                         f"{e.get('train_stats', {}).get('wall_s', float('nan')) / 60:.1f} min"])
        self.add("table", rows=rows, css="text")
        self.add("p", "Judges are part of the metric: adherence, FD, precision and recall are read by each modality's "
                      "judge, named above by its weights' sha256 prefix. Numbers are comparable across runs and "
                      "machines only under the same judge id; the reference judges (`crossguide reference list`) "
                      "make them so.")
        if mixed:
            self.add("p", "Warning: records of one modality were judged by different judges, and its plots put "
                          f"their numbers on one axis: {'; '.join(mixed)}. Rerun with --force for one judge.")

    def summary(self) -> None:
        self.add("h2", "Summary")
        rows = [["modality", "adherence at w=0", "best adherence (w)", "best-FD w", "FD at w=4 / best FD",
                 "diversity drop w=0 to 4", "samples/s (w=0)"]]
        for m in self.mods:
            sw = self.sweep(m)
            if 0.0 not in sw:
                continue
            run = self.runs[m]
            adh = {w: run.stat(g, "adherence") for w, g in sw.items() if w >= 0}
            fd = {w: run.stat(g, "fd")[0] for w, g in sw.items()}
            best_a = max(adh, key=lambda w: adh[w][0])
            best_fd = min(fd, key=fd.get)
            div0, div4 = run.stat(sw[0.0], "diversity")[0], run.stat(sw.get(4.0, sw[0.0]), "diversity")[0]
            drop = 100 * (1 - div4 / div0) if div0 else float("nan")
            rows.append([m, fmt(*adh[0.0]), f"{fmt(*adh[best_a])} ({best_a:g})", f"{best_fd:g}",
                         fmt(fd.get(4.0, float("nan")) / fd[best_fd]), fmt(drop, digits=2) + "%" * math.isfinite(drop),
                         fmt(float(np.mean([r["samples_per_s"] for r in sw[0.0]])))])
        self.add("table", rows=rows)

    def sweep_section(self) -> None:
        self.add("h2", "1. Guidance sweep")
        norm: dict[str, list[tuple[float, float, float, float]]] = {}
        for m in self.mods:
            sw = self.sweep(m)
            if not sw:
                continue
            run = self.runs[m]
            extras = sorted({k for g in sw.values() for k in g[0]["metrics"]} - CORE_METRICS - {"kid_se"})
            extras = [k for k in extras if not k.startswith("adherence/")][:8]
            series = {m: list(sw.items())}
            self.add("h3", f"{m} ({self.mods[m].get('dataset')})")
            self.add("img", f"{m}: metrics against w",
                     path=metric_panels(series, ["adherence", "fd", "diversity_rel"], "w",
                                        self.plots / f"sweep_{m}.png", f"{m}: guidance sweep"))
            self.add("img", f"{m}: FD against adherence (labels: whole w)", path=self.tradeoff(m, sw))
            if extras:
                self.add("img", f"{m}: modality metrics against w",
                         path=metric_panels(series, extras, "w", self.plots / f"sweep_{m}_extra.png",
                                            f"{m}: modality-specific metrics"))
            attrs = sorted({k for g in sw.values() for k in g[0]["metrics"] if k.startswith("adherence/")})
            for cols in (["adherence", *attrs, "fd", "diversity_rel", "precision", "recall"], extras):
                if cols:  # the shared metrics, then the modality's own (one table would not fit the page)
                    self.add("table", rows=[["w", *cols], *[[f"{w:g}", *[fmt(*run.stat(g, c)) for c in cols]]
                                                           for w, g in sorted(sw.items())]])
            self.add("p", self.sweep_text(m, sw))
            self.samples(m, self.key_settings(m), "samples at the sweep's key settings", f"sweep_{m}")
            if 0.0 in sw:
                a0, f0, d0 = (run.stat(sw[0.0], k)[0] for k in ("adherence", "fd", "diversity"))
                norm[m] = [(w, run.stat(g, "adherence")[0], run.stat(g, "fd")[0] / f0, run.stat(g, "diversity")[0] / d0)
                           for w, g in sorted(sw.items())]
        if norm:
            self.add("h3", "All modalities, normalised")
            fig, axes = plt.subplots(1, 3, figsize=(13, 3.4))
            for m, pts in norm.items():
                ws = [p[0] for p in pts]
                for ax, i in zip(axes, (1, 2, 3), strict=True):
                    ax.plot(ws, [p[i] for p in pts], marker="o", ms=3, label=m)
            for ax, label in zip(axes, ("joint adherence", "FD / FD(w=0)", "diversity / diversity(w=0)"),
                                 strict=True):
                ax.set_xlabel("w")
                ax.set_ylabel(label)
                ax.axvline(0, color="grey", lw=0.5, ls=":")
                ax.legend(fontsize=7)
            axes[1].set_yscale("log")
            self.add("img", "all modalities on one scale",
                     path=_save(fig, self.plots / "sweep_all_modalities.png"))
            self.add("p", self.cross_text(norm))

    def tradeoff(self, m: str, sw: dict[float, list[Record]]) -> Path:
        run = self.runs[m]
        pts = [(w, run.stat(g, "adherence")[0], run.stat(g, "fd")[0]) for w, g in sorted(sw.items())]
        fig, ax = plt.subplots(figsize=(4.2, 3.3))
        ax.plot([p[1] for p in pts], [p[2] for p in pts], marker="o", ms=3)
        for w, a, f in pts:
            if w == round(w):  # whole weights only: 0.1 ... 0.5 crowd around w = 0
                ax.annotate(f"{w:g}", (a, f), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel("joint adherence")
        ax.set_ylabel(LABELS["fd"])
        for axis in (ax.xaxis, ax.yaxis):  # a few ticks: FD in the hundreds (audio) made its labels overlap
            axis.set_major_locator(matplotlib.ticker.MaxNLocator(5))
        ax.set_title(f"{m}: fidelity vs adherence", fontsize=9)
        return _save(fig, self.plots / f"tradeoff_{m}.png")

    def sweep_text(self, m: str, sw: dict[float, list[Record]]) -> str:
        """What the sweep shows, every claim a paired difference with its 95% interval (:func:`compared`)."""
        grid = [w for w in sorted(sw) if 0 <= w <= 4 and not math.isnan(stat(sw[w], "adherence")[0])]
        if not grid:
            return f"{m}: no adherence was measured on the sweep."
        adh = {w: stat(sw[w], "adherence")[0] for w in grid}
        fd = {w: stat(sw[w], "fd")[0] for w in grid}
        best_a, top = max(grid, key=adh.get), grid[-1]
        if best_a == grid[0]:
            self.findings[QUESTIONS["adherence"]].append((m, f"no w above {grid[0]:g} has a higher adherence",
                                                          "not established"))
        parts = [f"{m}: joint adherence is {adh[grid[0]]:.3f} at w = {grid[0]:g}" + (
            "; no larger w raises it." if best_a == grid[0] else
            f" and highest at w = {best_a:g} ({adh[best_a]:.3f}); "
            + self.claim(QUESTIONS["adherence"], m, sw[best_a], sw[grid[0]], "adherence",
                         f"adherence at w = {best_a:g} minus w = {grid[0]:g} is") + ".")]
        finite = [w for w in grid if math.isfinite(fd[w])]
        if finite:
            best_fd = min(finite, key=fd.get)
            parts.append(f"FD is lowest at w = {best_fd:g} ({fd[best_fd]:.3g}) and {fd[top]:.3g} at w = {top:g}"
                         + ("." if best_fd == top else
                            "; " + compared(sw[top], sw[best_fd], "fd", "FD at the largest w minus the lowest:") + ";"
                            + self.claim(QUESTIONS["cost"], m, sw[top], sw[best_fd], "kid",
                                         f" KID at w = {top:g} minus w = {best_fd:g}:") + "."))
        div = [stat(sw[w], "diversity")[0] for w in (grid[0], top)]
        if all(math.isfinite(d) for d in div) and top != grid[0]:
            parts.append(f"Within-condition diversity is {div[0]:.3g} at w = {grid[0]:g} and {div[1]:.3g} at "
                         f"w = {top:g} (a seed mean, no interval).")
        if -1.0 in sw:
            parts.append(f"The unconditional model (w = -1) has joint adherence {stat(sw[-1.0], 'adherence')[0]:.3f}; "
                         + compared(sw[grid[0]], sw[-1.0], "adherence", "the conditional model's lead is") + ".")
        return " ".join(parts)

    def cross_text(self, norm: dict[str, list[tuple[float, float, float, float]]]) -> str:
        trade = []
        for m, pts in norm.items():
            top = [p for p in pts if p[0] == max(q[0] for q in pts)][0]
            base = [p for p in pts if p[0] == 0.0][0]
            trade.append((m, top[1] - base[1], top[2], top[3]))
        text = "; ".join(f"{m}: adherence {fmt(da)}, FD x{fmt(fr)}, diversity x{fmt(dr)}" for m, da, fr, dr in trade)
        return (f"From w = 0 to the largest w (point estimates): {text}. Which of these changes the data establish, "
                "with paired intervals, is in the Findings.")

    def steps_section(self) -> None:
        self.add("h2", "2. Sampling steps")
        for m in self.mods:
            groups = self.section(m, "steps")
            if not groups:
                continue
            series: dict[str, list[tuple[float, list[Record]]]] = defaultdict(list)
            for g in groups:
                series[f"{g[0]['sampler']}, w={cfg_w(g):g}"].append((g[0]["steps"], g))
            self.add("h3", m)
            self.add("img", f"{m}: metrics against sampling steps",
                     path=metric_panels(series, ["adherence", "fd", "diversity_rel"], "steps",
                                        self.plots / f"steps_{m}.png", f"{m}: sampling steps"))
            run = self.runs[m]
            rows = [["sampler, w", *[f"{n} steps: adherence / FD" for n in sorted({p[0] for s in series.values()
                                                                                   for p in s})]]]
            texts = []
            for label, pts in series.items():
                pts = sorted(pts, key=lambda p: p[0])
                rows.append([label, *[f"{fmt(*run.stat(g, 'adherence'))} / {fmt(run.stat(g, 'fd')[0])}"
                                      for _, g in pts]])
                fds = [run.stat(g, "fd")[0] for _, g in pts]
                if len(pts) < 2 or not all(math.isfinite(f) for f in fds):
                    continue
                ok = [n for (n, _), f in zip(pts, fds, strict=True) if f <= 1.1 * fds[-1]]
                texts.append(f"{label}: FD {fds[0]:.3g} at {pts[0][0]} steps, {fds[-1]:.3g} at {pts[-1][0]}, within "
                             f"10% of the latter from {ok[0]} steps; "
                             + self.claim(QUESTIONS["steps"], m, pts[0][1], pts[-1][1], "fd",
                                          f"{label}: FD at {pts[0][0]} minus {pts[-1][0]} steps:"))
            self.add("table", rows=rows)
            if texts:
                self.add("p", f"{m}: " + "; ".join(texts) + ".")

    def negative_section(self) -> None:
        self.add("h2", "3. Negative guidance (w < -1)")
        for m in self.mods:
            groups = {cfg_w(g): g for g in self.section(m, "negative")}
            if -1.0 not in groups:
                continue
            run = self.runs[m]
            attrs = self.mods[m].get("attributes", {})
            chance = float(np.prod([1 / len(v) for v in attrs.values()])) if attrs else float("nan")
            self.add("h3", m)
            self.add("img", f"{m}: adherence against negative w",
                     path=metric_panels({m: list(groups.items())}, ["adherence", "fd"], "w",
                                        self.plots / f"negative_{m}.png", f"{m}: negative guidance",
                                        hline={"adherence": run.stat(groups[-1.0], "adherence")[0]}))
            worst = min(groups)
            rows = [["w", "adherence", *[f"adherence/{a}" for a in attrs], "fd"]]
            rows += [[f"{w:g}", fmt(*run.stat(g, "adherence")), *[fmt(*run.stat(g, f"adherence/{a}")) for a in attrs],
                      fmt(*run.stat(g, "fd"))] for w, g in sorted(groups.items())]
            self.add("table", rows=rows)
            u, low = run.stat(groups[-1.0], "adherence"), run.stat(groups[worst], "adherence")
            opposite = []
            for a, names in attrs.items():
                conf = np.sum([np.array(r["extra"]["confusion"][a]) for r in groups[worst]], axis=0).astype(float)
                self.add("img", f"{m}: requested vs judged {a} at w = {worst:g}",
                         path=heatmap(conf / conf.sum(1, keepdims=True).clip(min=1), names, [*names, "none"],
                                      self.plots / f"confusion_{m}_{a}.png", f"{m}, w = {worst:g}: {a}",
                                      f"judged {a}", f"requested {a}", "share of the requested value's samples"))
                share = (conf / conf.sum(1, keepdims=True).clip(min=1))[:, :len(names)]  # values, not "none"
                np.fill_diagonal(share, np.nan)
                top = np.nanmax(share, axis=1)
                opposite.append(f"{a}: the most frequent wrong value takes {np.nanmean(top):.0%} of samples on "
                                f"average (uniform over the other values would be {1 / max(1, len(names) - 1):.0%})")
            tested = self.claim(QUESTIONS["negative"], m, groups[worst], groups[-1.0], "adherence",
                                f"adherence at w = {worst:g} minus the unconditional rate is")
            self.add("p", f"{m}: at w = {worst:g} joint adherence is {fmt(*low)} against {fmt(*u)} for the "
                          f"unconditional model and {chance:.3f} for chance; {tested}. " + "; ".join(opposite) + ".")
            roles = {-1.0: " (unconditional)", 0.0: " (conditional)"}
            self.samples(m, [(f"w = {w:g}{roles.get(w, '')}", groups[w])
                             for w in sorted({-1.0, 0.0, worst} & set(groups))],
                         "samples at the most negative w, the unconditional and the conditional model",
                         f"negative_{m}")

    def mixing_section(self) -> None:
        self.add("h2", "4. Mixing several conditions")
        for m in self.mods:
            groups = self.section(m, "mixing")
            if not groups:
                continue
            run = self.runs[m]
            comp: dict[tuple[float, float], list[Record]] = {}
            both: dict[float, list[Record]] = {}
            single: dict[tuple[str, float], list[Record]] = {}
            for g in groups:
                terms = g[0]["terms"]
                if len(terms) == 2:
                    comp[(terms[0]["w"], terms[1]["w"])] = g
                elif terms[0]["attributes"] is None:
                    both[terms[0]["w"]] = g
                else:
                    single[(terms[0]["attributes"][0], terms[0]["w"])] = g
            if not comp:
                continue
            a, b = (t["attributes"][0] for t in next(iter(comp.values()))[0]["terms"])
            w1s, w2s = sorted({k[0] for k in comp}), sorted({k[1] for k in comp})
            grid = np.array([[run.stat(comp[(x, y)], "adherence")[0] for y in w2s] for x in w1s])
            self.add("h3", m)
            self.add("img", f"{m}: joint adherence of composed guidance",
                     path=heatmap(grid, [f"{x:g}" for x in w1s], [f"{y:g}" for y in w2s],
                                  self.plots / f"mixing_{m}.png", f"{m}: joint adherence ({a}, {b})",
                                  f"w on {b}", f"w on {a}", "joint adherence"))
            rows = [["guidance", *[f"w={w:g}" for w in sorted(both)]]]
            rows.append([f"both at once (one condition {a}+{b})", *[fmt(*run.stat(both[w], "adherence"))
                                                                    for w in sorted(both)]])
            rows.append([f"composed, equal weights on {a} and {b}",
                         *[fmt(*run.stat(comp[(w, w)], "adherence")) if (w, w) in comp else "-" for w in sorted(both)]])
            for attr in (a, b):
                rows.append([f"{attr} only", *[fmt(*run.stat(single[(attr, w)], "adherence"))
                                               if (attr, w) in single else "-" for w in sorted(both)]])
            self.add("table", rows=rows)
            best = max(comp, key=lambda k: run.stat(comp[k], "adherence")[0])
            best_both = max(both, key=lambda k: run.stat(both[k], "adherence")[0])
            self.add("p", f"{m}: the best composition (w on {a} = {best[0]:g}, on {b} = {best[1]:g}) reaches joint "
                          f"adherence {fmt(*run.stat(comp[best], 'adherence'))}; conditioning on both at once "
                          f"reaches {fmt(*run.stat(both[best_both], 'adherence'))} at w = {best_both:g}. Guiding "
                          f"one attribute alone leaves the other at its unconditional rate, so its joint adherence "
                          f"stays at most {max(run.stat(g, 'adherence')[0] for g in single.values()):.3f}. "
                          + self.claim(QUESTIONS["mixing"], m, comp[best], both[best_both], "adherence",
                                       "The best composition minus conditioning on both at once:") + ".")
            self.samples(m, [(f"both at once, w = {best_both:g}", both[best_both]),
                             (f"composed, w = ({best[0]:g}, {best[1]:g})", comp[best])],
                         "samples of the best composition and of the best conditioning on both at once",
                         f"mixing_{m}")

    def p_uncond_section(self) -> None:
        self.add("h2", "5. Unconditional-dropout rate p_uncond")
        for m, e in self.mods.items():
            ablation = e.get("p_uncond", {})
            if len(ablation) < 2:
                continue
            series = {}
            for p, info in sorted(ablation.items(), key=lambda kv: float(kv[0])):
                groups = Runs(self.out / info["dir"]).get(info["settings"])
                series[f"p_uncond={p}"] = [(cfg_w(g), g) for g in groups]
            self.add("h3", m)
            self.add("img", f"{m}: metrics against w per p_uncond",
                     path=metric_panels(series, ["adherence", "fd", "diversity_rel"], "w",
                                        self.plots / f"p_uncond_{m}.png", f"{m}: p_uncond ablation"))
            ws = sorted({w for pts in series.values() for w, _ in pts})
            rows = [["p_uncond", *[f"w={w:g}: adherence / FD" for w in ws]]]
            for label, pts in series.items():
                d = dict(pts)
                rows.append([label, *[f"{fmt(*stat(d[w], 'adherence'))} / {fmt(stat(d[w], 'fd')[0])}" if w in d
                                      else "-" for w in ws]])
            self.add("table", rows=rows)
            best_fd = {label: min(stat(g, "fd")[0] for _, g in pts) for label, pts in series.items()}
            top_w = max(ws)
            at_top = {label: dict(pts)[top_w] for label, pts in series.items() if top_w in dict(pts)}
            main = f"p_uncond={e.get('p_uncond_main', 0):g}"
            paired = [self.claim(QUESTIONS["p_uncond"], m, g, at_top[main], "adherence",
                                 f"adherence at w = {top_w:g}, {label} minus {main}:")
                      for label, g in at_top.items() if label != main and main in at_top]
            self.add("p", f"{m}: best FD over w per model: "
                          + ", ".join(f"{k} {v:.3g}" for k, v in best_fd.items())
                          + f"; joint adherence at w = {top_w:g}: "
                          + ", ".join(f"{k} {stat(g, 'adherence')[0]:.3f}" for k, g in at_top.items()) + ". "
                          + "Paired differences at that w (same noise, other model): " + "; ".join(paired) + ".")

    def training_seeds_section(self) -> None:
        """The sweep on models trained with other seeds: between-model against within-model spread."""
        shown = [m for m, e in self.mods.items() if e.get("training_seeds")]
        if not shown:
            return
        self.add("h2", "7. Training seeds")
        self.add("p", "The sweep again on models trained from other seeds (same recipe, data and sampling seeds). "
                      "Within-model spread: the standard deviation of a setting's metric over sampling seeds, pooled "
                      "over models; between-model: the standard deviation of the models' seed means (it includes "
                      "the sampling noise of each mean). The interval over models (Student t with N - 1 degrees of "
                      "freedom) is the only interval in this report that includes training variance; every other "
                      "interval is over sampling noise on the main model.")
        for m in shown:
            sweeps = {f"seed {self.mods[m].get('train_seed', 0)} (main)": self.sweep(m)}
            for k, info in sorted(self.mods[m]["training_seeds"].items(), key=lambda kv: int(kv[0])):
                groups = Runs(self.out / info["dir"]).get(info["settings"])
                sweeps[f"seed {k}"] = {cfg_w(g): g for g in groups if cfg_w(g) is not None}
            ws = sorted(set.intersection(*[set(sw) for sw in sweeps.values()]))
            self.add("h3", m)
            self.add("img", f"{m}: the sweep per training seed",
                     path=metric_panels({label: [(w, sw[w]) for w in ws] for label, sw in sweeps.items()},
                                        ["adherence", "fd"], "w", self.plots / f"training_seeds_{m}.png",
                                        f"{m}: {len(sweeps)} models from different training seeds"))
            ratios: dict[str, list[float]] = defaultdict(list)
            for metric in ("adherence", "fd"):
                rows = [["w", *sweeps, "mean over models (95% CI)", "between-model sd", "within-model sd"]]
                for w in ws:
                    per_seed = [[value(r, metric) for r in sw[w]] for sw in sweeps.values()]
                    means = [float(np.mean(v)) for v in per_seed]
                    between = float(np.std(means, ddof=1))
                    within = float(np.sqrt(np.mean([np.var(v, ddof=1) for v in per_seed]))) \
                        if min(len(v) for v in per_seed) > 1 else float("nan")
                    if within > 0:
                        ratios[metric].append(between / within)
                    rows.append([f"{w:g}", *[fmt(x) for x in means], fmt(*mean_ci(means)), fmt(between),
                                 fmt(within)])
                self.add("p", f"{m}: {LABELS[metric]} per model")
                self.add("table", rows=rows)
            text = "; ".join(f"{LABELS[k]}: between-model sd {np.median(v):.2g} times the within-model sd (median "
                             f"over w)" for k, v in ratios.items() if v)
            self.add("p", f"{m}: {text or 'one sampling seed: no within-model spread to compare with'}.")

    def rules_section(self) -> None:
        self.add("h2", "6. Guidance rules")
        self.add("p", "Every shipped rule at its paper's recommended options, the same in every modality, swept over "
                      "its weight; plain CFG's curve is the sweep of section 1. Each curve runs from the conditional "
                      "model (w = 0, where every rule but CFG++ is the conditional model exactly) towards more "
                      "guidance; lower is better. Matched adherence is the joint adherence CFG reaches at w = 1 (or "
                      "its smallest positive weight); a "
                      "rule's FD there is read off its curve (linear between neighbouring weights) and, as a measured "
                      "number with its interval, as the lowest FD among the rule's settings that reach it; the "
                      "verdict compares that with the same number for CFG.")
        verdicts: dict[str, dict[str, str]] = defaultdict(dict)
        for m in self.mods:
            groups = self.section(m, "rules")
            sw = self.sweep(m)
            positive = sorted(w for w in sw if w > 0)
            if not groups or not positive or 0.0 not in sw:
                continue
            ref = 1.0 if 1.0 in sw else positive[0]  # CFG's weight whose adherence the rules are matched at
            run = self.runs[m]
            curves: dict[str, list[tuple[float, list[Record]]]] = {"cfg": sorted(
                (w, g) for w, g in sw.items() if 0 <= w <= 4)}
            for g in groups:
                curves.setdefault(records.rule_label(g[0]), []).append((float(g[0]["w"]), g))
            for pts in curves.values():
                if all(w != 0.0 for w, _ in pts) and pts[0][1][0]["rule"] != "cfgpp":
                    pts.append((0.0, sw[0.0]))  # every rule but CFG++ is the conditional model at w = 0
                pts.sort(key=lambda p: p[0])
            target = run.stat(sw[ref], "adherence")[0]
            self.add("h3", m)
            self.add("img", f"{m}: FD against adherence per rule", path=self.frontiers(m, curves, target, ref))
            rows = [["rule", "weights", "best adherence (w)", "FD at matched adherence (curve)",
                     "lowest FD reaching it (w)", "against CFG's lowest FD reaching it"]]
            lowest: dict[str, Point | None] = {}
            for label, pts in curves.items():
                points = [Point(w, run.stat(g, "adherence"), run.stat(g, "fd"), g) for w, g in pts]
                best = max(points, key=lambda p: p.adherence[0])
                crossing = matched_fd([(p.adherence[0], p.fd[0]) for p in points], target)
                reach = [p for p in points if p.adherence[0] >= target]
                lowest[label] = low = min(reach, key=lambda p: p.fd[0]) if reach else None
                verdict = "CFG itself" if label == "cfg" else self.verdict(low, lowest["cfg"], best.adherence[0])
                verdicts[label][m] = verdict
                rows.append([label, ", ".join(f"{p.w:g}" for p in points), f"{fmt(*best.adherence)} ({best.w:g})",
                             fmt(crossing), "-" if low is None else f"{fmt(*low.fd)} ({low.w:g})", verdict])
            self.add("table", rows=rows)
            self.add("p", f"{m}: matched adherence is {target:.3f} (CFG at w = {ref:g}). "
                          + self.rules_text(verdicts, m))
            clf = next((g for g in groups if g[0]["rule"] == "classifier"), None)
            helper = clf[0]["extra"].get("helpers", {}).get("classifier") if clf else None
            if helper:
                by_sigma = helper.get("held_out_accuracy_by_sigma", {})  # keys "sigma=..." (JSON sorts them as text)
                acc = ", ".join(f"{k} {v:.2f}" for k, v in sorted(by_sigma.items(), key=lambda kv: float(kv[0][6:])))
                self.add("p", f"{m}: the noise classifier's held-out joint accuracy by noise level: {acc}.")
        if verdicts:
            mods = [m for m in self.mods if any(m in v for v in verdicts.values())]
            self.add("h3", "Which rules help where")
            self.add("table", rows=[["rule", *mods], *[[label, *[v.get(m, "-") for m in mods]]
                                                      for label, v in verdicts.items() if label != "cfg"]])

    def verdict(self, low: Point | None, cfg: Point | None, best_adherence: float) -> str:
        """How a rule's lowest FD among its settings that reach the matched adherence compares with the same
        number for CFG: the paired difference of the two settings' FD (same noise), with its 95% interval."""
        if low is None:
            return f"does not reach it (best {best_adherence:.3f})"
        if cfg is None:
            return "CFG does not reach it"
        iv = interval(low.group, "fd", cfg.group)
        if iv is None or not (math.isfinite(low.fd[0]) and math.isfinite(cfg.fd[0]) and cfg.fd[0] > 0):
            return "reaches it; no FD to compare"
        ratio = f"FD x{low.fd[0] / cfg.fd[0]:.2f}, difference {iv.text()}"
        if iv.lo > 0:
            return f"higher, {ratio}"
        if iv.hi < 0:
            return f"lower, {ratio}"
        return f"no clear difference, {ratio}"

    def rules_text(self, verdicts: dict[str, dict[str, str]], m: str) -> str:
        def named(word: str) -> list[str]:
            return [label for label, v in verdicts.items() if v.get(m, "").startswith(word)]

        lower, higher, short = named("lower"), named("higher"), named("does not reach")
        parts = [f"Rules with a lower FD than CFG at matched adherence (paired 95% interval of the difference below "
                 f"0): {', '.join(lower) or 'none'}.", f"Higher: {', '.join(higher) or 'none'}."]
        if short:
            parts.append(f"Never reaching that adherence on their grid: {', '.join(short)}.")
        return " ".join(parts)

    def frontiers(self, m: str, curves: dict[str, list[tuple[float, list[Record]]]], target: float,
                  ref: float) -> Path:
        run = self.runs[m]
        fig, ax = plt.subplots(figsize=(6.4, 4.2))
        for label, pts in curves.items():
            groups = [g for _, g in pts]
            xs, ys = [run.stat(g, "adherence")[0] for g in groups], [run.stat(g, "fd")[0] for g in groups]
            style = {"color": "black", "lw": 2.2, "zorder": 3} if label == "cfg" else {"lw": 1.0}
            ax.errorbar(xs, ys, xerr=error_bars(groups, "adherence"), yerr=error_bars(groups, "fd"), marker="o", ms=3,
                        capsize=2,
                        label=label, **style)
            ax.annotate(f"{pts[-1][0]:g}", (xs[-1], ys[-1]), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.axvline(target, color="grey", ls=":", lw=0.8)
        ax.set_yscale("log")
        ax.set_xlabel(f"joint adherence (dotted: CFG at w = {ref:g})")
        ax.set_ylabel("Frechet distance (log scale, lower is better)")
        ax.set_title(f"{m}: fidelity against adherence per rule, 95% bootstrap intervals (last w labelled)",
                     fontsize=8)
        ax.legend(fontsize=7, ncol=2)
        return _save(fig, self.plots / f"rules_{m}.png")

    def build(self) -> list[Block]:
        self.header()
        self.summary()
        self.sweep_section()
        self.steps_section()
        self.negative_section()
        self.mixing_section()
        self.p_uncond_section()
        self.rules_section()
        self.training_seeds_section()
        self.findings_section()
        self.time_section()
        return self.blocks

    def findings_section(self) -> None:
        """Each seed question answered from the paired comparisons the sections made (:meth:`claim`)."""
        self.add("h2", "Findings")
        self.add("p", "Each line is a paired difference (the first setting minus the second) with its 95% bootstrap "
                      "interval over samples and sampling seeds of one trained model per modality, and what it "
                      "establishes: higher or lower when the interval excludes 0, otherwise not established. None of "
                      "these intervals includes training variance (section 7 measures it where the study ran with "
                      "--training-seeds).")
        for question in QUESTIONS.values():
            lines = self.findings.get(question, [])
            if not lines:
                continue
            self.add("h3", question)
            established = [m for m, _, v in lines if v != "not established"]
            self.add("p", f"Established in {len(set(established))} of {len({m for m, _, _ in lines})} modalities "
                          f"({', '.join(sorted(set(established))) or 'none'}); "
                          + "; ".join(f"{m}: {text}: {v}" for m, text, v in lines) + ".")
        gain = {m for m, _, v in self.findings.get(QUESTIONS["adherence"], []) if v == "higher"}
        cost = {m for m, _, v in self.findings.get(QUESTIONS["cost"], []) if v == "higher"}
        asked = {m for m, _, _ in self.findings.get(QUESTIONS["adherence"], [])}
        if asked:
            self.add("h3", "Is the trade-off the same across data types?")
            both, neither = sorted(gain & cost), sorted(asked - gain - cost)
            self.add("p", f"Guidance raises adherence and costs fidelity (KID rises past its lowest-FD w), both "
                          f"established, in {len(both)} of {len(asked)} modalities ({', '.join(both) or 'none'}); "
                          f"adherence gain without an established cost: {', '.join(sorted(gain - cost)) or 'none'}; "
                          f"neither established: {', '.join(neither) or 'none'}. Where a modality is missing from "
                          "the first list, the data do not establish the trade-off there; they do not refute it.")

    def time_section(self) -> None:
        """Where the study's time went: loading (or training) models and judges, then sampling and evaluating
        each section's settings (all runs into this folder, from the records' own timings)."""
        self.add("h2", "Time")
        sections = ["sweep", "steps", "negative", "mixing", "p_uncond", "rules"]
        rows = [["modality", "prepare (latest run)", *sections, "settings", "sampling + evaluation"]]
        for m, e in self.mods.items():
            dirs = dict.fromkeys([m, *(p["dir"] for p in e.get("p_uncond", {}).values())])  # the main run once
            recs = [r for d in dirs for r in records.read(self.out / d / "records.jsonl")]
            cost = defaultdict(float)
            for r in recs:
                cost[r.get("section", "sweep")] += setting_seconds(r)
            rows.append([m, f"{e.get('prepare_s', float('nan')):.0f} s", *[f"{cost[x]:.0f} s" for x in sections],
                         str(len(recs)), f"{sum(cost.values()) / 60:.1f} min"])
        self.add("table", rows=rows)


def write_report(out: Path) -> Path:
    """Write ``out/report.html`` and ``out/report.md`` from ``out/study.json`` and the records."""
    _intervals.clear()  # a rerun may have recomputed settings since the last report in this process
    _evaluations.clear()
    blocks = Report(out).build()
    (out / "report.md").write_text(render_md(blocks, out))
    path = out / "report.html"
    path.write_text(render_html(blocks, "crossguide study report"))
    return path
