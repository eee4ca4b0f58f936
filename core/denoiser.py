"""The denoiser contract shared by every modality (docs/PLUGINS.md, "The denoiser contract").

A denoiser is an ``nn.Module`` called as ``model(x_t, t, cond)`` with ``x_t: [B, ...]`` in diffusion space,
``t: [B]`` model time (training-step units) and ``cond`` a :data:`crossguide.conditions.Condition`; it returns a
tensor shaped like ``x_t`` holding its declared :attr:`prediction`. Guidance never lives inside it.

Models that diffuse in a learned space (Diffusion-LM, Li et al. 2022) override the optional hooks:
``encode`` (data -> x0), ``decode`` (x0 -> data), ``snap`` (the clamping trick, Sec. 4.2) and ``extra_loss``.

A denoiser with ``self_conditioning = True`` is called as ``model(x_t, t, cond, x0_self=...)``, where ``x0_self``
is its own earlier ``x0`` estimate (``None``: none yet, read as zeros). Self-conditioning (Chen et al. 2022,
"Analog Bits", Sec. 3.3): the trainer feeds back a detached estimate of the same ``x_t`` in half the batches, the
samplers feed back the previous step's guided estimate.

A denoiser with ``shared_branches = True`` also accepts ``cond`` with ``A*B`` rows for ``x_t`` and ``t`` of ``B``
rows (row ``a*B + b``: example ``b`` under branch ``a``, as :func:`crossguide.conditions.concat` stacks them) and
returns ``[A*B, ...]``. Guidance evaluates its branches at one ``x_t`` and ``t``, so such a model can compute once
whatever the condition has not reached yet (e.g. an input projection and the layers before the condition is
added) instead of receiving ``x_t`` tiled ``A`` times. ``A = 1`` is the plain contract.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from crossguide.conditions import Attributes, Condition
from crossguide.parameterization import Prediction


class Denoiser(nn.Module):
    """Base class: subclasses set :attr:`prediction`, :attr:`sample_shape` and implement :meth:`forward`."""

    prediction: Prediction = "eps"
    self_conditioning: bool = False  # forward takes ``x0_self`` (see the module docstring)
    shared_branches: bool = False  # forward takes A*B condition rows for B rows of x_t (see the module docstring)

    def __init__(self, attributes: Attributes, sample_shape: tuple[int, ...]):
        super().__init__()
        self.attributes = {a: list(v) for a, v in attributes.items()}
        self.sample_shape = tuple(sample_shape)  # one example's shape in diffusion space

    def forward(self, x_t: Tensor, t: Tensor, cond: Condition) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def encode(self, batch: Tensor) -> Tensor:
        """Data -> diffusion-space ``x0`` ([B, ...]); the identity for models that diffuse in data space."""
        return batch

    def decode(self, x0: Tensor) -> Tensor:
        """Diffusion-space ``x0`` -> data; the identity for models that diffuse in data space."""
        return x0

    def snap(self, x0: Tensor) -> Tensor:
        """Project a predicted ``x0`` onto valid data (Diffusion-LM's clamping); the identity by default."""
        return x0

    def extra_loss(self, batch: Tensor, x0: Tensor, x_t: Tensor, t: Tensor, out: Tensor) -> Tensor | None:
        """An extra training loss term (e.g. Diffusion-LM's rounding loss); ``None`` when there is none."""
        return None

    def config(self) -> dict[str, Any]:
        """JSON-serialisable constructor arguments, stored in checkpoints."""
        raise NotImplementedError


def self_conditioned(model: nn.Module) -> bool:
    """Whether ``model`` takes ``x0_self``; ``False`` for duck-typed denoisers that do not say."""
    return bool(getattr(model, "self_conditioning", False))


def shares_branches(model: nn.Module) -> bool:
    """Whether ``model`` takes ``x_t`` once for several branches' conditions; ``False`` for duck-typed denoisers."""
    return bool(getattr(model, "shared_branches", False))
