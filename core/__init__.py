"""crossguide: the modality-free classifier-free guidance engine (the repository's ``core/`` folder).

Nothing in this package imports from ``modalities``; modalities plug in through :mod:`crossguide.registry`.
"""

__version__ = "0.1.0"
