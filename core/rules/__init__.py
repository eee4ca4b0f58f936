"""Guidance rules as plug-ins: a registry plus the entry-point group ``crossguide.guidance``.

The rules shipped with crossguide register themselves when this package is imported; an installed package adds
one through an entry point (name: the rule's name, value: a :class:`Rule` subclass), and a script or a test
calls :func:`register`. Every command that takes ``--rule`` resolves it here, so a new rule runs through
``bench``, ``sample`` and the study without any edit to ``core/``. The contract is :mod:`crossguide.rules.base`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, TypeVar

from crossguide.errors import UsageError
from crossguide.plugins import load_group, lookup
from crossguide.rules.base import Output, Rule, StepInput, combine, linear_coefficients

GROUP = "crossguide.guidance"
_RULES: dict[str, type[Rule]] = {}
_BROKEN: dict[str, str] = {}
_loaded = False
R = TypeVar("R", bound=type[Rule])


def register(cls: R) -> R:
    """Add a rule class under its ``name`` (usable as a decorator); a later registration replaces an earlier one."""
    if not (isinstance(cls, type) and issubclass(cls, Rule) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"a guidance rule must be a dataclass subclass of crossguide.rules.Rule, got {cls!r}")
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"guidance rule {cls.__name__} has no name")
    _RULES[name] = cls
    return cls


def _load_entry_points() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    from crossguide.rules import apg, auto, classifier, linear, zerostar  # noqa: F401  (the shipped rules register)

    load_group(GROUP, lambda _, cls: register(cls), _BROKEN)


def names() -> list[str]:
    _load_entry_points()
    return sorted(_RULES)


def get(name: str) -> type[Rule]:
    _load_entry_points()
    return lookup("guidance rule", name, _RULES, _BROKEN)


def make(name: str, options: Mapping[str, Any] | None = None) -> Rule:
    """An instance of rule ``name`` with ``options`` (strings from the command line are converted to the type
    of each option's default); unknown options and bad values raise :class:`UsageError`."""
    cls = get(name)
    known = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, raw in dict(options or {}).items():
        if key not in known:
            valid = ", ".join(known) or "(none)"
            raise UsageError(f"unknown option {key!r} for guidance rule {name!r}; valid: {valid}")
        values[key] = _convert(name, key, raw, known[key].default)
    try:
        return cls(**values)
    except UsageError:
        raise
    except (TypeError, ValueError) as e:
        raise UsageError(f"guidance rule {name!r}: {e}") from e


def _convert(rule: str, key: str, raw: Any, default: Any) -> Any:
    """``raw`` as the type of ``default`` (bool, int, float or str)."""
    kind = type(default)
    if isinstance(raw, kind) and not (kind is float and isinstance(raw, bool)):
        return raw
    text = str(raw).strip()
    try:
        if kind is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError
            return text.lower() in ("true", "1")
        if kind is int:
            return int(float(text)) if float(text).is_integer() else int(text)
        if kind is float:
            return float(text)
        return text
    except ValueError as e:
        raise UsageError(f"option {key!r} of guidance rule {rule!r} must be {kind.__name__}, got {raw!r}") from e


__all__ = ["GROUP", "Output", "Rule", "StepInput", "combine", "get", "linear_coefficients", "make", "names",
           "register"]
