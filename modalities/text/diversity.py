"""Objective diversity of generated sentences: distinct-n (Li et al. 2016, Sec. 4.3) and self-BLEU (Zhu et al.
2018, Texygen), both within the group of sentences generated for one condition and averaged over groups, like
the core's within-condition feature diversity.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

Sentence = Sequence[str]


def ngrams(tokens: Sentence, n: int) -> list[tuple[str, ...]]:
    return [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]


def distinct(sentences: Sequence[Sentence], n: int) -> float:
    """Distinct n-grams over all n-grams of ``sentences`` (1 = no n-gram repeats); NaN without n-grams."""
    grams = [g for s in sentences for g in ngrams(s, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def bleu(hypothesis: Sentence, references: Sequence[Sentence], max_n: int = 4, epsilon: float = 0.1) -> float:
    """Sentence BLEU (Papineni et al. 2002, Eq. in Sec. 2.3): clipped n-gram precisions up to ``max_n``,
    geometric mean, brevity penalty against the closest reference length; a zero count becomes ``epsilon``
    (Chen & Cherry 2014, smoothing 1, as NLTK's ``method1`` that Texygen uses). As there, a hypothesis shorter
    than ``n`` counts 0 matches of 1 n-gram (smoothed, not 0), and one without a single matching word scores 0."""
    if not hypothesis or not references:
        return 0.0
    log_p = 0.0
    for n in range(1, max_n + 1):
        hyp = Counter(ngrams(hypothesis, n))
        most = Counter()
        for ref in references:
            most |= Counter(ngrams(ref, n))
        clipped = sum(min(c, most[g]) for g, c in hyp.items())
        if n == 1 and clipped == 0:
            return 0.0
        log_p += math.log((clipped or epsilon) / max(1, sum(hyp.values()))) / max_n
    h = len(hypothesis)
    r = min((len(ref) for ref in references), key=lambda k: (abs(k - h), k))
    bp = 1.0 if h > r else math.exp(1 - r / h)
    return bp * math.exp(log_p)


def self_bleu(sentences: Sequence[Sentence]) -> float:
    """Mean BLEU of each sentence against all the others (higher = less diverse); NaN for fewer than two."""
    if len(sentences) < 2:
        return math.nan
    return sum(bleu(s, sentences[:i] + sentences[i + 1 :]) for i, s in enumerate(sentences)) / len(sentences)


def grouped(metric: Callable[[list[Sentence]], float], sentences: Sequence[Sentence],
            groups: Sequence[Hashable]) -> float:
    """``metric`` over each group of two or more sentences, averaged over groups (NaN values skipped)."""
    members: dict[Hashable, list[Sentence]] = {}
    for s, g in zip(sentences, groups, strict=True):
        members.setdefault(g, []).append(s)
    values = [v for m in members.values() if len(m) >= 2 and not math.isnan(v := metric(m))]
    return sum(values) / len(values) if values else math.nan
