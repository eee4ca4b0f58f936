"""The text modality: Diffusion-LM-style embedding diffusion (Li et al. 2022) with classifier-free guidance."""

from crossguide.modalities.text.modality import MODALITY, TextModality

__all__ = ["MODALITY", "TextModality"]
