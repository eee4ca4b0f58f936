"""The toy's samples as files: a CSV of points and a scatter plot over the mixture's means."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from torch import Tensor  # noqa: E402

from crossguide.modalities.toy.data import MIXTURE  # noqa: E402
from crossguide.modalities.toy.mixture import ATTRIBUTES  # noqa: E402


def write_csv(samples: Tensor, labels: list[dict[str, str]], directory: Path) -> list[str]:
    """``points.csv`` in ``directory``: one row per sample (x, y and its requested attributes)."""
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / "points.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["x", "y", *ATTRIBUTES])
        for (x, y), lab in zip(samples.tolist(), labels, strict=True):
            writer.writerow([f"{x:.5f}", f"{y:.5f}", *(lab.get(a, "") for a in ATTRIBUTES)])
    return [f"points.csv#{i}" for i in range(len(samples))]  # row i of the CSV


def scatter(samples: Tensor, labels: list[dict[str, str]], path: Path, title: str) -> None:
    """One PNG: the samples in the data's two coordinates, coloured by requested condition, the components' means
    as crosses."""
    fig, ax = plt.subplots(figsize=(4.2, 4.2))
    keys = sorted({tuple(sorted(lab.items())) for lab in labels})
    cmap = plt.get_cmap("tab10" if len(keys) <= 10 else "tab20")
    for i, key in enumerate(keys):
        idx = [j for j, lab in enumerate(labels) if tuple(sorted(lab.items())) == key]
        pts = samples[idx]
        ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6, color=cmap(i % cmap.N),
                   label=" ".join(v for _, v in key) or "unconditional")
    ax.scatter(MIXTURE.means[:, 0], MIXTURE.means[:, 1], marker="x", color="black", s=20)
    ax.set_xlim(-2.5, 2.5)
    ax.set_ylim(-2.5, 2.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x (first coordinate)")
    ax.set_ylabel("y (second coordinate)")
    ax.set_title(title, fontsize=7)
    ax.legend(fontsize=5, markerscale=3, loc="upper right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
