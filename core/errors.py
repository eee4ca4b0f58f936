"""User-facing errors: the CLI prints these as one line instead of a traceback."""

from __future__ import annotations

from collections.abc import Iterable


class UsageError(ValueError):
    """A mistake in what the user asked for (bad value, bad file); the message names it and the valid choices."""


def check_choice(what: str, value: object, choices: Iterable[object]) -> None:
    """Raise :class:`UsageError` unless ``value`` is one of ``choices``."""
    choices = list(choices)
    if value not in choices:
        valid = ", ".join(str(c) for c in choices)
        raise UsageError(f"unknown {what} {value!r}; valid: {valid}")
