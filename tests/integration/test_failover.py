"""Killing the primary LLM server during a run of asks: every ask gets an answer (fallback) or a clean
error, none hangs past the timeouts. Two real llama.cpp servers; the service served by uvicorn."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from backend.config import Settings
from backend.main import create_app
from tests.conftest import LlamaServer
from tests.servers import ThreadedServer, free_port

ASKS = 50
KILL_AFTER = 10
TOTAL_TIMEOUT_S = 30.0
PUMP = ("pump.txt", b"The Glimmer pump has a maximum pressure of 9 bar.")


def test_killing_the_primary_mid_run_loses_no_ask(
    make_settings: Callable[..., Settings], llm_server: LlamaServer, tmp_path: Path
) -> None:
    primary = LlamaServer(tmp_path / "primary.log")
    settings = make_settings(
        llm_base_url=primary.base_url, llm_model="smollm2", llm_fallback="openai",
        llm_fallback_base_url=llm_server.base_url, llm_fallback_model="smollm2", llm_max_tokens=16,
        llm_first_token_timeout_s=10.0, llm_total_timeout_s=TOTAL_TIMEOUT_S, top_k=1,
    )  # fmt: skip
    service = ThreadedServer(create_app(settings), free_port())
    outcomes: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=service.base_url, timeout=TOTAL_TIMEOUT_S + 30) as http:
            resp = http.post("/documents", data={"space_id": "f"}, files=[("files", PUMP)])
            assert resp.status_code == 200

            def ask(i: int) -> dict[str, Any]:
                start = time.monotonic()
                r = http.post("/ask", json={"q": f"What is the pump's maximum pressure? ({i})", "space_id": "f"})
                out = {"i": i, "status": r.status_code, "seconds": time.monotonic() - start, "body": r.json()}
                outcomes.append(out)
                if len(outcomes) == KILL_AFTER:
                    primary.proc.kill()  # kill -9, mid-run, with asks in flight
                return out

            with ThreadPoolExecutor(max_workers=3) as pool:
                list(pool.map(ask, range(ASKS)))
    finally:
        service.stop()
        primary.stop()

    assert len(outcomes) == ASKS
    for o in outcomes:
        assert o["status"] in (200, 503), o
        assert o["seconds"] < TOTAL_TIMEOUT_S + 5, o  # nothing hangs past the timeout
        if o["status"] == 503:
            assert o["body"]["error"]["code"] in ("llm_unavailable", "llm_failed") and o["body"]["error"]["message"]
    answered = [o for o in outcomes if o["status"] == 200]
    assert sum(o["body"]["fallback_used"] for o in answered) >= ASKS - KILL_AFTER - 3  # the rest went to the fallback
    assert len(answered) >= ASKS - 3  # at most the asks in flight at the kill may fail, cleanly
