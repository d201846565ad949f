"""What searches and writes cost while the service builds a space's search index (docs/performance.md).

    .venv/bin/python -m benchmarks.background_index --size 100000

Builds a space of N chunks as benchmarks.retrieval_latency does (XQuAD paragraphs with real lexical
vectors, random unit dense vectors), then lets the store build its index the way the service does
(VectorStore.note_written: a copy of the shard, a process of its own, the updates made meanwhile replayed,
the copy swapped in) while one client searches back to back (hybrid, as the default retrieval mode) and
another writes a batch of chunks every `--write-every` seconds. Reports search latency before, during each
phase (copy, build, swap) and after, how long writes waited, and checks that every chunk written is there.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from backend.adapters.store import ChunkPoint, VectorStore
from backend.services.ingest import path_metadata, sparse_vectors
from backend.services.text_analysis import query_vector
from benchmarks.retrieval_latency import build, hybrid, paragraphs, unit

SPACE = "s"


def summary(times: list[float]) -> dict[str, Any]:
    if not times:
        return {"n": 0}
    times = sorted(times)
    return {"n": len(times), "p50": round(statistics.median(times), 1),
            "p99": round(times[int(0.99 * (len(times) - 1))], 1), "max": round(times[-1], 1)}  # fmt: skip


async def search(store: VectorStore, question: str, rng: random.Random) -> float:
    vector, terms = unit(rng), query_vector(question)
    t = time.perf_counter()
    await hybrid(store, SPACE, vector, terms, question)
    return (time.perf_counter() - t) * 1000


class Phases:
    """Which step of the background build is under way: copy, build (the build process runs), swap."""

    def __init__(self, store: VectorStore) -> None:
        self.store = store
        self.built = False
        self.started: dict[str, float] = {}

    def now(self) -> str:
        task = self.store._builds.get(SPACE)
        proc = self.store._build_procs.get(SPACE)
        if task is None or task.done():
            current = "after"
        elif proc is not None and proc.returncode is None:
            current, self.built = "build", True
        elif proc is not None or self.built:
            current = "swap"
        else:
            current = "copy"
        self.started.setdefault(current, time.perf_counter())
        return current


async def run(args: argparse.Namespace) -> dict[str, Any]:
    texts, questions = paragraphs(args.eval_dir)
    rng = random.Random(7)
    with tempfile.TemporaryDirectory() as tmp:
        store = VectorStore(path=Path(tmp) / "qdrant", index_after=1, background_index=True)
        try:
            t = time.perf_counter()
            await build(store, SPACE, texts, args.size, rng)
            sys.stderr.write(f"{args.size} chunks written in {time.perf_counter() - t:.0f} s\n")
            before = [await search(store, rng.choice(questions), rng) for _ in range(args.queries)]

            latencies: dict[str, list[float]] = {"copy": [], "build": [], "swap": []}
            write_waits: dict[str, list[float]] = {"copy": [], "build": [], "swap": []}
            written = args.size
            started = time.perf_counter()
            store.note_written(SPACE)
            task = store._builds[SPACE]
            phases = Phases(store)

            async def writer() -> None:
                nonlocal written
                while not task.done():
                    await asyncio.sleep(args.write_every)
                    seen = phases.now()
                    chunks = [f"{rng.choice(texts)[:300]} w{written + i}" for i in range(args.write_batch)]
                    points = [
                        ChunkPoint(f"00000000-0000-0000-0001-{written + i:012d}", unit(rng),
                                   {**path_metadata("new.txt"), "path": "new.txt", "document_id": "new", "text": c,
                                    "chunk": i}, terms)
                        for i, (c, terms) in enumerate(zip(chunks, sparse_vectors(chunks, 200), strict=True))
                    ]  # fmt: skip
                    t = time.perf_counter()
                    await store.upsert_chunks(SPACE, points)
                    write_waits.setdefault(seen, []).append((time.perf_counter() - t) * 1000)
                    written += len(points)

            writing = asyncio.create_task(writer())
            while not task.done():
                seen = phases.now()
                took = await search(store, rng.choice(questions), rng)
                latencies.setdefault(seen, []).append(took)
                await asyncio.sleep(args.pause)
            await writing
            total = time.perf_counter() - started
            after = [await search(store, rng.choice(questions), rng) for _ in range(args.queries)]
            count = await store.count_chunks(SPACE)
            assert count == written, f"{count} chunks in the space, {written} written"
            marks = [phases.started.get(p, started) for p in ("copy", "build", "swap")] + [started + total]
            return {
                "chunks": args.size,
                "written_during_build": written - args.size,
                "chunks_after": count,
                "build_total_s": round(total, 1),
                "phase_s": {p: round(max(0.0, b - a), 1)
                            for p, a, b in zip(("copy", "build", "swap"), marks, marks[1:], strict=False)},
                "search_ms": {"before (scanning)": summary(before),
                              **{f"during {p}": summary(v) for p, v in latencies.items() if p != "after"},
                              "after (indexed)": summary(after)},
                "write_ms": {p: summary(v) for p, v in write_waits.items() if p != "after"},
            }  # fmt: skip
        finally:
            store.close()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=100_000)
    p.add_argument("--queries", type=int, default=200, help="searches before and after the build")
    p.add_argument("--pause", type=float, default=0.05, help="seconds between searches during the build")
    p.add_argument("--write-every", type=float, default=2.0, help="seconds between batches written meanwhile")
    p.add_argument("--write-batch", type=int, default=100)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--out", type=Path, default=Path("bench-out/background-index.json"))
    args = p.parse_args()
    result = asyncio.run(run(args))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False))
    sys.stdout.write(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
