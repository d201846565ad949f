"""Two models sharing one GPU (LLM_MODELS swap_group), against two real vLLM servers on CPU in sleep mode
(VLLM_SERVER_DEV_MODE=1: /sleep pauses the engine, /wake_up resumes it, /is_sleeping tells; on CPU no memory
is freed, the protocol is the same). The service wakes the model a request names after putting the other to
sleep, never has both awake, serves waiting requests in batches, bounds its queue with 429, and turns every
failed switch (drain too long, wake refused, wake too slow, server killed mid-switch) into an answer from the
awake model with a notice."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi.testclient import TestClient

from backend.config import Settings
from backend.main import create_app
from tests.faults import FaultTransport
from tests.integration.test_api import upload
from tests.servers import ThreadedServer, free_port
from tests.vllm.server import VllmServer

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

FACTS = {
    "pump.txt": b"The Glimmer pump has a maximum pressure of 9 bar.",
    "reactor.txt": b"The Zorblat reactor runs at 42 kelvin.",
}
QUESTION = {"q": "What is the maximum pressure of the Glimmer pump?", "space_id": "v"}


@pytest.fixture
def pair(vllm_server: VllmServer, vllm_server_b: VllmServer) -> Iterator[tuple[VllmServer, VllmServer]]:
    yield vllm_server, vllm_server_b
    for server in (vllm_server, vllm_server_b):  # the other vLLM tests expect them awake
        server.wake()


def pair_settings(
    make_settings: Callable[..., Settings], fast: VllmServer, large: VllmServer, **overrides: object
) -> Settings:
    models = [
        {"name": "fast", "backend": "vllm", "base_url": fast.base_url, "role": "default", "swap_group": "gpu0"},
        {"name": "large", "backend": "vllm", "base_url": large.base_url, "role": "large", "swap_group": "gpu0"},
    ]
    values: dict[str, Any] = {"llm_models": models, "llm_max_tokens": 24, **overrides}
    return make_settings(**values)


def switches(metrics: str, outcome: str = "ok") -> float:
    found = re.findall(rf'rag_llm_switches_total{{from_model="[^"]*",group="gpu0",outcome="{outcome}",'
                       rf'to_model="[^"]*"}} ([0-9.]+)', metrics)  # fmt: skip
    return sum(float(n) for n in found)


def test_each_request_is_answered_by_the_model_it_names_and_only_one_is_awake(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer]
) -> None:
    fast, large = pair
    with TestClient(create_app(pair_settings(make_settings, fast, large))) as client:
        upload(client, "v", FACTS)
        first = client.post("/ask", json=QUESTION).json()
        assert (first["model_name"], first["model"], first["notices"]) == ("fast", fast.served_name, [])
        assert not fast.sleeping() and large.sleeping()  # both started awake: the non-default one was put to sleep
        second = client.post("/ask", json={**QUESTION, "model": "large"}).json()
        assert (second["model_name"], second["model"], second["fallback_used"]) == ("large", large.served_name, False)
        assert "9" in second["answer"]
        assert fast.sleeping() and not large.sleeping()
        listed = {m["name"]: m for m in client.get("/models").json()["models"]}
        assert listed["fast"]["awake"] is False and listed["large"]["awake"] is True
        assert listed["fast"]["default"] and listed["large"]["swap_group"] == "gpu0"
        ready = client.get("/ready").json()
        assert ready["status"] == "ready" and "asleep" in ready["checks"]["llm_fast"]["detail"]
        # the OpenAI-compatible endpoint names the model after the space
        ids = [m["id"] for m in client.get("/v1/models").json()["data"]]
        assert ids == ["rag-v", "rag-v:fast", "rag-v:large"]
        chat = client.post("/v1/chat/completions", json={
            "model": "rag-v:fast", "messages": [{"role": "user", "content": QUESTION["q"]}]}).json()  # fmt: skip
        assert chat["rag"]["model_name"] == "fast" and chat["rag"]["llm_model"] == fast.served_name
        assert not fast.sleeping() and large.sleeping()
        metrics = client.get("/metrics").text
    assert switches(metrics) == 2
    assert re.search(r'rag_llm_switch_seconds_count{group="gpu0",model="large",phase="wake"} 1\.0', metrics)
    assert re.search(r'rag_llm_switch_seconds_count{group="gpu0",model="fast",phase="sleep"} 1\.0', metrics)


class AwakeWatch:
    """Polls both servers' /is_sleeping while requests run; `overlaps` counts polls, twice in a row, that
    found both awake (two in a row: one poll reads the servers one after the other)."""

    def __init__(self, servers: tuple[VllmServer, VllmServer]) -> None:
        self.servers = servers
        self.overlaps = 0
        self.polls = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        before = False
        while not self._stop.is_set():
            both = not any(s.sleeping() for s in self.servers)
            self.overlaps += both and before
            before = both
            self.polls += 1
            time.sleep(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def test_concurrent_requests_for_both_models_share_switches_and_never_overlap(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer]
) -> None:
    fast, large = pair
    names = ["large", "fast"] * 3 + ["large"]
    with fast_model_slowed(make_settings, fast, large) as http, ThreadPoolExecutor(len(names) + 1) as pool:
        first = pool.submit(http.post, "/ask", json=QUESTION)  # on fast, in flight for 4 s
        time.sleep(1.5)
        watch = AwakeWatch(pair)
        later = [pool.submit(http.post, "/ask", json={**QUESTION, "model": n}) for n in names]
        bodies = [first.result().json()] + [f.result().json() for f in later]
        watch.stop()
        metrics = http.get("/metrics").text
    served = {"fast": fast.served_name, "large": large.served_name}
    assert [(b["model_name"], b["model"]) for b in bodies] == [(n, served[n]) for n in ["fast", *names]]
    assert all(b["notices"] == [] and b["answer"] for b in bodies)
    assert watch.polls > 10 and watch.overlaps == 0
    # seven requests for alternating models arrived while the first answer was in flight: the large ones went
    # in together after one switch, and fast ones that came after it together after one switch back
    assert switches(metrics) in (1, 2)


def upload_facts(http: httpx.Client) -> httpx.Response:
    files = [("files", (name, data)) for name, data in FACTS.items()]
    return http.post("/documents", data={"space_id": "v"}, files=files)


@contextmanager
def fast_model_slowed(
    make_settings: Callable[..., Settings], fast: VllmServer, large: VllmServer, **overrides: object
) -> Iterator[httpx.Client]:
    """The service over a socket, the facts uploaded, and the fast model's answers taking 4 s to begin
    (an answer stays in flight that long)."""
    transport = FaultTransport(fast.root_url, "slow", delay_s=4, path="/v1/chat/completions")
    service = ThreadedServer(create_app(pair_settings(make_settings, fast, large, **overrides),
                                        http_transport=transport), free_port())  # fmt: skip
    try:
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            assert upload_facts(http).status_code == 200
            yield http
    finally:
        service.stop()


def test_past_the_queue_bound_a_request_gets_429_with_retry_after(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer]
) -> None:
    with fast_model_slowed(make_settings, *pair, llm_switch_queue=1) as http, ThreadPoolExecutor(2) as pool:
        held = pool.submit(http.post, "/ask", json=QUESTION)  # in flight on fast for 4 s
        time.sleep(1.5)
        waiting = pool.submit(http.post, "/ask", json={**QUESTION, "model": "large"})  # waits for the drain
        time.sleep(1.0)
        refused = http.post("/ask", json={**QUESTION, "model": "large"})
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "model_switch_queue_full"
        assert "LLM_SWITCH_QUEUE" in refused.json()["error"]["message"]
        assert int(refused.headers["Retry-After"]) >= 1
        assert held.result().json()["model_name"] == "fast"
        assert waiting.result().json()["model_name"] == "large"


def test_answers_that_do_not_drain_in_time_leave_the_request_to_the_awake_model(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer]
) -> None:
    fast, large = pair
    with fast_model_slowed(make_settings, fast, large, llm_switch_drain_s=1) as http, ThreadPoolExecutor(1) as pool:
        held = pool.submit(http.post, "/ask", json=QUESTION)
        time.sleep(1.5)
        moved = http.post("/ask", json={**QUESTION, "model": "large"}).json()
        assert held.result().json()["model_name"] == "fast"
        metrics = http.get("/metrics").text
    assert moved["model_name"] == "fast" and moved["fallback_used"]
    assert "LLM_SWITCH_DRAIN_S" in moved["notices"][0]
    assert not fast.sleeping() and large.sleeping()
    assert switches(metrics, "drain_timeout") == 1 and switches(metrics) == 0


@pytest.mark.parametrize("fault", ["refused", "slow"])
def test_a_wake_that_fails_puts_the_awake_model_back_and_it_answers(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer], fault: str
) -> None:
    fast, large = pair
    if fault == "refused":
        transport = FaultTransport(large.root_url, "status500", path="/wake_up")
        settings = pair_settings(make_settings, fast, large)
    else:  # /wake_up answers after 5 s, past LLM_SWITCH_TIMEOUT_S
        transport = FaultTransport(large.root_url, "slow", delay_s=5, path="/wake_up")
        settings = pair_settings(make_settings, fast, large, llm_switch_timeout_s=1)
    with TestClient(create_app(settings, http_transport=transport)) as client:
        upload(client, "v", FACTS)
        body = client.post("/ask", json={**QUESTION, "model": "large"}).json()
        assert body["model_name"] == "fast" and body["fallback_used"] and "9" in body["answer"]
        assert "waking 'large' failed" in body["notices"][0]
        assert ("500" if fault == "refused" else "LLM_SWITCH_TIMEOUT_S") in body["notices"][0]
        assert not fast.sleeping() and large.sleeping()
        assert switches(client.get("/metrics").text, "wake_failed") == 1
        transport.mode = None  # the server recovers: the next request gets the model it names
        again = client.post("/ask", json={**QUESTION, "model": "large"}).json()
        assert (again["model_name"], again["notices"]) == ("large", [])
        assert fast.sleeping() and not large.sleeping()


def test_a_server_killed_mid_switch_leaves_the_request_to_the_awake_model(
    make_settings: Callable[..., Settings], vllm_server: VllmServer, tmp_path: Path
) -> None:
    fast = vllm_server
    doomed = VllmServer(tmp_path / "doomed.log", served_name="smollm2-vllm-doomed")
    try:
        # /wake_up reaches the server 6 s late; it is killed 2 s into that wait, after fast went to sleep
        transport = FaultTransport(doomed.root_url, "slow", delay_s=6, path="/wake_up")
        settings = pair_settings(make_settings, fast, doomed)
        with TestClient(create_app(settings, http_transport=transport)) as client:
            upload(client, "v", FACTS)
            assert client.post("/ask", json=QUESTION).json()["model_name"] == "fast"
            killer = threading.Timer(2.0, doomed.kill)
            killer.start()
            body = client.post("/ask", json={**QUESTION, "model": "large"}).json()
            killer.join()
            assert body["model_name"] == "fast" and body["fallback_used"]
            assert "waking 'large' failed" in body["notices"][0] and "cannot reach" in body["notices"][0]
            assert not fast.sleeping()
            transport.mode = None
            later = client.post("/ask", json={**QUESTION, "model": "large"}).json()  # dead: fast answers again
            assert later["model_name"] == "fast" and not fast.sleeping()
    finally:
        doomed.stop()
        fast.wake()


def test_the_openai_client_names_a_model_after_the_space(
    make_settings: Callable[..., Settings], pair: tuple[VllmServer, VllmServer]
) -> None:
    fast, large = pair
    service = ThreadedServer(create_app(pair_settings(make_settings, fast, large)), free_port())
    try:
        with httpx.Client(base_url=service.base_url, timeout=120) as http:
            assert upload_facts(http).status_code == 200
        client = openai.OpenAI(base_url=f"{service.base_url}/v1", api_key="unused", max_retries=0, timeout=120)
        assert [m.id for m in client.models.list()] == ["rag-v", "rag-v:fast", "rag-v:large"]
        reply = client.chat.completions.create(
            model="rag-v:large", messages=[{"role": "user", "content": QUESTION["q"]}]
        )
        assert reply.model == "rag-v:large" and reply.model_extra is not None
        assert reply.model_extra["rag"]["model_name"] == "large"
        with pytest.raises(openai.NotFoundError, match="unknown model 'huge'"):
            client.chat.completions.create(model="rag-v:huge", messages=[{"role": "user", "content": "hi"}])
        assert large.sleeping() is False and fast.sleeping() is True
    finally:
        service.stop()
