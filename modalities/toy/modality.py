"""The toy modality plug-in: dataset, denoisers (exact and MLP), the exact-posterior judge, CSV and scatter plots."""

from __future__ import annotations

import csv
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
from torch import Tensor, nn  # noqa: E402

from core.classifier import training  # noqa: E402
from core.conditions import Condition  # noqa: E402
from core.data import ConditionalDataset, Splits  # noqa: E402
from core.denoiser import Denoiser  # noqa: E402
from core.errors import UsageError, check_choice  # noqa: E402
from core.registry import Modality, Preset  # noqa: E402
from core.schedules import make as make_schedule  # noqa: E402
from core.trainer import TrainConfig  # noqa: E402
from modalities.toy.mixture import ATTRIBUTES, ExactDenoiser, Mixture, compass_mixture  # noqa: E402
from modalities.toy.mlp import MLPDenoiser, NoisyMLP  # noqa: E402

MIXTURE = compass_mixture()


def mixture_dataset(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
    """Fixed train/test draws from the compass mixture (the data seed is fixed; ``seed`` drives training)."""
    if path is not None:
        raise UsageError("the toy 'mixture' dataset is procedural and takes no --data path")
    g = torch.Generator().manual_seed(int(options.get("data_seed", 1234)))
    parts = []
    for n in (options["train_per_component"], options["test_per_component"]):
        x, cond = MIXTURE.sample(n, g)
        parts.append(ConditionalDataset("mixture", x, cond, {a: list(v) for a, v in ATTRIBUTES.items()}))
    return Splits(*parts)


class MixtureJudge:
    """Evaluator for the toy: features are the points themselves; the judge is the mixture's exact posterior."""

    def __init__(self, mixture: Mixture):
        self.mixture = mixture
        # nothing is trained: the judge is the mixture itself, the same everywhere
        self.info = {"features": "raw 2-D coordinates", "judge": "exact mixture posterior",
                     "id": "exact-mixture-posterior", "source": "exact"}

    def features(self, data: Tensor) -> Tensor:
        return data.float()

    def classify(self, data: Tensor) -> dict[str, Tensor]:
        return {a: p.argmax(-1) for a, p in self.mixture.posterior(data).items()}

    def objective(self, data: Tensor, requested: Condition) -> dict[str, float]:
        """Mean ``log p(x | c)`` under the true mixture: model-free fidelity to the requested condition."""
        return {"log_prob": self.mixture.log_prob(data, requested).mean().item()}


def _train(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"lr": 2e-3, "warmup": 50, "ema_decay": 0.995, "p_uncond": 0.1, "p_attr": 0.1, **kw})


DATA = {"train_per_component": 2000, "test_per_component": 250}


class ToyModality(Modality):
    name = "toy"
    default_dataset = "mixture"
    extra_ws = (-3.0, -2.0)

    def __init__(self) -> None:
        self.datasets = {"mixture": mixture_dataset}
        mlp = {"kind": "mlp", "prediction": "v"}
        # linear schedule: the cosine one ends at alpha_bar = 2e-9, where any denoiser error is amplified
        self.presets = {
            "smoke": Preset({**mlp, "hidden": 64, "depth": 2}, _train(steps=300, batch_size=256),
                            schedule="linear", steps=20, per_condition=32, data=DATA,
                            classifier={"hidden": 32, "depth": 1},
                            classifier_train=training(_train(steps=100, batch_size=256))),
            "quick": Preset({**mlp, "hidden": 128, "depth": 3}, _train(steps=1500, batch_size=512),
                            schedule="linear", steps=50, per_condition=128, batch=1024, data=DATA,
                            classifier={"hidden": 128, "depth": 2},
                            classifier_train=training(_train(steps=1500, batch_size=512))),
            "full": Preset({**mlp, "hidden": 256, "depth": 4}, _train(steps=20000, batch_size=1024, lr=1e-3),
                           schedule="linear", steps=100, per_condition=500, batch=4000,
                           data={**DATA, "train_per_component": 20000},
                           classifier={"hidden": 256, "depth": 3},
                           classifier_train=training(_train(steps=20000, batch_size=1024, lr=1e-3))),
        }

    def build_model(self, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
                    info: Mapping[str, Any] | None = None) -> Denoiser:
        config = dict(config)
        kind = config.pop("kind", "mlp")
        check_choice("toy model kind", kind, ("mlp", "exact"))
        if kind == "exact":
            return ExactDenoiser(MIXTURE, make_schedule(config.get("schedule", "cosine"), config.get("T", 1000)))
        return MLPDenoiser(attributes, **config)

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        net = NoisyMLP(dim=sample_shape[0], **config)
        return net, net.dim

    def evaluator(self, splits: Splits, preset: str, cache: Path) -> MixtureJudge:
        return MixtureJudge(MIXTURE)

    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "points.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["x", "y", *ATTRIBUTES])
            for (x, y), lab in zip(samples.tolist(), labels, strict=True):
                writer.writerow([f"{x:.5f}", f"{y:.5f}", *(lab.get(a, "") for a in ATTRIBUTES)])
        return [f"points.csv#{i}" for i in range(len(samples))]  # row i of the CSV

    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
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
        ax.set_title(title, fontsize=7)
        ax.legend(fontsize=5, markerscale=3, loc="upper right")
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)


MODALITY = ToyModality()
