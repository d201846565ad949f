"""A Qdrant server that dies, comes back, then stops answering, while clients search, ask, upload and
poll /ready. The server is the Qdrant REST stand-in (no real one can be installed here) behind a TCP
proxy that can swallow traffic; the embedder and llama.cpp are real.

Every request must get its answer, or within a bound a 503 `store_unavailable` that names QDRANT_URL and
carries Retry-After; /ready must say the store is down; once the server is back the service must answer
again by itself (no restart), with the same results as before (a kill -9 of the server loses nothing)
and every document whole (no half-written upload)."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.adapters.edge_engine import EdgeEngine
from backend.config import Settings
from backend.main import create_app
from tests.conftest import QdrantStandin
from tests.faults import BlackholeProxy
from tests.servers import ThreadedServer, free_port

log = logging.getLogger(__name__)

TIMEOUT_S = 2.0  # QDRANT_TIMEOUT_S
COOLDOWN_S = 2.0  # QDRANT_BREAKER_COOLDOWN_S
PHASES = [("healthy", 5.0), ("killed", 6.0), ("restarted", 10.0), ("blackhole", 8.0), ("recovered", 12.0)]
# A 503 must come within one request timeout (plus scheduling on two busy cores).
BOUND_S = TIMEOUT_S + 1.5
# After a fault is lifted: a request already swallowed times out, then the breaker's cool-down, then a probe.
SETTLE_S = TIMEOUT_S + COOLDOWN_S + 1.0

DOCS = {
    "pumps/glimmer.md": "# Glimmer pump\n\nThe Glimmer pump runs at a maximum pressure of 9 bar.",
    "pumps/zephyr.md": "# Zephyr pump\n\nThe Zephyr pump is serviced every 400 hours by the night shift.",
    "notes/kotel.txt": "Котельная на Садовой улице переведена на газ. Замена горелок закончена в марте.",
}
QUESTION = "What is the maximum pressure of the Glimmer pump?"
# The fixed documents only: the live one changes all the time.
SEARCH = {"q": QUESTION, "space_id": "s", "filters": {"folders": ["pumps", "notes"]}}


def _live(version: int) -> bytes:
    entry = f"Entry {version} records a reading of {version * 3} units. "
    return (f"# Live log\n\nRevision {version}. " + entry * 60).encode()


@pytest.mark.slow
def test_searches_asks_and_uploads_survive_a_dead_then_hung_qdrant_server_and_recover_without_restart(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    qdrant = QdrantStandin(tmp_path / "qdrant", tmp_path / "qdrant.log")  # its own: this test kills it
    proxy = BlackholeProxy(qdrant.port)
    settings = make_settings(qdrant_url=proxy.url, qdrant_timeout_s=TIMEOUT_S, qdrant_breaker_failures=2,
                             qdrant_breaker_cooldown_s=COOLDOWN_S, ready_timeout_s=TIMEOUT_S, llm_max_tokens=12,
                             rate_limit_per_minute=0, chunk_tokens=64, chunk_overlap_tokens=8,
                             upsert_batch_size=4)  # fmt: skip
    server = ThreadedServer(create_app(settings), free_port())
    records: list[dict[str, Any]] = []
    phase_starts: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            files = [("files", (name, text.encode())) for name, text in DOCS.items()]
            http.post("/documents", data={"space_id": "s"}, files=files).raise_for_status()
            baseline = _top_paths(http.post("/search", json=SEARCH).json())
        assert baseline[0] == "pumps/glimmer.md"
        asyncio.run(_drive(server.base_url, qdrant, proxy, records, phase_starts))
        # After the run: one more upload of the live document, then every document must be whole.
        with httpx.Client(base_url=server.base_url, timeout=60) as http:
            final = http.post("/documents", data={"space_id": "s"}, files=[("files", ("live.md", _live(999)))])
            assert final.status_code == 200, final.text
            listed = http.get("/documents", params={"space_id": "s"}).json()["documents"]
    finally:
        server.stop()
        proxy.stop()
        qdrant.stop()

    _report(records, phase_starts)
    # Only answers and 503 store_unavailable, each 503 saying what is wrong and when to retry.
    assert {r["status"] for r in records} <= {200, 503}, Counter(str(r["status"]) for r in records)
    refused = [r for r in records if r["status"] == 503 and r["kind"] != "ready"]
    assert refused and all(r["code"] == "store_unavailable" for r in refused), refused[:3]
    assert all("QDRANT_URL" in r["message"] and r["retry_after"] for r in refused), refused[:3]

    # Bounded latency: refusals within one request timeout; searches (never waiting on the LLM) too.
    def waited(r: dict[str, Any]) -> float:
        """How long the request waited once a fault was there: an upload begun while the server answered does
        real work first (embedding, writes) and may meet the next fault late in its run; its bound counts from
        the fault's start."""
        if r["kind"] != "upload":
            return float(r["s"])
        ended = r["at"] + r["s"]
        fault_began = max((start for start in phase_starts.values() if start <= ended), default=0.0)
        return float(ended - max(r["at"], fault_began))

    slow = [r for r in records if (r["status"] == 503 or r["kind"] == "search") and waited(r) > BOUND_S]
    assert not slow, [(r["kind"], r["phase"], r["status"], round(r["at"], 2), round(r["s"], 2)) for r in slow[:5]]

    def during(name: str, settle: float) -> list[dict[str, Any]]:
        """Requests wholly inside a phase, begun `settle` seconds or more after it began."""
        start, end = phase_starts[name], phase_starts[name] + dict(PHASES)[name]
        return [r for r in records if start + settle <= r["at"] and r["at"] + r["s"] <= end]

    def begun(name: str, settle: float) -> list[dict[str, Any]]:
        """Requests whose store calls fall inside the phase: searches, asks and /ready begun between `settle`
        seconds after it began and 1 s before it ended (their store calls come first; an ask's LLM part may
        run past the phase); uploads, which call the store until they end, wholly inside it (one begun
        late meets the next fault)."""
        start, end = phase_starts[name], phase_starts[name] + dict(PHASES)[name]
        first = [r for r in records if r["kind"] != "upload" and start + settle <= r["at"] <= end - 1.0]
        return first + [r for r in during(name, settle) if r["kind"] == "upload"]

    for fault in ("killed", "blackhole"):
        hit = during(fault, settle=TIMEOUT_S + 0.5)
        assert hit and all(r["status"] == 503 for r in hit), (fault, [(r["kind"], r["status"]) for r in hit])
        ready = [r for r in hit if r["kind"] == "ready"]
        assert ready and all(r["qdrant"]["status"] == "error" for r in ready)
        assert all("QDRANT_URL" in r["qdrant"]["detail"] for r in ready), ready[0]
    # While the server hangs, the open circuit answers at once instead of each request waiting it out.
    assert statistics.median(r["s"] for r in during("blackhole", TIMEOUT_S + 0.5)) < 0.5
    for back in ("restarted", "recovered"):
        ok = begun(back, settle=SETTLE_S)
        assert ok and all(r["status"] == 200 for r in ok), (back, [(r["kind"], r["status"]) for r in ok])
        assert {r["kind"] for r in ok} >= {"search", "upload", "ready"}, {r["kind"] for r in ok}
        # Nothing lost across the kill -9 of the server: the same sources, in the same order.
        assert all(r["paths"] == baseline for r in ok if r["kind"] == "search")
    assert any(r["kind"] == "ask" and r["status"] == 200 for r in begun("recovered", settle=SETTLE_S))

    # No half-written document: each one's chunks are all there, of one version, and nothing else is.
    assert {d["path"] for d in listed} == {*DOCS, "live.md"} and {d["status"] for d in listed} == {"ready"}
    direct = EdgeEngine(tmp_path / "qdrant")  # the server's own data, read once it has stopped
    points, _ = direct.scroll("rag-chunks-s", limit=10_000, with_payload=["path", "version"])
    direct.close()
    by_path: dict[str, list[Any]] = {}
    for p in points:
        by_path.setdefault(p.payload["path"], []).append(p.payload["version"])  # type: ignore[index]
    assert {path: len(v) for path, v in by_path.items()} == {d["path"]: d["chunks"] for d in listed}
    assert all(len(set(versions)) == 1 for versions in by_path.values())


async def _drive(base_url: str, qdrant: QdrantStandin, proxy: BlackholeProxy, records: list[dict[str, Any]],
                 phase_starts: dict[str, float]) -> None:  # fmt: skip
    phase = {"name": PHASES[0][0]}
    started = time.monotonic()
    done = asyncio.Event()

    async def schedule() -> None:
        for name, seconds in PHASES:
            if name == "killed":
                qdrant.kill()
            elif name == "restarted":
                await asyncio.to_thread(qdrant.start)  # the phase begins once the server answers again
            elif name == "blackhole":
                proxy.blackhole = True
            elif name == "recovered":
                proxy.blackhole = False
            phase["name"], phase_starts[name] = name, time.monotonic() - started
            await asyncio.sleep(seconds)
        done.set()

    async def client(http: httpx.AsyncClient, kind: str) -> None:
        version = 0
        while not done.is_set():
            name, t0 = phase["name"], time.monotonic()
            if kind == "search":
                resp = await http.post("/search", json=SEARCH)
            elif kind == "ask":
                resp = await http.post("/ask", json={"q": QUESTION, "space_id": "s"})
            elif kind == "upload":
                version += 1
                resp = await http.post("/documents", data={"space_id": "s"},
                                       files=[("files", ("live.md", _live(version)))])  # fmt: skip
            else:
                resp = await http.get("/ready")
            body = resp.json()
            error = body.get("error") or {}
            records.append({
                "kind": kind, "phase": name, "status": resp.status_code, "at": t0 - started,
                "s": time.monotonic() - t0, "code": error.get("code"), "message": error.get("message", ""),
                "retry_after": resp.headers.get("retry-after"),
                "paths": _top_paths(body) if kind == "search" and resp.status_code == 200 else None,
                "qdrant": body["checks"]["qdrant"] if kind == "ready" else None,
            })  # fmt: skip
            await asyncio.sleep(0.5 if kind in ("ready", "upload") else 0.05)

    async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
        kinds = ["search", "search", "ask", "upload", "ready"]
        await asyncio.gather(schedule(), *(client(http, k) for k in kinds))


def _top_paths(body: dict[str, Any]) -> list[str]:
    return [s["path"] for s in body["sources"]]


def _report(records: list[dict[str, Any]], phase_starts: dict[str, float]) -> None:
    for name, _ in PHASES:
        rs = [r for r in records if r["phase"] == name]
        refused = sorted(r["s"] for r in rs if r["status"] == 503)
        # After a fault: when the last refusal within the phase came, counted from the phase's start.
        ends = [r["at"] + r["s"] - phase_starts[name] for r in rs if r["status"] == 503]
        last = max((t for t in ends if t <= dict(PHASES)[name]), default=0.0)
        log.info("store faults, %s (from %.1f s): %d requests, %s; 503 median %.2f s, max %.2f s, last at +%.1f s",
                 name, phase_starts[name], len(rs), dict(Counter(f"{r['kind']}:{r['status']}" for r in rs)),
                 statistics.median(refused) if refused else 0.0, max(refused, default=0.0), last)  # fmt: skip
