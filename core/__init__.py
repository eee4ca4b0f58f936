"""crossguide core: the modality-free classifier-free guidance engine (see DESIGN.md).

Nothing in this package imports from ``modalities``; modalities plug in through :mod:`core.registry`.
"""

__version__ = "0.1.0"
