"""Soak: mixed /ask, /search and ingestion at high concurrency against the real service and LLM server.

    .venv/bin/python -m benchmarks.soak --seconds 600 --concurrency 32 --out bench-out/soak.json

The service runs as its own process (uvicorn, embedded Qdrant, API keys on) so its resident memory and
open file descriptors can be read from /proc; the LLM is a real llama.cpp server with SmolLM2. Each
worker loops over: /search (60%), /ask (25%, short answers), and re-uploading one of 20 documents with
new text (15%), so the index keeps its size while documents are rewritten. Any 5xx, transport error or
timeout counts as unexpected. After a warm-up (the first fifth), memory growth and descriptor growth
are measured against the end of warm-up. tests/integration/test_soak.py runs it for 60 s in CI, and
abandons what is still in flight 15 s after the end (`drain_s`; about 30 asks queue behind the one
llama.cpp, which would take another 90 s): the client disconnects, as an impatient user's does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from cli.run_local import bundled_gguf, llama_server_command, wait_until
from tests.servers import free_port, stop_process

ROOT = Path(__file__).resolve().parents[1]
KEY = "soak-test-key-0123456789"
TOPICS = ("pump pressure", "reactor temperature", "valve audit", "supplier delay", "budget meeting", "safety drill")


@dataclass
class SoakResult:
    seconds: float
    concurrency: int
    requests: dict[str, int] = field(default_factory=dict)
    unexpected: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    rss_mb: list[float] = field(default_factory=list)  # one sample every few seconds
    fds: list[int] = field(default_factory=list)
    rss_growth_after_warmup: float = 0.0
    fd_growth_after_warmup: int = 0
    p95_ms: dict[str, float] = field(default_factory=dict)
    abandoned: int = 0  # requests still in flight `drain_s` after the end: the client hung up


def _proc_stats(pid: int) -> tuple[float, int]:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        rss_kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
    return rss_kb / 1024, len(os.listdir(f"/proc/{pid}/fd"))


def _document(rng: random.Random, n: int) -> bytes:
    topic = rng.choice(TOPICS)
    facts = " ".join(f"Record {rng.randint(1, 10**6)}: the {topic} value is {rng.randint(1, 999)}." for _ in range(40))
    return f"Document {n} about {topic}.\n\n{facts}".encode()


async def _load(base: str, seconds: float, concurrency: int, result: SoakResult, drain_s: float | None) -> None:
    deadline = time.monotonic() + seconds
    in_flight = 0
    latencies: dict[str, list[float]] = {"search": [], "ask": [], "upload": []}
    headers = {"Authorization": f"Bearer {KEY}"}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=600, limits=limits) as http:

        async def worker(seed: int) -> None:
            nonlocal in_flight
            rng = random.Random(seed)
            while time.monotonic() < deadline:
                in_flight += 1
                roll = rng.random()
                kind = "search" if roll < 0.6 else "ask" if roll < 0.85 else "upload"
                start = time.perf_counter()
                try:
                    if kind == "upload":
                        n = rng.randrange(20)
                        files = [("files", (f"doc{n}.txt", _document(rng, n)))]
                        resp = await http.post("/documents", data={"space_id": "soak"}, files=files)
                    else:
                        body = {"q": f"What is the {rng.choice(TOPICS)} value?", "space_id": "soak", "top_k": 3}
                        resp = await http.post(f"/{kind}", json=body)
                    result.statuses[str(resp.status_code)] = result.statuses.get(str(resp.status_code), 0) + 1
                    if resp.status_code >= 500:
                        result.unexpected.append(f"{kind} {resp.status_code}: {resp.text[:200]}")
                except httpx.HTTPError as exc:
                    result.unexpected.append(f"{kind} {type(exc).__name__}: {exc}")
                in_flight -= 1
                latencies[kind].append((time.perf_counter() - start) * 1000)
                result.requests[kind] = result.requests.get(kind, 0) + 1

        workers = asyncio.gather(*(worker(i) for i in range(concurrency)))
        try:
            await asyncio.wait_for(workers, None if drain_s is None else seconds + drain_s)
        except TimeoutError:
            result.abandoned = in_flight
    for kind, values in latencies.items():
        if values:
            result.p95_ms[kind] = round(sorted(values)[int(len(values) * 0.95) - 1 if len(values) > 1 else 0], 1)


def run_soak(
    seconds: float, concurrency: int, llm_base_url: str, workdir: Path, drain_s: float | None = None
) -> SoakResult:
    port = free_port()
    env = {**os.environ, "QDRANT_PATH": str(workdir / "qdrant"), "LLM_BASE_URL": llm_base_url, "HF_HUB_OFFLINE": "1",
           "API_KEYS": f"{KEY}=admin,read:*,write:*", "RATE_LIMIT_PER_MINUTE": "0", "LLM_MAX_TOKENS": "16",
           "LOG_LEVEL": "WARNING",
           # One llama.cpp on 2 shared cores answers one request at a time: asks queue for tens of seconds.
           # The soak is about errors and growth; latency under this load is reported, not bounded.
           "LLM_FIRST_TOKEN_TIMEOUT_S": "300", "LLM_TOTAL_TIMEOUT_S": "600"}  # fmt: skip
    log = (workdir / "service.log").open("wb")
    service = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "backend.main:app_from_env", "--port", str(port)],
        env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    result = SoakResult(seconds=seconds, concurrency=concurrency)
    try:
        if not wait_until(f"{base}/health", 120, service):
            raise RuntimeError(f"the service did not start; see {workdir / 'service.log'}")
        rng = random.Random(0)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=120) as http:
            files = [("files", (f"doc{n}.txt", _document(rng, n))) for n in range(20)]
            http.post("/documents", data={"space_id": "soak"}, files=files).raise_for_status()

        async def main() -> None:
            load = asyncio.create_task(_load(base, seconds, concurrency, result, drain_s))
            while not load.done():
                rss, fds = _proc_stats(service.pid)
                result.rss_mb.append(round(rss, 1))
                result.fds.append(fds)
                await asyncio.sleep(max(1.0, seconds / 60))
            await load
            if result.abandoned:  # the last sample was taken with those connections open: one after they closed
                await asyncio.sleep(3)
                rss, fds = _proc_stats(service.pid)
                result.rss_mb.append(round(rss, 1))
                result.fds.append(fds)

        asyncio.run(main())
        warm = max(1, len(result.rss_mb) // 5)
        baseline_rss, baseline_fds = result.rss_mb[warm - 1], result.fds[warm - 1]
        result.rss_growth_after_warmup = round(max(result.rss_mb[warm:] or [baseline_rss]) / baseline_rss - 1, 4)
        result.fd_growth_after_warmup = result.fds[-1] - baseline_fds
    finally:
        stop_process(service, timeout_s=15)
        log.close()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.soak", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument("--seconds", type=float, default=600)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--out", type=Path, default=Path("bench-out/soak.json"))
    args = p.parse_args(argv)
    llm_port = free_port()
    llm = subprocess.Popen(llama_server_command(bundled_gguf(), "127.0.0.1", llm_port, 4096, 2),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        if not wait_until(f"http://127.0.0.1:{llm_port}/v1/models", 90, llm):
            raise RuntimeError("the llama.cpp server did not start")
        with tempfile.TemporaryDirectory() as tmp:
            result = run_soak(args.seconds, args.concurrency, f"http://127.0.0.1:{llm_port}/v1", Path(tmp))
    finally:
        stop_process(llm, timeout_s=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = asdict(result)
    args.out.write_text(json.dumps(data, indent=2))
    sys.stdout.write(json.dumps({k: v for k, v in data.items() if k not in ("rss_mb", "fds")}, indent=2) + "\n")
    return 0 if not result.unexpected else 1


if __name__ == "__main__":
    sys.exit(main())
