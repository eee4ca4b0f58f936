"""The toy modality: a 2-D Gaussian mixture with an exact denoiser, for tests and demos without training."""

from crossguide.modalities.toy.modality import MODALITY, ToyModality

__all__ = ["MODALITY", "ToyModality"]
