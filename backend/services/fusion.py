"""Ranking steps after the store has scored candidates: score fusion, a per-document cap and MMR.

Pure functions over `ScoredChunk` lists, so each is tested on hand-computed values.

Why a weighted score fusion and not rank fusion: scores min-max normalised over the candidates keep
how far apart the candidates are, which ranks throw away, and the weight can follow how much each side
is worth for the question's script. Measured through the service on the XQuAD dev splits with
multilingual-e5-small (docs/evaluation.md): weighted 0.7 / 0.6 (Latin / Cyrillic) nDCG@10 en 0.981,
ru 0.979; Qdrant's DBSF 0.980 / 0.977, RRF 0.978 / 0.971. (With the English-only MiniLM, whose dense
side ranks Russian almost at random, rank fusion lost 0.12-0.18 on Russian.)
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from backend.adapters.store import ScoredChunk


def _minmax(values: list[float]) -> list[float]:
    lo, hi = min(values), max(values)
    if hi <= lo:
        return [1.0 if hi > 0 else 0.0] * len(values)  # one candidate, or all tied: keep any signal
    return [(v - lo) / (hi - lo) for v in values]


def dense_side(chunk: ScoredChunk, sentence_weight: float) -> float:
    """The dense side's score: the chunk's cosine, mixed with that of its sentence nearest the question.

    A question that one sentence answers is nearer that sentence than the whole chunk, whose other
    sentences pull its vector elsewhere; the chunk's own cosine still carries what the sentences say
    together. Measured on the XQuAD dev splits (docs/evaluation.md): at 0.6 with the quadratic mean, nDCG@10
    en 0.981 -> 0.986, ru 0.978 -> 0.981. A chunk without sentence vectors (a space created before them) is
    its cosine."""
    cosine = chunk.dense_score or 0.0
    if chunk.sentence_score is None or chunk.dense_score is None:
        return cosine
    return (1 - sentence_weight) * cosine + sentence_weight * chunk.sentence_score


def weighted_fusion(
    candidates: list[ScoredChunk],
    dense_weight: float,
    other_language: Sequence[bool] | None = None,
    cross_language_offset: float = 0.0,
    *,
    sentence_weight: float = 0.0,
    power: float = 1.0,
) -> list[ScoredChunk]:
    """score = (w * minmax(dense)^p + (1 - w) * minmax(sparse)^p)^(1/p), best first; ties keep the dense order.

    `dense` is `dense_side` (the chunk's cosine mixed with its best sentence's). With `power` 2 (a weighted
    quadratic mean) a candidate that one side ranks near the top gains on one that both rank middling; the
    p-th root keeps the score on the scale the cut of weak passages reads (a candidate scored x by both
    sides scores x, as with p 1).

    `other_language` flags the candidates written in the other script than the question. When the
    candidates hold both languages (a Russian archive with English specifications), a chunk in the other
    language cannot share the question's words, so its lexical side says nothing about it: it gets its
    dense side's value there too (or its own lexical one where higher: shared names and numbers), and its
    cosine is first raised by `cross_language_offset`, as the embedder finds a question and its answer
    less alike across languages. Without that, Russian chunks that merely share a word outranked the
    English one that answers: R@5 0.40 against 0.94 on XQuAD in such an archive (docs/evaluation.md).
    Candidates all in one language are fused as before."""
    if not candidates:
        return []
    flags = list(other_language) if other_language is not None else [False] * len(candidates)
    both = any(flags) and not all(flags)
    other = [both and f for f in flags]
    offset = [cross_language_offset if o else 0.0 for o in other]
    dense = _minmax([dense_side(c, sentence_weight) + off for c, off in zip(candidates, offset, strict=True)])
    sparse = _minmax([c.sparse_score or 0.0 for c in candidates])
    for c, d, s, o in zip(candidates, dense, sparse, other, strict=True):
        lexical = max(s, d) if o else s
        c.score = (dense_weight * d**power + (1 - dense_weight) * lexical**power) ** (1 / power)
    return sorted(candidates, key=lambda c: -c.score)


def cap_per_document(ranked: list[ScoredChunk], cap: int) -> list[ScoredChunk]:
    """At most `cap` chunks of any one document, keeping the best-ranked ones (0: no cap)."""
    if cap <= 0:
        return ranked
    seen: Counter[str] = Counter()
    out = []
    for c in ranked:
        doc = str(c.payload.get("document_id", c.id))
        if seen[doc] < cap:
            seen[doc] += 1
            out.append(c)
    return out


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


def mmr(ranked: list[ScoredChunk], k: int, lambda_: float) -> list[ScoredChunk]:
    """Maximal marginal relevance: pick, one at a time, the candidate maximising
    lambda * relevance - (1 - lambda) * (highest cosine similarity to a chunk already picked).

    Relevance is the candidate's score min-max normalised over the candidates, so the trade-off means
    the same whatever the fusion. Candidates without a dense vector count as dissimilar to everything.
    """
    if not ranked:
        return []
    relevance = _minmax([c.score for c in ranked])
    pool = list(range(len(ranked)))
    picked: list[int] = []
    while pool and len(picked) < k:
        best, best_value = pool[0], -math.inf
        chosen = [v for j in picked if (v := ranked[j].vector) is not None]
        for i in pool:
            vec = ranked[i].vector
            redundancy = max((_cosine(vec, v) for v in chosen), default=0.0) if vec is not None else 0.0
            value = lambda_ * relevance[i] - (1 - lambda_) * redundancy
            if value > best_value:
                best, best_value = i, value
        picked.append(best)
        pool.remove(best)
    return [ranked[i] for i in picked]
