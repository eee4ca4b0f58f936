"""A template grammar that both generates sentences and parses them exactly (a finite, regular language).

A *pattern* is a space-separated template of literal tokens and slots:

* ``{food.adj}``: a phrase for an attribute's value, in one of its forms (``adj``, ``np``, ``pp``...);
  ``{food.adj?}`` may be left out, which is how a sentence omits an attribute;
* ``{name}``: a filler phrase (always there); ``{near?}``: a filler phrase that is there half the time;
* ``{a}``: the indefinite article, rendered ``a`` or ``an`` from the next token.

Each attribute has at most one slot per pattern, so a sentence mentions each attribute at most once.
:meth:`Grammar.accepts` compiles every pattern to one regular expression over tokens (and checks article
agreement), so it accepts exactly the sentences :meth:`Grammar.sample` can produce.
"""

from __future__ import annotations

import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

ARTICLE = "{a}"
VOWELS = frozenset("aeiouAEIOU")

Phrases = Mapping[str, Mapping[str, Sequence[str]]]  # form -> value name -> phrases


@dataclass(frozen=True)
class Slot:
    """One ``{...}`` in a pattern: an attribute slot (``form`` set) or a filler slot."""

    name: str
    form: str | None
    optional: bool

    @classmethod
    def parse(cls, token: str) -> Slot | None:
        if not (token.startswith("{") and token.endswith("}")) or token == ARTICLE:
            return None
        body = token[1:-1]
        optional = body.endswith("?")
        name, _, form = body.rstrip("?").partition(".")
        return cls(name, form or None, optional)


def article(next_token: str) -> str:
    """``an`` before a vowel-initial word, ``a`` otherwise."""
    return "an" if next_token[:1] in VOWELS else "a"


def join(tokens: Sequence[str]) -> str:
    """Tokens -> text, with no space before ``,`` and ``.`` (the tokenizer's decoding clean-up)."""
    return " ".join(tokens).replace(" ,", ",").replace(" .", ".")


class Grammar:
    """Patterns over attribute phrases and filler phrases.

    Args:
        attributes: attribute -> value names.
        phrases: attribute -> form -> value name -> phrases (each phrase a space-separated token string).
        fillers: filler name -> phrases.
        patterns: the templates (see the module docstring).
    """

    def __init__(self, attributes: Mapping[str, Sequence[str]], phrases: Mapping[str, Phrases],
                 fillers: Mapping[str, Sequence[str]], patterns: Sequence[str]):
        self.attributes = {a: list(v) for a, v in attributes.items()}
        self.phrases, self.fillers = phrases, fillers
        self.patterns = [[(t, Slot.parse(t)) for t in p.split()] for p in patterns]
        self._slots = []  # per pattern: attribute -> its slot
        for pattern in self.patterns:
            slots = [s for _, s in pattern if s is not None and s.form is not None]
            if len({s.name for s in slots}) != len(slots):
                raise ValueError(f"pattern {' '.join(t for t, _ in pattern)!r} has two slots for one attribute")
            self._slots.append({s.name: s for s in slots})
        self._applicable: dict[frozenset[str], list[int]] = {}

    def applicable(self, mention: set[str]) -> list[int]:
        """Indices of the patterns that can mention exactly the attributes in ``mention``."""
        key = frozenset(mention)
        if key not in self._applicable:
            self._applicable[key] = [
                i for i, slots in enumerate(self._slots)
                if key <= set(slots) and all(s.optional for a, s in slots.items() if a not in key)
            ]
        return self._applicable[key]

    def sample(self, values: Mapping[str, int], mention: set[str], rng: random.Random) -> list[str]:
        """Tokens of one sentence that states ``values[a]`` for every ``a`` in ``mention`` and nothing else."""
        choices = self.applicable(mention)
        if not choices:
            raise ValueError(f"no pattern mentions exactly {sorted(mention)}")
        tokens: list[str] = []
        for token, slot in self.patterns[rng.choice(choices)]:
            if slot is None:
                tokens.append(token)
            elif slot.form is not None:
                if slot.name in mention:
                    value = self.attributes[slot.name][values[slot.name]]
                    tokens += rng.choice(self.phrases[slot.name][slot.form][value]).split()
            elif not slot.optional or rng.random() < 0.5:
                tokens += rng.choice(self.fillers[slot.name]).split()
        return [article(tokens[i + 1]) if t == ARTICLE else t for i, t in enumerate(tokens)]

    def _slot_regex(self, slot: Slot) -> str:
        if slot.form is None:
            options = self.fillers[slot.name]
        else:
            options = [p for ps in self.phrases[slot.name][slot.form].values() for p in ps]
        body = "|".join(_tokens_regex(p.split()) for p in sorted(set(options), key=len, reverse=True))
        return f"(?:{body}){'?' if slot.optional else ''}"

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        alternatives = []
        for pattern in self.patterns:
            parts = []
            for token, slot in pattern:
                if token == ARTICLE:
                    parts.append("(?: a| an)")
                else:
                    parts.append(_tokens_regex([token]) if slot is None else self._slot_regex(slot))
            alternatives.append("".join(parts))
        return re.compile("(?:" + "|".join(alternatives) + ")")

    def accepts(self, tokens: Sequence[str]) -> bool:
        """Whether some pattern produces exactly ``tokens`` (with ``a``/``an`` agreeing with the next word)."""
        for i, t in enumerate(tokens):
            if t in ("a", "an") and (i + 1 == len(tokens) or t != article(tokens[i + 1])):
                return False
        return self._regex.fullmatch("".join(" " + t for t in tokens)) is not None


def _tokens_regex(tokens: Sequence[str]) -> str:
    """A regex matching ``" tok1 tok2 ..."`` (every token preceded by one space)."""
    return "".join(" " + re.escape(t) for t in tokens)
