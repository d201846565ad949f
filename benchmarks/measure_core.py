"""Indexing throughput and /ask, /search timings of the core stack, as reported in docs/performance.md.

    .venv/bin/python -m benchmarks.measure_core --chunks 10000 --asks 20 --eval-dir ../shared/eval

Builds a corpus (XQuAD paragraphs from --eval-dir when present, else generated text) of about
--chunks chunks, then measures on this machine, in one run:
  1. the raw embedder on the corpus's chunks (the ceiling for indexing),
  2. ingestion of the corpus into a fresh embedded Qdrant (parse, chunk, embed, upsert) and a re-run,
  3. /search and /ask through the real app against a real llama.cpp server (SmolLM2-135M).
Prints a markdown report and writes the raw figures as JSON (--out).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from fastapi.testclient import TestClient

from backend.config import Settings
from backend.container import build_ingest, load_embedder, open_store
from backend.main import create_app
from backend.observability import Metrics
from backend.services.chunking import chunk_sections
from backend.services.ingest import SourceFile
from backend.services.parsing import parse
from cli.run_local import bundled_gguf, llama_server_command, wait_until


def xquad(eval_dir: Path) -> tuple[list[str], list[str]]:
    """(paragraphs, questions) of the English and Russian dev splits, if present."""
    paragraphs: list[str] = []
    questions: list[str] = []
    for lang in ("en", "ru"):
        path = eval_dir / f"xquad.{lang}.dev.json"
        if not path.is_file():
            continue
        for article in json.loads(path.read_text())["data"]:
            for para in article["paragraphs"]:
                paragraphs.append(para["context"])
                questions.extend(qa["question"] for qa in para["qas"])
    return paragraphs, questions


def generated_sentences(n: int, rng: random.Random) -> list[str]:
    words = [
        "delivery",
        "warehouse",
        "contract",
        "budget",
        "meeting",
        "minutes",
        "invoice",
        "supplier",
        "server",
        "backup",
        "schedule",
        "report",
        "quarter",
        "engineer",
        "request",
        "approval",
        "deadline",
        "project",
        "customer",
    ]
    return [" ".join(rng.choice(words) for _ in range(rng.randint(8, 20))).capitalize() + "." for _ in range(n)]


def build_corpus(target_chunks: int, eval_dir: Path, settings: Settings) -> tuple[list[SourceFile], list[str]]:
    rng = random.Random(7)
    paragraphs, questions = xquad(eval_dir)
    files = [SourceFile(f"xquad/p{i:04d}.txt", p.encode()) for i, p in enumerate(paragraphs)]
    sentences = [s.strip() + "." for p in paragraphs for s in p.split(". ") if len(s) > 20] or generated_sentences(
        5000, rng
    )
    embedder = load_embedder(settings)

    def chunks_of(f: SourceFile) -> int:
        doc = parse(f.data, f.path)
        return len(chunk_sections(doc.sections, embedder.tokenize, max_tokens=settings.chunk_tokens,
                                  overlap_tokens=settings.chunk_overlap_tokens))  # fmt: skip

    total = sum(chunks_of(f) for f in files)
    i = 0
    while total < target_chunks:
        body = "\n\n".join(" ".join(rng.sample(sentences, 6)) for _ in range(4))
        f = SourceFile(f"filler/doc{i:05d}.md", f"# Filler document {i}\n\n{body}\n".encode())
        files.append(f)
        total += chunks_of(f)
        i += 1
    if not questions:
        questions = [rng.choice(sentences)[:80] + "?" for _ in range(200)]
    return files, questions


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 1)


def summary(values: list[float]) -> dict[str, float]:
    return {"p50": pct(values, 0.5), "p95": pct(values, 0.95), "mean": round(statistics.fmean(values), 1)}


async def index_corpus(settings: Settings, files: list[SourceFile]) -> dict[str, Any]:
    store = open_store(settings)
    try:
        service = build_ingest(settings, store, load_embedder(settings), Metrics())
        # 1. the raw embedder on the very chunks that ingestion will produce
        chunk_texts: list[str] = []
        for f in files:
            doc = parse(f.data, f.path)
            chunk_texts.extend(c.text for c in chunk_sections(
                doc.sections, service.embedder.tokenize, max_tokens=service.chunk_tokens,
                overlap_tokens=service.overlap_tokens))  # fmt: skip
        sample = chunk_texts[:3000]
        service.embedder.embed_passages_sync(sample[:64])  # warm-up
        t = time.perf_counter()
        service.embedder.embed_passages_sync(sample)
        raw_rate = len(sample) / (time.perf_counter() - t)

        # 2. full ingestion, in groups of 64 files as index_cli sends them
        t = time.perf_counter()
        written = 0
        for start in range(0, len(files), 64):
            results = await service.ingest("bench", files[start : start + 64])
            written += sum(r.chunks for r in results if r.status == "new")
        index_s = time.perf_counter() - t

        t = time.perf_counter()
        for start in range(0, len(files), 64):
            again = await service.ingest("bench", files[start : start + 64])
            assert all(r.status == "unchanged" for r in again)
        rerun_s = time.perf_counter() - t
        return {
            "files": len(files), "chunks": written, "raw_embedder_chunks_per_s": round(raw_rate, 1),
            "index_seconds": round(index_s, 1), "index_chunks_per_s": round(written / index_s, 1),
            "index_vs_raw_embedder": round(written / index_s / raw_rate, 3), "rerun_seconds": round(rerun_s, 2),
        }  # fmt: skip
    finally:
        store.close()


def measure_api(settings: Settings, questions: list[str], n_search: int, n_ask: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    with TestClient(create_app(settings)) as client:
        client.post("/search", json={"q": "warm-up", "space_id": "bench"})
        search: dict[str, list[float]] = {"embed_ms": [], "search_ms": [], "http_ms": []}
        for q in questions[:n_search]:
            t = time.perf_counter()
            body = client.post("/search", json={"q": q, "space_id": "bench", "top_k": 5}).json()
            search["http_ms"].append((time.perf_counter() - t) * 1000)
            search["embed_ms"].append(body["timings"]["embed_ms"])
            search["search_ms"].append(body["timings"]["search_ms"])
        out["search"] = {k: summary(v) for k, v in search.items()}

        ask: dict[str, list[float]] = {k: [] for k in ("embed_ms", "search_ms", "llm_ttft_ms", "llm_ms", "total_ms")}
        ask["overhead_ms"], ask["completion_tokens"] = [], []
        client.post("/ask", json={"q": "warm-up question?", "space_id": "bench", "top_k": 3})
        for q in questions[n_search : n_search + n_ask]:
            body = client.post("/ask", json={"q": q, "space_id": "bench", "top_k": 3}).json()
            t = body["timings"]
            for k in ("embed_ms", "search_ms", "llm_ttft_ms", "llm_ms", "total_ms"):
                ask[k].append(t[k])
            ask["overhead_ms"].append(t["total_ms"] - t["llm_ms"])
            ask["completion_tokens"].append(body["usage"]["completion_tokens"])
        out["ask"] = {k: summary(v) for k, v in ask.items()}
    return out


def report(fig: dict[str, Any], args: argparse.Namespace) -> str:
    ix, s, a = fig["index"], fig["api"]["search"], fig["api"]["ask"]
    lines = [
        f"Corpus: {ix['files']} files, {ix['chunks']} chunks (CHUNK_TOKENS {fig['chunk_tokens']}); "
        f"{os.cpu_count()} CPU cores; embedded Qdrant.",
        "",
        "| indexing | value |", "|---|---|",
        f"| raw embedder (all-MiniLM-L6-v2, batch 32) | {ix['raw_embedder_chunks_per_s']} chunks/s |",
        f"| full ingestion (parse, chunk, embed, upsert) | {ix['index_chunks_per_s']} chunks/s "
        f"({ix['index_seconds']} s) |",
        f"| ingestion / raw embedder | {ix['index_vs_raw_embedder']:.0%} |",
        f"| re-run, nothing changed | {ix['rerun_seconds']} s, 0 chunks written |",
        "",
        f"| /search at {ix['chunks']} chunks (n={args.searches}) | p50 ms | p95 ms |", "|---|---|---|",
        *(f"| {k} | {v['p50']} | {v['p95']} |" for k, v in s.items()),
        "",
        f"| /ask, top_k 3, LLM_MAX_TOKENS {fig['llm_max_tokens']} (n={args.asks}) | p50 ms | p95 ms |",
        "|---|---|---|",
        *(f"| {k} | {v['p50']} | {v['p95']} |" for k, v in a.items()),
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--chunks", type=int, default=10_000)
    p.add_argument("--asks", type=int, default=20)
    p.add_argument("--searches", type=int, default=200)
    p.add_argument("--eval-dir", type=Path, default=Path("../shared/eval"))
    p.add_argument("--out", type=Path, default=Path("bench-out/core.json"))
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        port = 8091
        llama = subprocess.Popen(
            llama_server_command(bundled_gguf(), "127.0.0.1", port, 4096, os.cpu_count() or 2),
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            settings = Settings(_env_file=None, qdrant_path=Path(tmp) / "q", llm_base_url=f"http://127.0.0.1:{port}/v1",
                auth_disabled=True, llm_max_tokens=128, log_level="WARNING",
            )  # fmt: skip
            files, questions = build_corpus(args.chunks, args.eval_dir, settings)
            random.Random(3).shuffle(questions)
            figures: dict[str, Any] = {"chunk_tokens": settings.chunk_tokens, "llm_max_tokens": settings.llm_max_tokens}
            figures["index"] = asyncio.run(index_corpus(settings, files))
            if not wait_until(f"{settings.llm_base_url}/models", 60, llama):
                raise SystemExit("llama.cpp server did not start")
            figures["api"] = measure_api(settings, questions, args.searches, args.asks)
        finally:
            llama.terminate()
            llama.wait()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    sys.stdout.write(report(figures, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
