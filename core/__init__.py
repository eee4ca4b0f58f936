"""crossguide: classifier-free guidance across data types (the repository's ``core/`` folder).

The public face, for notebooks and scripts (:mod:`crossguide.notebook`)::

    import crossguide
    pipe = crossguide.load("runs/image")                  # a checkpoint directory
    out = pipe.sample({"shape": "ring"}, w=3, n=16, seed=0)
    out.save("grid.png")

The engine underneath is modality-free: nothing in this package imports from ``crossguide.modalities``;
modalities, datasets and denoisers plug in through :mod:`crossguide.registry`. ``import crossguide`` loads no
torch (the command line answers ``--help`` at once); :func:`load` does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from crossguide.guidance import Guidance
    from crossguide.notebook import Pipe, Samples, load

__version__ = "0.1.0"
__all__ = ["Guidance", "Pipe", "Samples", "load"]
_LAZY = {"load": "crossguide.notebook", "Pipe": "crossguide.notebook", "Samples": "crossguide.notebook",
         "Guidance": "crossguide.guidance"}


def __getattr__(name: str) -> Any:
    """The public names, imported on first use (PEP 562)."""
    if name not in _LAZY:
        raise AttributeError(f"module 'crossguide' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(_LAZY[name]), name)
