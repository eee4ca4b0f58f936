"""Conditions: one integer per attribute per example, ``-1`` meaning "dropped" (null).

A dataset declares its attributes and their value names, e.g. ``{"shape": ["circle", ...], "color": [...]}``.
Classifier-free guidance (Ho & Salimans 2021, Sec. 3.2) trains one network on conditional and unconditional
inputs by dropping the condition; :func:`drop` implements the two-level variant used here: with probability
``p_uncond`` every attribute is dropped (the paper's joint training), otherwise each attribute independently
with probability ``p_attr``, so partial conditions are learned and can be composed at sampling time.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor

from crossguide.errors import UsageError

NULL = -1
Condition = dict[str, Tensor]  # attribute -> LongTensor[B]; NULL where the attribute is dropped
Attributes = Mapping[str, Sequence[str]]  # attribute -> value names
Choice = dict[str, int]  # one example's condition: attribute -> value index (absent = dropped)


# a comma outside brackets: "a=1,b=[1,2]" splits into "a=1" and "b=[1,2]" (JSON lists as values)
_top_level_commas = re.compile(r",(?![^\[]*\])")


def pairs(text: str, option: str, kind: str = "attribute") -> list[tuple[str, str]]:
    """``"a=x, b=y"`` -> ``[("a", "x"), ("b", "y")]``, names and values stripped; empty parts between commas
    are skipped (commas inside ``[...]`` belong to the value), ``""`` is no pairs.

    A part without ``=``, an empty ``kind`` name, a name given twice (which would silently keep one of the two
    values) or commas and nothing else raise :class:`UsageError` naming ``option`` (e.g. ``--cond``).
    """
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in _top_level_commas.split(text))):
        name, sep, value = (s.strip() for s in part.partition("="))
        if not sep or not name:
            raise UsageError(f"{option} part {part!r} is not of the form {kind}=value")
        if name in out:
            raise UsageError(f"{option} gives {kind} {name!r} twice (values {out[name]!r} and {value!r}); give "
                             "each once")
        out[name] = value
    if text.strip() and not out:
        raise UsageError(f"{option} {text!r} holds no {kind}=value part (give '' for none)")
    return list(out.items())


def parse(text: str, attributes: Attributes, option: str = "condition") -> Choice:
    """Resolve ``"shape=circle,color=red"`` to value indices; ``""`` is the null condition. ``option`` names
    where the text came from in errors (e.g. ``--cond``)."""
    return resolve(dict(pairs(text, option)), attributes)


def check_attribute(name: str, attributes: Attributes) -> None:
    """Raise :class:`UsageError`, listing the valid names, unless ``name`` is one of ``attributes``."""
    if name not in attributes:
        raise UsageError(f"unknown attribute {name!r}; valid: {', '.join(attributes)}")


def resolve(named: Mapping[str, str], attributes: Attributes) -> Choice:
    """Map attribute/value names to indices, with an error that lists the valid names."""
    choice: Choice = {}
    for name, value in named.items():
        check_attribute(name, attributes)
        values = list(attributes[name])
        if value not in values:
            raise UsageError(f"unknown value {value!r} for attribute {name!r}; valid: {', '.join(values)}")
        choice[name] = values.index(value)
    return choice


def names(choice: Mapping[str, int], attributes: Attributes) -> dict[str, str]:
    """Inverse of :func:`resolve`; dropped attributes are left out."""
    return {a: attributes[a][int(v)] for a, v in choice.items() if int(v) != NULL}


def all_choices(attributes: Attributes, keep: Sequence[str] | None = None) -> list[Choice]:
    """Every combination of values of the ``keep`` attributes (default: all), in a fixed order."""
    keep = list(attributes) if keep is None else list(keep)
    ranges = [range(len(attributes[a])) for a in keep]
    return [dict(zip(keep, combo, strict=True)) for combo in itertools.product(*ranges)]


def stack(choices: Sequence[Mapping[str, int]], attributes: Attributes) -> Condition:
    """A batch condition from per-example choices; attributes a choice leaves out are NULL."""
    return {
        a: torch.tensor([int(c.get(a, NULL)) for c in choices], dtype=torch.long) for a in attributes
    }


def unstack(cond: Condition) -> list[Choice]:
    """Per-example choices from a batch condition, NULL attributes left out."""
    size = batch_size(cond)
    return [{a: int(v[i]) for a, v in cond.items() if int(v[i]) != NULL} for i in range(size)]


def batch_size(cond: Condition) -> int:
    sizes = {int(v.shape[0]) for v in cond.values()}
    if len(sizes) != 1:
        raise ValueError(f"condition tensors disagree on batch size: {sorted(sizes)}")
    return sizes.pop()


def null_like(cond: Condition) -> Condition:
    """The unconditional (all-dropped) condition with ``cond``'s batch size and attributes."""
    return {a: torch.full_like(v, NULL) for a, v in cond.items()}


def select(cond: Condition, keep: Sequence[str] | None) -> Condition:
    """Keep the ``keep`` attributes (``None`` keeps all) and drop the rest."""
    if keep is None:
        return dict(cond)
    unknown = set(keep) - set(cond)
    if unknown:
        raise UsageError(f"unknown attribute(s) {sorted(unknown)}; valid: {', '.join(cond)}")
    return {a: v if a in keep else torch.full_like(v, NULL) for a, v in cond.items()}


def concat(conds: Sequence[Condition]) -> Condition:
    """Concatenate batch conditions along the batch dimension."""
    return {a: torch.cat([c[a] for c in conds]) for a in conds[0]}


def index(cond: Condition, idx: Tensor | slice) -> Condition:
    return {a: v[idx] for a, v in cond.items()}


def to(cond: Condition, device: torch.device | str) -> Condition:
    return {a: v.to(device) for a, v in cond.items()}


def validate(cond: Condition, attributes: Attributes) -> None:
    """Check that ``cond`` names exactly the declared attributes with in-range values."""
    if set(cond) != set(attributes):
        raise UsageError(f"condition attributes {sorted(cond)} do not match the declared {sorted(attributes)}")
    for a, v in cond.items():
        n = len(attributes[a])
        bad = (v < NULL) | (v >= n)
        if bool(bad.any()):
            raise UsageError(f"attribute {a!r} has value {int(v[bad][0])}; valid: -1 (null) to {n - 1}")


def drop(cond: Condition, p_uncond: float, p_attr: float, generator: torch.Generator | None = None) -> Condition:
    """Two-level condition dropout for joint conditional/unconditional training (Ho & Salimans 2021, Alg. 1).

    With probability ``p_uncond`` all attributes of an example are dropped; otherwise each attribute is dropped
    independently with probability ``p_attr``.
    """
    for name, p in (("p_uncond", p_uncond), ("p_attr", p_attr)):
        if not 0.0 <= p <= 1.0:
            raise UsageError(f"{name} must be in [0, 1], got {p}")
    size = batch_size(cond)
    device = next(iter(cond.values())).device
    uncond = torch.rand(size, generator=generator, device=device) < p_uncond  # [B]
    out = {}
    for a in sorted(cond):  # sorted: the random stream must not depend on dict order
        dropped = uncond | (torch.rand(size, generator=generator, device=device) < p_attr)
        out[a] = torch.where(dropped, torch.full_like(cond[a], NULL), cond[a])
    return {a: out[a] for a in cond}
