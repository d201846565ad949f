"""Which fusion of dense and lexical retrieval reaches the issue #4 targets? An offline experiment.

    .venv/bin/python -m benchmarks.fusion_experiment --eval-dir ../shared/eval

Chunks the XQuAD paragraphs exactly as ingestion does, scores every chunk for every question with the
dense embedder (cosine) and with BM25 over backend/services/text_analysis (Qdrant's IDF formula), and
ranks documents by several fusions, in memory. The winner is what hybrid retrieval should implement
in Qdrant; nothing here changes the service.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np

from backend.adapters.embedder import Embedder
from backend.services import eval_metrics as m
from backend.services.chunking import chunk_sections
from backend.services.evaluation import load_squad
from backend.services.parsing import parse
from backend.services.text_analysis import document_vector, query_vector

Fusion = Callable[[np.ndarray, np.ndarray, bool], np.ndarray]


def minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.zeros_like(x)


def rrf(x: np.ndarray, k: int = 60) -> np.ndarray:
    ranks = np.empty_like(x)
    ranks[np.argsort(-x)] = np.arange(1, len(x) + 1)
    return 1.0 / (k + ranks)


def dbsf(x: np.ndarray) -> np.ndarray:
    """Qdrant's distribution-based score fusion: scale by mean +- 3 std."""
    lo, hi = x.mean() - 3 * x.std(), x.mean() + 3 * x.std()
    return np.clip((x - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(x)


def weighted(w_dense: float) -> Fusion:
    return lambda d, s, _ru: w_dense * minmax(d) + (1 - w_dense) * minmax(s)


def gated(w_en: float, w_ru: float) -> Fusion:
    """Language-gated weights: the English-only embedder counts little for a Cyrillic question."""
    return lambda d, s, ru: (w_ru if ru else w_en) * minmax(d) + (1 - (w_ru if ru else w_en)) * minmax(s)


FUSIONS: dict[str, Fusion] = {
    "dense": lambda d, s, ru: d,
    "sparse (BM25, stemmed)": lambda d, s, ru: s,
    "RRF k=60": lambda d, s, ru: rrf(d) + rrf(s),
    "DBSF": lambda d, s, ru: dbsf(d) + dbsf(s),
    "min-max 0.5/0.5": weighted(0.5),
    "min-max 0.3 dense": weighted(0.3),
    "gated en 0.5 / ru 0.1": gated(0.5, 0.1),
    "gated en 0.6 / ru 0.1": gated(0.6, 0.1),
    "gated en 0.6 / ru 0.0": gated(0.6, 0.0),
    "gated en 0.7 / ru 0.15": gated(0.7, 0.15),
}


DOC_FUSIONS: dict[str, Fusion] = {
    "doc-level sparse": lambda d, s, ru: s,
    "doc-level min-max 0.5/0.5": weighted(0.5),
    "doc-level gated en 0.6 / ru 0.1": gated(0.6, 0.1),
    "doc-level gated en 0.6 / ru 0.2": gated(0.6, 0.2),
}


def run(path: Path, embedder: Embedder) -> dict[str, float]:
    evalset = load_squad(path)
    chunk_docs, chunk_texts = [], []
    for doc in evalset.documents:
        parsed = parse(doc.data, doc.path)
        for c in chunk_sections(parsed.sections, embedder.tokenize, max_tokens=200, overlap_tokens=40):
            chunk_docs.append(doc.path)
            chunk_texts.append(c.text)
    dense_docs = np.array(embedder.embed_passages_sync(chunk_texts))
    questions = evalset.questions
    dense_q = np.array([embedder.embed_query_sync(q.question) for q in questions])
    dense = dense_q @ dense_docs.T  # cosine: vectors are normalised

    vectors = [dict(zip(*document_vector(t), strict=True)) for t in chunk_texts]
    df = Counter(i for v in vectors for i in v)
    n = len(vectors)
    idf = {i: math.log(1 + (n - c + 0.5) / (c + 0.5)) for i, c in df.items()}  # Qdrant's IDF modifier
    sparse = np.zeros_like(dense)
    for qi, q in enumerate(questions):
        ids, _ = query_vector(q.question)
        for ci, v in enumerate(vectors):
            sparse[qi, ci] = sum(idf.get(i, 0.0) * v[i] for i in ids if i in v)

    # Document level: BM25 over whole paragraphs; dense = the best chunk of each paragraph.
    docs = [d.path for d in evalset.documents]
    doc_index = {d: i for i, d in enumerate(docs)}
    doc_vectors = [dict(zip(*document_vector(d.data.decode()), strict=True)) for d in evalset.documents]
    ddf = Counter(i for v in doc_vectors for i in v)
    didf = {i: math.log(1 + (len(docs) - c + 0.5) / (c + 0.5)) for i, c in ddf.items()}
    dense_doc = np.full((len(questions), len(docs)), -1.0)
    for ci, d in enumerate(chunk_docs):
        dense_doc[:, doc_index[d]] = np.maximum(dense_doc[:, doc_index[d]], dense[:, ci])
    sparse_doc = np.zeros_like(dense_doc)
    for qi, q in enumerate(questions):
        ids, _ = query_vector(q.question)
        for di, v in enumerate(doc_vectors):
            sparse_doc[qi, di] = sum(didf.get(i, 0.0) * v[i] for i in ids if i in v)

    doc_level = score(DOC_FUSIONS, dense_doc, sparse_doc, docs, questions)
    return {**score(FUSIONS, dense, sparse, chunk_docs, questions), **doc_level}


def score(
    fusions: dict[str, Fusion], dense: np.ndarray, sparse: np.ndarray, column_doc: list[str], questions: list[Any]
) -> dict[str, float]:
    """Mean nDCG@10 per fusion; columns are chunks or documents, `column_doc` names each one's document."""
    out = {}
    for name, fuse in fusions.items():
        ndcg = []
        for qi, q in enumerate(questions):
            fused = fuse(dense[qi], sparse[qi], bool(re.search("[а-яё]", q.question.lower())))
            order = np.argsort(-fused, kind="stable")[:50]
            ndcg.append(m.ndcg_at(m.rank_of(q.gold_path, [column_doc[i] for i in order], 10)))
        out[name] = m.mean(ndcg)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    args = p.parse_args()
    embedder = Embedder("sentence-transformers/all-MiniLM-L6-v2")
    results = {lang: run(args.eval_dir / f"xquad.{lang}.dev.json", embedder) for lang in ("ru", "en")}
    lines = ["| fusion | ru nDCG@10 | en nDCG@10 |", "|---|---|---|"]
    lines += [
        f"| {name} | {results['ru'][name]:.3f} | {results['en'][name]:.3f} |" for name in {**FUSIONS, **DOC_FUSIONS}
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
