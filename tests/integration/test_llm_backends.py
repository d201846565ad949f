"""Backends and fallback: Ollama (stand-in), real llama.cpp as the OpenAI-compatible one, faults injected."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.faults import FaultTransport, Mode
from tests.integration.test_api import parse_sse, upload
from tests.servers import free_port
from tests.standins.ollama import StandinServer

DOC = {"pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar."}
QUESTION = {"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "s"}


@pytest.fixture
def ollama() -> Iterator[StandinServer]:
    server = StandinServer(free_port())
    yield server
    server.stop()


def chat_bodies(server: StandinServer) -> list[dict[str, Any]]:
    return [r["body"] for r in server.requests if r["path"] == "/api/chat"]


def test_ollama_backend_answers_and_always_gets_num_ctx_and_keep_alive(
    make_settings: Callable[..., Settings], ollama: StandinServer
) -> None:
    settings = make_settings(llm_backend="ollama", llm_base_url=ollama.base_url, llm_context_tokens=3000,
                             ollama_keep_alive="10m", llm_max_tokens=100)  # fmt: skip
    with TestClient(create_app(settings)) as client:
        upload(client, "s", DOC)
        body = client.post("/ask", json=QUESTION).json()
        assert body["backend"] == "ollama" and body["model"] == "smollm2:135m"
        assert "9 bar" in body["answer"] and body["sources"][0]["cited"]
        assert body["usage"]["prompt_tokens"] > 0 and body["finish_reason"] == "stop"
        with client.stream("POST", "/ask", json={**QUESTION, "stream": True}) as resp:
            events = parse_sse(resp.read().decode())
        assert events[-1][0] == "done" and events[-1][1]["cited"] == [1]
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and "ollama smollm2:135m" in ready["checks"]["llm_primary"]["detail"]
    for sent in chat_bodies(ollama):
        assert sent["options"]["num_ctx"] == 3000  # never Ollama's small default
        assert sent["options"]["num_predict"] == 100 and sent["keep_alive"] == "10m"
        assert sent["stream"] is True


def test_a_model_ollama_lacks_is_reported_not_silently_replaced(
    make_settings: Callable[..., Settings], ollama: StandinServer
) -> None:
    settings = make_settings(llm_backend="ollama", llm_base_url=ollama.base_url, llm_model="llama3:70b")
    with TestClient(create_app(settings)) as client:
        upload(client, "s", DOC)
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert "does not serve 'llama3:70b'" in ready.json()["checks"]["llm_primary"]["detail"]
        resp = client.post("/ask", json=QUESTION)
        assert resp.status_code == 503
        assert "not found, try pulling it first" in resp.json()["error"]["message"]


def with_fallback(make_settings: Callable[..., Settings], primary: LlamaServer, ollama: StandinServer,
                  **overrides: object) -> Settings:  # fmt: skip
    return make_settings(
        llm_base_url=primary.base_url, llm_model="smollm2", llm_fallback="ollama",
        llm_fallback_base_url=ollama.base_url, **overrides,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("mode", "reason"),
    [("refuse", "connect"), ("status500", "http_500"), ("garbage", "protocol"), ("slow", "first_token_timeout")],
)
def test_a_failing_primary_falls_back_before_the_first_token(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, ollama: StandinServer, mode: Mode, reason: str
) -> None:
    faults = FaultTransport(llm_server.base_url, mode, delay_s=5)
    settings = with_fallback(make_settings, llm_server, ollama, llm_first_token_timeout_s=1.0)
    with TestClient(create_app(settings, http_transport=faults)) as client:
        upload(client, "s", DOC)
        start = time.monotonic()
        resp = client.post("/ask", json=QUESTION)
        elapsed = time.monotonic() - start
        assert resp.status_code == 200, resp.text
        assert resp.json()["backend"] == "ollama" and "9 bar" in resp.json()["answer"]
        assert resp.json()["fallback_used"] is True
        assert faults.hits >= 1
        assert elapsed < 4  # a slow primary is abandoned at the 1 s first-token timeout, not waited for
        metrics = client.get("/metrics").text
        assert f'rag_llm_fallbacks_total{{from_backend="openai",reason="{reason}",to_backend="ollama"}} 1.0' in metrics
        assert f'rag_llm_requests_total{{backend="openai",outcome="{reason}"}} 1.0' in metrics
        assert 'rag_llm_requests_total{backend="ollama",outcome="ok"} 1.0' in metrics


def test_a_primary_that_dies_mid_answer_ends_the_stream_with_an_error_event(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, ollama: StandinServer
) -> None:
    faults = FaultTransport(llm_server.base_url, "cut", cut_after=6)
    with TestClient(create_app(with_fallback(make_settings, llm_server, ollama), http_transport=faults)) as client:
        upload(client, "s", DOC)
        with client.stream("POST", "/ask", json={**QUESTION, "stream": True}) as resp:
            assert resp.status_code == 200
            events = parse_sse(resp.read().decode())
        kinds = [k for k, _ in events]
        assert kinds[0] == "sources" and "token" in kinds and kinds[-1] == "error" and "done" not in kinds
        assert "mid-answer" in events[-1][1]["error"]["message"]
        whole = client.post("/ask", json=QUESTION)
        assert whole.status_code == 503 and whole.json()["error"]["code"] == "llm_failed"
    assert chat_bodies(ollama) == []  # no switching once tokens were sent


def test_when_every_backend_is_down_the_503_still_carries_the_sources(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, ollama: StandinServer
) -> None:
    faults = FaultTransport(llm_server.base_url, "refuse")
    ollama.stop()
    with TestClient(create_app(with_fallback(make_settings, llm_server, ollama), http_transport=faults)) as client:
        upload(client, "s", DOC)
        for stream in (False, True):
            resp = client.post("/ask", json={**QUESTION, "stream": stream})
            assert resp.status_code == 503
            body = resp.json()
            assert body["error"]["code"] == "llm_unavailable"
            assert "primary (openai" in body["error"]["message"] and "fallback (ollama" in body["error"]["message"]
            assert body["sources"][0]["text"] == DOC["pump.txt"].decode()
        assert client.get("/ready").status_code == 503


def test_ready_counts_an_llm_busy_with_an_answer_as_up_and_a_silent_one_as_down(
    make_settings: Callable[..., Settings], llm_server: LlamaServer
) -> None:
    """llama-cpp-python's server makes /v1/models wait while it reads a prompt or writes an answer; /ready
    must not turn 503 then (a health check would restart a working service), but must once nothing moves."""
    long_doc = {f"pump{i}.txt": " ".join([f"The Glimmer pump {i} has a maximum pressure of {i + 5} bar."] * 30).encode()
                for i in range(5)}  # fmt: skip
    settings = make_settings(ready_timeout_s=0.2, chunk_tokens=150, top_k=5, llm_max_tokens=16)
    with TestClient(create_app(settings)) as client:
        upload(client, "s", long_doc)
        idle = client.get("/ready").json()["checks"]["llm_primary"]["detail"]
        assert idle == f"openai smollm2-135m-instruct at {llm_server.base_url}"
        # A prompt of ~1,000 tokens: the server reads it for seconds, then answers; /ready polled meanwhile,
        # from the moment the answer is in flight. Before it (the question's embedding and the search, on
        # the same 2 cores) nothing is in flight, so a probe that misses the 0.2 s is down by design (the
        # second half); under CI's load that happened once.
        members = client.app.state.container.llm.members  # type: ignore[attr-defined]
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(client.post, "/ask", json=QUESTION)
            while not asked.done() and not sum(m.activity.in_flight() for m in members):
                time.sleep(0.005)
            polled = []
            while not asked.done():
                probe = client.get("/ready")
                # Kept only if the answer was still in flight when the probe came back: one that outlives
                # the answer judges an idle server, and missing 0.2 s then is down by design (as above).
                if sum(m.activity.in_flight() for m in members):
                    polled.append(probe)
        assert asked.result().status_code == 200
        assert {r.status_code for r in polled} == {200}, [r.json() for r in polled if r.status_code != 200][:1]
        busy = [r.json()["checks"]["llm_primary"]["detail"] for r in polled]
        assert any("busy: 1 answer(s) in flight" in d for d in busy), busy
    # A hung server: busy only while the answer is within its first-token timeout, then down.
    faults = FaultTransport(llm_server.base_url, "slow", delay_s=30)
    settings = make_settings(ready_timeout_s=0.2, llm_first_token_timeout_s=1.5)
    with TestClient(create_app(settings, http_transport=faults)) as client:
        upload(client, "s", DOC)
        with ThreadPoolExecutor(1) as pool:
            asked = pool.submit(client.post, "/ask", json=QUESTION)
            polled = []
            while not asked.done():
                polled.append(client.get("/ready"))
            failed = asked.result()
        after = client.get("/ready")
    # Before the answer is sent (token counting, which also hangs) nothing is in flight: down.
    details = {r.status_code: r.json()["checks"]["llm_primary"]["detail"] for r in polled}
    assert details.keys() == {200, 503} and "busy" in details[200]
    assert details[503] == f"openai at {llm_server.base_url}: no answer within 0.2 s"
    assert failed.status_code == 503 and "no first token within 1.5 s" in failed.json()["error"]["message"]
    assert after.json()["checks"]["llm_primary"]["detail"] == details[503] and after.status_code == 503


def test_the_circuit_breaker_skips_a_failing_primary_then_probes_it_again(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, ollama: StandinServer
) -> None:
    faults = FaultTransport(llm_server.base_url, "refuse")
    settings = with_fallback(make_settings, llm_server, ollama, llm_breaker_failures=1, llm_breaker_cooldown_s=1.0)
    with TestClient(create_app(settings, http_transport=faults)) as client:
        upload(client, "s", DOC)
        assert client.post("/ask", json=QUESTION).json()["backend"] == "ollama"
        hits = faults.hits
        assert client.post("/ask", json=QUESTION).json()["backend"] == "ollama"
        assert faults.hits == hits  # the open circuit kept requests away from the primary
        ready = client.get("/ready").json()
        assert ready["status"] == "degraded" and ready["checks"]["llm_fallback"]["status"] == "ok"
        faults.mode = None  # the primary recovers
        time.sleep(1.1)
        assert client.post("/ask", json=QUESTION).json()["backend"] == "openai"  # the probe succeeded
        assert client.post("/ask", json=QUESTION).json()["backend"] == "openai"


def test_fallback_settings_are_validated(make_settings: Callable[..., Settings]) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="needs LLM_FALLBACK_BASE_URL"):
        make_settings(llm_fallback="ollama")
    with pytest.raises(ValidationError, match="without /v1"):
        make_settings(llm_backend="ollama", llm_base_url="http://ollama:11434/v1")


def test_recorded_requests_are_valid_ollama_chat_requests(
    make_settings: Callable[..., Settings], ollama: StandinServer
) -> None:
    with TestClient(create_app(make_settings(llm_backend="ollama", llm_base_url=ollama.base_url))) as client:
        upload(client, "s", DOC)
        client.post("/ask", json=QUESTION)
    (sent,) = chat_bodies(ollama)
    assert set(sent) == {"model", "messages", "stream", "keep_alive", "options"}
    assert [m["role"] for m in sent["messages"]] == ["system", "user"]
    # repeat_penalty 1.0 (none), not Ollama's own 1.1: answers repeat the passages' words (LLM_REPEAT_PENALTY).
    options = {"num_ctx": 4096, "num_predict": 64, "temperature": 0.0, "repeat_penalty": 1.0}
    assert json.dumps(sent["options"]) == json.dumps(options)


def test_the_prompt_is_budgeted_with_the_servers_own_token_count(
    make_settings: Callable[..., Settings], llm_server: LlamaServer
) -> None:
    import httpx

    line = "Протокол совещания номер {}: поставка насосов перенесена на следующую неделю. "
    docs = {f"ru{i}.txt": (line.format(i) * 4).encode() for i in range(8)}
    # No cut of weaker passages: the eight near-identical ones are what the budget has to fit.
    settings = make_settings(llm_context_tokens=900, llm_max_tokens=64, answer_passage_cutoff=0)
    with TestClient(create_app(settings)) as client:
        upload(client, "ru", docs)
        body = client.post("/ask", json={"q": "Когда поставка насосов?", "space_id": "ru", "top_k": 8}).json()
    ctx = body["context"]
    assert ctx["counted_by"] == "server" and ctx["window_tokens"] == 900
    assert ctx["dropped_chunks"] >= 1 and len(body["sources"]) == 8 - ctx["dropped_chunks"]
    assert ctx["prompt_tokens"] <= 900 - 64
    # The server's own count of what was kept agrees with the budget (the template adds a few tokens).
    root = llm_server.base_url.removesuffix("/v1")
    text = "\n".join(s["text"] for s in body["sources"])
    raw = httpx.post(f"{root}/extras/tokenize/count", json={"input": text}).json()["count"]
    assert raw < ctx["prompt_tokens"] <= 900 - 64
    assert body["finish_reason"] in ("stop", "length")  # the server accepted the prompt


@pytest.mark.parametrize("thinking", ["tags", "field"])
def test_a_reasoning_models_thinking_stays_out_of_the_answer(
    make_settings: Callable[..., Settings], thinking: str
) -> None:
    server = StandinServer(free_port(), thinking=thinking)
    try:
        settings = make_settings(llm_backend="ollama", llm_base_url=server.base_url, llm_max_tokens=200)
        with TestClient(create_app(settings)) as client:
            upload(client, "s", DOC)
            plain = client.post("/ask", json=QUESTION).json()
            assert plain["answer"].startswith("According to the documents") and "think" not in plain["answer"]
            assert plain["reasoning"] is None and plain["sources"][0]["cited"]
            full = client.post("/ask", json={**QUESTION, "include_reasoning": True}).json()
            assert full["reasoning"] == "Let me find the passage that answers this."
            assert full["answer"] == plain["answer"]
            with client.stream("POST", "/ask", json={**QUESTION, "stream": True, "include_reasoning": True}) as r:
                events = parse_sse(r.read().decode())
            kinds = [k for k, _ in events]
            assert "reasoning" in kinds and kinds.index("reasoning") < kinds.index("token")
            assert "".join(e["delta"] for k, e in events if k == "token").strip() == plain["answer"]
            with client.stream("POST", "/ask", json={**QUESTION, "stream": True}) as r:
                assert "reasoning" not in [k for k, _ in parse_sse(r.read().decode())]
    finally:
        server.stop()


def test_ollama_num_ctx_never_exceeds_the_models_trained_context(make_settings: Callable[..., Settings]) -> None:
    server = StandinServer(free_port(), context_length=1024)  # /api/show reports 1024
    try:
        settings = make_settings(llm_backend="ollama", llm_base_url=server.base_url, llm_context_tokens=3000)
        with TestClient(create_app(settings)) as client:
            upload(client, "s", DOC)
            body = client.post("/ask", json=QUESTION).json()
        assert body["context"]["window_tokens"] == 1024
        assert {b["options"]["num_ctx"] for b in chat_bodies(server)} == {1024}
    finally:
        server.stop()
