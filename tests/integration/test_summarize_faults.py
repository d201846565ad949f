"""A summary under faults, the service served by uvicorn over real sockets and real llama.cpp servers:
a client that goes away stops the LLM work (no orphaned calls), and a primary LLM server that is dead,
or dies between map calls, is replaced by the fallback (map calls retried on it)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.integration.test_summarize import report
from tests.servers import ThreadedServer, free_port

# One chunk per map call: many calls, so there is always one to come when the client leaves.
SMALL_BATCHES = {"chunk_tokens": 128, "summary_batch_tokens": 150, "llm_max_tokens": 24, "citation_check": False}


def events(resp: httpx.Response) -> Iterator[tuple[str, dict[str, Any]]]:
    kind = ""
    for line in resp.iter_lines():
        if line.startswith("event: "):
            kind = line.removeprefix("event: ")
        elif line.startswith("data: "):
            yield kind, json.loads(line.removeprefix("data: "))


def upload_report(http: httpx.Client, space: str) -> str:
    resp = http.post("/documents", data={"space_id": space}, files=[("files", ("report.md", report()))])
    assert resp.status_code == 200, resp.text
    return str(http.get("/documents", params={"space_id": space}).json()["documents"][0]["id"])


def in_flight(service: ThreadedServer) -> int:
    return sum(m.activity.in_flight() for m in service.app.state.container.llm.members)


def test_a_client_that_disconnects_mid_map_stops_the_llm_work(make_settings: Callable[..., Settings]) -> None:
    service = ThreadedServer(create_app(make_settings(**SMALL_BATCHES)), free_port())
    try:
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            doc = upload_report(http, "cut")
            ask = {"space_id": "cut", "document_id": doc, "style": "brief", "stream": True}
            with http.stream("POST", "/summarize", json=ask) as resp:
                assert resp.status_code == 200
                for kind, data in events(resp):
                    assert kind == "progress", data
                    if data["done"] == 1:
                        total = data["total"]
                        break  # the client goes away with calls still to make
            assert total > 4
            deadline = time.monotonic() + 15
            while in_flight(service) and time.monotonic() < deadline:
                time.sleep(0.1)
            assert in_flight(service) == 0  # the call in progress was cancelled
            time.sleep(3)  # long enough for one more map call to begin, had the map loop gone on
            assert in_flight(service) == 0
            metrics = http.get("/metrics").text
            assert 'rag_summaries_total{space="cut"' not in metrics
            assert http.get("/summaries", params={"space_id": "cut"}).json()["summaries"] == []
            # the service is none the worse: the same summary, asked again, is written whole
            whole = http.post("/summarize", json={**ask, "stream": False}, timeout=300)
            assert whole.status_code == 200 and whole.json()["map_calls"] == total - 1
    finally:
        service.stop()


@pytest.fixture
def primary(tmp_path: Path) -> Iterator[LlamaServer]:
    server = LlamaServer(tmp_path / "primary.log")
    yield server
    server.stop()


def with_fallback(make_settings: Callable[..., Settings], primary: LlamaServer, fallback: LlamaServer) -> Settings:
    return make_settings(
        llm_base_url=primary.base_url, llm_model="smollm2", llm_fallback="openai",
        llm_fallback_base_url=fallback.base_url, llm_fallback_model="smollm2", llm_first_token_timeout_s=10.0,
        llm_total_timeout_s=60.0, **SMALL_BATCHES,
    )  # fmt: skip


def test_the_fallback_writes_the_summary_when_the_primary_is_dead_or_dies_mid_map(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, primary: LlamaServer
) -> None:
    service = ThreadedServer(create_app(with_fallback(make_settings, primary, llm_server)), free_port())
    try:
        with httpx.Client(base_url=service.base_url, timeout=300) as http:
            doc = upload_report(http, "fb")
            ask = {"space_id": "fb", "document_id": doc, "style": "brief", "stream": True}
            # The primary dies after the first map call: the rest of the map, the final call, on the fallback.
            with http.stream("POST", "/summarize", json=ask) as resp:
                seen = []
                for kind, data in events(resp):
                    seen.append(kind)
                    if kind == "progress" and data["done"] == 1:
                        primary.proc.kill()
                    if kind in ("done", "error"):
                        result = data
            assert seen[-1] == "done", result
            assert result["fallback_used"] is True and result["map_calls"] > 4
            assert result["coverage"]["chunks_read"] == result["coverage"]["chunks_selected"]
            # Dead from the start: the whole summary comes from the fallback (another style: not stored).
            dead = http.post("/summarize", json={**ask, "style": "detailed", "stream": False})
            assert dead.status_code == 200, dead.text
            assert dead.json()["fallback_used"] is True and dead.json()["map_calls"] == result["map_calls"]
            assert 'rag_llm_fallbacks_total{from_backend="openai"' in http.get("/metrics").text
    finally:
        service.stop()
