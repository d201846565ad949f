"""One model on several servers (replicas): the least busy answers, a killed one is ejected and taken back.
Two real llama.cpp servers; the service served by uvicorn (benchmarks/scale_out.py runs the same, larger)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from backend.adapters.circuit import CircuitBreaker
from backend.adapters.llm import LLMError, OpenAICompatLLM
from backend.adapters.llm.replicas import Replica, ReplicatedLLM
from backend.config import Settings
from backend.main import create_app
from benchmarks.scale_out import PUMP, Llama, llm_replicas
from tests.conftest import LlamaServer
from tests.servers import ThreadedServer, free_port


def test_a_replica_killed_and_restarted_mid_load_loses_no_request(tmp_path: Path) -> None:
    result = llm_replicas(tmp_path, asks=18, concurrency=3, kill_after=4, restart_after=10, settle=8)

    assert result["warm"]["errors"] == 0
    load = result["under_kill"]
    assert load["requests"] == 18 and load["answered"] == 18, result["failed"]  # none lost
    a_before, b_before = result["replicas_before"]
    assert a_before["answered"] > 0 and b_before["answered"] > 0  # both served before the kill
    a_load, b_load = result["replicas_after_load"]
    assert a_load["failed"] >= 1  # A's death was noticed...
    assert b_load["answered"] > b_before["answered"]  # ... and B carried the load
    a_after, _ = result["replicas_after_settle"]
    assert result["settle"]["errors"] == 0
    assert a_after["state"] == "closed" and a_after["answered"] > a_load["answered"]  # A is back in rotation


def replicated(http: httpx.AsyncClient, *urls: str) -> ReplicatedLLM:
    return ReplicatedLLM("m", [Replica(OpenAICompatLLM(http, url, model="smollm2"), CircuitBreaker(3, 5.0))
                               for url in urls])  # fmt: skip


def test_the_least_busy_replica_gets_the_request(llm_server: LlamaServer, tmp_path: Path) -> None:
    other = Llama()

    async def run() -> tuple[int, int]:
        async with httpx.AsyncClient(timeout=60) as http:
            llm = replicated(http, llm_server.base_url, other.base_url)
            replicas = llm.replicas
            prompt = [{"role": "user", "content": "Count from one to fifty."}]
            first = llm.stream_chat(prompt, max_tokens=200, temperature=0.0)
            await anext(first)  # one answer streaming on one replica
            busy = next(r for r in replicas if r.in_flight == 1)
            second = llm.stream_chat(prompt, max_tokens=4, temperature=0.0)
            await anext(second)
            idle_got_it = next(r for r in replicas if r is not busy).in_flight == 1
            await second.aclose()  # type: ignore[attr-defined]
            await first.aclose()  # type: ignore[attr-defined]
            return int(idle_got_it), sum(r.in_flight for r in replicas)

    try:
        idle_got_it, left = asyncio.run(run())
    finally:
        other.stop()
    assert idle_got_it == 1
    assert left == 0  # closing a stream gives its replica back


def test_a_stream_never_moves_to_another_replica_after_its_first_token(llm_server: LlamaServer, tmp_path: Path) -> None:
    doomed = Llama()

    async def run() -> tuple[str, Replica]:
        async with httpx.AsyncClient(timeout=60) as http:
            llm = replicated(http, doomed.base_url, llm_server.base_url)
            replicas = llm.replicas
            # both idle: the first request goes to the first replica
            stream = llm.stream_chat([{"role": "user", "content": "Write a long story about a pump."}],
                                     max_tokens=400, temperature=0.0)  # fmt: skip
            await anext(stream)
            doomed.kill()
            with pytest.raises(LLMError) as failed:
                async for _ in stream:
                    pass
            return str(failed.value), replicas[1]

    try:
        message, survivor = asyncio.run(run())
    finally:
        doomed.stop()
    assert doomed.base_url in message  # the error names the replica that broke off
    assert survivor.answered == 0  # the other replica was never asked to continue the answer


def test_replica_urls_are_checked_at_start_up(make_settings: Callable[..., Settings]) -> None:
    s = make_settings(llm_base_url="http://a:8000/v1, http://b:8000/v1/")
    assert s.model_specs[0].base_urls == ["http://a:8000/v1", "http://b:8000/v1"]
    with pytest.raises(ValueError, match="must start with http"):
        make_settings(llm_base_url="http://a:8000/v1,b:8000/v1")
    with pytest.raises(ValueError, match="twice"):
        make_settings(llm_base_url="http://a:8000/v1,http://a:8000/v1")
    model = {"name": "m", "backend": "vllm", "base_url": ["http://a/v1", "http://b/v1"], "role": "default"}
    assert make_settings(llm_models=[model]).model_specs[0].base_urls == ["http://a/v1", "http://b/v1"]
    with pytest.raises(ValueError, match="swap_group"):
        make_settings(llm_models=[{**model, "swap_group": "gpu0"}])


COUNT = "Count from 1 to 200 in words, one number per line, and do not stop early."


def _serving(base_url: str) -> dict[str, Any] | None:
    """The replica that has produced a first token for the request in flight, if any."""
    replicas = httpx.get(f"{base_url}/models", timeout=10).json()["models"][0]["replicas"]
    return next((r for r in replicas if r["in_flight"] == 1 and r["answered"] > 0), None)


def test_a_whole_answer_cut_off_mid_way_is_started_again_and_a_stream_ends_with_an_error(
    make_settings: Callable[..., Settings],
) -> None:
    servers = [Llama(), Llama()]
    settings = make_settings(llm_base_url=",".join(s.base_url for s in servers), llm_model="smollm2",
                             llm_max_tokens=600, llm_context_tokens=4096, llm_total_timeout_s=120, top_k=1,
                             answer_relevance_floor=0.0, rate_limit_per_minute=0)  # fmt: skip
    service = ThreadedServer(create_app(settings), free_port())
    url = service.base_url
    try:
        assert httpx.post(f"{url}/documents", data={"space_id": "r"}, files=[("files", PUMP)], timeout=120).is_success
        with ThreadPoolExecutor(max_workers=1) as pool:
            asked = pool.submit(httpx.post, f"{url}/ask", json={"q": COUNT, "space_id": "r"}, timeout=180)
            deadline = time.monotonic() + 60
            while (victim := _serving(url)) is None and not asked.done() and time.monotonic() < deadline:
                time.sleep(0.02)
            assert victim is not None, "the answer ended before a replica could be killed mid-way"
            servers[victim["replica"]].kill()  # mid-answer: the first token is out, the answer is not
            whole = asked.result()
        assert whole.status_code == 200, whole.text
        assert any("broke off mid-answer" in n for n in whole.json()["notices"])

        survivor = servers[1 - victim["replica"]]
        with httpx.stream("POST", f"{url}/ask", json={"q": COUNT, "space_id": "r", "stream": True}, timeout=180) as r:
            events = []
            for line in r.iter_lines():
                if line.startswith("event: "):
                    events.append(line[len("event: ") :])
                    if events.count("token") == 3:
                        survivor.kill()  # the only replica left dies mid-stream
        assert events[0] == "sources" and "token" in events and events[-1] == "error"
    finally:
        service.stop()
        for s in servers:
            s.stop()
