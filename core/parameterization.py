"""What a denoiser predicts (eps, x0, v or flow) and the conversions between them.

With ``x_t = a x_0 + s eps``, ``a = sqrt(alpha_bar)``, ``s = sqrt(1 - alpha_bar)``:
``eps`` (Ho et al. 2020), ``x0``, ``v = a eps - s x_0`` (Salimans & Ho 2022, Sec. 4) and the rectified-flow
velocity ``flow = eps - x_0`` (Liu et al. 2023; Lipman et al. 2023), read at the same point after rescaling
``x_t`` by ``1 / (a + s)`` onto the straight path between data and noise. Guidance rules that are not
parameterization-invariant name one of these as the space they act in.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple

if TYPE_CHECKING:
    from torch import Tensor

from crossguide.errors import check_choice

Prediction = Literal["eps", "x0", "v", "flow"]
PREDICTIONS: tuple[Prediction, ...] = ("eps", "x0", "v", "flow")


class Estimate(NamedTuple):
    """A denoiser's estimate of the clean data and of the noise at one step."""

    x0: Tensor
    eps: Tensor


def append_dims(v: Tensor, ndim: int) -> Tensor:
    """Broadcast a per-example ``[B]`` tensor over trailing dims: ``[B] -> [B, 1, ..., 1]``."""
    return v.reshape(v.shape + (1,) * (ndim - v.ndim))


def _coefficients(alpha_bar: Tensor, like: Tensor) -> tuple[Tensor, Tensor]:
    ab = append_dims(alpha_bar, like.ndim).to(like.dtype)
    return ab.sqrt(), (1 - ab).sqrt()


def noise(x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """``x_t = sqrt(alpha_bar) x_0 + sqrt(1 - alpha_bar) eps`` (Ho et al. 2020, Eq. 4)."""
    a, s = _coefficients(alpha_bar, x0)
    return a * x0 + s * eps


def target(kind: Prediction, x0: Tensor, eps: Tensor, alpha_bar: Tensor) -> Tensor:
    """The regression target of a denoiser that predicts ``kind``."""
    check_choice("prediction type", kind, PREDICTIONS)
    if kind == "eps":
        return eps
    if kind == "x0":
        return x0
    if kind == "flow":
        return eps - x0
    a, s = _coefficients(alpha_bar, x0)
    return a * eps - s * x0


def estimate(kind: Prediction, out: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Estimate:
    """Both ``x0`` and ``eps`` from a prediction of type ``kind`` at ``x_t``."""
    check_choice("prediction type", kind, PREDICTIONS)
    a, s = _coefficients(alpha_bar, x_t)
    if kind == "eps":
        return Estimate((x_t - s * out) / a, out)
    if kind == "x0":
        return Estimate(out, (x_t - a * out) / s)
    if kind == "flow":  # eps - x0 = out and a x0 + s eps = x_t
        return Estimate((x_t - s * out) / (a + s), (x_t + a * out) / (a + s))
    return Estimate(a * x_t - s * out, s * x_t + a * out)


def eps_from_x0(x0: Tensor, x_t: Tensor, alpha_bar: Tensor) -> Tensor:
    """The noise implied by a (possibly corrected, e.g. snapped) ``x0`` at ``x_t``."""
    return estimate("x0", x0, x_t, alpha_bar).eps
