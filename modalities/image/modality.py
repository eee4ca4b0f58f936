"""The image modality plug-in: the pixel U-Net, the ``shapes`` / ``digits`` / ``folder`` datasets, the CNN
judge, PNG samples and grids, and the presets that size them. The parts that need torch are imported where they
are used (:mod:`crossguide.plugins`)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.errors import UsageError
from crossguide.plugins import Deferred
from crossguide.registry import DenoiserEntry, Modality, Preset

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import Splits
    from crossguide.denoiser import Denoiser
    from crossguide.judge import JudgeEvaluator


def _train(**kw: Any) -> TrainConfig:
    # p_uncond 0.1-0.2 is the paper's best range (Ho & Salimans 2021, Table 1); p_attr adds partial conditions.
    return TrainConfig(**{"lr": 2e-3, "warmup": 100, "ema_decay": 0.999, "p_uncond": 0.15, "p_attr": 0.1, **kw})


PRESETS = {
    # seconds: a 8x8 U-Net that only has to run end to end
    "smoke": Preset(
        {"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": [4], "heads": 2},
        _train(steps=30, batch_size=32, warmup=5),
        sampler="ddim", steps=5, per_condition=2, batch=64,
        data={"size": 8, "train_per_condition": 24, "test_per_condition": 6, "radius_px": [1.5, 3.0]},
        classifier={"channels": 8, "mults": [1, 2], "res_blocks": 1, "attention": [], "heads": 2},
        classifier_train=training(_train(steps=20, batch_size=32, warmup=5)),
    ),
    # minutes on 2 CPU cores: 16x16 shapes, the whole 12-weight sweep in under 10 minutes
    "quick": Preset(
        {"channels": 24, "mults": [1, 2, 4], "res_blocks": 1, "attention": [4], "heads": 4},
        _train(steps=1250, batch_size=64, lr=2e-3, ema_decay=0.995),
        sampler="dpmpp2m", steps=20, per_condition=8, batch=128,
        data={"size": 16, "train_per_condition": 500, "test_per_condition": 100, "radius_px": [5.0, 7.0]},
        classifier={"channels": 16, "mults": [1, 2, 4], "res_blocks": 1, "attention": [4], "heads": 4},
        classifier_train=training(_train(steps=1500, batch_size=64, ema_decay=0.995)),
    ),
    # GPU scale: CIFAR-sized ADM-like U-Net (Dhariwal & Nichol 2021, Table 1 ablation widths)
    "full": Preset(
        {"channels": 128, "mults": [1, 2, 2, 2], "res_blocks": 2, "attention": [16, 8], "heads": 4, "dropout": 0.1},
        _train(steps=50000, batch_size=128, lr=2e-4, warmup=1000, ema_decay=0.9999),
        sampler="ddim", steps=50, per_condition=64, batch=512,
        data={"size": 32, "train_per_condition": 2000, "test_per_condition": 250, "radius_px": [8.0, 13.0]},
        classifier={"channels": 64, "mults": [1, 2, 2, 2], "res_blocks": 2, "attention": [16, 8], "heads": 4},
        classifier_train=training(_train(steps=20000, batch_size=128, lr=3e-4, warmup=1000,
                                                 ema_decay=0.9999)),
    ),
}

class ImageModality(Modality):
    name = "image"
    default_dataset = "shapes"
    default_denoiser = "unet"
    model_options = ("in_channels", "channels", "mults", "res_blocks", "attention", "heads", "dropout", "prediction")
    extra_ws = (-3.0, -2.0)  # negative guidance: pushing away from the condition
    # diffusers' UNet2DModel (modalities/image/diffusers_unet.py); the quick one is laid out like the quick U-Net
    # above (widths 24/48/96, attention at 4x4, AdaGN "scale_shift"): 1.61M parameters, as many as the U-Net's
    shipped_denoisers = {"diffusers-unet": DenoiserEntry(
        Deferred("crossguide.modalities.image.diffusers_unet:build"),
        configs={
            "smoke": {"block_out_channels": [8, 16], "layers_per_block": 1,
                      "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
                      "up_block_types": ["AttnUpBlock2D", "UpBlock2D"], "attention_head_dim": 8, "norm_num_groups": 4,
                      "resnet_time_scale_shift": "scale_shift"},
            "quick": {"block_out_channels": [24, 48, 96], "layers_per_block": 1,
                      "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
                      "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"], "attention_head_dim": 24,
                      "norm_num_groups": 8, "resnet_time_scale_shift": "scale_shift"},
            # the full U-Net's layout: widths 128/256/256/256, two blocks a level, attention at 16x16 and 8x8
            "full": {"block_out_channels": [128, 256, 256, 256], "layers_per_block": 2,
                     "down_block_types": ["DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D", "DownBlock2D"],
                     "up_block_types": ["UpBlock2D", "AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"],
                     "attention_head_dim": 64, "norm_num_groups": 32, "resnet_time_scale_shift": "scale_shift",
                     "dropout": 0.1},
        },
        options=("in_channels", "dropout", "zero_out"),
        requires=("diffusers",), install="pip install -e '.[diffusers]'", package="crossguide[diffusers]",
        about="diffusers' UNet2DModel, every attribute through the per-attribute condition embedding")}

    def __init__(self) -> None:
        self.datasets = {"shapes": Deferred("crossguide.modalities.image.shapes:shapes_dataset"),
                         "digits": Deferred("crossguide.modalities.image.datasets:digits_dataset"),
                         "folder": Deferred("crossguide.modalities.image.datasets:folder_dataset")}
        self.presets = dict(PRESETS)

    def build_model(self, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
                    info: Mapping[str, Any]) -> Denoiser:
        """A :class:`UNet` sized for the dataset's images (``info``), unless the config (a checkpoint's) fixes it."""
        from crossguide.modalities.image.unet import UNet

        sized = {"size": info.get("size"), "in_channels": info.get("channels", 3), **config}
        if sized["size"] is None:
            raise UsageError("the image model needs an image size: neither its config nor the dataset info has one")
        return UNet(attributes, **sized)

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        from crossguide.modalities.image.classifier import NoisyEncoder

        net = NoisyEncoder(size=sample_shape[-1], in_channels=sample_shape[0], **config)
        return net, net.dim

    def evaluator(self, splits: Splits, preset: str, cache: Path) -> JudgeEvaluator:
        from crossguide.modalities.image.judge import JUDGE_FIT, image_evaluator

        return image_evaluator(splits, JUDGE_FIT[preset], cache)

    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        from crossguide.modalities.image.pictures import write_pngs

        return write_pngs(samples, labels, directory)

    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
        from crossguide.modalities.image.pictures import grid

        grid(samples, labels, path, title)


MODALITY = ImageModality()
