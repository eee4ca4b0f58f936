"""The audio modality plug-in: DiffWave, the ``notes`` / ``spoken-digits`` / ``folder`` datasets, the log-mel
judge with pYIN pitch accuracy, WAV files and spectrogram grids.

Preset ``data`` holds one options dict per dataset (``{"notes": {...}, "spoken-digits": {...}, ...}``), since a
preset fixes the clip length and size of each dataset; the model's ``length`` comes from the dataset's ``info``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crossguide.config import TrainConfig, training
from crossguide.plugins import Deferred
from crossguide.registry import DatasetFactory, DenoiserEntry, Modality, Preset

if TYPE_CHECKING:
    from torch import Tensor, nn

    from crossguide.data import Splits
    from crossguide.denoiser import Denoiser
    from crossguide.judge import JudgeEvaluator
    from crossguide.schedules import Schedule


def _section(name: str, factory: DatasetFactory) -> DatasetFactory:
    """A factory that reads its own options from ``preset.data[name]``."""

    def load(options: Mapping[str, Any], path: Path | None, seed: int) -> Splits:
        return factory(options.get(name, {}), path, seed)

    return load


def _train(**kw: Any) -> TrainConfig:
    return TrainConfig(**{"lr": 2e-4, "warmup": 100, "p_uncond": 0.1, "p_attr": 0.1, **kw})


# Paper sizes (Kong et al. 2020, Sec. 5.3, SC09 generation): 36 layers, C = 256, dilation cycle 12, T = 200.
PAPER = {"layers": 36, "channels": 256, "cycle": 12, "step_dim": 128, "cond_dim": 128}
PRESETS: dict[str, Preset] = {
    "smoke": Preset(
        {"layers": 4, "channels": 8, "cycle": 4, "step_dim": 16, "cond_dim": 16},
        _train(steps=30, batch_size=16, lr=2e-3, warmup=5),
        schedule="diffwave", T=50, sampler="ddpm", steps=6, per_condition=1, batch=64,
        data={"notes": {"sample_rate": 8000, "duration": 0.1, "per_condition": 6},
              "spoken-digits": {"sample_rate": 8000, "duration": 0.5, "per_digit": 6},
              "folder": {"sample_rate": 8000, "duration": 0.5}},
        classifier={"n_fft": 128, "hop": 64, "n_mels": 16, "width": 8, "step_dim": 16},
        classifier_train=training(_train(steps=20, batch_size=16, lr=2e-3, warmup=5)),
    ),
    # 8 layers of 32 channels cost what 9 of 24 did per step; the receptive field (511 samples, 128 ms, over 30
    # periods of the lowest note) still covers pitch and timbre. Deterministic DDIM on the 6-step fast grid: DDPM
    # there lost adherence past w = 1 (squares brightened into saws). Batches of 64 sample faster than 256 on a
    # CPU (cache-sized tensors). All three measured; see the README.
    "quick": Preset(
        {"layers": 8, "channels": 32, "cycle": 8, "step_dim": 32, "cond_dim": 64},
        _train(steps=1500, batch_size=32, lr=2e-3, warmup=50, ema_decay=0.995),
        schedule="diffwave", T=50, sampler="ddim", steps=6, per_condition=6, batch=64,
        data={"notes": {"sample_rate": 4000, "duration": 0.25, "per_condition": 80},
              "spoken-digits": {"sample_rate": 8000, "duration": 0.75, "per_digit": 200},
              "folder": {"sample_rate": 8000, "duration": 0.5}},
        classifier={"n_fft": 512, "hop": 64, "n_mels": 64, "width": 64, "step_dim": 32},
        classifier_train=training(_train(steps=4000, batch_size=64, lr=2e-3, warmup=100, ema_decay=0.995)),
    ),
    "full": Preset(
        PAPER, _train(steps=200_000, batch_size=32, warmup=1000, ema_decay=0.9999),
        schedule="diffwave200", T=200, sampler="ddpm", steps=200, per_condition=64, batch=256,
        classifier={"n_fft": 1024, "hop": 256, "n_mels": 80, "width": 256, "step_dim": 128},
        classifier_train=training(_train(steps=50_000, batch_size=32, warmup=1000, ema_decay=0.9999)),
        data={"notes": {"sample_rate": 16000, "duration": 0.5, "per_condition": 400},
              "spoken-digits": {"sample_rate": 16000, "duration": 1.0, "per_digit": 2000},
              "folder": {"sample_rate": 16000, "duration": 1.0}},
    ),
}
class AudioModality(Modality):
    name = "audio"
    default_dataset = "notes"
    default_denoiser = "diffwave"
    model_options = ("layers", "channels", "cycle", "step_dim", "cond_dim")
    extra_ws = ()
    # diffusers' UNet1DModel, Dance Diffusion's waveform U-Net (modalities/audio/diffusers_unet1d.py); the quick
    # one costs about what the quick DiffWave does per training step
    shipped_denoisers = {"diffusers-unet1d": DenoiserEntry(
        Deferred("crossguide.modalities.audio.diffusers_unet1d:build"),
        configs={
            "smoke": {"block_out_channels": [8, 32], "down_block_types": ["DownBlock1DNoSkip", "DownBlock1D"],
                      "up_block_types": ["UpBlock1D", "UpBlock1DNoSkip"], "cond_dim": 8},
            "quick": {"block_out_channels": [16, 32, 32],
                      "down_block_types": ["DownBlock1DNoSkip", "DownBlock1D", "DownBlock1D"],
                      "up_block_types": ["UpBlock1D", "UpBlock1D", "UpBlock1DNoSkip"], "cond_dim": 16},
            # Dance Diffusion's first six levels
            "full": {"block_out_channels": [32, 32, 64, 64, 128, 128],
                     "down_block_types": ["DownBlock1DNoSkip", "DownBlock1D", "DownBlock1D", "DownBlock1D",
                                          "AttnDownBlock1D", "AttnDownBlock1D"],
                     "up_block_types": ["AttnUpBlock1D", "AttnUpBlock1D", "UpBlock1D", "UpBlock1D", "UpBlock1D",
                                        "UpBlock1DNoSkip"], "cond_dim": 32},
        },
        options=("zero_out",),
        requires=("diffusers",), install="pip install -e '.[diffusers]'", package="crossguide[diffusers]",
        about="diffusers' UNet1DModel (Dance Diffusion), every attribute as condition channels")}

    def __init__(self) -> None:
        factories = {"notes": Deferred("crossguide.modalities.audio.notes:notes_dataset"),
                     "spoken-digits": Deferred("crossguide.modalities.audio.speech:spoken_digits_dataset"),
                     "folder": Deferred("crossguide.modalities.audio.folder:folder_dataset")}
        self.datasets = {name: _section(name, f) for name, f in factories.items()}
        self.presets = dict(PRESETS)

    def schedule(self, preset: Preset) -> Schedule:
        from crossguide.modalities.audio import schedules  # noqa: F401  (registers the diffwave schedules)

        return super().schedule(preset)

    def build_model(self, config: Mapping[str, Any], attributes: Mapping[str, list[str]],
                    info: Mapping[str, Any]) -> Denoiser:
        from crossguide.modalities.audio import schedules  # noqa: F401  (a checkpoint without its table rebuilds one by name)
        from crossguide.modalities.audio.diffwave import DiffWave

        config = dict(config)
        length = int(config.pop("length", info.get("length", 0)))
        return DiffWave(attributes, length, **config)

    def classifier_backbone(self, config: Mapping[str, Any], info: Mapping[str, Any],
                            sample_shape: tuple[int, ...]) -> tuple[nn.Module, int]:
        from crossguide.modalities.audio.classifier import MelClassifier

        net = MelClassifier(int(info["sample_rate"]), **config)
        return net, net.dim

    def evaluator(self, splits: Splits, preset: str, cache: Path) -> JudgeEvaluator:
        from crossguide.modalities.audio.judge import JUDGE_FIT, audio_evaluator

        return audio_evaluator(splits, cache, JUDGE_FIT[preset], pitch_names=splits.train.info.get("pitch_classes"))

    def write_samples(self, samples: Tensor, labels: list[dict[str, str]], directory: Path,
                      info: Mapping[str, Any]) -> list[str]:
        from crossguide.modalities.audio.outputs import write_wavs

        return write_wavs(samples, labels, directory, int(info["sample_rate"]))

    def draw(self, samples: Tensor, labels: list[dict[str, str]], path: Path, title: str,
             info: Mapping[str, Any]) -> None:
        from crossguide.modalities.audio.outputs import spectrogram_grid

        spectrogram_grid(samples, labels, path, title, int(info["sample_rate"]))


MODALITY = AudioModality()
