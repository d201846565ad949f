"""Retrieval and answer metrics for the evaluation harness (pure functions, SQuAD conventions).

Retrieval: one relevant document per question (its own paragraph), binary relevance, so
nDCG@k = 1/log2(rank+1), Recall@k = [rank <= k], MRR@k = 1/rank, with rank the 1-based position of the
gold document among the retrieved documents (0 when it is not in the top k).
Answers: SQuAD v1.1 normalisation (lower case, no punctuation, no English articles, single spaces)
plus ё -> е for Russian; exact match and token F1 take the best gold answer.
"""

from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Iterable, Sequence

from backend.services.citations import abstains
from backend.services.text_analysis import is_cyrillic, stem

__all__ = ["abstains", "contains_gold", "contains_gold_any_form", "exact_match", "mean", "mrr_at", "ndcg_at",
           "percentile", "rank_of", "recall_at", "same_language", "token_f1"]  # fmt: skip

_PUNCT = set(string.punctuation) | set("«»„“”‘’—–…")
_ARTICLES = re.compile(r"\b(a|an|the)\b")
_LETTER = re.compile(r"[a-zа-яё]", re.IGNORECASE)


def rank_of(gold: str, ranked: Sequence[str], k: int) -> int:
    """1-based rank of `gold` among the first k distinct documents of `ranked` (chunk order), 0 if absent."""
    seen: list[str] = []
    for doc in ranked:
        if doc not in seen:
            seen.append(doc)
            if doc == gold:
                return len(seen) if len(seen) <= k else 0
        if len(seen) >= k:
            break
    return 0


def ndcg_at(rank: int) -> float:
    return 1.0 / math.log2(rank + 1) if rank else 0.0


def recall_at(rank: int, k: int) -> float:
    return 1.0 if 0 < rank <= k else 0.0


def mrr_at(rank: int) -> float:
    return 1.0 / rank if rank else 0.0


def normalize_answer(text: str) -> str:
    text = text.lower().replace("ё", "е")
    text = "".join(ch for ch in text if ch not in _PUNCT)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, golds: Iterable[str]) -> float:
    norm = normalize_answer(prediction)
    return float(any(norm == normalize_answer(g) for g in golds))


def token_f1(prediction: str, golds: Iterable[str]) -> float:
    pred = normalize_answer(prediction).split()
    best = 0.0
    for gold in golds:
        ref = normalize_answer(gold).split()
        common = sum((Counter(pred) & Counter(ref)).values())
        if common:
            precision, recall = common / len(pred), common / len(ref)
            best = max(best, 2 * precision * recall / (precision + recall))
    return best


def _stems(text: str) -> str:
    return " " + " ".join(stem(w) for w in normalize_answer(text).split()) + " "


def contains_gold_any_form(text: str, golds: Iterable[str]) -> float:
    """contains_gold with every word reduced to its Snowball stem: a Russian answer states the fact in the
    case its own sentence needs ("Ньютон потерял мяч" for the gold span "Ньютона"), which the SQuAD
    convention counts as wrong."""
    stems = _stems(text)
    return float(any(_stems(g) in stems for g in golds if normalize_answer(g)))


def contains_gold(text: str, golds: Iterable[str]) -> float:
    """Is a gold answer present (after normalisation) anywhere in `text`?"""
    norm = f" {normalize_answer(text)} "
    return float(any(f" {normalize_answer(g)} " in norm for g in golds if normalize_answer(g)))


def same_language(answer: str, question: str) -> bool:
    """Is the answer written in the question's script (Cyrillic or not)? One without letters ("17-16 [1].")
    is in any language."""
    return not _LETTER.search(answer) or is_cyrillic(answer) == is_cyrillic(question)


def mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile by nearest rank (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
