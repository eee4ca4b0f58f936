"""The toy modality plug-in: dataset, denoisers (exact and MLP), the exact-posterior judge, CSV and scatter plots.
The parts that need torch are imported where they are used (:mod:`crossguide.plugins`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.errors import check_choice
from crossguide.plugins import Deferred
from crossguide.registry import Modality, Preset

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import Splits
    from crossguide.denoiser import Denoiser
    from crossguide.modalities.toy.judge import MixtureJudge


def _train(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"lr": 2e-3, "warmup": 50, "ema_decay": 0.995, "p_uncond": 0.1, "p_attr": 0.1, **kw})


DATA = {"train_per_component": 2000, "test_per_component": 250}


class ToyModality(Modality):
    name = "toy"
    default_dataset = "mixture"
    default_denoiser = "mlp"
    model_options = ("kind", "prediction", "hidden", "depth")
    extra_ws = (-3.0, -2.0)

    def __init__(self) -> None:
        self.datasets = {"mixture": Deferred("crossguide.modalities.toy.data:mixture_dataset")}
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
        from crossguide.modalities.toy.data import MIXTURE
        from crossguide.modalities.toy.mixture import ExactDenoiser
        from crossguide.modalities.toy.mlp import MLPDenoiser
        from crossguide.schedules import make as make_schedule

        config = dict(config)
        kind = config.pop("kind", "mlp")
        check_choice("toy model kind", kind, ("mlp", "exact"))
        if kind == "exact":
            return ExactDenoiser(MIXTURE, make_schedule(config.get("schedule", "cosine"), config.get("T", 1000)))
        return MLPDenoiser(attributes, **config)

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        from crossguide.modalities.toy.mlp import NoisyMLP

        net = NoisyMLP(dim=sample_shape[0], **config)
        return net, net.dim

    def evaluator(self, splits: Splits, preset: str, cache: Path) -> MixtureJudge:
        from crossguide.modalities.toy.data import MIXTURE
        from crossguide.modalities.toy.judge import MixtureJudge

        return MixtureJudge(MIXTURE)

    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        from crossguide.modalities.toy.outputs import write_csv

        return write_csv(samples, labels, directory)

    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
        from crossguide.modalities.toy.outputs import scatter

        scatter(samples, labels, path, title)


MODALITY = ToyModality()
