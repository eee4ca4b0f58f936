"""Device and bf16-autocast choices.

bf16 autocast pays on CPUs with native bf16 matrix units (avx512_bf16 / AMX) and on GPUs; elsewhere bf16 matmul
is emulated and slower than fp32 (measured 4x slower on an avx512 CPU without avx512_bf16), so ``auto`` turns it
on only where the hardware has it.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

import torch

from crossguide.config import Bf16
from crossguide.errors import check_choice


@functools.cache
def cpu_has_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def bf16_enabled(mode: Bf16, device: torch.device) -> bool:
    check_choice("bf16 mode", mode, ("auto", "on", "off"))
    if mode == "auto":
        return torch.cuda.is_bf16_supported() if device.type == "cuda" else cpu_has_bf16()
    return mode == "on"


@contextlib.contextmanager
def autocast(mode: Bf16, device: torch.device) -> Iterator[None]:
    """bf16 autocast on ``device`` when :func:`bf16_enabled`; a no-op otherwise."""
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16_enabled(mode, device)):
        yield
