"""The image modality: an attribute-conditional pixel U-Net with classifier-free guidance, image datasets,
a CNN judge and PNG grids. ``MODALITY`` is the plug-in registered under ``crossguide.modalities``."""

from crossguide.modalities.image.modality import MODALITY

__all__ = ["MODALITY"]
