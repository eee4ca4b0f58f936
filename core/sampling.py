"""Generate samples from a denoiser for a batch of requested conditions, through guidance and a sampler."""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any, NamedTuple

import torch
from torch import Tensor

from crossguide import conditions as C
from crossguide import samplers
from crossguide.conditions import Condition
from crossguide.denoiser import Denoiser
from crossguide.errors import NonFiniteError, UsageError
from crossguide.guidance import Guidance, Guided
from crossguide.precision import Bf16, autocast
from crossguide.progress import bar
from crossguide.schedules import Schedule, respace


class Generation(NamedTuple):
    samples: Tensor  # decoded samples [N, ...] on the CPU
    nfe: float  # network evaluations per sample (guidance branches x steps)
    wall_s: float


@torch.no_grad()
def generate(
    model: Denoiser,
    schedule: Schedule,
    cond: Condition,
    guidance: Guidance | None = None,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 256,
    negative: Condition | None = None,
    snap: bool = True,
    bf16: Bf16 = "off",
    x_T: Tensor | None = None,  # noqa: N803
    helpers: Mapping[str, Any] | None = None,
    progress: bool = False,
) -> Generation:
    """Sample one example per entry of ``cond`` (``[N]`` per attribute); ``helpers`` are the extra models the
    guidance rule needs (a classifier, a weaker model).

    The initial noise of all N examples is drawn first from ``seed``, so settings that share a seed start
    from the same noise and differ only by their guidance (paired comparisons). Samples that come out NaN or
    infinite raise :class:`NonFiniteError` instead of being returned.
    """
    guidance = guidance or Guidance()
    sample = samplers.get(sampler)
    C.validate(cond, model.attributes)
    if negative is not None:
        C.validate(negative, model.attributes)
    if batch_size < 1:
        raise UsageError(f"batch_size must be >= 1, got {batch_size}")
    n = C.batch_size(cond)
    device = next(itertools.chain(model.parameters(), model.buffers())).device
    generator = torch.Generator().manual_seed(seed)
    if x_T is None:
        x_T = torch.randn((n, *model.sample_shape), generator=generator)  # noqa: N806
    elif not bool(torch.isfinite(x_T).all()):
        raise UsageError("initial noise x_T contains NaN or infinite values")
    model.eval()
    respace(schedule, steps)  # a step count the schedule cannot take fails here, before any work
    parts = [slice(i, i + batch_size) for i in range(0, n, batch_size)]
    # every batch's guided denoiser up front: a rule that cannot take these inputs fails before any work too
    guided = [Guided(model, guidance, C.to(C.index(cond, part), device),
                     negative=None if negative is None else C.to(C.index(negative, part), device),
                     snap=snap, helpers=helpers) for part in parts]
    outs, forwards, start = [], 0, time.perf_counter()
    # one bar per call (a setting), named by its guidance and sampler, advancing at every sampling step
    with bar(total=steps * len(parts), desc=f"{guidance.label()}, {guidance.terms_label()}, {sampler}",
             enabled=progress, unit="step") as steps_bar:
        for part, fn in zip(parts, guided, strict=True):
            with autocast(bf16, device):
                x0 = sample(fn, x_T[part].to(device), schedule, steps, generator=generator,
                            callback=lambda *_: steps_bar.update())
                if not bool(torch.isfinite(x0).all()):  # before decoding: a decoder may turn NaN into valid output
                    raise NonFiniteError(
                        f"sampling produced NaN or infinite values with {guidance.terms_label()} ({guidance.label()}, "
                        f"{sampler}, {steps} steps); the guidance weight or settings are too extreme for this model "
                        "(lower |w|); nothing was written")
                outs.append(model.decode(x0.float()).cpu())
            forwards += fn.forwards
    return Generation(torch.cat(outs), forwards / n, time.perf_counter() - start)
