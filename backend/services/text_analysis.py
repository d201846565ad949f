"""Text analysis for lexical (BM25-style) retrieval in Russian and English, and the sparse vectors it yields.

Tokens are Unicode words, lower-cased, with ё -> е; stop words and one-letter words are dropped (digits
stay: "9 bar" matters). Each token is stemmed by its own script: Cyrillic with the Russian Snowball
stemmer, Latin with the English one, so mixed Russian/English text (common in mail and specs) needs no
language guess. A Cyrillic stem also yields its three-letter prefix as a second, weaker-by-IDF term:
Snowball leaves many Russian forms apart (suffix alternations, prefixed verbs share less), and the
prefix term recovers them (XQuAD-ru nDCG@10 0.948 -> 0.960, docs/evaluation.md). Term ids are hashes,
so nothing global is rebuilt when documents are added; the collection-wide IDF is Qdrant's job (sparse
vector with the IDF modifier).

Chunks are sized for the embedder (about 200 characters of Russian for MiniLM), too little text for
lexical scoring: a chunk's sparse vector is computed over a window of its neighbours in the same
document (`lexical_windows`), while the chunk itself is what is returned and quoted.
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

# BM25 term-frequency saturation and length norm; the average length is the window size, since windows
# are size-bounded (no collection-wide statistic to keep up to date).
K1, B = 0.9, 0.4
PREFIX_LETTERS = 3
# Recorded in each collection: a change here means the stored sparse vectors must be recomputed
# (python -m cli.migrate).
ANALYZER_VERSION = "snowball-ru-en+cyr-prefix3/k1=0.9/b=0.4/v1"


# Where a sentence ends inside a chunk: terminal punctuation before a capital letter, a list item or a line.
SENTENCE_END = re.compile(r"(?<=[.!?…])\s+(?=[\"«(]?[A-ZА-ЯЁ0-9])|\n+")
MIN_SENTENCE_CHARS = 11  # shorter pieces ("Да.", "ок", a list number) say nothing alone


def sentences(text: str) -> list[str]:
    """The sentences of a chunk worth a vector of their own (services/ingest.py, SENTENCES in the store)."""
    parts = (" ".join(s.split()) for s in SENTENCE_END.split(text))
    return [s for s in parts if len(s) >= MIN_SENTENCE_CHARS]


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    if _CYRILLIC.search(word):
        return str(_RU.stemWord(word))
    if _LATIN.search(word):
        return str(_EN.stemWord(word))
    return word  # digits, other scripts: as they are


def stems(text: str) -> list[str]:
    """The text's words as the lexical side sees them: stemmed, stop words and one-letter words left out."""
    words = (w.replace("ё", "е") for w in _WORD.findall(text.lower()))
    return [stem(w) for w in words if (len(w) > 1 or w.isdigit()) and w not in STOP_EN and w not in STOP_RU]


def terms(text: str) -> list[str]:
    """`stems` and, for each Cyrillic stem, its prefix term: what the sparse vectors are built from."""
    found = stems(text)
    prefixes = ["~" + s[:PREFIX_LETTERS] for s in found if len(s) > PREFIX_LETTERS and _CYRILLIC.match(s)]
    return found + prefixes


def is_cyrillic(text: str) -> bool:
    """Whether most letters of `text` are Cyrillic (a Russian question, possibly with Latin names)."""
    return cyrillic_share(text) > 0.5


def cyrillic_share(text: str) -> float:
    """The share of Cyrillic letters among the Cyrillic and Latin ones of `text` (0.5: it has neither)."""
    low = text.lower()
    cyr, lat = len(_CYRILLIC.findall(low.replace("ё", "е"))), len(_LATIN.findall(low))
    return cyr / (cyr + lat) if cyr + lat else 0.5


def recorded_cyrillic_share(text: str) -> float:
    """`cyrillic_share` as a chunk's payload records it (three decimals: the value is read against 0.1 and 0.5)."""
    return round(cyrillic_share(text), 3)


# Under this share of its letters in the question's script (Cyrillic or Latin), a text is in the other language.
OTHER_LANGUAGE_SHARE = 0.1


def share_in_other_language(share: float, question_cyrillic: bool, below: float = OTHER_LANGUAGE_SHARE) -> bool:
    """Whether a text whose `cyrillic_share` is `share` is in the other script than the question: under
    `below` of its letters in the question's. At the default a text that mixes both (a table of Latin and
    Cyrillic names) is not; neither is one without letters (0.5) at any share."""
    return (share if question_cyrillic else 1 - share) < below


def lexical_windows(texts: list[str], words: int) -> list[str]:
    """For each chunk of one document (in order), the chunk grown by its neighbours to about `words` words.

    Neighbours are added alternately after and before, so a chunk stays near the middle of its window.
    """
    sizes = [len(t.split()) for t in texts]
    out: list[str] = []
    for i in range(len(texts)):
        lo = hi = i
        total = sizes[i]
        while total < words and (lo > 0 or hi < len(texts) - 1):
            for j in (hi + 1, lo - 1):
                if 0 <= j < len(texts) and total < words:
                    total += sizes[j]
                    lo, hi = min(lo, j), max(hi, j)
        out.append(" ".join(texts[lo : hi + 1]))
    return out


def term_id(term: str) -> int:
    """A stable 31-bit id (Qdrant sparse indices are unsigned 32-bit)."""
    return zlib.crc32(term.encode("utf-8")) & 0x7FFFFFFF


def document_vector(text: str, avg_words: float = 200.0) -> tuple[list[int], list[float]]:
    """BM25 term weights of a text without IDF: tf (k1 + 1) / (tf + k1 (1 - b + b dl / avgdl))."""
    counts = Counter(terms(text))
    length = sum(counts.values())
    norm = K1 * (1 - B + B * length / avg_words)
    ids: dict[int, float] = {}
    for term, tf in counts.items():
        ids[term_id(term)] = ids.get(term_id(term), 0.0) + tf * (K1 + 1) / (tf + norm)
    return list(ids), list(ids.values())


def query_vector(text: str) -> tuple[list[int], list[float]]:
    """Each distinct query term once; Qdrant multiplies by IDF."""
    ids = sorted({term_id(t) for t in terms(text)})
    return ids, [1.0] * len(ids)
