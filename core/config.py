"""Training configs, free of torch: presets declare them and the command line lists them without loading it.

:class:`TrainConfig` is the trainer's (:mod:`crossguide.trainer`); :func:`training` turns a denoiser's into a noise
classifier's (:mod:`crossguide.classifier`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Literal, TypeVar

from crossguide.errors import UsageError, check_choice

T = TypeVar("T")

MAX_W = 1000.0  # largest |w| accepted (the paper's grid stops at 4); beyond it guidance is rounding noise
Bf16 = Literal["auto", "on", "off"]  # bf16 autocast: "auto" only where the hardware has bf16 (crossguide.precision)


@dataclass(frozen=True)
class TrainConfig:
    """How a denoiser (or a noise classifier) is trained; JSON round-trippable (:meth:`from_json`)."""

    steps: int = 2000
    batch_size: int = 128  # global batch; split evenly across DDP ranks
    lr: float = 2e-4
    weight_decay: float = 0.0
    warmup: int = 100  # linear warmup steps, then cosine decay to min_lr_ratio * lr at `steps`
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0  # max global grad norm; 0 disables
    ema_decay: float = 0.999  # effective decay min(ema_decay, (1 + s) / (10 + s)) so short runs still average
    p_uncond: float = 0.1  # drop every attribute (the paper found 0.1-0.2 best, Ho & Salimans 2021, Table 1)
    p_attr: float = 0.1  # otherwise drop each attribute independently: partial conditions for composition
    bf16: Bf16 = "auto"
    seed: int = 0
    checkpoint_every: int = 0  # also save every this many steps; 0: by time only
    # save at least this often, so a kill (power cut, OOM killer, SIGKILL) loses at most about this much work;
    # a toy-sized save takes milliseconds, a large model's seconds, small beside a minute. 0: by step count only
    # (and at the end, on Ctrl-C and on SIGTERM, always)
    checkpoint_minutes: float = 1.0
    device: str = "auto"
    # keep the EMA weights at this fraction of `steps` as the weaker model of autoguidance (Karras et al. 2024
    # guide with a less-trained model); 0: keep none
    weak_at: float = 0.25

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size"):
            if getattr(self, name) < 1:
                raise UsageError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("checkpoint_every", "checkpoint_minutes"):
            if not getattr(self, name) >= 0:
                raise UsageError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("p_uncond", "p_attr"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise UsageError(f"{name} must be in [0, 1], got {p}")
        if not self.lr > 0:
            raise UsageError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise UsageError(f"ema_decay must be in [0, 1), got {self.ema_decay}")
        if not 0.0 <= self.weak_at < 1.0:
            raise UsageError(f"weak_at must be a fraction in [0, 1), got {self.weak_at}")

    @property
    def weak_step(self) -> int | None:
        """The step whose EMA weights are kept for autoguidance (``None``: none kept)."""
        return max(1, round(self.weak_at * self.steps)) if self.weak_at > 0 else None

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    def lr_at(self, step: int) -> float:
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = min(1.0, (step - self.warmup) / max(1, self.steps - self.warmup))
        return self.lr * (self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def training(base: TrainConfig, **overrides: Any) -> TrainConfig:
    """A noise classifier's training config from a denoiser's: the labels are clean (no condition dropout) and
    there is no weak copy to keep."""
    return replace(base, **{"p_uncond": 0.0, "p_attr": 0.0, "weak_at": 0.0, **overrides})


def dataclass_from_json(cls: type[T], data: Mapping[str, Any], what: str) -> T:
    """``cls(**data)`` for a config dataclass read from JSON; an unknown key is a one-line error naming ``what``
    and the valid keys."""
    for key in data:
        check_choice(what, key, [f.name for f in fields(cls)])  # type: ignore[arg-type]
    return cls(**data)


def dataclass_to_json(config: Any) -> dict[str, Any]:
    """A config dataclass as JSON-ready values (tuples as lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()}
