"""User-facing errors: the CLI prints these as one line instead of a traceback."""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterable


class UsageError(ValueError):
    """A mistake in what the user asked for (bad value, bad file); the message names it and the valid choices."""


class NonFiniteError(UsageError, FloatingPointError):
    """A computation the user's settings drove out of range produced NaN or infinite values (e.g. a guidance
    weight too large for the model); nothing computed from them is written."""


def check_choice(what: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`UsageError` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(str(c) for c in choices)
        raise UsageError(f"unknown {what} {value!r}; valid: {valid}")


def check_range(what: str, value: float, lo: float, hi: float, *, open_lo: bool = False) -> None:
    """Raise :class:`UsageError` unless ``value`` is a finite number in ``[lo, hi]`` (``(lo, hi]`` with
    ``open_lo``)."""
    finite = isinstance(value, int) or math.isfinite(value)  # an int of any size is finite (and floats overflow)
    if not (finite and (value > lo if open_lo else value >= lo) and value <= hi):
        kind = "an integer" if isinstance(value, int) else "a finite number"
        bounds = f"{'(' if open_lo else '['}{_number(lo)}, {_number(hi)}]"
        raise UsageError(f"{what} must be {kind} in {bounds}, got {_number(value)}")


def _number(x: float) -> str:
    """``x`` for a message: floats in ``%g``, integers in full up to 20 digits."""
    if not isinstance(x, int):
        return f"{x:g}"
    text = str(x)
    return text if len(text) <= 20 else f"{text[:8]}... ({len(text.lstrip('-'))} digits)"


def describe_os_error(e: OSError) -> str:
    """One line for a failed file operation that names the path(s): ``permission denied: '/data/cats'``."""
    reason = (e.strerror or errno.errorcode.get(e.errno or 0, "") or e.__class__.__name__).lower()
    paths = [os.fsdecode(p) for p in (e.filename, e.filename2) if p is not None]
    return f"{reason}: {' -> '.join(repr(p) for p in paths)}" if paths else reason
