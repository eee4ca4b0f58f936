"""The text modality plug-in: Diffusion-LM-style embedding diffusion with classifier-free guidance.

Datasets ``restaurants`` (procedural, the default), ``restaurants-omissions`` (its E2E-labelled variant) and
``jsonl`` (a user file); the denoiser :class:`EmbeddingDiffusionLM`; the evaluator of
:mod:`crossguide.modalities.text.evaluator`; JSONL + Markdown samples.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.plugins import Deferred
from crossguide.registry import Modality, Preset

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import Splits
    from crossguide.denoiser import Denoiser
    from crossguide.modalities.text.evaluator import TextEvaluator

SCHEDULE = "sqrt"  # Li et al. 2022, App. A
# the schedule's last alpha_bar at every T: 1 - sqrt(1 + s) < 0, clamped to 1e-8 (crossguide.schedules.sqrt; a test
# checks it), written out so that the presets are declared without torch
LAST_ALPHA_BAR = 1e-8


def _model(**kw: Any) -> dict[str, Any]:
    """Model arguments; ``prior_alpha_bar`` is the schedule's last ``alpha_bar`` (the prior term's weight)."""
    return {"prior_alpha_bar": LAST_ALPHA_BAR, **kw}


def _train(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"lr": 1e-3, "warmup": 100, "ema_decay": 0.999, "p_uncond": 0.1, "p_attr": 0.1, **kw})


class TextModality(Modality):
    name = "text"
    default_dataset = "restaurants"
    default_denoiser = "diffusion-lm"
    model_options = ("embed_dim", "hidden", "layers", "heads", "dropout", "prior_alpha_bar", "rounding",
                     "rounding_weight", "head", "self_condition", "backbone")

    def __init__(self) -> None:
        self.datasets = {
            "restaurants": Deferred("crossguide.modalities.text.restaurants:restaurants"),
            "restaurants-omissions": Deferred("crossguide.modalities.text.restaurants:restaurants_omissions"),
            "jsonl": Deferred("crossguide.modalities.text.jsonl:jsonl"),
        }
        self.presets = {
            "smoke": Preset(_model(embed_dim=16, hidden=32, layers=1, heads=2, self_condition=True),
                            _train(steps=40, batch_size=32, warmup=10), schedule=SCHEDULE, T=200, sampler="ddim",
                            steps=5, per_condition=1, batch=256,
                            data={"n_train": 600, "n_test": 100, "length": 32},
                            classifier={"hidden": 16, "layers": 1, "heads": 2},
                            classifier_train=training(_train(steps=20, batch_size=32, warmup=5))),
            # self-conditioning and ancestral sampling each lifted control and fluency more than extra
            # training steps did (measured; see the README)
            "quick": Preset(_model(embed_dim=16, hidden=96, layers=3, heads=4, head="mixture",
                                   rounding="both", self_condition=True),
                            _train(steps=9000, batch_size=64, lr=2e-3), schedule=SCHEDULE, T=2000,
                            sampler="ddpm", steps=200, per_condition=6, batch=288,
                            data={"n_train": 20000, "n_test": 1000, "length": 20},
                            classifier={"hidden": 64, "layers": 2, "heads": 4},
                            classifier_train=training(_train(steps=1500, batch_size=64, lr=2e-3))),
            "full": Preset(_model(embed_dim=16, hidden=384, layers=8, heads=6, dropout=0.1, self_condition=True),
                           _train(steps=60000, batch_size=256, lr=3e-4, warmup=1000, ema_decay=0.9999),
                           schedule=SCHEDULE, T=2000, sampler="ddpm", steps=200, per_condition=32, batch=1152,
                           data={"n_train": 100000, "n_test": 4000, "length": 32},
                           classifier={"hidden": 256, "layers": 4, "heads": 4},
                           classifier_train=training(_train(steps=20000, batch_size=256, lr=3e-4, warmup=1000))),
        }

    def build_model(self, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
                    info: Mapping[str, Any]) -> Denoiser:
        """The denoiser from its preset (or checkpoint) config; vocabulary, length and pad come from ``info``."""
        from crossguide.modalities.text.model import EmbeddingDiffusionLM

        args = {**config, **{k: info[k] for k in ("vocab_size", "length", "pad_id")}}
        return EmbeddingDiffusionLM(attributes, **args)

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        from crossguide.modalities.text.classifier import TextClassifier

        net = TextClassifier(embed_dim=sample_shape[-1], length=sample_shape[0], **config)
        return net, net.dim

    def evaluator(self, splits: Splits, preset: str, cache: Path) -> TextEvaluator:
        from crossguide.modalities.text.evaluator import build_evaluator

        return build_evaluator(splits, preset, cache)

    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        from crossguide.modalities.text import outputs

        return outputs.write(samples, labels, directory, info)

    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
        from crossguide.modalities.text import outputs

        outputs.draw(samples, labels, path, title, info)

    def describe(self, samples: Tensor, info: Mapping[str, Any]) -> list[dict[str, Any]]:
        from crossguide.modalities.text import outputs

        return [{"text": s} for s in outputs.sentences(samples, info)]


MODALITY = TextModality()
