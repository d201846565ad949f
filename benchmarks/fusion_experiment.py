"""How the hybrid defaults were chosen: lexical analysis and fusion variants on the XQuAD dev splits.

    .venv/bin/python -m benchmarks.fusion_experiment --eval-dir ../shared/eval
    EMBEDDING_MODEL=bundled CHUNK_TOKENS=200 .venv/bin/python -m benchmarks.fusion_experiment  # the MiniLM era

Chunks the XQuAD paragraphs exactly as ingestion does (the configured embedder, CHUNK_TOKENS and
CHUNK_OVERLAP_TOKENS), scores every chunk for every question with the dense embedder (cosine) and with
BM25 variants (Qdrant's IDF formula), fuses them the way the service does (the union of each side's
top 50, both scores known, min-max per side, a dense weight chosen by the question's script) and
reports nDCG@10 of the documents, in memory. Rows marked "default" are what
`backend/services/text_analysis.py` and the settings implement; `python -m cli.eval` measures the
service itself. Nothing here changes the service.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from backend.adapters.embedder import Embedder
from backend.config import Settings, load_settings
from backend.container import load_embedder
from backend.services import eval_metrics as m
from backend.services import text_analysis as ta
from backend.services.chunking import chunk_sections
from backend.services.evaluation import EvalQuestion, load_squad
from backend.services.ingest import MIN_SENTENCES
from backend.services.parsing import parse

Terms = Callable[[str], list[str]]


def stems_only(text: str) -> list[str]:
    return [t for t in ta.terms(text) if not t.startswith("~")]


def with_prefixes(letters: int, cyrillic_only: bool) -> Terms:
    def terms(text: str) -> list[str]:
        stems = stems_only(text)
        return stems + [
            "~" + s[:letters] for s in stems if len(s) > letters and (not cyrillic_only or "а" <= s[0] <= "я")
        ]

    return terms


def truncated(letters: int) -> Terms:
    return lambda text: [s[:letters] for s in stems_only(text)]


def with_bigrams(text: str) -> list[str]:
    stems = stems_only(text)
    return stems + [a + "_" + b for a, b in itertools.pairwise(stems)]


@dataclass
class Lexical:
    terms: Terms = ta.terms
    window_words: int = 200
    k1: float = ta.K1
    b: float = ta.B
    # Qdrant Edge's built-in BM25 (`qdrant_edge.Bm25`, Snowball for the corpus's language) instead of
    # our analyzer; k1, b and the window still apply, the IDF formula is the same (Modifier.Idf).
    edge_bm25: bool = False
    titled: bool = False  # each chunk's window headed by its document's title (see `title`)


@dataclass
class Variant:
    name: str
    lexical: Lexical
    dense_weight: float = 0.6  # Latin-script question
    dense_weight_cyrillic: float = 0.2
    fusion: str = "weighted"  # or rrf, dbsf, sparse, dense, formula<k>, power<p>
    titled_dense: bool = False  # chunks embedded headed by their document's title
    # Pseudo-relevance feedback on the dense side: (m, a) moves the question's vector by a times the
    # mean of the fused ranking's top m chunks, then fuses again (Rocchio).
    feedback: tuple[int, float] | None = None
    # The dense side mixes the chunk's cosine with its best sentence's at this share (fusion.dense_side).
    sentence_weight: float = 0.0
    # Chunks of fewer sentences have none apart (their own vector stands for them; ingest.MIN_SENTENCES).
    min_sentences: int = MIN_SENTENCES


DEFAULT = Lexical()
PLAIN = Lexical(terms=stems_only, window_words=0)
EDGE_PLAIN = Lexical(window_words=0, edge_bm25=True)
EDGE = Lexical(edge_bm25=True)
TITLED = Lexical(titled=True)
VARIANTS = [
    Variant("dense only", DEFAULT, fusion="dense"),
    Variant("sparse only: chunk-level BM25, Snowball stems", PLAIN, fusion="sparse"),
    Variant("sparse only: default analyzer (window 200 words, Cyrillic prefix-3)", DEFAULT, fusion="sparse"),
    Variant("RRF k=60, default analyzer (approximation of Qdrant's)", DEFAULT, fusion="rrf"),
    Variant("DBSF, default analyzer (approximation of Qdrant's)", DEFAULT, fusion="dbsf"),
    Variant("formula w*cos + (1-w)*s/(s+2), gated 0.7 / 0.6", DEFAULT, 0.7, 0.6, "formula2"),
    Variant("formula w*cos + (1-w)*s/(s+5), gated 0.7 / 0.6", DEFAULT, 0.7, 0.6, "formula5"),
    Variant("formula w*cos + (1-w)*s/(s+10), gated 0.7 / 0.6", DEFAULT, 0.7, 0.6, "formula10"),
    Variant("sparse only: Qdrant Edge BM25 (corpus language Snowball), chunk-level", EDGE_PLAIN, fusion="sparse"),
    Variant("sparse only: Qdrant Edge BM25, window 200 words", EDGE, fusion="sparse"),
    Variant("Qdrant Edge BM25 chunk-level, gated 0.7 / 0.6", EDGE_PLAIN, 0.7, 0.6),
    Variant("Qdrant Edge BM25 window 200 words, gated 0.7 / 0.6", EDGE, 0.7, 0.6),
    Variant(
        "Qdrant Edge BM25 k1 1.2 b 0.75 (its defaults), chunk-level, gated 0.7 / 0.6",
        Lexical(window_words=0, k1=1.2, b=0.75, edge_bm25=True),
        0.7,
        0.6,
    ),
    Variant("chunk-level BM25, gated 0.6 / 0.1", PLAIN, 0.6, 0.1),
    Variant("chunk-level BM25 k1 1.2 b 0.75, gated 0.6 / 0.1", Lexical(stems_only, 0, 1.2, 0.75), 0.6, 0.1),
    Variant("chunk-level BM25 b 0, gated 0.6 / 0.1", Lexical(stems_only, 0, 0.9, 0.0), 0.6, 0.1),
    Variant("chunk-level, word bigrams added, gated 0.6 / 0.1", Lexical(with_bigrams, 0), 0.6, 0.1),
    Variant("chunk-level, stems cut to 5 letters, gated 0.6 / 0.1", Lexical(truncated(5), 0), 0.6, 0.1),
    Variant("window 200 words, stems only, gated 0.6 / 0.2", Lexical(stems_only, 200)),
    Variant("window 200 words + prefix-4 for all scripts, gated 0.6 / 0.2", Lexical(with_prefixes(4, False), 200)),
    Variant("window 100 words + Cyrillic prefix-3, gated 0.6 / 0.2", Lexical(window_words=100)),
    Variant("window 300 words + Cyrillic prefix-3, gated 0.6 / 0.2", Lexical(window_words=300)),
    Variant("default analyzer, gated 0.6 / 0.2 (the MiniLM-era default)", DEFAULT, 0.6, 0.2),
    Variant("default analyzer, one weight 0.5 for both scripts", DEFAULT, 0.5, 0.5),
    Variant("default analyzer, one weight 0.6 for both scripts", DEFAULT, 0.6, 0.6),
    Variant("default analyzer, one weight 0.7 for both scripts", DEFAULT, 0.7, 0.7),
    Variant("default analyzer, one weight 0.8 for both scripts", DEFAULT, 0.8, 0.8),
    Variant("default analyzer, gated 0.7 / 0.5", DEFAULT, 0.7, 0.5),
    Variant("window 100 words + Cyrillic prefix-3, gated 0.7 / 0.6", Lexical(window_words=100), 0.7, 0.6),
    Variant("window 300 words + Cyrillic prefix-3, gated 0.7 / 0.6", Lexical(window_words=300), 0.7, 0.6),
    Variant("min-max scores squared (w*d^2 + (1-w)*s^2), gated 0.7 / 0.6", DEFAULT, 0.7, 0.6, "power2"),
    Variant("min-max scores cubed, gated 0.7 / 0.6", DEFAULT, 0.7, 0.6, "power3"),
    Variant("min-max scores squared, one weight 0.5 for both scripts", DEFAULT, 0.5, 0.5, "power2"),
    Variant(
        "dense feedback: question + 0.1 x its fused top chunk, fused again (2026-12-05)",
        DEFAULT,
        0.7,
        0.6,
        feedback=(1, 0.1),
    ),
    Variant("dense feedback, + 0.1 x the mean of the top 3 (2026-12-05)", DEFAULT, 0.7, 0.6, feedback=(3, 0.1)),
    Variant("dense feedback, + 0.3 x the mean of the top 3 (2026-12-05)", DEFAULT, 0.7, 0.6, feedback=(3, 0.3)),
    Variant("dense feedback, + 0.2 x the mean of the top 5 (2026-12-05)", DEFAULT, 0.7, 0.6, feedback=(5, 0.2)),
    Variant("chunks embedded under their article's title (2026-12-05)", DEFAULT, 0.7, 0.6, titled_dense=True),
    Variant("the title in the lexical windows (2026-12-05)", TITLED, 0.7, 0.6),
    Variant("the title on both sides (2026-12-05)", TITLED, 0.7, 0.6, titled_dense=True),
    Variant("until 2026-12-06: window 200 + Cyrillic prefix-3, gated 0.7 / 0.6", DEFAULT, 0.7, 0.6),
    Variant(
        "dense side 0.6 x the best sentence's cosine + 0.4 x the chunk's (2026-12-06)",
        DEFAULT,
        0.7,
        0.6,
        sentence_weight=0.6,
    ),
    Variant(
        "dense side 0.5 x the best sentence's + 0.5 x the chunk's (2026-12-06)", DEFAULT, 0.7, 0.6, sentence_weight=0.5
    ),
    Variant(
        "dense side 0.7 x the best sentence's + 0.3 x the chunk's (2026-12-06)", DEFAULT, 0.7, 0.6, sentence_weight=0.7
    ),
    Variant("the best sentence's cosine alone (2026-12-06)", DEFAULT, 0.7, 0.6, sentence_weight=1.0),
    Variant("best sentence 0.6, gated 0.8 / 0.6 (2026-12-06)", DEFAULT, 0.8, 0.6, sentence_weight=0.6),
    Variant("best sentence 0.6, scores squared (2026-12-06)", DEFAULT, 0.7, 0.6, "power2", sentence_weight=0.6),
    Variant("best sentence 0.5, scores squared (2026-12-06)", DEFAULT, 0.7, 0.6, "power2", sentence_weight=0.5),
    Variant("best sentence 0.7, scores squared (2026-12-06)", DEFAULT, 0.7, 0.6, "power2", sentence_weight=0.7),
    Variant("best sentence 0.6, scores cubed (2026-12-06)", DEFAULT, 0.7, 0.6, "power3", sentence_weight=0.6),
    Variant(
        "best sentence 0.6, scores to the power 1.5 (2026-12-06)", DEFAULT, 0.7, 0.6, "power1.5", sentence_weight=0.6
    ),
    Variant(
        "best sentence 0.6, scores squared, gated 0.75 / 0.6 (2026-12-06)",
        DEFAULT,
        0.75,
        0.6,
        "power2",
        sentence_weight=0.6,
    ),
    Variant(
        "best sentence 0.6, scores squared, gated 0.7 / 0.5 (2026-12-06)",
        DEFAULT,
        0.7,
        0.5,
        "power2",
        sentence_weight=0.6,
    ),
    Variant(
        "best sentence 0.6, quadratic mean, gated 0.7 / 0.6, two-sentence chunks split too (2026-12-06)",
        DEFAULT,
        0.7,
        0.6,
        "power2",
        sentence_weight=0.6,
        min_sentences=2,
    ),
    Variant(
        "**default: best sentence 0.6, quadratic mean, gated 0.7 / 0.6, sentences of chunks of 3 or more "
        "(2026-12-06)**",
        DEFAULT,
        0.7,
        0.6,
        "power2",
        sentence_weight=0.6,
    ),
]


@dataclass
class Corpus:
    chunk_docs: list[str]
    chunk_texts: list[str]
    questions: list[EvalQuestion]
    question_vectors: np.ndarray
    chunk_vectors: np.ndarray
    titled_vectors: np.ndarray  # the chunks embedded under their document's title
    sentence_vectors: np.ndarray  # the sentences of each chunk of two or more, embedded alone
    sentence_owner: np.ndarray  # the chunk of each sentence vector


def title(path: str) -> str:
    """The article's title as `load_squad` names its folder: `05-Huguenot/000.txt` -> `Huguenot`.

    XQuAD's titles are English in both splits (Wikipedia page names), as a Russian archive's file
    names may well be; a service would take the file's name or its mail subject.
    """
    return re.sub(r"^\d+-", "", path.split("/")[0]).replace("_", " ").replace("-", " ")


def titled(docs: list[str], texts: list[str]) -> list[str]:
    return [f"{title(d)}\n{t}" for d, t in zip(docs, texts, strict=True)]


def load(path: Path, embedder: Embedder, settings: Settings) -> Corpus:
    evalset = load_squad(path)
    docs, texts = [], []
    size = min(settings.chunk_tokens, embedder.max_tokens)
    for doc in evalset.documents:
        for c in chunk_sections(
            parse(doc.data, doc.path).sections, embedder.tokenize, max_tokens=size,
            overlap_tokens=settings.chunk_overlap_tokens,
        ):  # fmt: skip
            docs.append(doc.path)
            texts.append(c.text)
    chunks = np.array(embedder.embed_passages_sync(texts))
    questions = np.array([embedder.embed_query_sync(q.question) for q in evalset.questions])
    headed = np.array(embedder.embed_passages_sync(titled(docs, texts)))
    parts = [found if len(found := ta.sentences(t)) > 1 else [] for t in texts]  # variants keep those they split
    owner = np.array([i for i, p in enumerate(parts) for _ in p], dtype=int)
    sentences = np.array(embedder.embed_passages_sync([s for p in parts for s in p]))
    return Corpus(docs, texts, evalset.questions, questions, chunks, headed, sentences, owner)


def _edge_terms(lang: str) -> Terms:
    """Qdrant Edge's BM25 analysis (tokenizer, stop words, Snowball stemmer) as term ids (its hashes).

    Each word is analysed alone, so that repeated terms are counted and the TF formula below is the
    same for both analyzers: the rows then differ by the analysis only.
    """
    from qdrant_edge import Bm25, Bm25Config

    model = Bm25(Bm25Config(language={"ru": "russian", "en": "english"}[lang]))

    def terms(text: str) -> list[str]:
        return [str(i) for w in text.split() for i in model.embed_query(w).indices]

    return terms


def lexical_scores(corpus: Corpus, lex: Lexical, lang: str = "en") -> np.ndarray:
    """BM25 of every chunk (over its window) for every question, with Qdrant's IDF formula."""
    windows: list[str] = []
    start = 0
    while start < len(corpus.chunk_texts):  # windows never cross documents
        end = start
        while end < len(corpus.chunk_docs) and corpus.chunk_docs[end] == corpus.chunk_docs[start]:
            end += 1
        texts = corpus.chunk_texts[start:end]
        texts = titled(corpus.chunk_docs[start:end], texts) if lex.titled else texts
        windows += ta.lexical_windows(texts, lex.window_words) if lex.window_words else texts
        start = end
    avg = max(lex.window_words, 60)
    analyze = _edge_terms(lang) if lex.edge_bm25 else lex.terms
    vectors = []
    for w in windows:
        counts = Counter(analyze(w))
        norm = lex.k1 * (1 - lex.b + lex.b * sum(counts.values()) / avg)
        vectors.append({t: tf * (lex.k1 + 1) / (tf + norm) for t, tf in counts.items()})
    df = Counter(t for v in vectors for t in v)
    idf = {t: math.log(1 + (len(vectors) - c + 0.5) / (c + 0.5)) for t, c in df.items()}
    scores = np.zeros((len(corpus.questions), len(corpus.chunk_texts)))
    for qi, q in enumerate(corpus.questions):
        query = set(analyze(q.question))
        for ci, v in enumerate(vectors):
            scores[qi, ci] = sum(idf[t] * v[t] for t in query if t in v)
    return scores


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty_like(x)
    r[np.argsort(-x, kind="stable")] = np.arange(1, len(x) + 1)
    return r


def _dbsf(x: np.ndarray) -> np.ndarray:
    lo, hi = x.mean() - 3 * x.std(), x.mean() + 3 * x.std()
    return np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)


def ndcg(corpus: Corpus, sparse: np.ndarray, v: Variant, candidates: int = 50) -> float:
    chunks = corpus.titled_vectors if v.titled_dense else corpus.chunk_vectors
    values = []
    for qi, q in enumerate(corpus.questions):
        d = chunks @ corpus.question_vectors[qi]
        if v.sentence_weight:  # a chunk not split stands for its sentences (as ingestion stores it)
            split = np.bincount(corpus.sentence_owner, minlength=len(d))[corpus.sentence_owner] >= v.min_sentences
            owner = corpus.sentence_owner[split]
            best = d.copy()
            best[owner] = -1.0
            np.maximum.at(best, owner, corpus.sentence_vectors[split] @ corpus.question_vectors[qi])
            d = (1 - v.sentence_weight) * d + v.sentence_weight * best
        order = _fused_order(q, d, sparse[qi], v, candidates)
        if v.feedback:
            top, a = v.feedback
            moved = corpus.question_vectors[qi] + a * chunks[order[:top]].mean(axis=0)
            order = _fused_order(q, chunks @ (moved / np.linalg.norm(moved)), sparse[qi], v, candidates)
        values.append(m.ndcg_at(m.rank_of(q.gold_path, [corpus.chunk_docs[i] for i in order], 10)))
    return m.mean(values)


def _fused_order(q: EvalQuestion, d: np.ndarray, s: np.ndarray, v: Variant, candidates: int) -> np.ndarray:
    """Chunk indices by fused score, best first."""
    top_d = np.argsort(-d, kind="stable")[:candidates]
    top_s = [i for i in np.argsort(-s, kind="stable")[:candidates] if s[i] > 0]
    union = np.array(sorted(set(top_d.tolist()) | set(top_s)))
    if v.fusion == "dense":
        fused, union = d[top_d], top_d
    elif v.fusion == "sparse":
        union = np.array(top_s, dtype=int)
        fused = s[union]
    elif v.fusion == "rrf":  # each list contributes 1 / (60 + rank) where it holds the chunk
        rd, rs, in_s = _ranks(d), _ranks(s), set(top_s)
        fused = np.array([1 / (60 + rd[i]) + (1 / (60 + rs[i]) if i in in_s else 0) for i in union])
    elif v.fusion == "dbsf":  # each list scaled by its own mean +- 3 std, then summed
        dn = dict(zip(top_d.tolist(), _dbsf(d[top_d]).tolist(), strict=True))
        sn = dict(zip(top_s, _dbsf(s[top_s]).tolist(), strict=True)) if top_s else {}
        fused = np.array([dn.get(i, 0.0) + sn.get(i, 0.0) for i in union])
    elif v.fusion.startswith("formula"):  # what one Qdrant formula query can do: per point, no set statistics
        w = v.dense_weight_cyrillic if ta.is_cyrillic(q.question) else v.dense_weight
        k = float(v.fusion.removeprefix("formula"))
        fused = w * d[union] + (1 - w) * s[union] / (s[union] + k)
    else:  # weighted; power<p> raises each min-max score to p first (a p-norm: nearer "the best side wins")
        w = v.dense_weight_cyrillic if ta.is_cyrillic(q.question) else v.dense_weight
        p = float(v.fusion.removeprefix("power")) if v.fusion.startswith("power") else 1.0
        fused = w * _minmax(d[union]) ** p + (1 - w) * _minmax(s[union]) ** p
    return np.asarray(union[np.argsort(-np.asarray(fused), kind="stable")])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    args = p.parse_args()
    settings = load_settings()
    embedder = load_embedder(settings)
    sys.stdout.write(f"embedder {embedder.model_name}, chunks of {settings.chunk_tokens} tokens\n")
    corpora = {lang: load(args.eval_dir / f"xquad.{lang}.dev.json", embedder, settings) for lang in ("ru", "en")}
    cache: dict[tuple[str, int], np.ndarray] = {}
    lines = ["| variant | ru nDCG@10 | en nDCG@10 |", "|---|---|---|"]
    for v in VARIANTS:
        row = []
        for lang, corpus in corpora.items():
            key = (lang, id(v.lexical))
            if key not in cache:
                cache[key] = lexical_scores(corpus, v.lexical, lang)
            row.append(ndcg(corpus, cache[key], v))
        lines.append(f"| {v.name} | {row[0]:.3f} | {row[1]:.3f} |")
        sys.stdout.write(lines[-1] + "\n")
        sys.stdout.flush()
    sys.stdout.write("\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
