"""Entry-point plumbing shared by the registries of modalities, datasets and guidance rules.

A plug-in's top-level module (the one its entry point names) should not import torch: the command line reads
every registry to answer ``--help`` and ``crossguide list``, in a fraction of the seconds torch takes to load. It
imports its heavy parts inside the functions that use them, or names them with :class:`Deferred`.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import Any, TypeVar

from crossguide.errors import UsageError

T = TypeVar("T")


def load_group(group: str, add: Callable[..., None], broken: dict[str, str], *,
               with_package: bool = False) -> dict[str, str]:
    """Call ``add(name, loaded object)`` (``with_package``: ``add(name, object, distribution name)``) for every
    installed entry point of ``group``; one that fails to load (or to register) is recorded in ``broken``
    (name -> reason, returned) instead of taking the others down."""
    for ep in metadata.entry_points(group=group):
        try:
            if with_package:
                add(ep.name, ep.load(), ep.dist.name if ep.dist is not None else provider(ep.module))
            else:
                add(ep.name, ep.load())
        except Exception as e:
            broken[ep.name] = f"{e.__class__.__name__}: {e}"
    return broken


def provider(module: str) -> str:
    """The installed distribution that holds ``module`` (``"pkg.mod"`` or ``"pkg.mod:name"``), else its top-level
    package name."""
    top = module.partition(":")[0].partition(".")[0]
    return next(iter(metadata.packages_distributions().get(top, [])), top)


def lookup(kind: str, name: str, found: Mapping[str, T], broken: Mapping[str, str]) -> T:
    """``found[name]``, or a one-line :class:`UsageError` naming the valid choices (or why a plug-in is broken)."""
    if name in broken and name not in found:
        raise UsageError(f"{kind} {name!r} is installed but failed to load ({broken[name]})")
    if name not in found:
        raise UsageError(f"unknown {kind} {name!r}; valid: {', '.join(sorted(found)) or '(none installed)'}")
    return found[name]


@dataclass(frozen=True)
class Deferred:
    """The function ``"package.module:name"``, imported on its first call, e.g. a dataset factory that needs
    torch, named by a plug-in without importing it."""

    target: str

    def load(self) -> Callable[..., Any]:
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.load()(*args, **kwargs)
