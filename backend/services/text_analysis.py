"""Text analysis for lexical (BM25-style) retrieval in Russian and English, and the sparse vectors it yields.

Tokens are Unicode words, lower-cased, with ё -> е; stop words and one-letter words are dropped (digits
stay: "9 bar" matters). Each token is stemmed by its own script: Cyrillic with the Russian Snowball
stemmer, Latin with the English one, so mixed Russian/English text (common in mail and specs) needs no
language guess. Term ids are hashes, so nothing global is rebuilt when documents are added; the
collection-wide IDF is Qdrant's job (sparse vector with the IDF modifier).
"""

from __future__ import annotations

import functools
import re
import zlib
from collections import Counter

import snowballstemmer

_WORD = re.compile(r"\w+", re.UNICODE)
_CYRILLIC = re.compile(r"[а-я]")
_LATIN = re.compile(r"[a-z]")


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


STOP_EN = _words(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in"
    " into is it its may me my no not of on or our she should so than that the their them then there these"
    " they this to was we were what when where which who whom why will with would you your"
)
STOP_RU = _words(
    "а без более бы был была были было быть в вам вас весь во вот все всего всех вы где да даже для до"
    " его ее ей ему если есть еще же за здесь и из или им их к как какой когда кто ли либо мне может мы на"
    " над нас не него нее нет ни них но ну о об однако он она они оно от очень по под при с со так также"
    " такой там те тем то того тоже той только том ты у уже хотя чего чей чем что чтобы чье чья эта эти"
    " это я"
)

_RU = snowballstemmer.stemmer("russian")
_EN = snowballstemmer.stemmer("english")

# BM25 term-frequency saturation; the length norm uses a fixed average, since chunks are size-bounded.
K1, B, AVG_TERMS = 0.9, 0.4, 60.0


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    if _CYRILLIC.search(word):
        return str(_RU.stemWord(word))
    if _LATIN.search(word):
        return str(_EN.stemWord(word))
    return word  # digits, other scripts: as they are


def terms(text: str) -> list[str]:
    words = (w.replace("ё", "е") for w in _WORD.findall(text.lower()))
    return [stem(w) for w in words if (len(w) > 1 or w.isdigit()) and w not in STOP_EN and w not in STOP_RU]


def term_id(term: str) -> int:
    """A stable 31-bit id (Qdrant sparse indices are unsigned 32-bit)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def document_vector(text: str) -> tuple[list[int], list[float]]:
    """BM25 term weights of a chunk without IDF: tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / AVG_TERMS)
    ids: dict[int, float] = {}
    for term, tf in counts.items():
        ids[term_id(term)] = ids.get(term_id(term), 0.0) + tf * (K1 + 1) / (tf + norm)
    return list(ids), list(ids.values())


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term once; Qdrant multiplies by IDF."""
    ids = sorted({term_id(t) for t in terms(text)})
    return ids, [1.0] * len(ids)
